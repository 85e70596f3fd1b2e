"""Which initialization each weight gets under ``initialize(model, init="auto")``, by family.

The textbook's table (Glorot / He / LeCun by the activation that follows) is for plain stacks:
there the weights alone carry the signal's scale from layer to layer. Other families hold their
scale by design, and ``auto`` follows each one's published scheme:

==================  ==========================================================================
family              scheme
==================  ==========================================================================
plain stack         ``textbook``: Glorot before none/tanh/sigmoid/softmax, He before the ReLU
                    family, LeCun before SELU (Glorot & Bengio 2010; He et al. 2015;
                    Klambauer et al. 2017)
residual blocks     ``transformer``: every Linear, Conv1D, attention and embedding weight
with LayerNorm /    N(0, 0.02), as BERT, GPT-2 and ViT (``initializer_range``); in pre-norm
RMSNorm             blocks (the block starts with its norm) each branch's last layer is scaled
                    by 1/sqrt(branches) (``gpt2_residual``; Radford et al. 2019, nanoGPT)
residual blocks     ``resnet``: the textbook's table (He before ReLU), and the last BatchNorm of
with BatchNorm      each block starts at weight 0 so that each block starts as the identity
                    (``zero_gamma``; Goyal et al. 2017)
residual blocks     ``fixup``: each branch's last layer 0, the branch's other layers the table's
without norms       init scaled by L^(-1/(2m-2)) for L branches of m layers (Zhang et al. 2019)
recurrent layers    ``recurrent``: input-hidden weights Glorot uniform per gate, hidden-hidden
                    orthogonal per gate (Saxe et al. 2014), biases 0 and the LSTM forget-gate
                    bias 1 (Gers et al. 2000; Jozefowicz et al. 2015), as Keras' LSTM
embeddings          N(0, 0.02) in the transformer family, else N(0, 1) (PyTorch's default)
==================  ==========================================================================

Layers outside residual blocks (stems, heads) follow the family: the transformer's N(0, 0.02),
else the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from trainability import adapters
from trainability import init as inits
from trainability.graph import Block, Link, is_norm
from trainability.table import recommended_init

#: The transformer family's weight std (BERT, GPT-2, ViT ``initializer_range``).
TRANSFORMER_STD = 0.02
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclass(frozen=True)
class Choice:
    """The initializer for one weight, its display name, the scheme it comes from, and a
    factor applied after drawing (Fixup, GPT-2's residual scaling)."""

    initializer: inits.Initializer
    name: str
    scheme: str
    factor: float = 1.0


@dataclass
class Structure:
    """What ``auto`` needs to know about a model: its residual blocks and their norms."""

    blocks: list[Block]
    family: str  # "plain", "transformer", "resnet" or "fixup"
    block_of: dict[str, Block]  # weight module name -> its innermost residual block
    branch_ends: dict[str, str]  # weight module name -> block, for the last layer of each branch
    zero_gamma: list[str]  # BatchNorm modules to start at weight 0
    branch_sizes: dict[str, int]  # block -> weight layers per branch

    @property
    def branches(self) -> int:
        return max(len(self.branch_ends), 1)


def _branch_ends(block: Block) -> list[str]:
    """The last weight layer of each branch: one followed by a normalization before the next
    weight layer (a pre-norm block's attention output projection), and the block's last."""
    weights = [(i, n) for i, (n, m) in enumerate(block.order) if not is_norm(m)]
    ends = []
    for (i, name), nxt in zip(weights, weights[1:], strict=False):
        if any(is_norm(m) for _, m in block.order[i + 1 : nxt[0]]):
            ends.append(name)
    if weights:
        ends.append(weights[-1][1])
    return ends


def analyse(blocks: list[Block]) -> Structure:
    """The family of a model from its residual blocks (:func:`trainability.graph.residual_blocks`)."""
    norms = [m for b in blocks for _, m in b.order if is_norm(m)]
    if not blocks:
        family = "plain"
    elif any(isinstance(m, _BATCH_NORMS) for m in norms):
        family = "resnet"
    elif norms:
        family = "transformer"
    else:
        family = "fixup"
    block_of = {n: b for b in blocks for n, m in b.order if not is_norm(m)}
    ends: dict[str, str] = {}
    zero_gamma: list[str] = []
    sizes: dict[str, int] = {}
    for b in blocks:
        weights = [n for n, m in b.order if not is_norm(m)]
        if family == "transformer":
            pre_norm = bool(b.order) and is_norm(b.order[0][1])
            if pre_norm:
                ends.update(dict.fromkeys(_branch_ends(b), b.name))
        elif family == "resnet":
            batch_norms = [n for n, m in b.order if isinstance(m, _BATCH_NORMS)]
            zero_gamma += batch_norms[-1:]
        elif family == "fixup":
            found = _branch_ends(b)
            ends.update(dict.fromkeys(found, b.name))
            sizes[b.name] = max(1, len(weights) // max(len(found), 1))
    return Structure(blocks, family, block_of, ends, zero_gamma, sizes)


def choose(weight: adapters.Weight, link: Link | None, structure: Structure) -> Choice:
    """The ``auto`` choice for one weight (see the module docstring)."""
    module = weight.module_name
    if weight.role in ("recurrent_input", "recurrent_hidden"):
        if weight.role == "recurrent_hidden":
            return Choice(inits.Orthogonal(), "orthogonal", "recurrent")
        return Choice(inits.get("glorot_uniform"), "glorot_uniform", "recurrent")  # type: ignore[arg-type]
    if structure.family == "transformer":
        std = TRANSFORMER_STD
        if module in structure.branch_ends:
            factor = 1 / math.sqrt(structure.branches)
            return Choice(inits.RandomNormal(0.0, std), f"random_normal({std:g}/sqrt({structure.branches}))",
                          "gpt2_residual", factor)  # fmt: skip
        return Choice(inits.RandomNormal(0.0, std), f"random_normal({std:g})", "transformer")
    if weight.role == "embedding":
        return Choice(inits.RandomNormal(0.0, 1.0), "random_normal(1)", "embedding")
    if weight.role.startswith("attention"):
        return Choice(inits.get("glorot_uniform"), "glorot_uniform", "textbook")  # type: ignore[arg-type]
    # a weight feeding another of its module (a separable conv's depthwise kernel) feeds no activation
    name = recommended_init(link.activation if link is not None and not weight.inner else None)
    initializer = inits.get(name)
    if structure.family == "fixup" and module in structure.block_of:
        block = structure.block_of[module].name
        if module in structure.branch_ends:
            return Choice(initializer, "zeros", "fixup", 0.0)  # type: ignore[arg-type]
        m = structure.branch_sizes.get(block, 2)
        factor = structure.branches ** (-1 / (2 * m - 2)) if m > 1 else 1.0
        return Choice(initializer, f"{name} x{factor:.3g}", "fixup", factor)  # type: ignore[arg-type]
    scheme = "resnet" if structure.family == "resnet" and module in structure.block_of else "textbook"
    return Choice(initializer, name, scheme)  # type: ignore[arg-type]


#: (gate index, gates) of the LSTM forget gate: PyTorch stacks (input, forget, cell, output).
LSTM_FORGET_GATE = (1, 4)


__all__ = ["LSTM_FORGET_GATE", "TRANSFORMER_STD", "Choice", "Structure", "analyse", "choose"]
