"""The words every adapter speaks: a :class:`Weight` (one weight matrix, or a block of a packed
one, with its fans read off its real layout) and an :class:`Attention` layer's query and key.

Nothing here knows a framework: :mod:`trainability.adapters.pytorch` and
:mod:`trainability.adapters.keras` describe their models in these terms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Role = Literal[
    "dense", "conv", "embedding", "attention_q", "attention_k", "attention_v", "attention_out",
    "recurrent_input", "recurrent_hidden",
]  # fmt: skip

#: Gates stacked along dim 0 of a recurrent weight, by mode: LSTM (input, forget, cell, output),
#: GRU (reset, update, new).
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1, "LSTMCell": 4, "GRUCell": 3, "RNNCell": 1}


@dataclass(frozen=True, eq=False)
class Weight:
    """One weight matrix (or a block of rows of a packed one) and how it is applied.

    ``rows`` selects a block along dim 0 (q, k or v of a packed projection); ``gates`` counts
    the gate matrices stacked along dim 0 (4 for an LSTM), each with fans ``fans``.
    """

    name: str
    module_name: str
    module: nn.Module
    parameter: str
    role: Role
    fans: tuple[int, int]
    rows: tuple[int, int] | None = None
    gates: int = 1
    transposed: bool = False  # stored (in, out) and applied as x @ W
    inner: bool = False  # feeds another weight of its module, not the activation (a separable conv's depthwise kernel)

    @property
    def tensor(self) -> torch.Tensor:
        """The weight as stored (a view for a block of a packed parameter: rows of an ``(out,
        in)`` weight, columns of an ``(in, out)`` one)."""
        p = self.parameter_tensor
        if self.rows is None:
            return p
        return p[:, self.rows[0] : self.rows[1]] if self.transposed else p[self.rows[0] : self.rows[1]]

    @property
    def parameter_tensor(self) -> nn.Parameter:
        return getattr(self.module, self.parameter)

    def slice(self, full: torch.Tensor) -> torch.Tensor:
        """This weight's block of a tensor shaped like its parameter (its gradient, say)."""
        if self.rows is None:
            return full
        return full[:, self.rows[0] : self.rows[1]] if self.transposed else full[self.rows[0] : self.rows[1]]

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias added to this weight's outputs (its block of a packed one), or ``None``."""
        b = getattr(self.module, "in_proj_bias" if self.parameter == "in_proj_weight" else "bias", None)
        if not isinstance(b, torch.Tensor):
            return None
        return b if self.rows is None else b[self.rows[0] : self.rows[1]]

    def blocks(self) -> Iterator[torch.Tensor]:
        """The matrices an initializer fills one at a time (one per gate), as views."""
        t = self.tensor
        n = t.shape[0] // self.gates
        for g in range(self.gates):
            yield t[g * n : (g + 1) * n]

    @property
    def numel(self) -> int:
        return self.tensor.numel()




def join(name: str, part: str) -> str:
    """A child's name under ``name`` (the model itself is ``""``)."""
    return f"{name}.{part}" if name else part


@dataclass(frozen=True, eq=False)
class Attention:
    """Where an attention layer's query and key come from: ``q`` and ``k`` are weights (blocks of
    one packed projection or two projections); ``q_module``/``k_module`` the modules applying
    them, which see the attention's input. ``head_dim`` is the size of one head (the logits are
    ``q.k / sqrt(head_dim)`` per head; fewer key heads than query heads share keys, as in
    grouped-query attention), ``None`` where the model does not say. ``q_norm``/``k_norm`` name
    the modules that normalize queries and keys after their projection (qk-layernorm: OLMo 2,
    Qwen3, Gemma 3), whose outputs are what the dot product sees."""

    name: str
    q: Weight
    k: Weight
    q_module: str
    k_module: str
    head_dim: int | None = None
    q_norm: str | None = None
    k_norm: str | None = None



__all__ = ["GATES", "Attention", "Role", "Weight", "join"]


@dataclass(frozen=True)
class Stream:
    """A residual stream read off a model's own layer graph (a Keras functional model, whose
    blocks are runs of layers joined by ``Add``, not modules of their own).

    ``blocks`` name each residual block by the layer that adds its branch back; ``enters[i]`` is
    the module whose output is the stream entering block ``i`` (the branch's input and the
    skip); ``leaves`` the module whose output leaves the last block; ``members[block]`` the
    modules inside each block (its branch, the addition and a normalization after it), in graph
    order."""

    blocks: tuple[str, ...]
    enters: tuple[str, ...]
    leaves: str
    members: dict[str, tuple[str, ...]]
