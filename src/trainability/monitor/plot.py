"""The Monitor's picture: the loss with the findings marked, and per layer over the recorded steps,
the gradient norm, the update-to-weight ratio, the largest attention logit, dead and saturated
fractions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainability.doctor.plot import _pyplot


def _series(monitor: Any, statistic: str) -> dict[str, tuple[list[int], list[float]]]:
    """Layer -> (steps, values) of one statistic, in recorded order."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for step, layer, name, value in monitor.rows:
        if name == statistic and math.isfinite(value):
            steps, values = out.setdefault(layer, ([], []))
            steps.append(step)
            values.append(value)
    return out


def _mark(ax: Any, findings: list[Any]) -> None:
    for f in findings:
        ax.axvline(f.step, color="red" if f.severity == "error" else "orange", lw=0.8, alpha=0.6)


def plot_monitor(monitor: Any, path: Path) -> Path:
    """Draw a :class:`~trainability.monitor.Monitor`'s records (``rows``, ``findings``, the losses) to ``path``."""
    import numpy as np

    plt = _pyplot()
    marks = [f for f in monitor.findings if f.step is not None]
    attention = _series(monitor, "attention_max_logit")
    panels = 5 if attention else 4
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.2 * panels), constrained_layout=True)

    ax = axes[0]
    losses = monitor.losses
    values = [v for v in losses.values]
    if values:
        steps = [losses.step_of(i) for i in range(len(values))]
        ax.plot(steps, values, color="tab:blue", lw=0.8, label="loss (every step)")
        finite = [v for v in values if math.isfinite(v)]
        if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
            ax.set_yscale("log")
    lr = _series(monitor, "lr").get("(model)")
    if lr:
        twin = ax.twinx()
        twin.plot(*lr, color="tab:green", lw=1, ls="--", label="learning rate")
        twin.set_ylabel("learning rate", color="tab:green")
    _mark(ax, marks)
    ax.set_ylabel("loss")
    title = "; ".join(f"{f.kind} at step {f.step}" for f in marks[:3]) or "no finding"
    ax.set_title(f"loss (red: errors, orange: warnings) - {title}", fontsize=9)

    ax = axes[1]
    grad = {(r[0], r[1]): r[3] for r in monitor.rows if r[2] == "grad_norm"}
    layers = list(dict.fromkeys(r[1] for r in monitor.rows if r[2] == "weight_grad_norm"))
    recorded = sorted({r[0] for r in monitor.rows if r[2] == "grad_norm"})
    if recorded and layers:
        grid = np.array([[math.log10(grad[(s, n)]) if grad.get((s, n), 0) > 0 else np.nan for s in recorded] for n in layers])
        mesh = ax.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
        fig.colorbar(mesh, ax=ax, label="log10 gradient norm at the output")
        ax.set_yticks(range(len(layers)), layers, fontsize=6 if len(layers) > 30 else 8)
        ticks = list(range(0, len(recorded), max(1, len(recorded) // 10)))
        ax.set_xticks(ticks, [str(recorded[i]) for i in ticks])
    ax.set_xlabel("recorded step")
    ax.set_title("gradient norm per weight layer", fontsize=9)

    ax = axes[2]
    for layer, (steps, ratios) in _series(monitor, "update_ratio").items():
        if any(r > 0 for r in ratios):
            ax.plot(steps, [max(r, 1e-12) for r in ratios], lw=0.8, label=layer)
    ax.set_yscale("log")
    ax.axhline(1e-3, color="gray", ls=":", lw=1)
    ax.axhline(1e-2, color="gray", ls="--", lw=1)
    _mark(ax, marks)
    ax.set_ylabel("update RMS / weight RMS")
    ax.set_title("update-to-weight ratio per layer (dotted: 1e-3, the rule of thumb; dashed: 1e-2)", fontsize=9)
    if 0 < len(ax.lines) - 2 <= 12:
        ax.legend(loc="best", fontsize=6)

    n = 3
    if attention:
        ax = axes[n]
        for layer, (steps, logits) in attention.items():
            ax.plot(steps, [max(v, 1e-3) for v in logits], lw=1, label=layer)
        ax.set_yscale("log")
        ax.axhline(1e3, color="orange", ls="--", lw=1)
        ax.axhline(1e4, color="red", ls="--", lw=1)
        _mark(ax, marks)
        ax.set_ylabel("largest q.k / sqrt(d)")
        ax.set_title("largest attention logit per attention layer (1e3: the loss degrades; 1e4: runs diverged)", fontsize=9)
        if len(attention) <= 12:
            ax.legend(loc="best", fontsize=6)
        n += 1

    ax = axes[n]
    for statistic, color in (("dead_fraction", "tab:gray"), ("saturated_fraction", "tab:purple")):
        by_step: dict[int, list[float]] = {}
        for step, _, name, value in monitor.rows:
            if name == statistic:
                by_step.setdefault(step, []).append(value)
        if by_step:
            xs = sorted(by_step)
            ax.plot(xs, [max(by_step[s]) for s in xs], color=color, lw=2, label=f"{statistic.replace('_', ' ')} (worst layer)")
            ax.plot(xs, [sum(by_step[s]) / len(by_step[s]) for s in xs], color=color, lw=1, ls="--",
                    label=f"{statistic.replace('_', ' ')} (mean)")  # fmt: skip
    _mark(ax, marks)
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction")
    if ax.lines:
        ax.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_monitor"]
