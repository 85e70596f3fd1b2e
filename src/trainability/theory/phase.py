"""The phase diagram: train a coarse grid of (sigma_w^2, depth) briefly and compare with theory.

Each cell is a width-``width`` MLP with weights N(0, sigma_w^2 / fan_in) and biases
N(0, sigma_b^2), trained with SGD (momentum 0.9) for ``steps`` steps, scored by test accuracy.
Cells run in worker processes with one torch thread each (two processes with two threads each
on two cores slow each other down many-fold).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainability import theory
from trainability.models import mlp


@dataclass
class Phase:
    """Accuracy per (weight variance, depth) cell, with the theory's depth scale per variance."""

    activation: str
    data: str
    weight_variances: list[float]
    depths: list[int]
    accuracy: list[list[float]]  # [variance index][depth index]
    xi_c: list[float]
    bias_variance: float
    steps: int
    chance: float
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def inside_outside(self, multiple: float = theory.TRAINABLE_DEPTH_MULTIPLE) -> tuple[float, float]:
        """Mean accuracy of cells inside (depth <= multiple xi_c) and well outside (depth >
        2 multiple xi_c) the predicted band."""
        inside, outside = [], []
        for i, xi in enumerate(self.xi_c):
            for j, depth in enumerate(self.depths):
                if depth <= multiple * xi:
                    inside.append(self.accuracy[i][j])
                elif depth > 2 * multiple * xi:
                    outside.append(self.accuracy[i][j])
        mean = lambda v: sum(v) / len(v) if v else math.nan  # noqa: E731
        return mean(inside), mean(outside)


def _cell(args: tuple) -> float:
    activation, depth, weight_variance, bias_variance, steps, width, lr, seed, tensors = args
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    x, y, x_test, y_test = tensors
    torch.manual_seed(seed)
    model = mlp(x.shape[1], int(y.max()) + 1, depth=depth, width=width, activation=activation, init="default")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, math.sqrt(weight_variance / module.in_features))
            nn.init.normal_(module.bias, 0.0, math.sqrt(bias_variance)) if bias_variance > 0 else nn.init.zeros_(module.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model(x_test)
    if not torch.isfinite(out).all():
        return 0.0
    return float((out.argmax(1) == y_test).float().mean())


def phase_diagram(
    activation: str = "tanh",
    data: str = "mnist1d",
    *,
    weight_variances: list[float],
    depths: list[int],
    bias_variance: float = 0.05,
    steps: int = 300,
    width: int = 100,
    lr: float = 1e-2,
    workers: int | None = None,
    seed: int = 0,
) -> Phase:
    """Train every (weight variance, depth) cell and return the accuracies with ``xi_c``."""
    import time

    from trainability import datasets

    if not weight_variances or not depths:
        raise ValueError("give at least one weight variance and one depth")
    if steps < 1 or width < 1:
        raise ValueError(f"steps and width must be positive, got steps={steps}, width={width}")
    loaded = datasets.load(data)
    if not loaded.classification:
        raise ValueError(f"{data} is not a classification data set")
    tensors = (loaded.train.x, loaded.train.y, loaded.test.x, loaded.test.y)
    jobs = [(activation, d, v, bias_variance, steps, width, lr, seed, tensors) for v in weight_variances for d in depths]
    workers = workers or min(2, os.cpu_count() or 1)
    start = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            flat = list(pool.map(_cell, jobs))
    else:
        threads = torch.get_num_threads()
        try:
            flat = [_cell(job) for job in jobs]
        finally:
            torch.set_num_threads(threads)
    accuracy = [flat[i * len(depths) : (i + 1) * len(depths)] for i in range(len(weight_variances))]
    xi = [theory.depth_scale(activation, v, bias_variance) for v in weight_variances]
    return Phase(activation, data, list(weight_variances), list(depths), accuracy, xi, bias_variance, steps,
                 chance=1.0 / loaded.n_outputs, seconds=time.perf_counter() - start)  # fmt: skip


def plot_phase(phase: Phase, path: str | Path, multiples: tuple[float, ...] = (1.0, 3.0, 6.0)) -> Path:
    """Accuracy as a heat map over (sigma_w^2, depth) with k * xi_c curves overlaid."""
    from trainability.doctor.plot import _pyplot

    plt = _pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    v, d = phase.weight_variances, phase.depths
    grid = np.array(phase.accuracy).T  # depth x variance
    mesh = ax.pcolormesh(_edges(v), _edges(d), grid, cmap="viridis", vmin=0, vmax=max(1e-9, grid.max()), shading="flat")
    fig.colorbar(mesh, ax=ax, label="test accuracy")
    fine = np.linspace(min(v), max(v), 60)
    xi = np.array([theory.depth_scale(phase.activation, float(s), phase.bias_variance) for s in fine])
    for k, style in zip(multiples, ("w:", "w--", "w-"), strict=False):
        ax.plot(fine, np.minimum(k * xi, max(d) * 1.5), style, lw=2, label=f"{k:g} xi_c")
    # the finite-depth prediction, defined also where there is no fixed point (xi_c is nan there)
    trainable = [theory.propagate(phase.activation, float(s), phase.bias_variance, depth=1).trainable_depth for s in fine]
    ax.plot(fine, np.minimum(trainable, max(d) * 1.5), color="tab:orange", lw=2, label="gradient within 100x")
    ax.set_ylim(_edges(d)[0], _edges(d)[-1])
    ax.set_xlabel("sigma_w^2 (fan_in x weight variance)")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title(f"{phase.activation} on {phase.data}: sigma_b^2 = {phase.bias_variance}, {phase.steps} SGD steps per cell")
    ax.legend(loc="upper right", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _edges(values: list[float]) -> list[float]:
    if len(values) == 1:
        return [values[0] - 0.5, values[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]
    return [values[0] - (mids[0] - values[0]), *mids, values[-1] + (values[-1] - mids[-1])]
