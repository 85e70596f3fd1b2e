"""What one pass measured, as the rules need it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from trainability.doctor.records import BlockStats, LayerStats, TimeStats
from trainability.graph import Link


@dataclass(frozen=True)
class InputStats:
    """Per-feature statistics of the input batch, summarized as a first dense layer sees them.

    A feature is a position of a sample's flattened input (a pixel, a column, a sequence
    position). Under weights drawn with variance ``1 / fan_in`` (LeCun), a first-layer unit's mean
    over the batch, ``sum_j w_j mu_j``, has second moment ``mean_j mu_j^2`` over the features, and
    its variance ``w^T C w`` has expectation ``mean_j s_j^2``: those pooled numbers, not each
    feature's own, decide where the first layer starts (Klambauer et al. 2017's fixed point).
    Pooled second moments are also robust where per-feature ones are not: a sparse feature
    standardized over the data set (a pixel that is ink in 1% of the digits) has a batch std
    anywhere from 0.1 to 2, while its square still averages to 1.

    ``mean_rms`` is ``sqrt(mean_j mu_j^2)`` over every feature (an offset shifts every unit as a
    bias does, and standardizing removes it). A feature constant over the batch (a pixel that is
    always 0, a one-hot column whose category is absent, a padding position) is counted in
    ``constant``: it may be constant in the whole data set, where no scaling can give it std 1,
    or vary elsewhere and be absent from this batch. So the std is pooled two ways: ``scale`` over
    the features that vary in the batch (what standardization sets to 1 if the constant ones are
    constant in the data; an overestimate otherwise, since a sparse feature that shows up in the
    batch shows its rare values) and ``pooled`` over every feature (the first layer's variance
    exactly; an underestimate where features are constant in the data).
    """

    features: int
    constant: int
    mean_rms: float
    scale: float | None  # None when no feature varies
    pooled: float

    @property
    def varying(self) -> int:
        return self.features - self.constant


#: A feature counts as constant over the batch when its std is under this fraction of its
#: magnitude (or of 1): float rounding of a standardized constant, not variation.
CONSTANT_TOLERANCE = 1e-6


def input_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """Per feature, the sum and the sum of squares over the batch, and the batch size (they add
    across the ranks of a data-parallel run); ``None`` for integer inputs (token ids)."""
    if not x.is_floating_point() or x.dim() == 0:
        return None
    flat = x.detach().reshape(x.shape[0], -1).double()
    return flat.sum(0), flat.pow(2).sum(0), int(flat.shape[0])


def input_stats(x: torch.Tensor) -> InputStats | None:
    """:class:`InputStats` of a batch ``(batch, *feature dims)``; ``None`` for integer inputs
    (token ids) and batches of fewer than 2 samples, whose per-feature spread means nothing.

    >>> stats = input_stats(torch.cat([torch.randn(512, 3), torch.zeros(512, 1)], 1))
    >>> stats.constant, round(stats.scale, 1), round(stats.pooled, 2)
    (1, 1.0, 0.87)
    """
    moments = input_moments(x)
    return input_stats_of(*moments) if moments is not None else None


def input_stats_of(total: torch.Tensor | list[float], squares: torch.Tensor | list[float], n: int) -> InputStats | None:
    """:class:`InputStats` from per-feature sums and sums of squares over ``n`` samples."""
    if n < 2:
        return None
    with torch.no_grad():
        total = torch.as_tensor(total, dtype=torch.float64)
        mean = total / n
        std = (torch.as_tensor(squares, dtype=torch.float64) / n - mean.pow(2)).clamp_min(0).sqrt()
        varies = std > CONSTANT_TOLERANCE * mean.abs().clamp_min(1.0)
        mean_rms = float(mean.pow(2).mean().sqrt())
        live = std[varies]
        scale = float(live.pow(2).mean().sqrt()) if live.numel() else None
        pooled = float(std.pow(2).mean().sqrt())
    if not math.isfinite(mean_rms):
        return None
    return InputStats(features=int(mean.numel()), constant=int((~varies).sum()), mean_rms=mean_rms, scale=scale, pooled=pooled)


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
    inputs: InputStats | None = None  # the input batch's per-feature statistics (float inputs)
    skips: list[str] = field(default_factory=list)
    blocks: list[BlockStats] = field(default_factory=list)  # the residual stream, block by block
    time: list[TimeStats] = field(default_factory=list)  # gradients through time, per recurrent module
    inside_blocks: set[str] = field(default_factory=set)  # modules inside a residual block (graph.inside_blocks)
    classes: int | None = None  # classes of a cross-entropy loss (integer targets), else None
    attention: list[tuple[str, float, list[str]]] = field(default_factory=list)  # (attention, logit std, q/k modules)


def span(names: list[str]) -> str:
    """A short display of layer names: all of them, or the first three, ..., the last."""
    if len(names) <= 5:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {names[-1]} ({len(names)} layers)"
