"""Gaussian moments of an activation, ``E[f(sqrt(q) z)]`` with z ~ N(0, 1), accurate at any q.

Gauss-Hermite nodes are spaced about 0.2 apart near 0, so once ``sqrt(q)`` is large an
activation's structure near 0 (tanh's slope, ELU's exponential, GELU's bend: all about one unit
wide in the pre-activation) falls between nodes: at q = 100, 160 nodes get tanh's
``E[phi'^2]`` wrong by 3x. Here the z axis is cut at 0 (where ReLU-like kinks sit) and into
panels that double in width from ``delta`` (at most ``0.25 / sqrt(q)``, a power of two) out to
|z| = 10, each with 12 Gauss-Legendre nodes (about 150 nodes at q <= 1, 260 at q = 100);
relative error below 1e-8 from q = 1e-6 to 1e8 against a fine trapezoid rule. A batch of q values
is evaluated one level at a time (a few levels, one op each): ops that small stay on one thread,
and intra-op threads contending with other processes made larger ones up to 30x slower here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from trainability import activations

ActivationLike = str | activations.ActivationSpec | Callable[[torch.Tensor], torch.Tensor]

_Z = 10.0  # the Gaussian mass beyond |z| = 10 is 1.5e-23
_SCALE = 0.25  # innermost panel, in units of the pre-activation sqrt(q) z
_PANEL_NODES = 12
_LEVELS = 72  # innermost panel 0.5 * 2**-level: resolves q up to about 1e41
Q_TINY, Q_HUGE = 1e-300, 1e200  # q is evaluated within these (limits 0 and infinity)


def function(activation: ActivationLike, hyperparameters: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as a float64 elementwise function."""
    if isinstance(activation, (str, activations.ActivationSpec)):
        return activations.get(activation).function(**hyperparameters)
    if callable(activation):
        if hyperparameters:
            raise ValueError("hyperparameters apply to registered activations; bind them into your callable")
        return activation
    raise ValueError(f"activation must be a registered name or a callable, got {activation!r}")


