"""Module surgery for repair's candidates: what a model runs, in what order, which of its layers
end residual branches, how long its recurrent layers' sequences are, and how to replace one of its
modules in place.

The doctor names layers by module name (``"0"``, ``"blocks.3"``), by weight (``"rnn.weight_hh_l0"``)
or by a point of the residual stream (``"blocks.3:output"``); :func:`module_name` maps each to
the module. One probe pass in eval mode (:func:`trace`) records the order in which modules run,
which activation module follows each weight layer (through normalizations, dropout and reshaping,
as :func:`trainability.graph.find_consumers` does), and each weight layer's output rank.
Activations applied as functions inside ``forward`` (``F.relu``) have no module to replace.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from trainability import adapters
from trainability.graph import (
    activation_of,
    block_groups,
    evaluating,
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
    branches: list[Branch] = field(default_factory=list)  # residual branches on the traced graph
    steps: dict[str, int] = field(default_factory=dict)  # recurrent module -> time steps it reads

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
    return Structure(order, weights, after, {n: ranks[n] for n in after}, bool(skips), block_groups(model),
                     residual_branches(model), sequence_lengths(model, sample))  # fmt: skip


@dataclass(frozen=True)
class Branch:
    """A residual branch ``x + f(x)``: ``end`` is the weight layer whose output joins the stream,
    ``inner`` the branch's other weight layers (execution order); ``normalized`` whether a
    normalization layer runs inside the branch."""

    end: str
    inner: tuple[str, ...]
    normalized: bool

    @property
    def layers(self) -> tuple[str, ...]:
        return (*self.inner, self.end)


_ADDS = (operator.add, operator.iadd, torch.add)


def residual_branches(model: nn.Module) -> list[Branch]:
    """The residual branches of a model, found on its traced graph (``torch.fx``), whoever adds
    them: a block module, or a loop in the parent's ``forward`` (``h = h + b(relu(a(h)))``). An
    addition is residual when every module that feeds one operand (the stream) also feeds the
    other (the branch): the branch's layers are those that feed only the second. Two parallel
    branches added together, or a projection shortcut, are not. ``[]`` for a plain stack or a
    model that cannot be traced (``transformers`` models: their blocks are found as modules)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable: the module-level view is used instead
        return []
    modules = dict(model.named_modules())
    weights = {n for n, _, _ in adapters.weight_modules(model)}
    feeding: dict[fx.Node, frozenset[str]] = {}
    position: dict[str, int] = {}
    branches: list[Branch] = []
    for node in graph.nodes:
        upstream = frozenset().union(*(feeding[a] for a in node.all_input_nodes if a in feeding))
        if node.op == "call_module":
            position.setdefault(str(node.target), len(position))
            upstream = upstream | {str(node.target)}
        feeding[node] = upstream
        add = (node.op == "call_function" and any(node.target is f for f in _ADDS)) or (
            node.op == "call_method" and node.target in ("add", "add_"))  # fmt: skip
        operands = [a for a in node.args[:2] if isinstance(a, fx.Node)]
        if not add or len(operands) != 2:
            continue
        a, b = (feeding.get(o, frozenset()) for o in operands)
        if a < b:
            only = b - a
        elif b < a:
            only = a - b
        else:
            continue
        layers = sorted((n for n in only if n in weights), key=position.__getitem__)
        if layers:
            normalized = any(is_norm(modules[n]) for n in only if n in modules)
            branches.append(Branch(layers[-1], tuple(layers[:-1]), normalized))
    return branches


RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)


