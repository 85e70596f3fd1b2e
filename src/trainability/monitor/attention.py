"""The largest pre-softmax attention logit ``q.k / sqrt(d_head)`` of each attention layer, read
off the query and key projections' outputs at a recorded step.

Hooks sit on the projections, not on the attention's softmax, so the value is the same whatever
computes the attention (eager, PyTorch's SDPA, flash kernels; ``output_attentions`` is never
needed): for ``nn.MultiheadAttention`` (and ``nn.TransformerEncoderLayer``'s) the query and key
are projected from the module's inputs with its packed weights; for a packed q/k/v projection
(GPT-2's ``c_attn``, ``qkv``) they are blocks of its output; for separate projections (BERT, ViT,
Llama) their outputs, or the outputs of the layer norms after them where queries and keys are
normalized (qk-layernorm: OLMo 2, Qwen3). The logits are computed for the batch's first sample over every pair of
positions (masks are not applied: a masked logit is still a logit the weights produce), up to
:data:`MAX_QUERIES` query positions. Rotary position embeddings, applied after the projection,
are left out: they rotate q and k and keep their norms, whose growth is what makes logits grow
(Wortsman et al. 2023).

>>> import torch
>>> from torch import nn
>>> attention = nn.MultiheadAttention(16, 4, batch_first=True)
>>> probe = AttentionProbe(attention)
>>> probe.attach(); _ = attention(*(3 * [torch.randn(2, 5, 16)])); probe.detach()
>>> sorted(probe.values())
['']
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainability import adapters
from trainability.graph import first_tensor

#: Query positions used for the logits of one layer (the first ones).
MAX_QUERIES = 512


def _sample0(t: torch.Tensor, batch_first: bool = True) -> torch.Tensor:
    """The first sample of a (batch, positions, features) tensor, as (positions, features)."""
    if t.dim() == 2:
        return t
    t = t if batch_first else t.transpose(0, 1)
    return t.reshape(t.shape[0], -1, t.shape[-1])[0]


def max_logit(q: torch.Tensor, k: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``max q_i . k_j / sqrt(d)`` over heads and pairs, for one sample's (positions, features)
    queries and keys; keys with fewer heads than queries are shared by groups of query heads."""
    q = q[:MAX_QUERIES].float()
    k = k.float()
    hq, hk = q.shape[-1] // head_dim, k.shape[-1] // head_dim
    q = q.reshape(q.shape[0], hq, head_dim).transpose(0, 1)
    k = k.reshape(k.shape[0], hk, head_dim).transpose(0, 1)
    if hk != hq and hk > 0 and hq % hk == 0:
        k = k.repeat_interleave(hq // hk, dim=0)
    return (q @ k.transpose(-1, -2)).amax() / math.sqrt(head_dim)


class AttentionProbe:
    """Hooks that compute each attention layer's largest logit on the passes they see."""

    def __init__(self, model: nn.Module | adapters.View) -> None:
        view = adapters.view(model)
        modules = dict(view.model.named_modules())
        self.layers = [a for a in adapters.attention_layers(view) if a.head_dim]
        self._modules = modules
        self._handles: list[Any] = []
        self.logits: dict[str, torch.Tensor] = {}
        self._pending: dict[str, dict[str, torch.Tensor]] = {}

    def attach(self) -> None:
        if self._handles:
            return
        for layer in self.layers:
            if layer.q_module == layer.k_module:
                module = self._modules[layer.q_module]
                if isinstance(module, nn.MultiheadAttention):
                    self._handles.append(module.register_forward_pre_hook(self._mha(layer), with_kwargs=True))
                else:
                    self._handles.append(module.register_forward_hook(self._packed(layer)))
            else:  # separate projections, or the normalizations after them (qk-layernorm)
                for part in ("q", "k"):
                    module = self._modules[getattr(layer, f"{part}_norm") or getattr(layer, f"{part}_module")]
                    self._handles.append(module.register_forward_hook(self._separate(layer, part)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._pending = {}

    def reset(self) -> None:
        self.logits = {}
        self._pending = {}

    def values(self) -> dict[str, torch.Tensor]:
        """Attention layer name -> its largest logit on the last recorded pass (0-d tensors)."""
        return self.logits

    def _keep(self, layer: adapters.Attention, value: torch.Tensor) -> None:
        if layer.name not in self.logits:  # the first call of the pass (a module reused is read once)
            self.logits[layer.name] = value.detach()

    def _mha(self, layer: adapters.Attention):  # noqa: ANN202 - a hook factory
        def hook(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not torch.is_grad_enabled() or layer.name in self.logits:
                return
            query = args[0] if args else kwargs.get("query")
            key = args[1] if len(args) > 1 else kwargs.get("key", query)
            if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor):
                return
            with torch.no_grad():
                q0, k0 = _sample0(query, module.batch_first), _sample0(key, module.batch_first)
                q = F.linear(q0, layer.q.tensor, layer.q.bias)
                k = F.linear(k0, layer.k.tensor, layer.k.bias)
                self._keep(layer, max_logit(q, k, layer.head_dim or q.shape[-1]))

        return hook

    def _packed(self, layer: adapters.Attention):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            out = first_tensor(output)
            if not torch.is_grad_enabled() or out is None or layer.name in self.logits or layer.q.rows is None:
                return
            with torch.no_grad():
                x = _sample0(out.detach())
                q = x[..., layer.q.rows[0] : layer.q.rows[1]]
                k = x[..., layer.k.rows[0] : layer.k.rows[1]]  # type: ignore[index]
                self._keep(layer, max_logit(q, k, layer.head_dim or q.shape[-1]))

        return hook

    def _separate(self, layer: adapters.Attention, part: str):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            out = first_tensor(output)
            if not torch.is_grad_enabled() or out is None or layer.name in self.logits:
                return
            box = self._pending.setdefault(layer.name, {})
            x = out.detach()
            box[part] = _sample0(x.flatten(-2) if x.dim() == 4 else x)  # per-head norms see (batch, positions, heads, d)
            if "q" in box and "k" in box:
                with torch.no_grad():
                    self._keep(layer, max_logit(box["q"], box["k"], layer.head_dim or box["q"].shape[-1]))
                del self._pending[layer.name]

        return hook


__all__ = ["MAX_QUERIES", "AttentionProbe", "max_logit"]
