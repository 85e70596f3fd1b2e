"""Which activation consumes each weight layer's output.

Three strategies, tried in order:

1. ``sequential``: an ``nn.Sequential`` (nested ones too) is read in module order; a Keras
   ``Sequential`` in layer order, and a Keras functional model along its own layer graph
   (``graph``); see :mod:`trainability.adapters.keras`.
2. ``fx``: any other model is traced with ``torch.fx``; each weight layer's output is followed
   through the data-flow graph, across normalization, dropout, pooling, reshaping and additions
   (a residual sum), to the first activation module, function (``F.relu``) or tensor method
   (``x.relu()``).
3. ``probe``: where tracing fails (data-dependent control flow), one forward pass with hooks
   records the order in which leaf modules run; activations applied as functions are then
   invisible, so those layers count as feeding no activation.

A weight layer whose output reaches another weight layer or the model's output before any
activation feeds no activation (``activation is None``).
"""

from __future__ import annotations

import contextlib
import inspect
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from trainability import activations, adapters
from trainability.activations import ActivationSpec
from trainability.batches import Batch

Method = Literal["sequential", "graph", "fx", "probe"]

NORM_TYPES = adapters.NORM_TYPES
TRANSPARENT_TYPES = adapters.TRANSPARENT_TYPES
_TRANSPARENT_FUNCTIONS = (
    operator.add, operator.iadd, operator.getitem, torch.add, torch.cat, torch.flatten, torch.reshape,
    F.dropout, F.alpha_dropout, F.batch_norm, F.layer_norm, F.group_norm, F.max_pool1d, F.max_pool2d,
    F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
)  # fmt: skip
_TRANSPARENT_METHODS = frozenset(
    ["view", "reshape", "flatten", "contiguous", "permute", "transpose", "squeeze", "unsqueeze", "add", "add_", "mean"]
)


def is_norm(module: nn.Module) -> bool:
    """A normalization layer: torch's (BatchNorm, LayerNorm, GroupNorm, RMSNorm), another
    library's recognized by its class name (``LlamaRMSNorm``, ``T5LayerNorm``), or Keras'."""
    return adapters.is_norm(module)


def is_transparent(module: nn.Module) -> bool:
    """Does the module pass each unit's signal on unchanged in kind (dropout, pooling, reshaping)?"""
    return adapters.is_transparent(module)


def is_weight_layer(module: nn.Module) -> bool:
    """Does the module apply weights itself (:mod:`trainability.adapters`)?"""
    return adapters.is_weight_module(module)


def activation_of(module: nn.Module) -> ActivationSpec | None:
    """The activation a module applies: a torch activation, or one from another library
    recognized by its adapter (:func:`trainability.adapters.activation`); ``None`` otherwise."""
    return activation_and_hyperparameters(module)[0]


def activation_and_hyperparameters(module: nn.Module) -> tuple[ActivationSpec | None, dict[str, Any]]:
    """The activation a module applies and its hyperparameters (``(None, {})`` for none)."""
    found = adapters.activation(module)
    return (found[0], dict(found[1])) if found is not None else (None, {})


