"""Module surgery for repair's candidates: what a model runs, in what order, and how to replace
one of its modules in place.

The doctor names layers by module name (``"0"``, ``"blocks.3"``), by weight (``"rnn.weight_hh_l0"``)
or by a point of the residual stream (``"blocks.3:output"``); :func:`module_name` maps each to
the module. One probe pass in eval mode (:func:`trace`) records the order in which modules run,
which activation module follows each weight layer (through normalizations, dropout and reshaping,
as :func:`trainability.graph.find_consumers` does), and each weight layer's output rank.
Activations applied as functions inside ``forward`` (``F.relu``) have no module to replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainability import adapters
from trainability.graph import (
    activation_of,
    block_groups,
    hooked_modules,
    is_norm,
    is_transparent,
    is_weight_layer,
    probe_calls,
    skip_connections,
)


def module_name(model: nn.Module, name: str) -> str | None:
    """The module a doctor's layer name refers to (a module, a weight of one, a stream point)."""
    modules = dict(model.named_modules())
    name = name.removesuffix(":output")
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name if name in modules else None


def replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the module ``name`` is (``setattr`` on its parent); return the old one."""
    parent, _, child = name.rpartition(".")
    owner = model.get_submodule(parent)
    old = getattr(owner, child)
    setattr(owner, child, new)
    return old


@dataclass
class Structure:
    """What one probe pass saw: modules in execution order, the activation module after each
    weight layer (``None`` for none or a function), each weight layer's output rank."""

    order: list[str]
    weights: list[str]  # every weight module, registration order
    activation_after: dict[str, str | None] = field(default_factory=dict)
    output_rank: dict[str, int] = field(default_factory=dict)
    skips: bool = False
    blocks: list[list[str]] = field(default_factory=list)  # groups of sibling blocks (graph.block_groups)

    def feeding(self, activation: str) -> list[str]:
        """The weight layers whose output this activation module consumes."""
        return [w for w, a in self.activation_after.items() if a == activation]


def trace(model: nn.Module, sample: Any) -> Structure:
    """One eval-mode, no-grad pass on ``sample`` with a hook on every module a capture watches."""
    watched = hooked_modules(model)
    order: list[str] = []
    ranks: dict[str, int] = {}
    for name, _, rank in probe_calls(model, sample):
        if name not in ranks:
            order.append(name)
            ranks[name] = rank
    modules = {n: m for n, m, _ in watched}
    after: dict[str, str | None] = {}
    for i, name in enumerate(order):
        if not is_weight_layer(modules[name]):
            continue
        after[name] = None
        for nxt in order[i + 1 :]:
            if activation_of(modules[nxt]) is not None:
                after[name] = nxt
                break
            if not (is_norm(modules[nxt]) or is_transparent(modules[nxt])):
                break
    skips = skip_connections(model)
    weights = [n for n, _, _ in adapters.weight_modules(model)]
    return Structure(order, weights, after, {n: ranks[n] for n in after}, bool(skips), block_groups(model))


def norm_for(module: nn.Module, rank: int, norm: str) -> tuple[str, int] | None:
    """The normalization to put after a weight layer: ``(torch.nn class name, features)``, or
    ``None`` where none fits. Batch norm: ``BatchNorm1d`` after a Linear with 2-D output,
    ``BatchNorm{1,2,3}d`` after a convolution; layer norm (and batch norm where the output is a
    sequence, which BatchNorm1d would read along the wrong axis): ``LayerNorm`` over a Linear's
    features."""
    if isinstance(module, nn.Linear):
        if norm == "batch" and rank == 2:
            return "BatchNorm1d", module.out_features
        return ("LayerNorm", module.out_features) if rank >= 2 else None
    convs = {nn.Conv1d: "BatchNorm1d", nn.Conv2d: "BatchNorm2d", nn.Conv3d: "BatchNorm3d"}
    for kind, batch_norm in convs.items():
        if type(module) is kind and norm == "batch":
            return batch_norm, module.out_channels
    return None


class LSTMAsRNN(nn.LSTM):
    """An ``nn.LSTM`` that takes and returns what ``nn.RNN`` does: ``forward(input, h0=None)``
    returns ``(output, h_n)`` (the cell state stays inside), so it drops in where a plain RNN was.

    >>> import torch
    >>> out, h = LSTMAsRNN(3, 5, batch_first=True)(torch.randn(2, 7, 3))
    >>> tuple(out.shape), tuple(h.shape)
    ((2, 7, 5), (1, 2, 5))
    """

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, torch.Tensor]:  # noqa: A002 - nn.RNN's own name
        state = None if hx is None else (hx, torch.zeros_like(hx))
        output, (h, _) = super().forward(input, state)
        return output, h
