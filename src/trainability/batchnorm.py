"""Fold eval-mode batch normalization into the neighbouring weight layer, for inference.

In eval mode BatchNorm is an affine map per channel, ``y = s * x + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - s * running_mean``, so it folds into:

- the Linear/Conv before it (BN right after the layer, the textbook's "before the activation"):
  ``W' = s * W`` row-wise (per output channel), ``b' = s * b + t``;
- the Linear after it (BN after the activation, feeding a Linear): ``W' = W * s`` column-wise,
  ``b' = b + W t``. (Not into a following convolution: zero padding would see ``t`` differently.)

>>> import torch
>>> from trainability import mlp
>>> model = mlp(8, 2, depth=3, width=16, batch_norm="before").eval()
>>> folded = fold_batchnorm(model)
>>> x = torch.randn(4, 8)
>>> bool(torch.allclose(folded(x), model(x), atol=1e-5))
True
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

_BEFORE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    scale = torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
    if bn.affine:
        scale = scale * bn.weight
        shift = bn.bias - scale * bn.running_mean
    else:
        shift = -scale * bn.running_mean
    return scale.detach(), shift.detach()


def _fold_into_previous(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale, shift = _affine(bn)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    with torch.no_grad():
        layer.weight.mul_(scale.reshape(shape))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
        new_bias = bias * scale + shift
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias)
        else:
            layer.bias.copy_(new_bias)


def _fold_into_next(bn: nn.modules.batchnorm._BatchNorm, layer: nn.Linear) -> None:
    scale, shift = _affine(bn)
    with torch.no_grad():
        extra = layer.weight @ shift
        layer.weight.mul_(scale.unsqueeze(0))
        if layer.bias is None:
            layer.bias = nn.Parameter(extra)
        else:
            layer.bias.add_(extra)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` in eval mode with every foldable BatchNorm folded into its
    neighbouring weight layer and replaced by ``nn.Identity``; the original is untouched."""
    folded = copy.deepcopy(model).eval()
    try:
        graph = fx.symbolic_trace(folded).graph
    except Exception as exc:
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx to find BatchNorm neighbours: {exc}") from exc
    modules = dict(folded.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats or calls[node.target] != 1:
            continue
        prev = node.args[0] if node.args else None
        users = list(node.users)
        prev_layer = modules.get(prev.target) if isinstance(prev, fx.Node) and prev.op == "call_module" else None
        next_layer = modules.get(users[0].target) if len(users) == 1 and users[0].op == "call_module" else None
        if isinstance(prev_layer, _BEFORE) and len(prev.users) == 1 and calls[prev.target] == 1:
            _fold_into_previous(prev_layer, bn)
        elif isinstance(next_layer, nn.Linear) and calls[users[0].target] == 1 and isinstance(bn, nn.BatchNorm1d):
            _fold_into_next(bn, next_layer)
        else:
            continue
        parent_name, _, child = node.target.rpartition(".")
        setattr(folded.get_submodule(parent_name) if parent_name else folded, child, nn.Identity())
    return folded
