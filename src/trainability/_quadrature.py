"""Gaussian expectations by Gauss-Hermite quadrature, in float64 torch.

An even number of nodes keeps 0 off the grid, so kinked functions (ReLU and its variants) are
integrated by symmetry exactly where the kink sits at 0: the positive half of the nodes carries
exactly half of the weight.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

NODES = 160


@lru_cache(maxsize=8)
def nodes(n: int = NODES) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights for E[f(z)], z ~ N(0, 1): ``sum(w * f(x))``, weights summing to 1."""
    if n % 2:
        raise ValueError(f"use an even number of nodes, got {n}")
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    return torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64)


def expect(f: Callable[[torch.Tensor], torch.Tensor], n: int = NODES) -> float:
    """E[f(z)] for z ~ N(0, 1)."""
    x, w = nodes(n)
    return float((w * f(x)).sum())


def expect2(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n: int = 80) -> float:
    """E[f(z1, z2)] for independent z1, z2 ~ N(0, 1), on the product grid."""
    x, w = nodes(n)
    z1, z2 = torch.meshgrid(x, x, indexing="ij")
    return float((torch.outer(w, w) * f(z1, z2)).sum())
