"""Repair: the criterion, the plan from the doctor's findings, every candidate kind's code against
its own application, repairs of networks whose problem is known, healthy networks left alone,
parallel workers, the page, and bad input."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import trainability
from trainability import datasets, diagnose, mlp
from trainability.repair import KINDS, Candidate, Criterion, LSTMAsRNN
from trainability.repair.candidates import TRAINING_ONLY
from trainability.repair.plan import plan
from trainability.repair.search import travel_problem

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "repair_suite.py"


def _suite():
    """The benchmark's catalogue of broken networks (its model classes and how each is broken)."""
    if "repair_suite" not in sys.modules:
        spec = importlib.util.spec_from_file_location("repair_suite", SUITE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["repair_suite"] = module
        spec.loader.exec_module(module)
    return sys.modules["repair_suite"]


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


pytestmark = pytest.mark.usefixtures("one_thread")


def _broken_relu(depth: int = 12, width: int = 32, inputs: int = 64, outputs: int = 10) -> nn.Sequential:
    torch.manual_seed(0)
    return mlp(inputs, outputs, depth=depth, width=width, activation="relu", init="default")


def _findings(model: nn.Module, splits) -> list[dict]:
    report = diagnose(model, splits.train.x[:256], splits.train.y[:256])
    return [{**f.to_dict(), "action": f.action} for f in report.findings]


SETTINGS = {"optimizer": "sgd", "lr": None, "momentum": 0.0, "batch_size": 32, "clip_norm": None}


# -- the criterion ---------------------------------------------------------------------------------
def test_criterion_separates_chance_from_learning(digits):
    c = Criterion.for_splits(digits)
    n = digits.validation.samples
    assert c.chance == pytest.approx(float(torch.bincount(digits.validation.y).max()) / n)
    assert c.prior_loss == pytest.approx(2.30, abs=0.01)  # ten nearly balanced classes: ln 10
    assert c.margin == pytest.approx(max(3 * (c.chance * (1 - c.chance) / n) ** 0.5, 0.1 * (1 - c.chance)))
    stuck = [{"loss": 2.30, "val_accuracy": c.chance}]
    learning = [{"loss": 1.9, "val_accuracy": c.chance + c.margin + 0.01}]
    assert not c.trains(stuck) and c.trains(learning)
    assert not c.trains([{"loss": float("nan"), "val_accuracy": 0.9}])
    assert not c.trains([{"loss": 2.25, "val_accuracy": 0.9}])  # loss barely below the constant predictor's
    assert not c.trains([])
    floor = c.better_than(0.5)
    assert floor.floor > 0.5 and not floor.trains([{"loss": 1.0, "val_accuracy": 0.5}])


def test_criterion_for_regression():
    x = torch.randn(200, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    from trainability.repair.search import load_data

    splits, _ = load_data((x, y))
    c = Criterion.for_splits(splits)
    assert not c.classification
    assert c.trains([{"loss": 0.1 * c.prior_loss, "val_loss": 0.1 * c.chance}])
    assert not c.trains([{"loss": c.prior_loss, "val_loss": c.chance}])


# -- the plan --------------------------------------------------------------------------------------
def test_plan_puts_the_matched_reinitialization_first(digits):
    model = _broken_relu()
    candidates, _ = plan(model, digits.train.x[:256], _findings(model, digits), SETTINGS)
    kinds = [c.kind for c in candidates]
    assert kinds[0] == "reinitialize" and candidates[0].params["everything"]  # every layer is drawn off He
    assert "vanishing_gradients" in candidates[0].reason
    assert kinds.index("insert_normalization") < kinds.index("clip_gradients") < kinds.index("lower_learning_rate")
    assert [c.rank for c in candidates] == sorted(c.rank for c in candidates)
    assert candidates[kinds.index("lower_learning_rate")].params["lr"] == pytest.approx(0.001)  # sgd's 0.01 x 0.1


def test_plan_for_a_saturated_sigmoid_stack_swaps_the_activation_after_reinitializing(digits):
    suite = _suite()
    torch.manual_seed(0)
    model = suite.normal_weights(mlp(64, 10, depth=8, width=16, activation="sigmoid", init="default"))
    candidates, _ = plan(model, digits.train.x[:256], _findings(model, digits), SETTINGS)
    kinds = [c.kind for c in candidates]
    assert kinds[0] == "reinitialize"
    swaps = [c for c in candidates if c.kind == "swap_activation"]
    assert [s.params["activation"] for s in swaps][:2] == ["relu", "selu"]
    assert all(s.params["from"] == ["sigmoid"] and len(s.params["modules"]) == 8 for s in swaps)
    assert kinds.index("swap_activation") < kinds.index("insert_normalization")


def test_plan_says_what_cannot_apply():
    class Functional(nn.Module):  # ReLU applied as a function: nothing to swap
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    model = Functional()
    findings = [{"kind": "dead_units", "severity": "error",
                 "action": {"op": "swap_activation", "layers": ["a"], "activation": "leaky_relu"}}]  # fmt: skip
    candidates, skipped = plan(model, torch.randn(16, 8), findings, SETTINGS, fallbacks=False)
    assert not any(c.kind == "swap_activation" for c in candidates)
    assert any("applied as functions" in s for s in skipped)


# -- every kind: the snippet does exactly what the candidate does ------------------------------------
def _models():
    suite = _suite()
    torch.manual_seed(0)
    selu = suite.ordinary_dropout(mlp(16, 4, depth=3, width=8, activation="selu", dropout=0.2))
    builders = {
        "mlp": lambda: mlp(16, 4, depth=3, width=8, activation="relu", init="default"),
        "selu": lambda: copy.deepcopy(selu),
        "residual": lambda: suite.ResidualMLP(16, 4, blocks=3, width=8),
        "rnn": lambda: suite.SequenceRNN(16, 4, size=2, hidden=8),
        "lstm": lambda: suite.SequenceRNN(16, 4, size=2, hidden=8, kind="lstm"),
    }

    def seeded(build):  # the same initial weights at every call
        def again():
            torch.manual_seed(0)
            return build()

        return again

    return {name: seeded(build) for name, build in builders.items()}


CASES = [
    ("mlp", Candidate("reinitialize", {"layers": ["0", "2"], "init": "auto", "everything": False})),
    ("mlp", Candidate("reinitialize", {"layers": ["0", "2", "4", "6"], "init": "auto", "everything": True})),
    ("mlp", Candidate("reinitialize", {"layers": ["2"], "init": "lecun_normal", "everything": False})),
    ("residual", Candidate("scale_residual_branches", {"blocks": ["blocks.0", "blocks.1", "blocks.2"], "init": "auto",
                                                       "layers": [f"blocks.{b}.{i}" for b in range(3) for i in (0, 2)]})),
    ("mlp", Candidate("swap_activation", {"from": ["relu"], "activation": "leaky_relu", "hyperparameters": {"negative_slope": 0.2},
                                          "modules": ["1", "3", "5"], "layers": ["0", "2", "4"], "dropout": []})),
    ("selu", Candidate("replace_dropout", {"modules": [["2", 0.2], ["5", 0.2], ["8", 0.2]]})),
    ("mlp", Candidate("insert_normalization", {"norm": "batch", "inserts": [["0", "BatchNorm1d", 8], ["2", "BatchNorm1d", 8]]})),
    ("rnn", Candidate("recurrent_init", {"layers": ["rnn"], "init": "auto", "lstm": False})),
    ("lstm", Candidate("forget_gate_bias", {"layers": ["rnn"], "value": 1.0})),
    ("rnn", Candidate("replace_rnn", {"layers": ["rnn"], "with": "gru"})),
    ("rnn", Candidate("replace_rnn", {"layers": ["rnn"], "with": "lstm"})),
    ("mlp", Candidate("clip_gradients", {"clip_norm": 1.0})),
    ("mlp", Candidate("lower_learning_rate", {"lr": 0.001, "factor": 0.1})),
    ("mlp", Candidate("change_optimizer", {"optimizer": "adam", "lr": None})),
]  # fmt: skip


def test_every_kind_is_covered():
    assert {c.kind for _, c in CASES} == set(KINDS)


@pytest.mark.parametrize(("family", "candidate"), CASES, ids=[f"{c.kind}-{i}" for i, (_, c) in enumerate(CASES)])
def test_snippet_reproduces_the_candidate(family, candidate):
    from trainability.repair.result import snippet

    build = _models()[family]
    applied, original = build(), build()
    before = copy.deepcopy(original.state_dict())
    candidate.apply(applied, seed=3)
    namespace = {"model": original}
    exec(snippet(candidate, SETTINGS, candidate.train(SETTINGS), 3), namespace)  # noqa: S102 - the snippet is the product
    mine, theirs = applied, namespace["model"]
    assert [type(m) for m in mine.modules()] == [type(m) for m in theirs.modules()]
    assert mine.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(mine.state_dict()[k], theirs.state_dict()[k]) for k in mine.state_dict())
    x = torch.randn(5, 16)
    torch.testing.assert_close(mine.eval()(x), theirs.eval()(x))
    if candidate.kind in ("clip_gradients", "lower_learning_rate", "change_optimizer"):
        assert all(torch.equal(before[k], v) for k, v in theirs.state_dict().items())  # the model is left as it is
        assert candidate.train(SETTINGS) != SETTINGS


def test_replacement_rnns_drop_in_for_nn_rnn():
    rnn = nn.RNN(3, 5, num_layers=2, batch_first=True)
    x, h0 = torch.randn(4, 7, 3), torch.randn(2, 4, 5)
    for replacement in (nn.GRU(3, 5, num_layers=2, batch_first=True), LSTMAsRNN(3, 5, num_layers=2, batch_first=True)):
        for args in ((x,), (x, h0)):
            (out, h), (ref_out, ref_h) = replacement(*args), rnn(*args)
            assert out.shape == ref_out.shape and h.shape == ref_h.shape


# -- repairs of networks whose problem is known -------------------------------------------------------
def test_deep_relu_with_default_init_is_reinitialized_and_the_snippet_is_real(digits):
    from trainability.experiments.runner import Task, train
    from trainability.repair.search import CandidateModel, InMemory, _settings_spec

    broken = _broken_relu()
    result = trainability.repair(broken, digits, budget_steps=100, workers=1)
    assert result.probe.status == "does not train" and result.verdict == "repaired"
    assert result.change.kind == "reinitialize" and result.change.params["everything"]
    assert result.attempts[0] is result.winner and result.untried > 0
    assert diagnose(result.model, digits.train.x[:256], digits.train.y[:256]).healthy
    assert all(r.change == "re-initialized" for r in result.diff) and len(result.diff) == 13
    assert all(torch.equal(a, b) for a, b in zip(broken.state_dict().values(), _broken_relu().state_dict().values(), strict=True))

    namespace = {"model": _broken_relu()}  # a fresh copy of the broken model
    exec(result.snippet, namespace)  # noqa: S102
    mine = namespace["model"]
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), result.model.state_dict().values(), strict=True))
    runs = [train(Task(f"check-{i}", InMemory(digits), CandidateModel(m), _settings_spec(result.train_settings, 100), 0))
            for i, m in enumerate((mine, result.model))]  # fmt: skip
    assert runs[0].epochs == [{**e, "seconds": runs[0].epochs[i]["seconds"]} for i, e in enumerate(runs[1].epochs)]
    assert runs[1].epochs[-1]["val_accuracy"] == pytest.approx(result.winner.score)