@lru_cache(maxsize=_LEVELS)
def _rule(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights (summing to 1) of one level: panels from ``0.5 * 2**-level`` out to 10."""
    t, v = np.polynomial.legendre.leggauss(_PANEL_NODES)
    t, v = (t + 1) / 2, v / 2
    delta = 0.5 * 2.0**-level
    edges = [0.0]
    while edges[-1] < _Z:
        edges.append(min(max(delta, 2 * edges[-1]), _Z))
    z = np.concatenate([a + (b - a) * t for a, b in zip(edges, edges[1:], strict=False)])
    w = np.concatenate([(b - a) * v for a, b in zip(edges, edges[1:], strict=False)]) * np.exp(-z * z / 2)
    w = w / (2 * w.sum())  # each half carries exactly half the mass
    return torch.tensor(np.concatenate([-z[::-1], z])), torch.tensor(np.concatenate([w[::-1], w]))


def _level(q: float) -> int:
    root = math.sqrt(min(max(q, Q_TINY), Q_HUGE))
    return min(max(math.ceil(math.log2(0.5 * root / _SCALE)), 0), _LEVELS - 1)


def rule(q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``z`` and weights ``w`` (summing to 1) for one q:
    ``E[f(sqrt(q) z)] = (w * f(sqrt(q) * z)).sum()``."""
    return _rule(_level(q))


def _by_level(q: torch.Tensor, f: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``f(roots[:, None], z, w)`` per group of q values that share a rule, scattered back: one
    evaluation per level present (a few), each small enough to stay on one thread."""
    values = q.tolist()
    groups: dict[int, list[int]] = {}
    for i, value in enumerate(values):
        groups.setdefault(_level(value), []).append(i)
    out = torch.empty_like(q)
    roots = q.clamp(Q_TINY, Q_HUGE).sqrt()
    for level, index in groups.items():
        z, w = _rule(level)
        rows = torch.tensor(index)
        out[rows] = f(roots[rows][:, None], z, w)
    return out


class Moments:
    """``E[phi(sqrt(q) z)^2]`` and ``E[phi'(sqrt(q) z)^2]`` of one activation, for many q at once.

    Positively homogeneous activations (the ReLU family: ``phi(a x) = a phi(x)`` for a > 0) need
    no quadrature after the first: both moments scale exactly (``q E[phi(z)^2]`` and constant).
    """

    def __init__(self, phi: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.phi = phi
        one = torch.ones(1, dtype=torch.float64)
        z, _ = rule(1.0)
        with torch.no_grad():
            self.homogeneous = bool(torch.allclose(phi(2 * z), 2 * phi(z), rtol=1e-10, atol=1e-12))
        self.homogeneous, homogeneous = False, self.homogeneous
        self.m2 = float(self.second_moments(one)[0])  # E[phi(z)^2]
        self.d2 = float(self.derivative_moments(one)[0])  # E[phi'(z)^2]
        self.homogeneous = homogeneous

    def second_moment(self, q: float) -> float:
        """``E[phi(sqrt(q) z)^2]`` for one q: one small op (none for the ReLU family)."""
        if self.homogeneous:
            return self.m2 * q
        z, w = rule(q)
        with torch.no_grad():
            y = self.phi(z * math.sqrt(min(max(q, Q_TINY), Q_HUGE)))
            return float(torch.dot(w, y * y))

    def second_moments(self, q: torch.Tensor) -> torch.Tensor:
        """``E[phi(sqrt(q) z)^2]`` for every entry of ``q`` at once."""
        if self.homogeneous:
            return self.m2 * q

        def moment(root: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return (w * self.phi(root * z) ** 2).sum(-1)

        return _by_level(q, moment)

    def derivative_moments(self, q: torch.Tensor, order: int = 1) -> torch.Tensor:
        """``E[phi'(sqrt(q) z)^2]`` (``order=1``) or ``E[phi''(u) phi(u)]`` (``order=2``) for every
        entry of ``q`` at once; derivatives by autograd."""
        if self.homogeneous and order == 1:
            return torch.full_like(q, self.d2)
        return _by_level(q, lambda root, z, w: self._derivative_moment(root * z, w, order))

    def _derivative_moment(self, u: torch.Tensor, w: torch.Tensor, order: int) -> torch.Tensor:
        u = u.detach().requires_grad_(True)
        with torch.enable_grad():
            y = self.phi(u)
            (d1,) = torch.autograd.grad(y.sum(), u, create_graph=order > 1, allow_unused=True)
            if d1 is None:
                return torch.zeros(u.shape[0], dtype=u.dtype)
            if order == 1:
                return (w * d1.detach() ** 2).sum(-1)
            (d2,) = torch.autograd.grad(d1.sum(), u, allow_unused=True)
        d2 = torch.zeros_like(u) if d2 is None else d2
        return (w * d2.detach() * y.detach()).sum(-1)


@lru_cache(maxsize=64)
def _cached(key: Any, hyperparameters: tuple[tuple[str, Any], ...]) -> Moments:
    return Moments(function(key, dict(hyperparameters)))


def moments(activation: ActivationLike, hyperparameters: dict[str, Any]) -> Moments:
    """The (cached) :class:`Moments` of a registered activation or a callable."""
    key = activations.get(activation).name if isinstance(activation, (str, activations.ActivationSpec)) else activation
    if not isinstance(key, str) and hyperparameters:
        raise ValueError("hyperparameters apply to registered activations; bind them into your callable")
    try:
        return _cached(key, tuple(sorted(hyperparameters.items())))
    except TypeError:  # an unhashable hyperparameter value: no cache
        return Moments(function(key, hyperparameters))


def check_variances(weight_variance: float, bias_variance: float) -> None:
    if not weight_variance > 0:
        raise ValueError(f"weight_variance (sigma_w^2 = fan_in * Var(W)) must be positive, got {weight_variance!r}")
    if not bias_variance >= 0:
        raise ValueError(f"bias_variance must be >= 0, got {bias_variance!r}")
