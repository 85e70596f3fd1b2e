"""Repair: the criterion, the plan from the doctor's findings, every candidate kind's code against
its own application, repairs of networks whose problem is known, healthy networks left alone,
parallel workers, the page, and bad input."""

from __future__ import annotations

import copy
import importlib.util
import math
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


def test_criterion_flat_and_noise():
    c = Criterion(classification=True, chance=0.1, prior_loss=2.30, margin=0.09, samples=288)
    stuck = [{"loss": 2.31, "val_loss": 2.30, "val_accuracy": 0.10}] * 5
    assert c.flat(stuck, 10) and not c.flat(stuck[:4], 10)  # half the budget first
    starting = [*stuck[:4], {"loss": 2.29, "val_loss": 2.28, "val_accuracy": 0.16}]
    assert not c.flat(starting, 10)  # above chance by more than noise: it has started to learn
    assert c.flat([*stuck[:4], {"loss": float("nan"), "val_accuracy": 0.5}], 10)
    dropout = [{"loss": 2.26, "val_loss": 1.9, "val_accuracy": 0.33}]  # dropout keeps the training loss up
    assert c.trains(dropout)
    assert c.clearly_better(0.2, 0.1) and not c.clearly_better(0.11, 0.1) and not c.clearly_better(None, 0.1)


# -- the plan --------------------------------------------------------------------------------------
def _rungs(ladders) -> list[list[str]]:
    return [[c.kind for c in ladder.rungs] for ladder in ladders]


def test_plan_puts_the_matched_reinitialization_first(digits):
    model = _broken_relu()
    ladders, _ = plan(model, digits.train.x[:256], _findings(model, digits), SETTINGS)
    first = ladders[0].rungs[0]
    assert first.kind == "reinitialize" and first.params["everything"]  # every layer is drawn off He
    assert "vanishing_gradients" in first.reason
    kinds = [ladder.rungs[0].kind for ladder in ladders]
    assert kinds.index("insert_normalization") < kinds.index("clip_gradients") < kinds.index("lower_learning_rate")
    assert [lad.order for lad in ladders] == sorted(lad.order for lad in ladders)
    lr = ladders[kinds.index("lower_learning_rate")].rungs
    assert [c.params["below"] for c in lr] == [1.0, 10.0] and all(c.params["lr"] is None for c in lr)  # from the range test
    clip = ladders[kinds.index("clip_gradients")].rungs
    assert [c.params["clip_norm"] for c in clip] == [1.0, 0.1]  # the doctor found errors: its gradient is no yardstick


def test_clipping_rungs_come_from_the_measured_gradient_norm(digits):
    model = mlp(64, 10, depth=4, width=32, activation="relu")
    report = diagnose(model, digits.train.x[:256], digits.train.y[:256])
    assert report.healthy
    measured = math.sqrt(sum(s.weight_grad_norm**2 for s in report.layers if s.role == "weight"))
    ladders, _ = plan(model, digits.train.x[:256], [{"kind": "exploding_gradients", "severity": "error", "layers": [],
                      "action": {"op": "clip", "clip_norm": 1.0}}], SETTINGS, fallbacks=False, report=report)  # fmt: skip
    norms = [c.params["clip_norm"] for c in ladders[0].rungs]
    assert norms == [pytest.approx(measured, rel=1e-2), pytest.approx(measured / 10, rel=1e-2)]


def test_plan_for_a_saturated_sigmoid_stack_swaps_the_activation_after_reinitializing(digits):
    suite = _suite()
    torch.manual_seed(0)
    model = suite.normal_weights(mlp(64, 10, depth=8, width=16, activation="sigmoid", init="default"))
    ladders, _ = plan(model, digits.train.x[:256], _findings(model, digits), SETTINGS)
    assert ladders[0].rungs[0].kind == "reinitialize"
    swaps = next(lad.rungs for lad in ladders if lad.rungs[0].kind == "swap_activation")
    assert [s.params["activation"] for s in swaps] == ["relu", "selu"]  # one ladder, in the finding's order
    assert all(s.params["from"] == ["sigmoid"] and len(s.params["modules"]) == 8 for s in swaps)


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
    ladders, skipped = plan(model, torch.randn(16, 8), findings, SETTINGS, fallbacks=False)
    assert not any(c.kind == "swap_activation" for lad in ladders for c in lad.rungs)
    assert any("applied as functions" in s for s in skipped)


