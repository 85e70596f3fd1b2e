"""What one pass measures and what the doctor concludes, as plain records: per-layer, per-block
and through-time statistics, and :class:`Finding` (a verdict with its fix). The doctor's rules and
the Monitor's produce these; :mod:`trainability.doctor.report` shows them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]
Kind = Literal[
    "vanishing_gradients", "exploding_gradients", "dead_units", "saturated_units", "non_finite",
    "init_mismatch", "self_normalization_broken", "beyond_depth_scale", "vanishing_through_time",
    "exploding_through_time",
]  # fmt: skip


@dataclass(frozen=True)
class LayerStats:
    """One weight layer or activation, in execution order.

    ``grad_norm`` is the norm of the loss gradient reaching the module's output; ``mean`` and
    ``std`` are over every element of the output; ``dead_fraction`` (ReLU) counts units never
    positive over the batch; ``saturated_fraction`` (sigmoid, tanh, softsign) counts outputs where
    the derivative is under 1% of its maximum, and for a capped activation (ReLU6, Hardtanh,
    Hardsigmoid) those at its cap, where it is 0. ``non_finite`` names where NaN/Inf appeared:
    ``"forward"`` (the output), ``"backward"`` (the gradient at the output) or ``"weight_grad"``.

    A module that applies several weights (``nn.MultiheadAttention``'s q, k, v and out_proj, an
    LSTM's per-layer input-hidden and hidden-hidden weights) gets one row per weight, named
    ``module.weight``; the module's output statistics sit on its first row (``None`` on the
    others). ``module`` names the module that applies the weight; ``weight_role`` says how it
    is used (dense, conv, embedding, attention_q/k/v/out, recurrent_input/hidden).
    """

    name: str
    type: str
    role: Literal["weight", "activation"]
    activation: str | None  # for weight layers: the activation consuming the output
    mean: float | None
    std: float | None
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    grad_norm: float | None = None
    grad_rms: float | None = None
    weight_std: float | None = None
    weight_grad_norm: float | None = None
    grad_weight_ratio: float | None = None
    non_finite: str | None = None
    module: str | None = None
    weight_role: str | None = None
    unit_grad_rms: float | None = None  # per sample and unit, summed over positions sharing the weights


@dataclass(frozen=True)
class BlockStats:
    """The residual stream entering a block (``name``), or leaving the last one
    (``name:output``): its statistics and the gradient reaching it, per element (``grad_rms``)
    and per sample and channel summed over positions (``unit_grad_rms``)."""

    name: str
    type: str
    mean: float
    std: float
    grad_rms: float | None
    unit_grad_rms: float | None = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TimeStats:
    """The gradient reaching each time step of a recurrent module's input (an RNN/LSTM/GRU), or
    each call's output for a cell called once per step, earliest step first."""

    name: str
    type: str
    grad_norms: list[float]
    bidirectional: bool = False  # both directions' gradients, summed in quadrature per step
    parts: tuple[str, ...] = ()  # the recurrent modules it was read from, where it is not one

    @property
    def ratio(self) -> float:
        """Earliest step's gradient over the last step's."""
        first, last = self.grad_norms[0], self.grad_norms[-1]
        return first / last if last > 0 else math.inf if first > 0 else 1.0


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


__all__ = ["BlockStats", "Finding", "Kind", "LayerStats", "Severity", "TimeStats"]
