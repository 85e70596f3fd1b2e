"""Finite-depth mean-field prediction along a network's own trajectory.

The asymptotic theory (:mod:`trainability.theory.meanfield`) describes a stack at its length fixed
point ``q*``; real stacks start from their input and many never get there (GELU, SiLU and Mish
with He variance decay towards ``q* = 0``; leaky ReLU and SELU at ``sigma_w^2 = 2`` grow without
bound). Here each layer is propagated from the input instead (Poole et al. 2016; Schoenholz et
al. 2017), with its own variances; z ~ N(0, 1):

- ``q_1 = sigma_w,1^2 E[x^2] + sigma_b,1^2`` and
  ``q_l = sigma_w,l^2 E[phi(sqrt(q_{l-1}) z)^2] + sigma_b,l^2``: the variance of layer l's
  pre-activations (``E[x^2]`` is the input's second moment per feature);
- ``chi_l = sigma_w,l+1^2 (n_{l+1} / n_l) E[phi'(sqrt(q_l) z)^2]``: the factor by which the mean
  square gradient per unit changes from layer l+1's pre-activations to layer l's (``n`` are the
  widths; the ratio is 1 in a square stack);
- the gradient gain from the top to layer l, as a ratio of RMS gradients, is
  ``sqrt(prod_{k >= l} chi_k)``; with a linear output layer on top, its
  ``chi_out = sigma_w,out^2 (n_out / n_L) E[phi'(sqrt(q_L) z)^2]`` joins the product.

The q recursion is sequential, one small quadrature per layer (none for positively homogeneous
activations, the ReLU family, where ``E[phi(sqrt(q) z)^2] = q E[phi(z)^2]``); chi is one tensor
operation over all layers once q is known. Results are cached per arguments.

>>> p = propagate("relu", [1 / 3] * 50)  # PyTorch's default init: chi = 1/6 per layer
>>> p.crossing_depth, p.direction
(7, 'vanishing')
>>> propagate("relu", 2.0, depth=50).crossing_depth  # He: exactly critical, no limit
inf
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

import torch

from trainability import activations
from trainability.theory._moments import ActivationLike, Moments, moments
from trainability.theory._moments import check_variances as _check

#: The RMS gradient gain, either way, that counts as crossing (the doctor's vanishing/exploding bound).
CROSSING_RATIO = 100.0
#: How far past the given layers a stack is continued to find where its gain crosses.
MAX_EXTRA_DEPTH = 10_000
_BLOCK = 128
_NEVER = 1e10  # a crossing further than this many layers is reported as never


class _Extension:
    """A stack continued past its layers with their mean variances: q sequentially, chi for a
    block of 128 layers in one op; once chi settles, the rest is a closed form."""

    def __init__(self, m: Moments, sw: float, sb: float, out_ratio: float | None, depth: int, q: float, d2: float,
                 log_prefix: float) -> None:  # fmt: skip
        self.m, self.sw, self.sb, self.out_ratio = m, sw, sb, out_ratio
        self.depth, self.q, self.d2, self.log_prefix = depth, q, d2, log_prefix

    def _top(self, d2: torch.Tensor) -> torch.Tensor:
        """ln chi_out over the top hidden layer's ``E[phi'^2]`` (0 without an output layer)."""
        return torch.zeros_like(d2) if self.out_ratio is None else (self.out_ratio * d2).log()

    def crossing(self, threshold: float) -> tuple[float, float]:
        """``(crossing depth, log mean-square gain there)``; ``(inf, 0)`` if none."""
        depth, q, d2, log_prefix = self.depth, self.q, self.d2, self.log_prefix
        settled = self.m.homogeneous  # chi is constant from the start
        while not settled:
            if depth >= self.depth + MAX_EXTRA_DEPTH:
                return math.inf, 0.0
            block = []
            for _ in range(_BLOCK):
                q = _clip(self.sw * self.m.second_moment(q) + self.sb)
                block.append(q)
            moments_ = self.m.derivative_moments(torch.tensor(block, dtype=torch.float64))
            below = torch.cat([torch.tensor([d2], dtype=torch.float64), moments_[:-1]])
            prefix = log_prefix + (self.sw * below).log().cumsum(0)
            total = prefix + self._top(moments_)
            hits = (total.abs() >= threshold).nonzero()
            if len(hits):
                i = int(hits[0])
                return float(depth + 1 + i), float(total[i])
            depth, d2, log_prefix = depth + _BLOCK, float(moments_[-1]), float(prefix[-1])
            settled = abs(d2 - float(moments_[_BLOCK // 2])) <= 1e-10 * abs(d2)
        return self._closed_form(depth, d2, log_prefix, threshold)

    def _closed_form(self, depth: int, d2: float, log_prefix: float, threshold: float) -> tuple[float, float]:
        """chi has settled at ``sw * d2``: the gain moves by a constant factor per layer."""
        if self.sw * d2 <= 0:
            return float(depth + 1), -math.inf
        slope = math.log(self.sw * d2)
        start = log_prefix + float(self._top(torch.tensor(d2, dtype=torch.float64)))
        if abs(slope) < 1e-300:
            return math.inf, 0.0
        steps = max(1.0, math.ceil(((threshold if slope > 0 else -threshold) - start) / slope))
        if steps > _NEVER:
            return math.inf, 0.0
        return float(depth + steps), start + steps * slope


@dataclass(frozen=True)
class Propagation:
    """The finite-depth prediction for one stack of L hidden layers.

    ``q`` (L values): each hidden layer's pre-activation variance; ``chi`` (L - 1 values):
    ``chi[l]`` is the mean-square gradient gain from hidden layer l+1 down to l (0-based);
    ``gradient_gain`` (L values): RMS gradient at layer l over the top's (the output layer's when
    one was given, else the last hidden layer's); ``output_chi``: the output layer's own chi.
    ``crossing_depth`` (computed on first use) is the smallest number of hidden layers at which
    the gain from the top to the first layer passes ``ratio`` either way, for a stack that starts
    like this one (its layers as given, then continued with their mean variances, the same output
    layer on top); ``inf`` when it never does (chi settles at exactly 1) or not within
    ``MAX_EXTRA_DEPTH`` more layers. ``direction`` says which way it crosses.
    """

    activation: str
    input_variance: float
    q: tuple[float, ...]
    chi: tuple[float, ...]
    gradient_gain: tuple[float, ...]
    output_chi: float | None = None
    ratio: float = CROSSING_RATIO
    _within: tuple[int, float] | None = field(default=None, repr=False, compare=False)
    _extension: _Extension | None = field(default=None, repr=False, compare=False)

    @property
    def depth(self) -> int:
        """Hidden layers in the stack."""
        return len(self.q)

    @property
    def signal_variance(self) -> float:
        """``q_L``: the variance of the last hidden layer's pre-activations."""
        return self.q[-1]

    @property
    def first_layer_gain(self) -> float:
        """RMS gradient at the first layer over the top's."""
        return self.gradient_gain[0]

    @property
    def beyond(self) -> bool:
        """Whether the gain within this stack already passes ``ratio``."""
        return self._within is not None

    @cached_property
    def _crossing(self) -> tuple[float, float]:
        if self._within is not None:
            return float(self._within[0]), self._within[1]
        assert self._extension is not None
        return self._extension.crossing(2 * math.log(self.ratio))

    @property
    def crossing_depth(self) -> float:
        depth = self._crossing[0]
        return int(depth) if math.isfinite(depth) else math.inf

    @property
    def direction(self) -> Literal["vanishing", "exploding"] | None:
        depth, log_gain = self._crossing
        return None if math.isinf(depth) else "vanishing" if log_gain < 0 else "exploding"

    @property
    def trainable_depth(self) -> float:
        """The deepest stack like this one whose gain stays within ``ratio``: ``crossing_depth - 1``."""
        return self.crossing_depth - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "activation": self.activation, "input_variance": self.input_variance, "depth": self.depth,
            "q": list(self.q), "chi": list(self.chi), "gradient_gain": list(self.gradient_gain),
            "output_chi": self.output_chi, "ratio": self.ratio, "signal_variance": self.signal_variance,
            "first_layer_gain": self.first_layer_gain, "crossing_depth": self.crossing_depth,
            "trainable_depth": self.trainable_depth, "direction": self.direction,
        }  # fmt: skip

    def __repr__(self) -> str:
        crossing = f"at depth {self.crossing_depth} ({self.direction})" if self.direction else "never"
        return (f"Propagation({self.activation}, {self.depth} layers: q {self.q[0]:.3g} -> {self.q[-1]:.3g}, "
                f"gradient gain to layer 1 {self.first_layer_gain:.3g}x, crosses {self.ratio:g}x {crossing})")  # fmt: skip