def test_residual_branches_written_as_a_loop_are_found_and_scaled(digits):
    """The issue's network: residual blocks added in a loop of the parent's forward, He branches.
    The doctor reads it as a plain stack; the traced graph shows 8 branches of 2 layers."""
    suite = _suite()
    torch.manual_seed(0)
    model = suite.ResidualLoop(64, 10, blocks=8, width=16)
    ladders, _ = plan(model, digits.train.x[:256], _findings(model, digits), SETTINGS)
    branches = next(lad.rungs for lad in ladders if lad.rungs[0].kind == "scale_residual_branches")
    assert [c.params["scheme"] for c in branches] == ["scaled", "fixup", "zero"]
    assert branches[0].params["ends"] == [f"b.{i}" for i in range(8)] and branches[0].params["inner"] == [f"a.{i}" for i in range(8)]
    assert branches[0].params["end_factor"] == pytest.approx(8**-0.5)  # 1/sqrt(branches)
    assert branches[1].params["inner_factor"] == pytest.approx(8 ** (-1 / 2))  # Fixup: L^(-1/(2m-2)), m = 2
    fixup = copy.deepcopy(model)
    branches[1].apply(fixup, seed=0)
    assert all(float(fixup.b[i].weight.detach().abs().max()) == 0.0 for i in range(8))
    assert float(fixup.a[0].weight.detach().std()) == pytest.approx((2 / 16) ** 0.5 * 8**-0.5, rel=0.25)  # He x 1/sqrt(8)


def test_recurrent_ladders_climb_from_the_gate_bias_to_chrono(digits):
    suite = _suite()
    torch.manual_seed(0)
    lstm = suite.gate_bias(suite.SequenceRNN(64, 10, size=2, hidden=16, kind="lstm"), -5.0)
    ladders, _ = plan(lstm, digits.train.x[:256], _findings(lstm, digits), {**SETTINGS, "optimizer": "adam"})
    rungs = _rungs(ladders)
    assert ["forget_gate_bias", "chrono_init"] in rungs and ["recurrent_init", "recurrent_init"] in rungs
    chrono = next(c for lad in ladders for c in lad.rungs if c.kind == "chrono_init")
    assert chrono.params["steps"] == 32  # 64 features read 2 a step
    torch.manual_seed(0)
    rnn = suite.SequenceRNN(64, 10, size=2, hidden=16)
    ladders, _ = plan(rnn, digits.train.x[:256], _findings(rnn, digits), SETTINGS)
    gated = next(lad.rungs for lad in ladders if lad.rungs[0].kind == "replace_rnn")
    assert [(c.params["with"], c.params.get("chrono")) for c in gated] == [("gru", None), ("gru", 32), ("lstm", None), ("lstm", 32)]


