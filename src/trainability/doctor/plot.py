"""The doctor's picture: signal and gradient against depth, dead and saturated fractions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainability.doctor.report import Report


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("plotting needs matplotlib: pip install 'trainability[plot]'") from exc
    return plt


def plot_report(report: Report, path: Path) -> Path:
    plt = _pyplot()
    weights = [s for s in report.layers if s.role == "weight"]
    acts = [s for s in report.layers if s.role == "activation"]
    flagged = {name for f in report.findings for name in f.layers}
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=False, constrained_layout=True)
    title = "healthy" if report.healthy else ", ".join(sorted({f.kind for f in report.findings}))
    fig.suptitle(f"trainability doctor: {title}", fontsize=13, color="tab:green" if report.healthy else "tab:red")

    def series(ax, layers, values, label, color):
        xs = list(range(len(layers)))
        ax.plot(xs, values, marker="o", ms=3, lw=1.2, label=label, color=color)
        bad = [(i, v) for i, (s, v) in enumerate(zip(layers, values, strict=True)) if s.name in flagged and v is not None]
        if bad:
            ax.scatter(*zip(*bad, strict=True), s=40, facecolors="none", edgecolors="red", zorder=3)

    def positive(values):
        return [v if v is not None and v > 0 else float("nan") for v in values]

    ax = axes[0]
    series(ax, weights, positive([s.std for s in weights]), "pre-activation std (weight layer output)", "tab:blue")
    ax.set_yscale("log")
    ax.set_ylabel("activation std")
    ax.set_xlabel("weight layer (execution order)")
    ax.legend(loc="best", fontsize=8)

    ax = axes[1]
    series(ax, weights, positive([s.grad_rms for s in weights]), "gradient RMS at the layer's output", "tab:orange")
    ax.set_yscale("log")
    ax.set_ylabel("gradient")
    ax.set_xlabel("weight layer (execution order); red circles: layers named in a finding")
    ax.legend(loc="best", fontsize=8)

    ax = axes[2]
    xs = list(range(len(acts)))
    dead = [s.dead_fraction if s.dead_fraction is not None else float("nan") for s in acts]
    sat = [s.saturated_fraction if s.saturated_fraction is not None else float("nan") for s in acts]
    ax.bar([x - 0.2 for x in xs], dead, width=0.4, label="dead units", color="tab:gray")
    ax.bar([x + 0.2 for x in xs], sat, width=0.4, label="saturated outputs", color="tab:purple")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    ax.set_xlabel("activation layer (execution order)")
    ax.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
