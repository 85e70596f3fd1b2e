"""HTML pages shared by ``compare`` and ``repair``: layout and figure style, no computation.

A feature computes its tables and figures, then hands :class:`Section` objects to
:func:`write_page`, which writes one self-contained file (inline PNGs and style, no script,
nothing fetched).
"""

from trainability.reporting.figures import ACTIVATION_COLORS, color, png, style
from trainability.reporting.page import (
    Section,
    Tile,
    badge,
    bar,
    chip,
    code_block,
    escape,
    image,
    paragraph,
    render,
    table,
    write_page,
)

__all__ = [
    "ACTIVATION_COLORS",
    "Section",
    "Tile",
    "badge",
    "bar",
    "chip",
    "code_block",
    "color",
    "escape",
    "image",
    "paragraph",
    "png",
    "render",
    "style",
    "table",
    "write_page",
]