class _HeadsAttention(nn.Module):
    """Self-attention with separate query and key projections and a head count, as BERT's."""

    def __init__(self, d: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, d // heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = lambda t: t.unflatten(-1, (self.num_attention_heads, self.attention_head_size)).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        return (torch.softmax(q @ k.transpose(-1, -2) / self.attention_head_size**0.5, -1) @ v).transpose(1, 2).flatten(2)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.attn, self.head = nn.Linear(4, 16), _HeadsAttention(), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.view(x.shape[0], -1, 4))
        return self.head((h + self.attn(h)).mean(1))


def test_training_time_findings_become_ladders():
    """Planning from the monitor's training-time findings (issue 18's kinds and ops), as dicts."""
    model, sample = _Encoder(), torch.randn(8, 32)
    adam = {**SETTINGS, "optimizer": "adam", "lr": 0.3}
    findings = [
        {"kind": "learning_rate_too_high", "severity": "error", "layers": [], "step": 10,
         "action": {"op": "lower_learning_rate", "lr": 0.003, "factor": 0.01, "alternatives": [{"op": "warmup", "steps": 50}]}},
        {"kind": "adam_epsilon_dominates", "severity": "warning", "layers": [], "action": {"op": "set_adam_eps", "eps": 1e-10}},
        {"kind": "attention_logit_growth", "severity": "error", "layers": ["attn"],
         "action": {"op": "qk_layernorm", "layers": ["attn"], "alternatives": [{"op": "z_loss", "coefficient": 1e-4}]}},
    ]  # fmt: skip
    ladders, skipped = plan(model, sample, findings, adam, fallbacks=False, training_first=True)
    by_kind = {lad.rungs[0].kind: lad for lad in ladders}
    assert set(by_kind) == {"lower_learning_rate", "warmup", "set_adam_eps", "qk_layernorm", "z_loss"}
    assert by_kind["lower_learning_rate"].rungs[0].params["from"] == "range test"  # the rate comes from find_lr
    assert by_kind["warmup"].rungs[0].train(adam)["warmup"] == 50
    assert by_kind["set_adam_eps"].rungs[0].train(adam)["eps"] == 1e-10
    targets = by_kind["qk_layernorm"].rungs[0].params["targets"]
    assert [t[:3] for t in targets] == [["attn.query", 4, 4], ["attn.key", 4, 4]]
    assert by_kind["z_loss"].rungs[0].train(adam)["z_loss"] == 1e-4
    assert [lad.rungs[0].kind for lad in ladders][:2] == ["lower_learning_rate", "warmup"]  # training first, errors first
    assert not skipped
    _, skipped = plan(model, sample, findings[1:2], SETTINGS, fallbacks=False)  # SGD has no epsilon
    assert any("Adam-style" in s for s in skipped)
    from architectures import Attention

    _, skipped = plan(Attention(), torch.randint(0, 100, (4, 6)), findings[2:], adam, fallbacks=False)
    assert any("nn.MultiheadAttention packs them" in s for s in skipped)


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
        "gru": lambda: suite.SequenceRNN(16, 4, size=2, hidden=8, kind="gru"),
        "loop": lambda: suite.ResidualLoop(16, 4, blocks=3, width=8),
        "attention": _Encoder,
    }

    def seeded(build):  # the same initial weights at every call
        def again():
            torch.manual_seed(0)
            return build()

        return again

    return {name: seeded(build) for name, build in builders.items()}


LOOP = {"blocks": ["b.0", "b.1", "b.2"], "ends": ["b.0", "b.1", "b.2"], "inner": ["a.0", "a.1", "a.2"],
        "layers": ["a.0", "b.0", "a.1", "b.1", "a.2", "b.2"], "inits": {f"{x}.{i}": "he_normal" if x == "a" else "glorot_uniform"
                                                                      for x in "ab" for i in range(3)}}  # fmt: skip
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
    ("gru", Candidate("forget_gate_bias", {"layers": ["rnn"], "value": 1.0})),
    ("lstm", Candidate("chrono_init", {"layers": ["rnn"], "steps": 8})),
    ("gru", Candidate("chrono_init", {"layers": ["rnn"], "steps": 8})),
    ("lstm", Candidate("recurrent_init", {"layers": ["rnn"], "init": "auto", "lstm": True, "chrono": 8})),
    ("rnn", Candidate("replace_rnn", {"layers": ["rnn"], "with": "lstm", "chrono": 8})),
    *[("loop", Candidate("scale_residual_branches", {**LOOP, "scheme": scheme, "end_factor": end, "inner_factor": inner}))
      for scheme, end, inner in (("scaled", 3**-0.5, 1.0), ("fixup", 0.0, 3**-0.5), ("zero", 0.0, 1.0))],
    ("attention", Candidate("qk_layernorm", {"targets": [["attn.query", 4, 4, 1, [0]], ["attn.key", 4, 4, 1, [0]]]})),
    ("mlp", Candidate("clip_gradients", {"clip_norm": 1.0})),
    ("mlp", Candidate("lower_learning_rate", {"lr": 0.001, "factor": 0.1})),
    ("mlp", Candidate("warmup", {"steps": 20})),
    ("mlp", Candidate("set_adam_eps", {"eps": 1e-10})),
    ("mlp", Candidate("z_loss", {"coefficient": 1e-4})),
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
    if candidate.kind in TRAINING_ONLY:
        assert all(torch.equal(before[k], v) for k, v in theirs.state_dict().items())  # the model is left as it is
        assert candidate.train(SETTINGS) != SETTINGS


