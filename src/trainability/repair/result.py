"""What repair hands back: the repaired model, the change as a layer-by-layer diff and as code,
every attempt with its cost, and the doctor before and after."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from trainability._text import collapse, format_rows, span, value_range
from trainability.graph import hooked_modules
from trainability.repair.candidates import Candidate

Verdict = Literal["healthy", "repaired", "trains_as_is", "not_repaired"]
VERDICTS: dict[str, str] = {
    "healthy": "healthy: it trains and the doctor found no error, so nothing was tried",
    "repaired": "repaired",
    "trains_as_is": "it trains as it is: no candidate trained better, despite the doctor's errors",
    "not_repaired": "not repaired: no candidate made it train",
}


Status = Literal["trains", "does not train", "failed", "dropped", "screened out"]


@dataclass
class Attempt:
    """One candidate considered, or the probe (``candidate is None``): ``screened out`` (the
    doctor at initialization still found the error it was meant to fix: never trained),
    ``dropped`` (behind the others on a training prefix: successive halving), ``trains``, ``does
    not train`` or ``failed`` (a NaN/Inf loss, an error)."""

    candidate: Candidate | None
    status: Status
    reason: str | None  # why: the doctor's message, the failure, the monitor's error
    epochs: list[dict[str, Any]]  # one record per evaluated round
    score: float | None  # validation accuracy (classification) or MSE at the last evaluation
    steps: int
    seconds: float
    doctor: str | None  # the doctor's verdict on the changed model at initialization
    stopped_early: bool = False  # it met the criterion before the end of the budget
    findings: list[dict[str, Any]] = field(default_factory=list)  # the monitor's, while it trained

    def describe(self) -> str:
        if self.status == "screened out":
            return f"screened out: {self.reason}"
        if self.status == "failed":
            return f"failed: {self.reason}"
        last = self.epochs[-1] if self.epochs else {}
        metric = "val accuracy" if "val_accuracy" in last and last["val_accuracy"] is not None else "val loss"
        score = "-" if self.score is None else f"{self.score:.3f}"
        loss = last.get("loss")
        said = f"{self.status} ({metric} {score}, loss {loss:.3g}, after {self.steps} steps)" if loss is not None else self.status
        return said + (f": {self.reason}" if self.reason and self.status != "trains" else "")

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate.to_dict() if self.candidate else None, "status": self.status,
                "reason": self.reason, "score": self.score, "steps": self.steps, "seconds": self.seconds,
                "doctor": self.doctor, "stopped_early": self.stopped_early, "epochs": self.epochs,
                "findings": self.findings}  # fmt: skip


@dataclass(frozen=True)
class DiffRow:
    """One module (or a training setting) that the winning change touched; ``std_before`` and
    ``std_after`` are the module's first weight's standard deviation, where it has one."""

    layer: str
    change: Literal["re-initialized", "replaced", "inserted", "removed", "training"]
    before: str
    after: str
    std_before: float | None = None
    std_after: float | None = None


def _describe(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})"


def _weight_std(module: nn.Module) -> float | None:
    weight = next((p for n, p in module.named_parameters(recurse=False) if "weight" in n and p.numel() > 1), None)
    return None if weight is None else float(weight.detach().float().std())


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def diff_models(before: nn.Module, after: nn.Module, notes: dict[str, str], settings: dict[str, Any],
                train_settings: dict[str, Any]) -> list[DiffRow]:  # fmt: skip
    """Layer by layer, what differs between the original and the repaired model (modules a pass
    watches: weight modules and other leaves), and which training settings changed. A module
    moved into an ``nn.Sequential`` with an inserted normalization counts as unchanged."""
    old = {n: m for n, m, _ in hooked_modules(before)}
    new = {n: m for n, m, _ in hooked_modules(after)}
    rows: list[DiffRow] = []
    matched: set[str] = set()
    for name, module in old.items():
        twin = new.get(name)
        if twin is None and type(new.get(f"{name}.0")) is type(module):
            twin, name_after = new[f"{name}.0"], f"{name}.0"
        else:
            name_after = name
        if twin is None:
            rows.append(DiffRow(name, "removed", _describe(module), "-"))
            continue
        matched.add(name_after)
        note = notes.get(name) or notes.get(name_after)
        if type(twin) is not type(module) or _describe(twin) != _describe(module):
            after = _describe(twin) + (f"; {note.partition('; ')[2]}" if note and "; " in note else "")
            rows.append(DiffRow(name, "replaced", _describe(module), after, _weight_std(module), _weight_std(twin)))
        elif not _same_state(module, twin):
            rows.append(DiffRow(name, "re-initialized", _describe(module), note or "redrawn", _weight_std(module),
                                _weight_std(twin)))  # fmt: skip
    for name, module in new.items():
        if name not in matched:
            rows.append(DiffRow(name, "inserted", "-", _describe(module), None, _weight_std(module)))
    for key in ("optimizer", "lr", "momentum", "clip_norm"):
        if settings.get(key) != train_settings.get(key):
            shown = {k: ("default" if v is None and k == "lr" else "none" if v is None else v) for k, v in
                     (("b", settings.get(key)), ("a", train_settings.get(key)))}  # fmt: skip
            rows.append(DiffRow(f"training: {key}", "training", str(shown["b"]), str(shown["a"])))
    return rows


def _fit_call(settings: dict[str, Any]) -> str:
    """The ``fit`` line for these settings; warm-up and Adam's epsilon go through the optimizer
    repair builds (``build_optimizer``), the z-loss through ``loss=`` (lines joined by newlines)."""
    special = any(settings.get(k) is not None for k in ("warmup", "eps"))
    lines, parts = [], []
    if special:
        shown = {k: settings.get(k) for k in ("optimizer", "lr", "momentum", "warmup", "eps") if settings.get(k) is not None}
        lines += ["from trainability.repair.runs import build_optimizer  # with warm-up and Adam's epsilon",
                  f"optimizer = build_optimizer(model, {shown!r})"]  # fmt: skip
        parts.append("optimizer=optimizer")
    else:
        parts.append(f"optimizer={settings['optimizer']!r}")
        if settings.get("lr") is not None:
            parts.append(f"lr={settings['lr']:g}")
        if settings.get("momentum"):
            parts.append(f"momentum={settings['momentum']:g}")
    parts.append(f"batch_size={settings['batch_size']}")
    if settings.get("clip_norm") is not None:
        parts.append(f"clip_norm={settings['clip_norm']:g}")
    if settings.get("z_loss") is not None:
        lines.append("from trainability.repair.runs import z_loss  # cross-entropy + c * logsumexp(logits)^2")
        parts.append(f"loss=z_loss({settings['z_loss']:g})")
    return "\n".join([*lines, f"trainability.fit(model, data, epochs=..., {', '.join(parts)})"])


def snippet(candidate: Candidate | None, settings: dict[str, Any], train_settings: dict[str, Any], seed: int) -> str:
    """Python that applies the change to the user's original model (a variable ``model`` built
    as before, in its initial state), imports first, then how to train it."""
    if candidate is None:
        return "# trainability repair: no change\n# train as before:\n" + "\n".join(f"# {line}" for line in _fit_call(settings).splitlines()) + "\n"
    lines = candidate.code(seed=seed)
    imports = list(dict.fromkeys(line for line in lines if line.startswith(("import ", "from "))))
    body = [line for line in lines if not line.startswith(("import ", "from "))]
    out = [f"# trainability repair: {candidate.label}", f"# asked for by: {candidate.reason}",
           "# `model` is your original model, built as before (its initial weights, not trained)"]  # fmt: skip
    out += imports + ([""] if imports else [])
    out += body if body else ["# the model stays as it is: the change is in how it trains"]
    out += ["", "# then train with these settings (the repair's own):", *(f"# {line}" for line in _fit_call(train_settings).splitlines())]
    if train_settings.get("clip_norm") is not None and settings.get("clip_norm") != train_settings.get("clip_norm"):
        out.append(f"# in your own loop, after loss.backward(): torch.nn.utils.clip_grad_norm_(model.parameters(), "
                   f"{train_settings['clip_norm']:g})")  # fmt: skip
    return "\n".join(out) + "\n"


@dataclass
class RepairResult:
    """What :func:`trainability.repair` found.

    ``verdict``: ``healthy`` (nothing tried), ``repaired``, ``trains_as_is`` (the doctor found
    errors but the network trains and no candidate did better) or ``not_repaired``. ``model`` is
    the repaired model at initialization (the winning change applied to a copy of the original;
    a copy of the original when there is no change); train it with ``settings`` (the optimizer,
    learning rate, momentum, batch size, clipping, warm-up, Adam's epsilon and z-loss to use;
    ``train_settings`` is the same dict, under its former name). ``original_settings`` are the
    ones repair was called with. ``snippet`` applies the same change to the user's own model.
    ``attempts`` lists every candidate considered, in order: screened out by the doctor, raced,
    dropped by successive halving; ``probe`` is the run of the network as it is. ``steps`` and
    ``seconds`` are the whole repair's cost (range tests included).
    """

    original: nn.Module
    model: nn.Module
    verdict: Verdict
    change: Candidate | None
    settings: dict[str, Any]
    original_settings: dict[str, Any]
    probe: Attempt
    attempts: list[Attempt]
    skipped: list[str]
    before: Any  # the doctor's Report at initialization, original model
    after: Any  # ... repaired model
    criterion: Any
    budget_steps: int
    seed: int
    data: str
    workers: int
    ran_here: str | None  # why candidates ran in this process instead of workers
    untried: int  # candidates not run because an earlier one won
    diff: list[DiffRow] = field(default_factory=list)
    snippet: str = ""
    seconds: float = 0.0
    extra_steps: int = 0  # steps of the learning-rate range tests
    after_error: str | None = None  # why the doctor could not diagnose the repaired model (``after`` is then None)
    range_tests: dict[str, Any] = field(default_factory=dict)  # optimizer -> LRRangeTest

    @property
    def train_settings(self) -> dict[str, Any]:
        """``settings`` under its former name: the settings to train the returned model with."""
        return self.settings

    @property
    def repaired(self) -> bool:
        return self.verdict == "repaired"

    @property
    def trains(self) -> bool:
        """Does the returned model train (healthy, repaired, or trains as it is)?"""
        return self.verdict != "not_repaired"

    @property
    def steps(self) -> int:
        """Optimizer steps spent: the probe's, every candidate's and the range tests'."""
        return self.probe.steps + sum(a.steps for a in self.attempts) + self.extra_steps

    @property
    def winner(self) -> Attempt | None:
        return next((a for a in self.attempts if self.change is not None and a.candidate is self.change), None)

    @property
    def trained(self) -> list[Attempt]:
        """The candidates that were trained (not screened out), in order."""
        return [a for a in self.attempts if a.status != "screened out"]

    @property
    def screened_out(self) -> list[Attempt]:
        """The candidates the doctor screened out at initialization, never trained."""
        return [a for a in self.attempts if a.status == "screened out"]

    def ranking(self) -> list[Attempt]:
        """Trained attempts, those that train first, by validation score (best first)."""
        sign = 1.0 if self.criterion.classification else -1.0

        def key(a: Attempt) -> tuple[int, float]:
            return (0 if a.status == "trains" else 1, -sign * a.score if a.score is not None and math.isfinite(a.score) else math.inf)

        return sorted(self.trained, key=key)

    def headline(self) -> str:
        screened = f", {len(self.screened_out)} screened out" if self.screened_out else ""
        if self.verdict == "repaired":
            index = self.trained.index(self.winner) + 1 if self.winner in self.trained else "?"
            return (f"repaired by: {self.change.label} (candidate {index} of {len(self.trained)} trained{screened}; "  # type: ignore[union-attr]
                    f"{self.steps} steps, {self.seconds:.1f} s)")  # fmt: skip
        return f"{VERDICTS[self.verdict]} ({len(self.trained)} candidate(s) trained{screened}; {self.steps} steps, {self.seconds:.1f} s)"

    def attempts_table(self) -> str:
        rows = [["0", "the network as it is (probe)", "-", self.probe.describe(), self.probe.doctor or "-"]]
        for i, a in enumerate(self.attempts, start=1):
            mark = " <- winner" if a is self.winner else ""
            rows.append([str(i), a.candidate.label + mark, a.candidate.reason, a.describe(), a.doctor or "-"])  # type: ignore[union-attr]
        return format_rows(["#", "candidate", "asked for by", "result", "doctor at init"], rows)

    def diff_rows(self) -> list[list[str]]:
        """The diff as table rows, consecutive alike rows (same change, before and after, up to
        the numbers) as one row with the layer span and the std range."""
        groups = collapse(self.diff, key=lambda r: (r.change, r.before, r.after, r.layer.startswith("training")))
        fmt = "{:.3g}".format
        return [[span([r.layer for r in g]), g[0].change, g[0].before, value_range([r.std_before for r in g], fmt),
                 g[0].after, value_range([r.std_after for r in g], fmt)] for g in groups]  # fmt: skip

    def diff_table(self) -> str:
        if not self.diff:
            return "no change"
        return format_rows(["layer", "change", "before", "weight std", "after", "weight std"], self.diff_rows())

    def summary(self) -> str:
        parts = [f"trainability repair on {self.data}: {self.headline()}",
                 f"criterion (budget {self.budget_steps} steps, seed {self.seed}): {self.criterion.describe()}",
                 "", self.attempts_table()]  # fmt: skip
        if self.untried:
            parts.append(f"({self.untried} later ladder(s) of candidates not needed)")
        for name, test in self.range_tests.items():
            parts.append(f"learning-rate range test with {name}: " + test.summary().splitlines()[-1])
        if self.skipped:
            parts += ["", "not applicable here:"] + [f"  - {s}" for s in self.skipped]
        if self.ran_here:
            parts += ["", f"candidates ran in this process: {self.ran_here}"]
        if self.change is not None:
            parts += ["", "the change, layer by layer:", self.diff_table(), "", "apply it to your model:", self.snippet.rstrip()]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "data": self.data, "budget_steps": self.budget_steps, "seed": self.seed,
            "change": self.change.to_dict() if self.change else None, "settings": self.settings,
            "original_settings": self.original_settings, "train_settings": self.settings, "criterion": self.criterion.describe(),
            "probe": self.probe.to_dict(), "attempts": [a.to_dict() for a in self.attempts], "untried": self.untried,
            "skipped": self.skipped, "diff": [r.__dict__ for r in self.diff], "snippet": self.snippet,
            "steps": self.steps, "seconds": self.seconds, "workers": self.workers, "ran_here": self.ran_here,
            "range_tests": {k: {"suggestion": t.suggestion, "lr_min": t.lr_min, "falls": t.falls, "steps": t.steps}
                            for k, t in self.range_tests.items()},
            "doctor_before": [f.to_dict() for f in self.before.findings],
            "doctor_after": [f.to_dict() for f in self.after.findings] if self.after is not None else None,
            "doctor_after_error": self.after_error,
        }  # fmt: skip

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True, default=str)

    def write(self, out: str | os.PathLike[str]) -> Path:
        """Write the page (``report.html``), its PNGs, ``snippet.py`` and ``result.json`` into
        the folder ``out``; return the page's path."""
        from trainability.repair.report import write_report

        return write_report(self, Path(out))
