"""Matplotlib in the pages' style: one colour per activation everywhere, PNG bytes out.

Colours are the Okabe-Ito palette (readable with colour-vision deficiencies) for the textbook's
six activations, then matplotlib's tab10 for the others, so an activation has the same colour
in every figure and in the tables' chips.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ACTIVATION_COLORS = {
    "selu": "#0072B2",
    "elu": "#009E73",
    "leaky_relu": "#56B4E9",
    "relu": "#E69F00",
    "tanh": "#CC79A7",
    "sigmoid": "#D55E00",
}
_OTHERS = ("#1f77b4", "#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd", "#2ca02c", "#d62728")
LINESTYLES = ("-", "--", ":", "-.")


def color(name: str, index: int = 0) -> str:
    """The colour of an activation (or any label): fixed for the textbook's six, else by index."""
    return ACTIVATION_COLORS.get(name, _OTHERS[index % len(_OTHERS)])


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ValueError("reports need matplotlib: pip install 'trainability[report]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def style() -> Iterator[Any]:
    """``with style() as plt:`` a clean look: light grid, no top/right spines, readable sizes."""
    plt = pyplot()
    rc = {
        "figure.dpi": 100, "savefig.dpi": 110, "font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold",
        "axes.labelsize": 10, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.color": "#e3e7ee", "grid.linewidth": 0.8, "axes.edgecolor": "#9aa3b2", "axes.labelcolor": "#1d2433",
        "xtick.color": "#5b6475", "ytick.color": "#5b6475", "legend.frameon": False, "legend.fontsize": 9,
        "lines.linewidth": 1.8,
    }  # fmt: skip
    with plt.rc_context(rc):
        yield plt


def png(figure: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    finally:
        plt.close(figure)
    return buffer.getvalue()