@pytest.mark.parametrize("params", [{"warmup": 20}, {"eps": 1e-10, "warmup": 5}, {"z_loss": 1e-4}, {"clip_norm": 0.5}])
def test_the_snippets_training_line_runs(params):
    """The commented ``fit`` line of a snippet, uncommented, trains with the settings repair used
    (warm-up and epsilon through ``build_optimizer``, the z-loss through ``loss=``)."""
    from trainability.repair.result import snippet
    from trainability.repair.runs import full_settings

    settings = full_settings({"optimizer": "adam", "lr": 0.01, **params})
    code = snippet(Candidate("lower_learning_rate", {"lr": 0.01, "factor": 0.1}), full_settings({}), settings, 0)
    lines = code.split("# then train with these settings (the repair's own):\n", 1)[1].splitlines()
    body = "\n".join(line.removeprefix("# ") for line in lines if not line.startswith("# in your own loop"))
    torch.manual_seed(0)
    namespace = {"model": mlp(8, 4, depth=2, width=8), "data": (torch.randn(64, 8), torch.randint(0, 4, (64,)))}
    exec("import trainability\n" + body.replace("epochs=...", "epochs=1, progress=False, monitor=False"), namespace)  # noqa: S102
    if "warmup" in params or "eps" in params:
        opt = namespace["optimizer"]
        assert opt.param_groups[0]["eps"] == params.get("eps", 1e-8)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * min(1.0, 2 / params["warmup"]))  # 2 steps of warm-up done
    for key, value in params.items():
        assert f"{value!r}" in body or f"{value:g}" in body, (key, body)


def test_replacement_rnns_drop_in_for_nn_rnn():
    rnn = nn.RNN(3, 5, num_layers=2, batch_first=True)
    x, h0 = torch.randn(4, 7, 3), torch.randn(2, 4, 5)
    for replacement in (nn.GRU(3, 5, num_layers=2, batch_first=True), LSTMAsRNN(3, 5, num_layers=2, batch_first=True)):
        for args in ((x,), (x, h0)):
            (out, h), (ref_out, ref_h) = replacement(*args), rnn(*args)
            assert out.shape == ref_out.shape and h.shape == ref_h.shape


# -- repairs of networks whose problem is known -------------------------------------------------------
def test_deep_relu_with_default_init_is_repaired_and_the_snippet_is_real(digits):
    from trainability.repair.runs import ROUNDS, Run, rounds_of

    broken = _broken_relu()
    result = trainability.repair(broken, digits, budget_steps=150, workers=1)
    assert result.verdict == "repaired" and result.change.kind in ("reinitialize", "insert_normalization")
    assert result.probe.steps < result.budget_steps  # the doctor found errors: the network as it is only raced a prefix
    assert result.winner in result.trained and result.winner.status == "trains"
    assert all(torch.equal(a, b) for a, b in zip(broken.state_dict().values(), _broken_relu().state_dict().values(), strict=True))

    namespace = {"model": _broken_relu()}  # a fresh copy of the broken model
    exec(result.snippet, namespace)  # noqa: S102
    mine = namespace["model"]
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), result.model.state_dict().values(), strict=True))
    runs = []
    for m in (mine, result.model):  # the snippet's model trains exactly as the winner did
        run = Run("check", copy.deepcopy(m), result.settings, rounds_of(digits.train, 150, 32, 0), digits.validation, 0, 15)
        run.advance(result.winner.epochs[-1]["epoch"])
        run.close()
        runs.append([{k: v for k, v in e.items() if k != "seconds"} for e in run.records])
    assert runs[0] == runs[1] == [{k: v for k, v in e.items() if k != "seconds"} for e in result.winner.epochs]
    assert ROUNDS == 10


