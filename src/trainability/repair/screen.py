"""Screening: the doctor at initialization judges a candidate before any training is spent on it.

A candidate that changes the model is applied to a copy of the original and diagnosed on the
same 256 training samples (:func:`trainability.diagnose`: a forward and a backward pass, about
two training steps). Against the findings that asked for it and the original's other errors
(their kind and layers):

- **out**: a finding that asked for it is still reported as an error on the same layers (any
  overlap): the candidate is not trained, and the ladder's next rung is screened; the doctor's
  message is the reason shown;
- **partial**: a finding that asked for it is still reported, but only as a warning; or another
  of the original's errors is still there: it is trained only after the candidates the doctor
  clears, and a stronger rung of its ladder that the doctor clears is preferred;
- **clear**: none of them is reported again.

A candidate that changes only the training (clipping, the learning rate, warm-up, Adam's
epsilon, the z-loss) is not something the doctor at initialization can judge: it goes to
training as it is (**unjudged**), as does a changed model the doctor fails on (**unknown**).

One exemption: a candidate that sets the scale of residual branches on purpose (their ends 0 or
scaled by 1/sqrt(branches), Fixup) is not judged by ``init_mismatch`` (the table's variance per
layer), as the doctor exempts the residual blocks it recognizes as modules: how large a branch
starts is the architecture's choice. Repair also finds branches on the traced graph (a loop in
``forward`` adding ``b(relu(a(h)))`` to ``h``), which the doctor reads as a plain stack.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from trainability.repair.candidates import TRAINING_ONLY, Candidate

Status = Literal["clear", "partial", "out", "unjudged", "unknown"]


@dataclass
class Screened:
    """The doctor's judgment of one candidate at initialization."""

    candidate: Candidate
    status: Status
    reason: str  # what the doctor still reports (out, partial), or why it could not judge
    verdict: str | None  # the doctor's verdict on the changed model: "healthy" or the finding kinds
    report: Any = None
    model: nn.Module | None = None  # the changed model at initialization (reused for its run)

    @property
    def trained(self) -> bool:
        """May training be spent on it?"""
        return self.status != "out"


def _overlap(a: list[str], b: list[str]) -> bool:
    """Do two lists of layer names share a layer? (``"0"`` and ``"0.0"`` after a module moved
    into a Sequential count as the same; empty lists name the whole model.)"""
    if not a or not b:
        return True
    strip = [n.removesuffix(":output") for n in a]
    return any(x == y or x.startswith(y + ".") or y.startswith(x + ".") for x in strip for y in (n.removesuffix(":output") for n in b))


def _judged(findings: list[Any], candidate: Candidate) -> list[Any]:
    """The findings that judge this candidate (see the exemption in the module docstring)."""
    if candidate.kind != "scale_residual_branches":
        return findings
    return [f for f in findings if f.kind != "init_mismatch"]


def verdict(report: Any) -> str:
    return "healthy" if report.healthy else ", ".join(sorted({f.kind for f in report.findings}))


def screen(original: nn.Module, candidate: Candidate, x: Any, y: Any, asked: list[Mapping[str, Any]], seed: int,
           errors: list[Mapping[str, Any]] = ()) -> Screened:  # fmt: skip
    """Apply ``candidate`` to a copy of ``original`` and judge it with the doctor (see the module
    docstring); ``asked`` are the findings that asked for it, ``errors`` the original's error
    findings (each with ``kind`` and ``layers``)."""
    from trainability.doctor import diagnose

    if candidate.kind in TRAINING_ONLY:
        return Screened(candidate, "unjudged", "a training setting: the doctor at initialization cannot judge it", None)
    model = copy.deepcopy(original)
    candidate.apply(model, seed=seed)
    try:
        report = diagnose(model, x, y)
    except Exception as exc:  # noqa: BLE001 - a doctor that fails cannot judge; training will
        said = f"the doctor could not judge it: {type(exc).__name__}: {exc}".splitlines()[0]
        return Screened(candidate, "unknown", said, None, None, model)
    found = _judged(report.findings, candidate)

    def remaining(wanted: list[Mapping[str, Any]]) -> list[Any]:
        return [f for a in wanted for f in found if f.kind == a["kind"] and _overlap(f.layers, list(a.get("layers") or []))]

    asked_left = remaining(asked)
    errors_left = [f for f in remaining(list(errors)) if f.severity == "error"]
    broken = [f for f in found if f.severity == "error" and f.kind == "non_finite"]
    out = [f for f in asked_left if f.severity == "error"] + broken
    if out:
        return Screened(candidate, "out", f"the doctor still reports {out[0].kind}: {out[0].message}", verdict(report), report, model)
    if asked_left or errors_left:
        f = (asked_left or errors_left)[0]
        said = "as a warning" if f.severity == "warning" else "(another of the network's errors)"
        return Screened(candidate, "partial", f"the doctor still reports {f.kind} {said}: {f.message}", verdict(report), report, model)
    return Screened(candidate, "clear", "", verdict(report), report, model)


__all__ = ["Screened", "screen", "verdict"]
