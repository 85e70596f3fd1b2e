"""The asymptotic mean-field maps: fixed points, chi, depth scales, the edge of chaos."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from trainability import _quadrature, activations
from trainability import init as inits

#: Training is not expected to succeed beyond this many correlation depth scales.
TRAINABLE_DEPTH_MULTIPLE = 6.0
_Q_FLOOR = 1e-12

ActivationLike = str | activations.ActivationSpec | Callable[[torch.Tensor], torch.Tensor]


def _function(activation: ActivationLike, hyperparameters: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(activation, (str, activations.ActivationSpec)):
        return activations.get(activation).function(**hyperparameters)
    if callable(activation):
        if hyperparameters:
            raise ValueError("hyperparameters apply to registered activations; bind them into your callable")
        return activation
    raise ValueError(f"activation must be a registered name or a callable, got {activation!r}")


def _derivatives(phi: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: int = 1) -> list[torch.Tensor]:
    """``[phi(x), phi'(x), ...]`` up to ``order`` by autograd, elementwise."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        outs = [phi(x)]
        for _ in range(order):
            (d,) = torch.autograd.grad(outs[-1].sum(), x, create_graph=True, allow_unused=True)
            outs.append(torch.zeros_like(x) if d is None else d)
    return [o.detach() for o in outs]


def _check(weight_variance: float, bias_variance: float) -> None:
    if not weight_variance > 0:
        raise ValueError(f"weight_variance (sigma_w^2 = fan_in * Var(W)) must be positive, got {weight_variance!r}")
    if not bias_variance >= 0:
        raise ValueError(f"bias_variance must be >= 0, got {bias_variance!r}")


def fixed_point(
    activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *, q0: float = 1.0,
    max_iter: int = 2000, **hyperparameters: Any,
) -> float:
    """The length fixed point ``q*`` of ``q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``.

    Iterated from ``q0``; ``inf`` when the length diverges (e.g. ReLU with ``sigma_w^2 > 2``).
    Scale-free activations with zero bias (ReLU at ``sigma_w^2 = 2``) keep any ``q``: ``q0``.
    """
    _check(weight_variance, bias_variance)
    phi = _function(activation, hyperparameters)
    x, w = _quadrature.nodes()
    with torch.no_grad():
        if bias_variance == 0 and torch.allclose(phi(2 * x), 2 * phi(x)):  # positively homogeneous (ReLU
            gain = weight_variance * float((w * phi(x) ** 2).sum())  # family): q' = gain * q exactly
            return q0 if abs(gain - 1) < 1e-12 else 0.0 if gain < 1 else math.inf
        q = q0
        for _ in range(max_iter):
            new = weight_variance * float((w * phi(math.sqrt(max(q, _Q_FLOOR)) * x) ** 2).sum()) + bias_variance
            if not math.isfinite(new) or new > 1e30:
                return math.inf
            if abs(new - q) <= 1e-12 * max(q, 1e-30):
                return new
            q = new
    return q


def chi(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> float:
    """``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]``: the per-layer gain of gradient norms."""
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    if not math.isfinite(q):
        return math.inf
    x, w = _quadrature.nodes()
    _, d1 = _derivatives(_function(activation, hyperparameters), math.sqrt(max(q, _Q_FLOOR)) * x)
    value = weight_variance * float((w * d1**2).sum())
    return round(value, 12)


def correlation_fixed_point(
    activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, *, max_iter: int = 2000,
    **hyperparameters: Any,
) -> float:
    """The fixed point ``c*`` of the correlation map (1 in the ordered phase)."""
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    if not math.isfinite(q):
        return math.nan
    if chi(activation, weight_variance, bias_variance, **hyperparameters) <= 1.0:
        return 1.0
    phi = _function(activation, hyperparameters)
    x, w = _quadrature.nodes(80)
    z1, z2 = torch.meshgrid(x, x, indexing="ij")
    weights = torch.outer(w, w)
    root = math.sqrt(max(q, _Q_FLOOR))
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
        return math.inf
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
    if not math.isfinite(gain):
        return 0.0
    if gain <= 0:
        return 0.0
    if abs(gain - 1.0) < 1e-9:
        return math.inf
    return abs(-1.0 / math.log(gain))


def depth_scale(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> float:
    """The correlation depth scale ``xi_c = -1 / ln chi_c``; infinite at criticality, 0 when the
    length itself diverges."""
    return _scale(_chi_c(activation, weight_variance, bias_variance, hyperparameters))


def length_depth_scale(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> float:
    """``xi_q = -1 / ln(chi_1 + sigma_w^2 E[phi''(u) phi(u)])``, u = sqrt(q*) z: how fast the
    length ``q`` converges to ``q*``."""
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    if not math.isfinite(q):
        return 0.0
    x, w = _quadrature.nodes()
    phi0, phi1, phi2 = _derivatives(_function(activation, hyperparameters), math.sqrt(max(q, _Q_FLOOR)) * x, order=2)
    gain = weight_variance * float((w * (phi1**2 + phi2 * phi0)).sum())
    return _scale(gain)


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
    not expected to succeed."""
    return multiple * depth_scale(activation, weight_variance, bias_variance, **hyperparameters)


def weight_variance_of(initializer: str, width: int) -> float:
    """``sigma_w^2 = fan_in * Var(W)`` that an initializer gives a square ``width x width`` layer."""
    init = inits.get(initializer)
    if not isinstance(init, inits.VarianceScaling):
        raise ValueError(f"{initializer!r} is not a variance-scaling initializer; give --weight-variance instead")
    return init.variance(width, width) * width


def summary(activation: ActivationLike, weight_variance: float, bias_variance: float = 0.0, **hyperparameters: Any) -> dict[str, float]:
    """Everything above for one pairing, as ``trainability theory depth`` prints it."""
    q = fixed_point(activation, weight_variance, bias_variance, **hyperparameters)
    chi1 = chi(activation, weight_variance, bias_variance, **hyperparameters)
    xi = depth_scale(activation, weight_variance, bias_variance, **hyperparameters)
    return {
        "weight_variance": weight_variance,
        "bias_variance": bias_variance,
        "q_star": q,
        "chi_1": chi1,
        "phase": "critical" if abs(chi1 - 1) < 1e-6 else "ordered" if chi1 < 1 else "chaotic",
        "xi_c": xi,
        "xi_q": length_depth_scale(activation, weight_variance, bias_variance, **hyperparameters),
        "max_trainable_depth": TRAINABLE_DEPTH_MULTIPLE * xi,
    }


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