def test_saturated_sigmoid_stack_gets_another_activation(digits):
    suite = _suite()
    torch.manual_seed(0)
    broken = suite.normal_weights(mlp(64, 10, depth=10, width=32, activation="sigmoid", init="default"))
    result = trainability.repair(broken, digits, budget_steps=150, workers=1)
    assert result.verdict == "repaired" and result.change.kind == "swap_activation"
    assert {r.change for r in result.diff} == {"replaced", "re-initialized"}
    assert not any(isinstance(m, nn.Sigmoid) for m in result.model.modules())


def test_exploding_learning_rate_is_clipped_or_lowered():
    splits = datasets.load("circles")
    torch.manual_seed(0)
    model = mlp(2, 2, depth=8, width=16, activation="relu")
    result = trainability.repair(model, splits, budget_steps=100, lr=1.0, workers=1)
    assert result.before.healthy and result.probe.status in ("failed", "does not train")  # the training is what fails
    assert result.probe.steps < 100  # stopped at the first NaN, or flat at the constant predictor's loss at half the budget
    assert result.trained[0].candidate.kind in TRAINING_ONLY  # so training changes go first
    assert result.verdict == "repaired" and result.change.kind in TRAINING_ONLY
    assert result.diff and all(r.change == "training" for r in result.diff)
    assert result.settings != result.original_settings and result.original_settings["lr"] == 1.0
    assert result.train_settings is result.settings  # the former name, kept
    assert "clip_norm=" in result.snippet or f"lr={result.settings['lr']:g}" in result.snippet
    assert result.settings["lr"] is None or result.settings["lr"] < 1.0 or result.settings["clip_norm"] is not None


def test_unnormalized_residual_net_is_reinitialized_by_the_family_scheme():
    suite = _suite()
    splits = datasets.load("blobs")
    torch.manual_seed(0)
    result = trainability.repair(suite.ResidualMLP(8, 4, blocks=12, width=32), splits, budget_steps=100, workers=1)
    assert result.verdict == "repaired" and result.change.kind in ("reinitialize", "scale_residual_branches")
    assert any("fixup" in r.after or "zeros" in r.after or " x" in r.after for r in result.diff)


def test_a_candidate_that_keeps_the_doctors_error_is_screened_out_not_trained():
    """The issue's deep residual MLP (branches added in a loop, He): re-initializing with He again
    leaves exploding_gradients in place at initialization, so it is never trained."""
    suite = _suite()
    splits = datasets.load("blobs")
    torch.manual_seed(0)
    result = trainability.repair(suite.ResidualLoop(8, 4, blocks=32, width=32), splits, budget_steps=100, workers=1)
    out = result.screened_out
    assert out and all(a.steps == 0 and a.epochs == [] for a in out)
    assert any(a.candidate.params.get("init") == "he_normal" and "exploding_gradients" in a.reason for a in out)
    assert "screened out: the doctor still reports exploding_gradients" in result.attempts_table()
    assert all(a.status != "screened out" for a in result.trained)
    assert result.verdict == "repaired"


def test_an_lstm_whose_memory_must_span_the_sequence_gets_chrono_initialization():
    suite = _suite()
    splits = suite.memory(40)
    torch.manual_seed(0)
    broken = suite.gate_bias(suite.SequenceRNN(splits.in_features, 4, 4, kind="lstm"), -5.0)
    result = trainability.repair(broken, splits, optimizer="adam", lr=0.01, budget_steps=200, workers=1)
    assert result.verdict == "repaired"
    assert result.change.kind in ("chrono_init", "recurrent_init") and result.change.params.get("chrono", result.change.params.get("steps")) == 40
    assert not any(f.kind == "vanishing_through_time" and f.severity == "error" for f in result.after.findings)