def test_saturated_sigmoid_stack_gets_another_activation(digits):
    suite = _suite()
    torch.manual_seed(0)
    broken = suite.normal_weights(mlp(64, 10, depth=10, width=32, activation="sigmoid", init="default"))
    result = trainability.repair(broken, digits, budget_steps=150, workers=1)
    assert result.verdict == "repaired" and result.change.kind == "swap_activation"
    assert result.attempts[0].candidate.kind == "reinitialize" and result.attempts[0].status != "trains"  # Glorot is not enough
    assert {r.change for r in result.diff} == {"replaced", "re-initialized"}
    assert not any(isinstance(m, nn.Sigmoid) for m in result.model.modules())


def test_exploding_learning_rate_is_clipped_or_lowered():
    splits = datasets.load("circles")
    torch.manual_seed(0)
    model = mlp(2, 2, depth=8, width=16, activation="relu")
    result = trainability.repair(model, splits, budget_steps=100, lr=1.0, workers=1)
    assert result.before.healthy and result.probe.status != "trains"  # sound as built: the training is what fails
    assert result.attempts[0].candidate.kind in TRAINING_ONLY  # so training changes go first
    assert result.verdict == "repaired" and result.change.kind in ("clip_gradients", "lower_learning_rate")
    assert result.diff and all(r.change == "training" for r in result.diff)
    assert result.train_settings != result.settings
    assert "clip_norm=1" in result.snippet or "lr=0.1" in result.snippet


