"""The learning-rate range test: its rate against a sweep that knows the good rates, the model left
as it was, the schedule and the smoothing against their definitions, the picture, the command,
and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainability
from trainability import datasets, mlp
from trainability.lr_finder import BELOW_MINIMUM, LRRangeTest, find_lr, smooth

pytestmark = pytest.mark.usefixtures("one_thread")

SWEEP = [10.0**k for k in (-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0)]


def _validation_loss(build, splits, optimizer: str, lr: float, steps: int = 150, seed: int = 0) -> float:
    """Validation loss after ``steps`` steps at ``lr`` (a NaN/Inf run counts as infinitely bad)."""
    from trainability.repair.runs import ROUNDS, Run, full_settings, rounds_of

    torch.manual_seed(seed)
    settings = full_settings({"optimizer": optimizer, "lr": lr})
    run = Run("sweep", build(), settings, rounds_of(splits.train, steps, 32, seed), splits.validation, seed, steps)
    run.advance(ROUNDS)
    run.close()
    loss = run.records[-1]["val_loss"] if run.records and run.status != "failed" else math.inf
    return loss if math.isfinite(loss) else math.inf


NETWORKS = {
    "relu-mlp-digits-sgd": (lambda: mlp(64, 10, depth=4, width=64, activation="relu"), "digits", "sgd"),
    "relu-mlp-digits-adam": (lambda: mlp(64, 10, depth=4, width=64, activation="relu"), "digits", "adam"),
    "tanh-mlp-moons-sgd": (lambda: mlp(2, 2, depth=3, width=32, activation="tanh"), "moons", "sgd"),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_chosen_rate_trains_within_the_sweeps_best_half(name):
    """Networks whose good rates a sweep establishes: each rate of SWEEP trained for 150 steps;
    the range test's rate, trained the same way, does as well as the better half of them."""
    build, data, optimizer = NETWORKS[name]
    splits = datasets.load(data)
    swept = sorted(_validation_loss(build, splits, optimizer, lr) for lr in SWEEP)
    best_half = swept[: math.ceil(len(swept) / 2)]
    torch.manual_seed(0)
    test = find_lr(build(), splits, optimizer=optimizer)
    assert test.falls and test.stopped in ("diverged", "non-finite loss")
    chosen = _validation_loss(build, splits, optimizer, test.suggestion)
    assert chosen <= best_half[-1], (test.suggestion, chosen, swept)
    assert chosen < swept[-1]  # and the sweep had bad rates to avoid: the test is not vacuous


def test_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = mlp(64, 10, depth=3, width=16, activation="relu").eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    test = find_lr(model, "digits", steps=40)
    assert isinstance(test, LRRangeTest) and not model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())


def test_the_schedule_the_smoothing_and_the_choice_follow_their_definitions():
    torch.manual_seed(0)
    test = find_lr(mlp(64, 10, depth=3, width=32, activation="relu"), "digits", steps=80, start_lr=1e-6, end_lr=1.0)
    k = torch.arange(len(test.lrs), dtype=torch.float64)
    expected = 1e-6 * (1.0 / 1e-6) ** (k / 79)
    torch.testing.assert_close(torch.tensor(test.lrs, dtype=torch.float64), expected)
    beta = 1 - 3 / (80 / 6)  # memory: a third of a decade (80 steps over 6 decades)
    assert test.smoothed == pytest.approx(smooth(test.losses, beta))
    m, oracle = 0.0, []
    for i, x in enumerate(test.losses, start=1):  # Adam-style bias-corrected moving average
        m = beta * m + (1 - beta) * x
        oracle.append(m / (1 - beta**i))
    assert test.smoothed == pytest.approx(oracle)
    low = min(range(len(test.smoothed)), key=test.smoothed.__getitem__)
    assert test.lr_min == test.lrs[low] and test.suggestion == pytest.approx(test.lr_min / BELOW_MINIMUM)
    if test.stopped == "diverged":
        assert test.smoothed[-1] > 4 * min(test.smoothed)


def test_a_network_whose_loss_cannot_fall_has_no_rate():
    class Mute(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) * 0.0

    test = find_lr(Mute(), "blobs", steps=30)
    assert not test.falls and "did not fall" in test.summary()


def test_the_plot(tmp_path):
    torch.manual_seed(0)
    test = find_lr(mlp(2, 2, depth=2, width=16), "moons", steps=40)
    path = test.plot(tmp_path / "lr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exported_at_top_level():
    assert trainability.find_lr is find_lr and "find_lr" in trainability.__all__


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"optimizer": "sgdd"}, "unknown optimizer 'sgdd'"),
        ({"steps": 5}, "steps must be an int of at least 10"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "must be larger than start_lr"),
        ({"start_lr": -1.0}, "start_lr must be a positive number"),
        ({"diverge": 1.0}, "diverge must be a number above 1"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
    ],
)
def test_bad_arguments_are_one_clear_line(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        find_lr(mlp(2, 2, depth=2, width=8), "moons", **kwargs)


def test_bad_data_and_model():
    with pytest.raises(ValueError, match="data must be"):
        find_lr(mlp(2, 2, depth=2, width=8), [1, 2, 3])
    with pytest.raises(ValueError, match="do not fit"):
        find_lr(mlp(5, 2, depth=2, width=8), "moons", steps=10)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        find_lr("not a model", "moons")  # type: ignore[arg-type]


def test_the_command(tmp_path, capsys):
    from trainability.cli import main

    picture = tmp_path / "curve.png"
    assert main(["find-lr", "mlp:depth=3,activation=relu", "--data", "digits", "--steps", "60", "--plot", str(picture)]) == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate:" in printed and str(picture) in printed and picture.is_file()
    assert main(["find-lr", "mlp:depth=3", "--data", "digits", "--steps", "5"]) == 2
    assert "--steps must be at least 10" in capsys.readouterr().err