def test_a_plain_rnn_over_a_long_sequence_becomes_a_gated_cell():
    suite = _suite()
    splits = suite.memory(40)
    torch.manual_seed(0)
    result = trainability.repair(suite.SequenceRNN(splits.in_features, 4, 4), splits, optimizer="adam", lr=0.01,
                                 budget_steps=200, workers=1)  # fmt: skip
    assert result.verdict == "repaired" and result.change.kind == "replace_rnn"
    assert isinstance(result.model.rnn, (nn.GRU, nn.LSTM))


def test_successive_halving_drops_the_runs_behind(digits):
    suite = _suite()
    torch.manual_seed(0)
    broken = suite.normal_weights(mlp(64, 10, depth=10, width=32, activation="tanh", init="default"))
    result = trainability.repair(broken, digits, budget_steps=100, workers=1)
    raced = result.trained
    assert len(raced) >= 2 and result.steps < (len(raced) + 1) * result.budget_steps
    assert all(a.status in ("trains", "dropped", "does not train", "failed") for a in raced)


def test_all_ranks_every_candidate(digits):
    suite = _suite()
    torch.manual_seed(0)
    broken = suite.ordinary_dropout(mlp(64, 10, depth=12, width=16, activation="selu", dropout=0.3))
    result = trainability.repair(broken, digits, budget_steps=40, all=True, workers=1)
    kinds = [a.candidate.kind for a in result.trained]
    assert "replace_dropout" in kinds and result.untried == 0
    assert all(a.steps == 40 or a.status in ("failed", "does not train") for a in result.trained)
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
        assert result.settings == result.original_settings


class _LearningRateJudge:
    """A stand-in for issue 18's Monitor: an error-severity ``learning_rate_too_high`` finding at
    step 1 when the run's optimizer (the last one built) has a rate above 0.1 (the contract's
    kinds and ops)."""

    lr = 0.0

    def __init__(self, real: type) -> None:
        self.real = real

    def __call__(self, model: nn.Module, **kwargs):  # noqa: ANN204 - returns a Monitor
        from trainability.doctor.report import Finding

        monitor, lr = self.real(model, **kwargs), _LearningRateJudge.lr
        original_step = monitor.step

        def step(loss, **kw):  # noqa: ANN001, ANN202
            new = original_step(loss, **kw)
            if monitor.steps_done == 2 and lr > 0.1:
                found = Finding("learning_rate_too_high", "error", [], "step 1: updates 100x the weights' rule of thumb",
                                "lower the learning rate", {"op": "lower_learning_rate", "lr": lr / 100, "factor": 0.01},
                                step=1)  # fmt: skip
                monitor.findings.append(found)
                new = [*new, found]
            return new

        monitor.step = step
        return monitor

    @staticmethod
    def optimizers(real):  # noqa: ANN001, ANN205 - wraps repair's build_optimizer
        def build(model, settings, done=0):  # noqa: ANN001, ANN202
            opt = real(model, settings, done)
            _LearningRateJudge.lr = opt.param_groups[0]["lr"]
            return opt

        return build


def test_a_training_time_error_from_the_monitor_is_not_healthy(monkeypatch):
    """The probe runs under the Monitor: an error-severity training-time finding means the network
    is not healthy even though it learns, and its action becomes a learning-rate ladder whose rate
    comes from the range test."""
    import trainability.monitor
    from trainability.repair import runs

    splits = datasets.load("blobs")
    monkeypatch.setattr(trainability.monitor, "Monitor", _LearningRateJudge(trainability.monitor.Monitor))
    monkeypatch.setattr(runs, "build_optimizer", _LearningRateJudge.optimizers(runs.build_optimizer))
    torch.manual_seed(0)
    result = trainability.repair(mlp(8, 4, depth=3, width=16, activation="relu"), splits, lr=0.5, budget_steps=60, workers=1)
    assert result.before.healthy and result.verdict != "healthy"
    assert any(f["kind"] == "learning_rate_too_high" for f in result.probe.findings)
    assert "sgd" in result.range_tests and result.extra_steps == sum(t.steps for t in result.range_tests.values())
    lowered = [a for a in result.trained if a.candidate.kind == "lower_learning_rate"]
    assert lowered and lowered[0].candidate.params["lr"] == pytest.approx(float(f"{result.range_tests['sgd'].suggestion:.3g}"))