def _per_layer(name: str, values: float | Sequence[float], depth: int | None) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        if depth is None:
            raise ValueError(f"{name} is a single number: give depth= (how many hidden layers) or one value per layer")
        return (float(values),) * depth
    out = tuple(float(v) for v in values)
    if depth is not None and len(out) != depth:
        raise ValueError(f"{name} has {len(out)} values but depth={depth}")
    return out


def propagate(
    activation: ActivationLike,
    weight_variances: float | Sequence[float],
    bias_variances: float | Sequence[float] = 0.0,
    input_variance: float = 1.0,
    *,
    depth: int | None = None,
    widths: Sequence[int] | None = None,
    output_weight_variance: float | None = None,
    output_width: int | None = None,
    ratio: float = CROSSING_RATIO,
    **hyperparameters: Any,
) -> Propagation:
    """Propagate q and chi layer by layer from the input through a dense stack.

    ``weight_variances`` are ``sigma_w,l^2 = fan_in * Var(W_l)`` of the hidden layers (each
    followed by ``activation``), one per layer or one for all (then give ``depth``);
    ``bias_variances`` the second moments of their biases, likewise; ``input_variance`` the
    input's second moment per feature, ``E[x^2]`` (1 for standardized inputs). ``widths`` are the
    hidden layers' output widths (all equal if omitted). ``output_weight_variance`` and
    ``output_width`` describe a linear output layer on top, which is then the reference of the
    gradient gains, as in the doctor's gradient rules. ``hyperparameters`` go to the activation.

    >>> p = propagate("tanh", 1.0, 0.05, depth=40)
    >>> round(p.signal_variance, 3), p.crossing_depth, p.direction
    (0.194, 31, 'vanishing')
    """
    sw = _per_layer("weight_variances", weight_variances, depth)
    if not sw:
        raise ValueError("give at least one hidden layer")
    sb = _per_layer("bias_variances", bias_variances, len(sw))
    for w, b in zip(sw, sb, strict=True):
        _check(w, b)
    if not input_variance >= 0:
        raise ValueError(f"input_variance (the input's second moment E[x^2]) must be >= 0, got {input_variance!r}")
    n = (1,) * len(sw) if widths is None else tuple(int(v) for v in widths)
    if len(n) != len(sw) or min(n) < 1:
        raise ValueError(f"widths must be {len(sw)} positive ints, one per hidden layer, got {widths!r}")
    out_ratio = None
    if output_weight_variance is not None:
        _check(output_weight_variance, 0.0)
        out_ratio = output_weight_variance * (output_width or n[-1]) / n[-1]
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1 (a gain of 100 means 100x either way), got {ratio!r}")
    m = moments(activation, hyperparameters)
    name = activations.get(activation).name if isinstance(activation, (str, activations.ActivationSpec)) else (
        getattr(activation, "__name__", type(activation).__name__))  # fmt: skip
    try:
        return _propagate(m, name, sw, sb, float(input_variance), n, out_ratio, float(ratio))
    except TypeError:  # unhashable: not cached
        return _propagate.__wrapped__(m, name, sw, sb, float(input_variance), n, out_ratio, float(ratio))


