"""What the doctor found: per-layer statistics, findings with their fixes, text, JSON and a plot."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainability._text import format_rows

Severity = Literal["error", "warning"]
Kind = Literal[
    "vanishing_gradients", "exploding_gradients", "dead_units", "saturated_units", "non_finite",
    "init_mismatch", "self_normalization_broken", "beyond_depth_scale",
]  # fmt: skip


@dataclass(frozen=True)
class LayerStats:
    """One weight layer or activation, in execution order.

    ``grad_norm`` is the norm of the loss gradient reaching the module's output; ``mean`` and
    ``std`` are over every element of the output; ``dead_fraction`` (ReLU) counts units never
    positive over the batch; ``saturated_fraction`` (sigmoid, tanh, softsign) counts outputs where
    the derivative is under 1% of its maximum. ``non_finite`` names where NaN/Inf appeared:
    ``"forward"`` (the output), ``"backward"`` (the gradient at the output) or ``"weight_grad"``.
    """

    name: str
    type: str
    role: Literal["weight", "activation"]
    activation: str | None  # for weight layers: the activation consuming the output
    mean: float
    std: float
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    grad_norm: float | None = None
    grad_rms: float | None = None
    weight_std: float | None = None
    weight_grad_norm: float | None = None
    grad_weight_ratio: float | None = None
    non_finite: str | None = None


@dataclass(frozen=True)
class Finding:
    """A verdict: what is wrong, where, with the measured numbers, and the concrete fix.

    ``step`` is set for findings raised during training by the monitor. ``action`` is the fix
    in machine-readable form (e.g. ``{"op": "reinitialize",
    "layers": [...], "init": "he_normal"}``) for tools that apply fixes.
    """

    kind: Kind
    severity: Severity
    layers: list[str]
    message: str
    fix: str
    action: dict[str, Any] = field(default_factory=dict, compare=False)
    step: int | None = None  # the training step, for findings raised by the monitor

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "severity": self.severity, "layers": list(self.layers),
               "message": self.message, "fix": self.fix}  # fmt: skip
        if self.step is not None:
            out["step"] = self.step
        return out


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    return f"{value:.{digits - 1}e}"


@dataclass(frozen=True)
class Report:
    """The doctor's answer for one model and batch."""

    layers: list[LayerStats]
    findings: list[Finding]
    loss: float
    batch_size: int

    @property
    def healthy(self) -> bool:
        return not self.findings

    def by_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "layers": [asdict(s) for s in self.layers]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    def verdict(self) -> str:
        if self.healthy:
            return (f"HEALTHY: no problem found in {len(self.layers)} layers "
                    f"(loss {_number(self.loss)}, batch {self.batch_size}).")  # fmt: skip
        errors = sum(f.severity == "error" for f in self.findings)
        lines = [f"{len(self.findings)} finding(s), {errors} error(s) (loss {_number(self.loss)}, batch {self.batch_size}):"]
        for f in self.findings:
            lines.append(f"  [{f.severity}] {f.kind}: {f.message}")
            lines.append(f"      fix: {f.fix}")
        return "\n".join(lines)

    def table(self) -> str:
        header = ("layer", "type", "feeds", "mean", "std", "dead", "satur.", "grad norm", "weight std", "grad/weight", "non-finite")
        rows = [
            (s.name, s.type, s.activation or "-", _number(s.mean), _number(s.std),
             "-" if s.dead_fraction is None else f"{s.dead_fraction:.0%}",
             "-" if s.saturated_fraction is None else f"{s.saturated_fraction:.0%}",
             _number(s.grad_norm), _number(s.weight_std), _number(s.grad_weight_ratio), s.non_finite or "")
            for s in self.layers
        ]  # fmt: skip
        return format_rows(header, rows)

    def __str__(self) -> str:
        return f"{self.verdict()}\n\n{self.table()}"

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: activation std and gradient norm against depth (log scale), dead and
        saturated fractions, problem layers highlighted in red."""
        from trainability.doctor.plot import plot_report

        return plot_report(self, Path(path))
