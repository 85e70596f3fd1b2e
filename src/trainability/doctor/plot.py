"""The doctor's picture: signal and gradient against depth, dead and saturated fractions."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("plotting needs matplotlib: pip install 'trainability[plot]'") from exc
    return plt


def plot_report(report: Any, path: Path) -> Path:
    """Draw a :class:`~trainability.doctor.report.Report` (its ``layers`` and ``findings``) to ``path``."""
    plt = _pyplot()
    weights = [s for s in report.layers if s.role == "weight" and s.std is not None]
    acts = [s for s in report.layers if s.role == "activation"]
    flagged = {name for f in report.findings for name in f.layers}
    panels = 2 + bool(acts) + bool(report.time)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3 * panels), sharex=False, constrained_layout=True)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
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

    stream = report.blocks if len(report.blocks) >= 2 else None
    ax = axes[0]
    if stream:
        series(ax, stream, positive([b.std for b in stream]), "residual stream std (entering each block)", "tab:blue")
        ax.set_xlabel("residual block (execution order)")
    else:
        series(ax, weights, positive([s.std for s in weights]), "pre-activation std (weight layer output)", "tab:blue")
        ax.set_xlabel("weight layer (execution order)")
    ax.set_yscale("log")
    ax.set_ylabel("activation std")
    ax.legend(loc="best", fontsize=8)

    ax = axes[1]
    if stream:
        series(ax, stream, positive([b.unit_grad_rms for b in stream]), "gradient reaching the residual stream", "tab:orange")
        ax.set_xlabel("residual block (execution order); red circles: blocks named in a finding")
    else:
        series(ax, weights, positive([s.unit_grad_rms or s.grad_rms for s in weights]),
               "gradient at the layer's output (per sample and unit)", "tab:orange")  # fmt: skip
        ax.set_xlabel("weight layer (execution order); red circles: layers named in a finding")
    ax.set_yscale("log")
    ax.set_ylabel("gradient")
    ax.legend(loc="best", fontsize=8)

    ax = axes[2] if acts else None
    if ax is not None:
        _units_panel(ax, acts)

    if report.time:
        ax = axes[-1]
        for t in report.time:
            ax.plot(range(len(t.grad_norms)), positive(t.grad_norms), marker=".", ms=3, lw=1.2,
                    label=f"{t.name} ({t.type})", color="tab:red" if t.name in flagged else None)  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylabel("gradient norm")
        ax.set_xlabel("time step (earliest first): the gradient reaching each step of the sequence")
        ax.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _units_panel(ax, acts) -> None:  # noqa: ANN001
    xs = list(range(len(acts)))
    dead = [s.dead_fraction if s.dead_fraction is not None else float("nan") for s in acts]
    sat = [s.saturated_fraction if s.saturated_fraction is not None else float("nan") for s in acts]
    ax.bar([x - 0.2 for x in xs], dead, width=0.4, label="dead units", color="tab:gray")
    ax.bar([x + 0.2 for x in xs], sat, width=0.4, label="saturated outputs", color="tab:purple")
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.6, len(acts) - 0.4)
    ax.set_ylabel("fraction")
    ax.set_xlabel("activation layer (execution order)")
    ax.legend(loc="best", fontsize=8)