def sequence_lengths(model: nn.Module, sample: Any) -> dict[str, int]:
    """The number of time steps each ``nn.RNN``/``nn.LSTM``/``nn.GRU`` reads on ``sample`` (one
    eval-mode pass): what chrono initialization needs (Tallec & Ollivier 2018)."""
    from trainability.batches import Batch

    found: dict[str, int] = {}
    recurrent = [(n, m) for n, m in model.named_modules() if isinstance(m, RECURRENT)]
    if not recurrent:
        return found

    def hook(name: str):  # noqa: ANN202
        def record(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.dim() == 3:
                found.setdefault(name, int(x.shape[1] if module.batch_first else x.shape[0]))
            elif isinstance(x, torch.Tensor) and x.dim() == 2:  # unbatched: (steps, features)
                found.setdefault(name, int(x.shape[0]))

        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in recurrent]
    try:
        with evaluating(model), torch.no_grad():
            Batch.of(sample)(model)
    except Exception:  # noqa: BLE001 - the lengths are a hint; the trace itself has run
        pass
    finally:
        for h in handles:
            h.remove()
    return found


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


class QKNorm(nn.Module):
    """A query or key projection followed by layer norm over each head's features
    (qk-layernorm; Dehghani et al. 2023, Wortsman et al. 2024): the attention logit
    ``q . k / sqrt(d)`` can then no longer grow with the norms of q and k. ``parts`` and
    ``normalize`` cover packed projections: GPT-2's ``c_attn`` outputs q, k and v side by side
    (``parts=3, normalize=(0, 1)``).

    >>> import torch
    >>> q = QKNorm(nn.Linear(16, 16), heads=4, head_dim=4)
    >>> tuple(q(torch.randn(2, 5, 16)).shape)
    (2, 5, 16)
    """

    def __init__(self, projection: nn.Module, heads: int, head_dim: int, parts: int = 1,
                 normalize: tuple[int, ...] = (0,)) -> None:  # fmt: skip
        super().__init__()
        self.projection = projection
        self.heads, self.head_dim, self.parts, self.normalize = heads, head_dim, parts, tuple(normalize)
        self.norms = nn.ModuleList(nn.LayerNorm(head_dim) for _ in self.normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.projection(x)
        chunks = list(y.split(self.heads * self.head_dim, dim=-1))
        for norm, part in zip(self.norms, self.normalize, strict=True):
            c = chunks[part]
            chunks[part] = norm(c.unflatten(-1, (self.heads, self.head_dim))).flatten(-2)
        return torch.cat(chunks, dim=-1) if self.parts > 1 else chunks[0]


_HEADS = ("num_attention_heads", "num_heads", "n_head", "n_heads")
_QK = (("query", "key"), ("q_proj", "k_proj"), ("wq", "wk"), ("q", "k"))


def qk_targets(model: nn.Module, names: list[str] | None = None) -> list[tuple[str, int, int, int, tuple[int, ...]]]:
    """Where qk-layernorm can go: ``(projection module, heads, head_dim, parts, normalize)`` for
    attention modules (among ``names``, or their parents/children, or all) with separate query and
    key projections (BERT's ``query``/``key``, ``q_proj``/``k_proj``) or GPT-2's packed ``c_attn``,
    and a head count attribute. ``nn.MultiheadAttention`` packs its projections inside one
    function call: there is nothing to wrap."""
    found = []
    for name, module in model.named_modules():
        if names is not None and not any(name == n or name.startswith(n + ".") or n.startswith(name + ".") for n in names):
            continue
        heads = next((int(getattr(module, h)) for h in _HEADS if isinstance(getattr(module, h, None), int)), None)
        if heads is None or heads < 1:
            continue
        prefix = f"{name}." if name else ""
        pair = next(((q, k) for q, k in _QK if isinstance(getattr(module, q, None), nn.Linear)
                     and isinstance(getattr(module, k, None), nn.Linear)), None)  # fmt: skip
        if pair is not None:
            q = getattr(module, pair[0])
            head_dim = int(getattr(module, "attention_head_size", getattr(module, "head_dim", q.out_features // heads)))
            if heads * head_dim == q.out_features:
                found += [(prefix + pair[0], heads, head_dim, 1, (0,)), (prefix + pair[1], heads, head_dim, 1, (0,))]
            continue
        packed = getattr(module, "c_attn", None)
        width = getattr(packed, "nf", None)
        if packed is not None and isinstance(width, int) and width % 3 == 0 and (width // 3) % heads == 0:
            found.append((prefix + "c_attn", heads, width // 3 // heads, 3, (0, 1)))
    return found