def test_unnormalized_residual_net_is_reinitialized_by_the_family_scheme():
    suite = _suite()
    splits = datasets.load("blobs")
    torch.manual_seed(0)
    result = trainability.repair(suite.ResidualMLP(8, 4, blocks=12, width=32), splits, budget_steps=100, workers=1)
    assert result.verdict == "repaired" and result.change.kind in ("reinitialize", "scale_residual_branches")
    assert any("fixup" in r.after or "zeros" in r.after for r in result.diff)


def test_plain_rnn_gets_orthogonal_recurrent_weights(digits):
    suite = _suite()
    torch.manual_seed(0)
    result = trainability.repair(suite.SequenceRNN(64, 10, size=2, hidden=16), digits, budget_steps=150, workers=1)
    assert any(f.kind == "vanishing_through_time" for f in result.before.findings)
    assert result.verdict == "repaired" and result.change.kind == "recurrent_init"
    assert not any(f.kind == "vanishing_through_time" and f.severity == "error" for f in result.after.findings)


def test_all_ranks_every_candidate(digits):
    suite = _suite()
    torch.manual_seed(0)
    broken = suite.ordinary_dropout(mlp(64, 10, depth=12, width=16, activation="selu", dropout=0.3))
    result = trainability.repair(broken, digits, budget_steps=40, all=True, workers=1)
    kinds = [a.candidate.kind for a in result.attempts]
    assert "replace_dropout" in kinds and result.untried == 0
    assert all(a.steps == 40 or a.status == "failed" for a in result.attempts)
    ranking = result.ranking()
    trained = [a for a in ranking if a.status == "trains"]
    assert ranking[: len(trained)] == trained
    assert [a.score for a in trained] == sorted((a.score for a in trained), reverse=True)
    if result.change is not None:
        assert result.winner is trained[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_healthy_networks_are_left_alone(seed):
    for data, depth, activation in (("blobs", 6, "relu"), ("moons", 4, "tanh")):
        splits = datasets.load(data)
        torch.manual_seed(seed)
        result = trainability.repair(mlp(splits.in_features, splits.n_outputs, depth=depth, width=32, activation=activation),
                                     data, seed=seed, workers=1)  # fmt: skip
        assert result.verdict == "healthy" and result.attempts == [] and result.change is None
        assert result.probe.stopped_early and result.steps < result.budget_steps  # it showed it trains, then stopped
        assert result.snippet.startswith("# trainability repair: no change")


# -- where candidates run ------------------------------------------------------------------------------
def test_candidates_in_two_worker_processes_agree_with_one(digits):
    one = trainability.repair(_broken_relu(depth=12, width=8), digits, budget_steps=60, workers=1, all=True)
    two = trainability.repair(_broken_relu(depth=12, width=8), digits, budget_steps=60, workers=2, all=True)
    assert two.workers == 2 and two.ran_here is None
    assert [a.candidate.key for a in two.attempts] == [a.candidate.key for a in one.attempts]
    assert [a.score for a in two.attempts] == [a.score for a in one.attempts]  # same runs, same numbers
    assert two.change.key == one.change.key


def test_a_model_defined_in_main_runs_in_process(digits):
    Local = type("Local", (nn.Sequential,), {"__module__": "__main__"})  # noqa: N806 - a class, as a notebook defines
    model = Local(*_broken_relu(depth=12, width=8))
    assert "__main__" in travel_problem(model)
    assert travel_problem(_broken_relu()) is None
    result = trainability.repair(model, digits, budget_steps=30, workers=2)
    assert result.workers == 1 and "__main__" in result.ran_here
    assert "ran in this process" in result.summary()


# -- the page -----------------------------------------------------------------------------------------
def test_the_page_and_its_files(digits, tmp_path):
    result = trainability.repair(_broken_relu(depth=12, width=8), digits, budget_steps=40, workers=1, out=tmp_path / "r")
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert names == {"report.html", "learning_curves.png", "doctor_before.png", "doctor_after.png", "snippet.py", "result.json"}
    html = (tmp_path / "r" / "report.html").read_text()
    body = html.split("<body", 1)[1]
    assert "http" not in body and "<script" not in html  # self-contained
    assert html.count("data:image/png;base64,") == 3
    for title in ("The change, layer by layer", "Learning curves", "Every candidate tried", "The doctor before and after"):
        assert title in html
    assert (tmp_path / "r" / "snippet.py").read_text() == result.snippet
    import json

    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved["verdict"] == result.verdict and len(saved["attempts"]) == len(result.attempts)


# -- bad input: one line each ----------------------------------------------------------------------------
def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_input_is_one_line(digits):
    def factory():
        raise RuntimeError("no such checkpoint")

    with pytest.raises(ValueError) as e:
        trainability.repair(factory, digits)
    assert "factory factory() raised RuntimeError: no such checkpoint" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(mlp(10, 10, depth=2, width=8), digits)
    assert "cannot take the data's inputs" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(mlp(64, 3, depth=2, width=8), digits)
    assert "10 classes" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(mlp(64, 10, depth=2, width=8), digits, budget_steps=5)
    assert "at least 10" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(mlp(64, 10, depth=2, width=8), digits, optimizer="sgdd")
    assert "unknown optimizer" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(mlp(64, 10, depth=2, width=8), [1, 2, 3])
    assert "data must be" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(lambda: "not a model", digits)
    assert "not a torch.nn.Module" in _one_line(e)
    with pytest.raises(ValueError) as e:
        trainability.repair(mlp(64, 10, depth=2, width=8), digits, workers=1000)
    assert "1000 workers on" in _one_line(e)


def test_repair_is_exported_lazily():
    code = ("import sys, trainability; assert 'trainability.repair' not in sys.modules; "
            "from trainability.repair import RepairResult; assert callable(trainability.repair); "
            "print(type(trainability.repair).__name__)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert callable(trainability.repair) and "repair" in trainability.__all__