def test_a_training_time_error_denies_trains_only_where_the_failure_persists(digits):
    """The network as it is: any training-time error. A candidate: one of a kind that asked for it,
    or that the sound-looking network showed while training; not a new one on its way, nor one the
    network as it is raised as a consequence of the doctor's error at initialization."""
    from types import SimpleNamespace

    from trainability.repair.plan import Ladder
    from trainability.repair.search import Contestant, _Rungs, _Search

    def error(kind: str, step: int = 5) -> dict:
        return {"kind": kind, "severity": "error", "step": step, "layers": [], "message": kind}

    def search(condemned: bool) -> _Search:
        found = _Search(mlp(64, 10, depth=2, width=8), digits, None, Criterion.for_splits(digits), SETTINGS, 20, 0, 1, False,
                        False, (digits.train.x[:8], digits.train.y[:8]), [{"kind": "init_mismatch", "layers": []}] if condemned
                        else [], not condemned)  # fmt: skip
        found.reference = Contestant(None, SimpleNamespace(findings=[error("learning_rate_too_high")]), 10**6)
        return found

    def candidate(asked: str, *findings: dict) -> Contestant:
        ladder = _Rungs(Ladder([Candidate("clip_gradients", {"clip_norm": 1.0})], (4, 0, 0), [{"kind": asked}]), 0)
        return Contestant(ladder.ladder.rungs[0], SimpleNamespace(findings=list(findings)), 0, ladder)

    sound, condemned = search(False), search(True)
    assert sound.vetoes(sound.reference) and condemned.vetoes(condemned.reference)
    assert sound.vetoes(candidate("loss_spike", error("learning_rate_too_high")))  # what the probe showed persists
    assert not condemned.vetoes(candidate("init_mismatch", error("learning_rate_too_high")))  # a consequence of the init
    assert condemned.vetoes(candidate("attention_logit_growth", error("attention_logit_growth")))  # what asked for it
    assert not sound.vetoes(candidate("learning_rate_too_high", error("output_logit_divergence", step=0), error("dead_units")))


def test_a_pre_ln_transformer_at_a_learning_rate_too_high_is_repaired():
    """The issue's case: a pre-LN transformer (GPT-2 from its config), healthy at initialization,
    trained with Adam at lr 0.3 learns a little (0.48 on digits after 300 steps where lr 1e-3
    gives 0.89; it clears the criterion at step 120): repair must not call it healthy, and its
    rate must train it better."""
    from trainability.repair.runs import ROUNDS, Run, rounds_of

    pytest.importorskip("transformers")
    suite = _suite()
    splits = datasets.load("digits")
    torch.manual_seed(0)
    model = suite.HFClassifier(64, 10, "gpt2")
    result = trainability.repair(model, splits, optimizer="adam", lr=0.3, budget_steps=300, workers=1)
    assert result.before.healthy and result.verdict == "repaired"
    assert result.settings["lr"] is not None and result.settings["lr"] < 0.3 or result.settings.get("warmup")

    def score(m: nn.Module, settings: dict) -> float:
        run = Run("check", copy.deepcopy(m), settings, rounds_of(splits.train, 300, 32, 0), splits.validation, 0, 30)
        run.advance(ROUNDS)
        run.close()
        return run.records[-1]["val_accuracy"]

    assert score(result.model, result.settings) > score(model, result.original_settings) + 0.2


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
    for title in ("The change, layer by layer", "Learning curves", "Every candidate considered", "The doctor before and after"):
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
