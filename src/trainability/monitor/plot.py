"""The monitor's picture: gradient norm per layer over steps, dead and saturated fractions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainability.doctor.plot import _pyplot


def plot_monitor(monitor: Any, path: Path) -> Path:
    """Draw a :class:`~trainability.monitor.Monitor`'s records (``rows``, ``findings``) to ``path``."""
    import numpy as np

    plt = _pyplot()
    steps = sorted({r[0] for r in monitor.rows})
    grad = {(r[0], r[1]): r[3] for r in monitor.rows if r[2] == "grad_norm"}
    layers = list(dict.fromkeys(r[1] for r in monitor.rows if r[2] == "weight_grad_norm"))
    fig, axes = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    ax = axes[0]
    if steps and layers:
        grid = np.array([[math.log10(grad[(s, n)]) if grad.get((s, n), 0) > 0 else np.nan for s in steps] for n in layers])
        mesh = ax.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
        fig.colorbar(mesh, ax=ax, label="log10 gradient norm at the layer's output")
        ax.set_yticks(range(len(layers)), layers, fontsize=6 if len(layers) > 30 else 8)
        ticks = list(range(0, len(steps), max(1, len(steps) // 10)))
        ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    ax.set_xlabel("recorded step")
    ax.set_ylabel("weight layer")
    marks = [f for f in monitor.findings if f.step is not None]
    ax.set_title("gradient norm per layer" + (f" - first finding: {marks[0].kind} at step {marks[0].step}" if marks else ""))
    ax = axes[1]
    for statistic, color in (("dead_fraction", "tab:gray"), ("saturated_fraction", "tab:purple")):
        by_step: dict[int, list[float]] = {}
        for step, _, name, value in monitor.rows:
            if name == statistic:
                by_step.setdefault(step, []).append(value)
        if by_step:
            xs = sorted(by_step)
            ax.plot(xs, [max(by_step[s]) for s in xs], color=color, lw=2, label=f"{statistic.replace('_', ' ')} (worst layer)")
            ax.plot(xs, [sum(by_step[s]) / len(by_step[s]) for s in xs], color=color, lw=1, ls="--", label=f"{statistic.replace('_', ' ')} (mean)")
    for f in marks:
        ax.axvline(f.step, color="red", lw=0.8, alpha=0.6)
    ax.set_ylim(0, 1)
    ax.set_xlabel("step (red lines: findings)")
    ax.set_ylabel("fraction")
    if ax.lines:
        ax.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
