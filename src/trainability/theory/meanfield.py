"""The asymptotic mean-field maps: fixed points, chi, depth scales, the edge of chaos.

Where the length map has no proper fixed point (the signal decays to 0 or grows without bound,
as with GELU, SiLU or Mish at sigma_w^2 = 2, or leaky ReLU and SELU at sigma_w^2 = 2),
:func:`fixed_point` returns 0.0 or ``inf``, chi is its limit there, and the depth scales and
:func:`max_trainable_depth` are ``nan`` (undefined); :func:`summary` says how the signal moves
instead, and :func:`trainability.theory.propagate` gives the finite-depth prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from trainability import _quadrature
from trainability import init as inits
from trainability.theory._moments import Q_HUGE, Q_TINY, ActivationLike, Moments, moments
from trainability.theory._moments import check_variances as _check
from trainability.theory._moments import function as _function

__all__ = ["ActivationLike"]

#: Training is not expected to succeed beyond this many correlation depth scales.
TRAINABLE_DEPTH_MULTIPLE = 6.0
#: Fixed points below this count as 0 (the signal dies out), above ``1 / _Q_LOW`` as infinite.
_Q_LOW = 1e-12
_Q_FLOOR = _Q_LOW


def _derivatives(phi: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: int = 1) -> list[torch.Tensor]:
    """``[phi(x), phi'(x), ...]`` up to ``order`` by autograd, elementwise."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        outs = [phi(x)]
        for _ in range(order):
            (d,) = torch.autograd.grad(outs[-1].sum(), x, create_graph=True, allow_unused=True)
            outs.append(torch.zeros_like(x) if d is None else d)
    return [o.detach() for o in outs]


def _proper(q: float) -> bool:
    """A finite, non-zero fixed point: the asymptotic theory applies."""
    return 0.0 < q < math.inf


def _fixed(m: Moments, sw: float, sb: float, q0: float, max_iter: int) -> float:
    if m.homogeneous:  # q' = gain * q + sb exactly
        gain = sw * m.m2
        if sb == 0:
            return q0 if abs(gain - 1) < 1e-12 else 0.0 if gain < 1 else math.inf
        return sb / (1 - gain) if gain < 1 else math.inf
    q = q0
    for _ in range(min(max_iter, 100)):  # plain iteration first: most maps converge fast
        new = sw * m.second_moment(q) + sb
        if not new < 1 / _Q_LOW:
            break
        if new < _Q_LOW:
            return 0.0
        if abs(new - q) <= 1e-13 * q:
            return new
        q = new
    # slow: bracket the nearest root in the direction the map moves (it is increasing in q)
    down = sw * m.second_moment(q) + sb < q
    end = _Q_LOW if down else 1 / _Q_LOW
    grid = torch.logspace(math.log10(q), math.log10(end), max(2, int(abs(math.log10(end / q)) * 4) + 1), dtype=torch.float64)
    excess = sw * m.second_moments(grid) + sb - grid
    crossed = ((excess >= 0) if down else (excess <= 0)).nonzero()
    if not len(crossed):
        return 0.0 if down else math.inf
    i = int(crossed[0])
    lo, hi = sorted((float(grid[i]), float(grid[i - 1]) if i else q))
    for _ in range(200):
        if hi / lo - 1 < 1e-14:
            break
        mid = math.sqrt(lo * hi)
        if (sw * m.second_moment(mid) + sb - mid > 0) == down:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def fixed_point(
    activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *, q0: float = 1.0,
    max_iter: int = 2000, **hyperparameters: Any,
) -> float:
    """The length fixed point ``q*`` of ``q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2`` reached from ``q0``.

    ``0.0`` when the signal decays to nothing (q* below 1e-12), ``inf`` when it grows without
    bound (e.g. ReLU with ``sigma_w^2 > 2``): no finite fixed point in either case. Scale-free
    activations with zero bias (ReLU at ``sigma_w^2 = 2``) keep any ``q``: ``q0``.
    """
    _check(weight_variance, bias_variance)
    return _fixed(moments(activation, hyperparameters), weight_variance, bias_variance, q0, max_iter)


def _at(q: float) -> torch.Tensor:
    """Where to evaluate moments at a fixed point (its limit when it is 0 or infinite)."""
    return torch.tensor([Q_TINY if q <= 0 else Q_HUGE if not math.isfinite(q) else q], dtype=torch.float64)


def chi(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> float:
    """``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]``: the per-layer gain of gradient norms (its limit
    where ``q*`` is 0 or infinite)."""
    m = moments(activation, hyperparameters)
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    value = weight_variance * float(m.derivative_moments(_at(q))[0])
    return round(value, 12)


def correlation_fixed_point(
    activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *, max_iter: int = 2000,
    **hyperparameters: Any,
) -> float:
    """The fixed point ``c*`` of the correlation map (1 in the ordered phase); ``nan`` without a
    finite length fixed point."""
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    if not _proper(q):
        return math.nan
    if chi(activation, weight_variance, bias_variance, **hyperparameters) <= 1.0 + 1e-9:  # ordered or critical
        return 1.0
    phi = _function(activation, hyperparameters)
    x, w = _quadrature.nodes(80)
    z1, z2 = torch.meshgrid(x, x, indexing="ij")
    weights = torch.outer(w, w)
    root = math.sqrt(q)
    u1 = phi(root * z1)
    c = 0.5
    with torch.no_grad():
        for _ in range(max_iter):
            u2 = phi(root * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2))
            new = min((weight_variance * float((weights * u1 * u2).sum()) + bias_variance) / q, 1.0)
            if abs(new - c) < 1e-10:
                return new
            c = new
    return c


def _chi_c(activation: ActivationLike, weight_variance: float, bias_variance: float, hyperparameters: dict) -> float:
    c = correlation_fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    if math.isnan(c):
        return math.nan
    if c >= 1.0:
        return chi(activation, weight_variance, bias_variance, **hyperparameters)
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    x, w = _quadrature.nodes(80)
    z1, z2 = torch.meshgrid(x, x, indexing="ij")
    root = math.sqrt(q)
    phi = _function(activation, hyperparameters)
    _, d1 = _derivatives(phi, root * z1)
    _, d2 = _derivatives(phi, root * (c * z1 + math.sqrt(1 - c * c) * z2))
    return weight_variance * float((torch.outer(w, w) * d1 * d2).sum())


def _scale(gain: float) -> float:
    if math.isnan(gain):
        return math.nan
    if not math.isfinite(gain) or gain <= 0:
        return 0.0
    if abs(gain - 1.0) < 1e-9:
        return math.inf
    return abs(-1.0 / math.log(gain))


def depth_scale(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> float:
    """The correlation depth scale ``xi_c = -1 / ln chi_c``; infinite at criticality, ``nan``
    where there is no finite fixed point (see :func:`summary`'s ``signal`` and
    :func:`trainability.theory.propagate`)."""
    return _scale(_chi_c(activation, weight_variance, bias_variance, hyperparameters))


def length_depth_scale(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> float:
    """``xi_q = -1 / ln(chi_1 + sigma_w^2 E[phi''(u) phi(u)])``, u = sqrt(q*) z: how fast the
    length ``q`` converges to ``q*``; ``nan`` without a finite fixed point."""
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    if not _proper(q):
        return math.nan
    m = moments(activation, hyperparameters)
    at = _at(q)
    return _scale(weight_variance * float(m.derivative_moments(at)[0] + m.derivative_moments(at, order=2)[0]))


def critical_weight_variance(activation: ActivationLike, bias_variance: float = 0.0, *, low: float = 1e-3,
                             high: float = 100.0, **hyperparameters: Any) -> float:  # fmt: skip
    """The ``sigma_w^2`` at the edge of chaos, where ``chi_1 = 1`` (bisection in log space)."""

    def excess(v: float) -> float:
        return chi(activation, v, bias_variance, **hyperparameters) - 1.0

    lo, hi = low, high
    if excess(lo) > 0 or excess(hi) < 0:
        raise ValueError(f"no critical weight variance for {activation!r} with bias_variance={bias_variance} in [{low}, {high}]")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if excess(mid) > 0:
            hi = mid
        else:
            lo = mid
    return math.sqrt(lo * hi)


def max_trainable_depth(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *,
                        multiple: float = TRAINABLE_DEPTH_MULTIPLE, **hyperparameters: Any) -> float:  # fmt: skip
    """``multiple * xi_c`` (6 by default, Schoenholz et al. 2017): deeper than this, training is
    not expected to succeed. ``nan`` without a finite fixed point: use
    :func:`trainability.theory.propagate` (its ``trainable_depth``) there."""
    return multiple * depth_scale(activation, weight_variance, bias_variance, **hyperparameters)


def weight_variance_of(initializer: str, width: int) -> float:
    """``sigma_w^2 = fan_in * Var(W)`` that an initializer gives a square ``width x width`` layer."""
    init = inits.get(initializer)
    if not isinstance(init, inits.VarianceScaling):
        raise ValueError(f"{initializer!r} is not a variance-scaling initializer; give --weight-variance instead")
    return init.variance(width, width) * width


def signal(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *, q0: float = 1.0,
           **hyperparameters: Any) -> str:  # fmt: skip
    """How the length ``q`` moves with depth from ``q0``, in words: it converges to ``q*``, is
    kept at any scale, or (no finite fixed point) decays to 0 or grows without bound, with the
    per-layer factor ``q'/q`` it reaches there."""
    m = moments(activation, hyperparameters)
    q = _fixed(m, weight_variance, bias_variance, q0, 2000)
    if _proper(q):
        if m.homogeneous and bias_variance == 0:
            return "kept at its input scale at every depth (sigma_w^2 E[phi(z)^2] = 1)"
        return f"converges to q* = {q:.4g}"
    edge = 1e-100 if q == 0 else 1e100
    rate = weight_variance * m.second_moment(edge) / edge
    if q == 0:
        pace = f"x{rate:.6g} per layer once small" if rate < 1 - 1e-9 else "slower than geometrically"
        return f"no finite fixed point: the signal decays to 0, {pace}"
    pace = f"x{rate:.6g} per layer once large" if rate > 1 + 1e-9 else "slower than geometrically"
    return f"no finite fixed point: the signal grows without bound, {pace}"


def summary(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *,
            input_variance: float = 1.0, **hyperparameters: Any) -> dict[str, Any]:  # fmt: skip
    """Everything above for one pairing, as ``trainability theory depth`` prints it.

    ``fixed_point`` is ``"finite"`` or ``"none"``; with none, ``q_star`` is 0.0 or ``inf``,
    ``chi_1`` its limit there, ``xi_c``, ``xi_q`` and ``max_trainable_depth`` (6 xi_c) are
    ``nan``, and ``signal`` says how the signal decays or grows instead. ``trainable_depth`` is
    the finite-depth one, defined either way: the deepest stack of this pairing, fed inputs of
    second moment ``input_variance``, whose gradient gain to its first layer stays within 100x
    (:func:`trainability.theory.propagate`; ``inf`` for no limit).
    """
    from trainability.theory.finite_depth import propagate

    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    chi1 = chi(activation, weight_variance, bias_variance, **hyperparameters)
    xi = depth_scale(activation, weight_variance, bias_variance, **hyperparameters)
    return {
        "weight_variance": weight_variance,
        "bias_variance": bias_variance,
        "q_star": q,
        "fixed_point": "finite" if _proper(q) else "none",
        "signal": signal(activation, weight_variance, bias_variance, **hyperparameters),
        "chi_1": chi1,
        "phase": "critical" if abs(chi1 - 1) < 1e-6 else "ordered" if chi1 < 1 else "chaotic",
        "xi_c": xi,
        "xi_q": length_depth_scale(activation, weight_variance, bias_variance, **hyperparameters),
        "max_trainable_depth": TRAINABLE_DEPTH_MULTIPLE * xi,
        "trainable_depth": propagate(activation, weight_variance, bias_variance, input_variance, depth=1,
                                     **hyperparameters).trainable_depth,
    }  # fmt: skip


def activation_moments(
    activation: ActivationLike, weight_variance: float = 1.0, weight_sum: float = 0.0, *, max_iter: int = 1000,
    **hyperparameters: Any,
) -> tuple[float, float]:
    """The fixed point ``(mean, variance)`` of a layer's activations (Klambauer et al. 2017).

    With ``omega = sum_i w_i`` (``weight_sum``) and ``tau = sum_i w_i^2`` (``weight_variance``),
    the pre-activation is N(omega mu, tau nu) for inputs of mean mu and variance nu; SELU with
    LeCun weights (omega = 0, tau = 1) maps (0, 1) to itself.
    """
    _check(weight_variance, 0.0)
    phi = _function(activation, hyperparameters)
    x, w = _quadrature.nodes()
    mean, var = 0.0, 1.0
    with torch.no_grad():
        for _ in range(max_iter):
            y = phi(weight_sum * mean + math.sqrt(max(weight_variance * var, _Q_FLOOR)) * x)
            new_mean = float((w * y).sum())
            new_var = max(float((w * y * y).sum()) - new_mean**2, 0.0)
            if not (math.isfinite(new_mean) and math.isfinite(new_var)):
                return math.nan, math.inf
            if abs(new_mean - mean) < 1e-12 and abs(new_var - var) < 1e-12:
                break
            mean, var = new_mean, new_var
    return mean, var
