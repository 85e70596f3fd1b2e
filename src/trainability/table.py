"""The textbook's table: which initialization goes with which activation.

=============  ================================================  =================
initialization activation functions                              variance (normal)
=============  ================================================  =================
Glorot         none, tanh, logistic (sigmoid), softmax           1 / fan_avg
He             ReLU and its variants (leaky, randomized, ...)    2 / fan_in
LeCun          SELU                                              1 / fan_in
=============  ================================================  =================

>>> recommended_init("selu"), recommended_init("leaky_relu"), recommended_init("tanh")
('lecun_normal', 'he_normal', 'glorot_uniform')
"""

from __future__ import annotations

from typing import Any

from torch import nn

from trainability import activations
from trainability._text import format_rows

_FAMILIES = (
    ("Glorot", "glorot_uniform", ("glorot_uniform", "glorot_normal"), "1 / fan_avg",
     "Glorot & Bengio 2010"),
    ("He", "he_normal", ("he_uniform", "he_normal"), "2 / fan_in", "He et al. 2015"),
    ("LeCun", "lecun_normal", ("lecun_uniform", "lecun_normal"), "1 / fan_in",
     "LeCun et al. 1998; Klambauer et al. 2017"),
)  # fmt: skip


def recommended_init(activation: str | nn.Module | activations.ActivationSpec | None) -> str:
    """The initializer name the table pairs with this activation (``None`` means no activation)."""
    if activation is None:
        return "glorot_uniform"
    return activations.get(activation).recommended_init


def rows() -> list[dict[str, Any]]:
    """The table, one dict per initialization family, with the registered activations in it."""
    out = []
    for family, default, initializers, variance, source in _FAMILIES:
        members = [s.name for s in activations.REGISTRY.values() if s.recommended_init == default]
        out.append(
            {
                "initialization": family,
                "activations": members,
                "variance": variance,
                "initializers": list(initializers),
                "default": default,
                "source": source,
            }
        )
    return out


def format_table() -> str:
    """The table as aligned text, as ``trainability table`` prints it."""
    header = ("initialization", "activation functions", "variance (normal)", "initializers")
    body = [
        (r["initialization"], ", ".join(r["activations"]), r["variance"], ", ".join(r["initializers"]))
        for r in rows()
    ]
    return format_rows(header, body)