def is_activation(module: nn.Module) -> bool:
    return activation_of(module) is not None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every module that applies weights (Linear, ConvNd, Embedding,
    MultiheadAttention, RNN/LSTM/GRU, ``x @ W`` layers such as GPT-2's Conv1D), in registration
    order; see :func:`trainability.adapters.weight_modules`."""
    return [(n, m) for n, m, _ in adapters.weight_modules(model)]


def hooked_modules(model: nn.Module | adapters.View) -> list[tuple[str, nn.Module, list[adapters.Weight]]]:
    """What a pass watches: every weight module with its weights, and every other leaf module
    (with no weights), in registration order; a weight module's claimed children are left out.
    A Keras model's leaf layers are listed in layer order, a fused activation split out
    (:func:`trainability.adapters.keras.hooked_modules`)."""
    return adapters.hooked_modules(model)


def block_groups(model: nn.Module | adapters.View) -> list[list[str]]:
    """Groups of sibling modules that may be residual blocks: the children of one class, two or
    more, of a ``ModuleList``/``Sequential``, each holding parameters and children of its own
    (BertLayer, GPT2Block, ConvNeXt and ResNet layers, ``nn.TransformerEncoderLayer``, a user's
    ``Block``, a ``Sequential`` per block). Whether a group is residual is decided on the pass,
    from the autograd graph (:class:`trainability.doctor.capture.Capture`). A Keras model's
    groups are its sibling layers of one class with layers of their own (a ``TransformerBlock``
    layer used several times), by their Keras names."""
    view = adapters.view(model)
    if view.keras is not None:
        return view.keras.block_groups(view.model)
    found = []
    for name, module in adapters.named_modules(view.model):
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        kids = [(n, m) for n, m in module.named_children()
                if next(m.children(), None) is not None and next(m.parameters(), None) is not None]  # fmt: skip
        by_type: dict[type, list[str]] = {}
        for n, m in kids:
            by_type.setdefault(type(m), []).append(f"{name}.{n}" if name else n)
        found += [names for names in by_type.values() if len(names) >= 2]
    return found


def inside_blocks(names: Iterable[str], blocks: Iterable[str], stream: adapters.Stream | None = None) -> set[str]:
    """The module names among ``names`` that sit inside a residual block: under a block module
    (``block.``, or ``block/`` for a Keras layer), or a member of a block of a ``stream`` read off
    the layer graph (a Keras layer's fused activation, ``<layer>/activation``, with its layer)."""
    prefixes = tuple(p for b in blocks for p in (f"{b}.", f"{b}/"))
    members = {m for ms in stream.members.values() for m in ms} if stream is not None else set()
    return {n for n in names if n.startswith(prefixes) or n in members or n.rsplit("/", 1)[0] in members}


@dataclass
class Link:
    """A weight layer and the activation that consumes its output."""

    name: str
    module: nn.Module
    activation: ActivationSpec | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    normalized: bool = False  # a normalization layer sits between the layer and its activation

    @property
    def weights(self) -> list[adapters.Weight]:
        """The weights the module applies (one for Linear/Conv, several for attention or RNNs)."""
        return adapters.module_weights(self.name, self.module)

    @property
    def fans(self) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of the module's (first) weight."""
        return self.weights[0].fans


def _walk(leaves: list[tuple[str, nn.Module]]) -> dict[str, Link]:
    """Links for leaf modules in execution (or registration) order."""
    links: dict[str, Link] = {}
    for i, (name, module) in enumerate(leaves):
        if not is_weight_layer(module) or name in links:
            continue
        link = links[name] = Link(name, module)
        for _, nxt in leaves[i + 1 :]:
            spec, hyper = activation_and_hyperparameters(nxt)
            if spec is not None:
                link.activation, link.hyperparameters = spec, hyper
                break
            if is_norm(nxt):
                link.normalized = True
            elif not is_transparent(nxt):
                break
    return links


def _graph_links(hooked: list[tuple[str, nn.Module, list]], successors: dict[str, list[str]]) -> dict[str, Link]:
    """Links along a model's own layer graph (a Keras Sequential or functional model): from each
    weight module, through normalizations and transparent layers, to the first activation."""
    modules = {n: m for n, m, _ in hooked}
    links: dict[str, Link] = {}
    for name, module, weights in hooked:
        if not weights:
            continue
        link = links[name] = Link(name, module)
        frontier, seen = list(successors.get(name, [])), set()
        while frontier and link.activation is None:
            nxt = frontier.pop(0)
            if nxt in seen or nxt not in modules:
                continue
            seen.add(nxt)
            spec, hyper = activation_and_hyperparameters(modules[nxt])
            if spec is not None:
                link.activation, link.hyperparameters = spec, hyper
            elif is_norm(modules[nxt]) or is_transparent(modules[nxt]):
                link.normalized |= is_norm(modules[nxt])
                frontier.extend(successors.get(nxt, []))
    return links


def _sequential_leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """Leaves in order if the model is Sequentials all the way down, else ``None``."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            inner = _sequential_leaves(child, full + ".")
            if inner is None:
                return None
            out.extend(inner)
        elif next(child.children(), None) is None:
            out.append((full, child))
        else:
            return None
    return out


def _function_hyperparameters(spec: ActivationSpec, node: fx.Node) -> dict[str, Any]:
    if not spec.defaults:
        return {}
    target = node.target
    try:
        bound = inspect.signature(target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in bound.arguments.items() if k in spec.defaults and not isinstance(v, fx.Node)}


def _fx_links(model: nn.Module) -> dict[str, Link]:
    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    links: dict[str, Link] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not is_weight_layer(modules[node.target]):
            continue
        link = Link(node.target, modules[node.target])
        links.setdefault(node.target, link)
        frontier, seen = list(node.users), set()
        while frontier and link.activation is None:
            user = frontier.pop(0)
            if user in seen:
                continue
            seen.add(user)
            spec, passes = None, False
            if user.op == "call_module":
                sub = modules[user.target]
                if is_activation(sub):
                    spec, link.hyperparameters = activation_and_hyperparameters(sub)
                elif isinstance(sub, TRANSPARENT_TYPES) or is_norm(sub):
                    passes = True
                    link.normalized |= is_norm(sub)
            elif user.op == "call_function":
                spec = activations.find(user.target)
                if spec is not None:
                    link.hyperparameters = _function_hyperparameters(spec, user)
                passes = any(user.target is f for f in _TRANSPARENT_FUNCTIONS)
                link.normalized |= user.target in (F.batch_norm, F.layer_norm, F.group_norm)
            elif user.op == "call_method":
                spec = activations.find_method(user.target)
                passes = user.target in _TRANSPARENT_METHODS
            if spec is not None and spec.name != "identity":
                link.activation = spec
            elif passes:
                frontier.extend(user.users)
    return links


def probe_calls(model: nn.Module | adapters.View, example: Any) -> list[tuple[str, nn.Module, int]]:
    """``(name, module, output rank)`` for every call of a module a capture watches, in execution
    order, from one eval-mode, no-grad pass on ``example`` (rank 0 for a non-tensor output)."""
    view = adapters.view(model)
    model = view.model
    calls: list[tuple[str, nn.Module, int]] = []

    def hook(name: str, module: nn.Module):  # noqa: ANN202
        def record(_module: nn.Module, _args: Any, output: Any) -> None:
            out = first_tensor(output)
            calls.append((name, module, out.dim() if out is not None else 0))

        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m, _ in hooked_modules(view)]
    try:
        with evaluating(model), torch.no_grad():
            Batch.of(example)(model)
    finally:
        for h in handles:
            h.remove()
    return calls


def example_input(model: nn.Module, batch: int = 2) -> Any:
    """A batch shaped for the model's first weight module: standard-normal features, images
    or sequences, or random token ids for a model that starts with an embedding (see
    :func:`trainability.adapters.example_batch`)."""
    return adapters.example_batch(model, batch)


def find_consumers(
    model: nn.Module | adapters.View, example: Any = None, *, order: Iterable[tuple[str, nn.Module]] | None = None
) -> tuple[dict[str, Link], Method]:
    """Map each weight module's name to its :class:`Link`, and say which strategy found them.

    ``order`` (modules in execution order, as a diagnosis pass records them) replaces the probe
    pass when tracing fails or misses a weight module (one inside a module torch.fx keeps whole,
    such as ``nn.TransformerEncoderLayer``); otherwise ``example`` (an input batch) feeds the
    probe, or a batch shaped for the first layer. Activations a module keeps as a plain function
    attribute (``nn.TransformerEncoderLayer.activation``) come from
    :func:`trainability.adapters.internal_activations`.
    """
    view = adapters.view(model)
    model, keras = view.model, view.keras
    layers = weight_layers(view)
    edges = keras.successors(model) if keras is not None else None
    if edges is not None:
        links = _graph_links(hooked_modules(view), edges)
        return links, "sequential" if keras.kind(model) == "sequential" else "graph"
    leaves = _sequential_leaves(model) if isinstance(model, nn.Sequential) else None
    if leaves is not None:
        return _walk(leaves), "sequential"
    try:
        links = _fx_links(model) if keras is None else {}
        if keras is None and all(name in links for name, _ in layers):
            return links, "fx"
    except Exception:  # noqa: BLE001 - any tracing failure falls back to the probe
        pass
    if order is None:
        try:
            order = [(n, m) for n, m, _ in probe_calls(view, example if example is not None else example_input(view))]
        except Exception as exc:
            raise ValueError(
                f"could not trace {type(model).__name__} with torch.fx and a probe forward pass "
                f"failed ({type(exc).__name__}: {exc}); pass an example batch as data="
            ) from exc
    links = _walk(list(order))
    for name, module in layers:  # layers the probe never ran
        links.setdefault(name, Link(name, module))
    for name, (spec, hyper) in adapters.internal_activations(view).items():
        if name in links and links[name].activation is None:
            links[name].activation, links[name].hyperparameters = spec, hyper
    return links, "probe"


_MERGE_FUNCTIONS = (operator.add, operator.iadd, torch.add, torch.cat, torch.stack)


def skip_connections(model: nn.Module | adapters.View) -> list[str] | None:
    """Modules whose output meets another branch in a sum or concatenation (a skip connection),
    found by tracing; ``[]`` for a plain stack, ``None`` when the model cannot be traced."""
    view = adapters.view(model)
    model, keras = view.model, view.keras
    if isinstance(model, nn.Sequential) and _sequential_leaves(model) is not None:
        return []
    if keras is not None:
        return keras.skip_connections(model)
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable: the caller falls back
        return None
    found: list[str] = []
    for node in graph.nodes:
        merge = (node.op == "call_function" and any(node.target is f for f in _MERGE_FUNCTIONS)) or (
            node.op == "call_method" and node.target in ("add", "add_")
        )
        if not merge:
            continue
        tensors = [a for a in node.all_input_nodes]
        if len(tensors) >= 2:
            for arg in tensors:
                source = arg
                while source.op not in ("call_module", "placeholder") and source.all_input_nodes:
                    source = source.all_input_nodes[0]
                label = str(source.target) if source.op == "call_module" else "input"
                if label not in found:
                    found.append(label)
    return found


def is_residual(x: torch.Tensor, y: torch.Tensor, limit: int = 5000) -> bool:
    """Does ``y`` sum ``x`` with a branch computed from ``x``? True when the autograd graph from
    ``y`` back to ``x`` holds an addition both of whose operands depend on ``x`` (a residual
    connection, whoever adds it: the block itself or its parent)."""
    if y.grad_fn is None:
        return False
    try:
        target = torch.autograd.graph.get_gradient_edge(x).node
    except (RuntimeError, AttributeError):
        return False
    memo: dict[Any, bool] = {target: True}
    stack: list[tuple[Any, bool]] = [(y.grad_fn, False)]
    seen, found = 0, False
    while stack:  # iterative post-order DFS: reaches(node) = any(reaches(child))
        node, expanded = stack.pop()
        if node in memo and not expanded:
            continue
        children = [n for n, _ in node.next_functions if n is not None]
        if not expanded:
            seen += 1
            if seen > limit:
                return False
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in memo)
            continue
        reach = [memo.get(c, False) for c in children]
        memo[node] = any(reach)
        if sum(reach) >= 2 and type(node).__name__.startswith("AddBackward"):
            found = True
    return found


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor in a module's output or arguments: the tensor itself, or the first of a
    tuple, list or dict."""
    if isinstance(obj, torch.Tensor):
        return obj
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    return next((o for o in values if isinstance(o, torch.Tensor)), None)


def block_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The stream entering a block: ``hidden_states`` (``transformers``' blocks take it by
    keyword), else its first tensor argument."""
    x = kwargs.get("hidden_states")
    if isinstance(x, torch.Tensor):
        return x
    x = first_tensor(args)
    return x if x is not None else first_tensor(kwargs)


class ResidualCheck:
    """Decides, as a pass runs, which groups of sibling blocks are residual: group ``g`` is when
    the stream entering its block ``i + 1`` sums the stream entering block ``i`` with a branch (the
    parent adds), or a block's output sums its input with a branch (the block adds). Each test
    runs once per group (:func:`is_residual` walks the autograd graph)."""

    def __init__(self) -> None:
        self.checks: dict[int, dict[str, bool]] = {}
        self.inputs: dict[tuple[int, int], torch.Tensor] = {}

    def entered(self, group: int, index: int, x: torch.Tensor) -> None:
        checks = self.checks.setdefault(group, {})
        previous = self.inputs.get((group, index - 1))
        if "pair" not in checks and previous is not None and x.requires_grad:
            checks["pair"] = is_residual(previous, x)
        self.inputs[(group, index)] = x

    def left(self, group: int, index: int, y: torch.Tensor) -> None:
        x, checks = self.inputs.get((group, index)), self.checks.setdefault(group, {})
        if "self" not in checks and x is not None and x.shape == y.shape and y.requires_grad:
            checks["self"] = is_residual(x, y)

    def residual(self, group: int) -> bool:
        return any(self.checks.get(group, {}).values())

    def adds_itself(self, group: int) -> bool:
        return bool(self.checks.get(group, {}).get("self"))


@dataclass
class Block:
    """A residual block and the weight modules and normalizations it ran, in order."""

    name: str
    order: list[tuple[str, nn.Module]] = field(default_factory=list)


def residual_blocks(model: nn.Module | adapters.View, example: Any = None) -> tuple[list[Block], bool]:
    """The residual blocks of a model, innermost, in execution order, and whether a probe pass
    confirmed them. Candidates are :func:`block_groups`; a group is residual when the stream
    between two of its blocks, or through one of them, sums its input with a branch
    (:func:`is_residual`), found on one forward pass with autograd (in eval mode, on
    ``example`` or a batch shaped for the model). Without a pass (no example can be shaped), every
    group counts as residual. A residual stream read off the layer graph
    (:func:`trainability.adapters.residual_stream`: a Keras functional model's ``Add`` s) needs no
    pass: each block holds its branch's weight layers and normalizations."""
    view = adapters.view(model)
    model = view.model
    stream = adapters.residual_stream(view)
    if stream is not None:
        layers = dict(view.named_modules())
        return [Block(b, [(n, layers[n]) for n in stream.members[b] if is_weight_layer(layers[n]) or is_norm(layers[n])])
                for b in stream.blocks], True  # fmt: skip
    groups = block_groups(view)
    if not groups:
        return [], True
    modules = dict(view.named_modules())
    check = ResidualCheck()
    order: list[tuple[str, nn.Module]] = []
    handles = []

    def pre(g: int, i: int):  # noqa: ANN202
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            x = block_input(args, kwargs)
            if x is not None and x.is_floating_point():
                check.entered(g, i, x)

        return hook

    def post(g: int, i: int):  # noqa: ANN202
        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            y = first_tensor(output)
            if y is not None:
                check.left(g, i, y)

        return hook

    for g, group in enumerate(groups):
        for i, name in enumerate(group):
            handles.append(modules[name].register_forward_pre_hook(pre(g, i), with_kwargs=True))
            handles.append(modules[name].register_forward_hook(post(g, i), with_kwargs=True))
    for name, module, _ in hooked_modules(view):
        if is_weight_layer(module) or is_norm(module):
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: order.append((name, m))))
    probed = True
    try:
        batch = Batch.of(example if example is not None else example_input(view))
        with evaluating(model), torch.enable_grad():
            batch(model)
    except Exception:  # noqa: BLE001 - no pass: every candidate group counts as residual
        probed = False
    finally:
        for h in handles:
            h.remove()
    residual = {g for g in range(len(groups)) if not probed or check.residual(g)}
    names = [n for g in sorted(residual) for n in groups[g]]
    inner = [n for n in names if not inside_blocks(names, [n])]
    blocks = []
    for name in inner:
        ran = [(n, m) for n, m in order if inside_blocks([n], [name])]
        if not probed:
            ran = [(n, m) for n, m in modules.items() if inside_blocks([n], [name]) and (is_weight_layer(m) or is_norm(m))]
        blocks.append(Block(name, ran))
    return blocks, probed


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block; every module's own train/eval flag restored after, even on error."""
    flags = [m.training for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in zip(model.modules(), flags, strict=True):
            m.training = t
