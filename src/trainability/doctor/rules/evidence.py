"""What one pass measured, as the rules need it."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from trainability.doctor.records import BlockStats, LayerStats, TimeStats
from trainability.graph import Link


@dataclass
class Evidence:
    """What one pass measured, as the rules need it."""

    layers: list[LayerStats]
    weight_var: dict[str, float]
    order: list[tuple[str, nn.Module]]
    links: dict[str, Link]
    numel: dict[str, int]
    grad_finite: dict[str, bool]
    inputs_of: dict[str, list[str]]
    loss: float
    batch_size: int
    input_finite: bool = True
    input_mean_rms: float | None = None
    input_log_std_rms: float | None = None
    skips: list[str] = field(default_factory=list)
    blocks: list[BlockStats] = field(default_factory=list)  # the residual stream, block by block
    time: list[TimeStats] = field(default_factory=list)  # gradients through time, per recurrent module
    block_modules: list[str] = field(default_factory=list)  # members of residual block groups
    classes: int | None = None  # classes of a cross-entropy loss (integer targets), else None
    attention: list[tuple[str, float, list[str]]] = field(default_factory=list)  # (attention, logit std, q/k modules)


def span(names: list[str]) -> str:
    """A short display of layer names: all of them, or the first three, ..., the last."""
    if len(names) <= 5:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {names[-1]} ({len(names)} layers)"