def _clip(q: float) -> float:
    return math.inf if not q < 1e300 else q


@lru_cache(maxsize=256)
def _propagate(m: Moments, name: str, sw: tuple[float, ...], sb: tuple[float, ...], q_in: float, n: tuple[int, ...],
               out_ratio: float | None, ratio: float) -> Propagation:  # fmt: skip
    q = [_clip(sw[0] * q_in + sb[0])]
    for w, b in zip(sw[1:], sb[1:], strict=True):  # the sequential part: one small op per layer
        q.append(_clip(w * m.second_moment(q[-1]) + b))
    d2 = m.derivative_moments(torch.tensor(q, dtype=torch.float64))  # all layers at once
    factor = torch.tensor([w * a / b for w, a, b in zip(sw[1:], n[1:], n[:-1], strict=True)], dtype=torch.float64)
    chi = factor * d2[:-1]
    log_chi = chi.log()
    zero = torch.zeros(1, dtype=torch.float64)
    top = torch.zeros_like(d2) if out_ratio is None else (out_ratio * d2).log()
    # ln of the mean-square gain from the top of a D-layer prefix to layer 1, D = 1..L
    prefix = torch.cat([zero, log_chi.cumsum(0)]) + top
    # ln of the mean-square gain from the top of this stack to layer l
    to_layer = torch.cat([log_chi.flip(0).cumsum(0).flip(0), zero]) + top[-1]
    hits = (prefix.abs() >= 2 * math.log(ratio)).nonzero()
    within = (int(hits[0]) + 1, float(prefix[int(hits[0])])) if len(hits) else None
    extension = None if within else _Extension(
        m, sum(sw) / len(sw), sum(sb) / len(sb), out_ratio, len(q), q[-1], float(d2[-1]), float(prefix[-1] - top[-1]))  # fmt: skip
    return Propagation(
        activation=name, input_variance=q_in, q=tuple(q), chi=tuple(chi.tolist()),
        gradient_gain=tuple((to_layer / 2).exp().tolist()),
        output_chi=None if out_ratio is None else out_ratio * float(d2[-1]), ratio=ratio,
        _within=within, _extension=extension,
    )  # fmt: skip
