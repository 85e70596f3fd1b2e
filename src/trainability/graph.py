"""Which activation consumes each weight layer's output.

Three strategies, tried in order:

1. ``sequential``: an ``nn.Sequential`` (nested ones too) is read in module order.
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

from trainability import activations
from trainability.activations import ActivationSpec
from trainability.init import WEIGHT_LAYER_TYPES

Method = Literal["sequential", "fx", "probe"]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip
TRANSPARENT_TYPES: tuple[type[nn.Module], ...] = (
    *NORM_TYPES, nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)  # fmt: skip
_TRANSPARENT_FUNCTIONS = (
    operator.add, operator.iadd, operator.getitem, torch.add, torch.cat, torch.flatten, torch.reshape,
    F.dropout, F.alpha_dropout, F.batch_norm, F.layer_norm, F.group_norm, F.max_pool1d, F.max_pool2d,
    F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
)  # fmt: skip
_TRANSPARENT_METHODS = frozenset(
    ["view", "reshape", "flatten", "contiguous", "permute", "transpose", "squeeze", "unsqueeze", "add", "add_", "mean"]
)


def is_weight_layer(module: nn.Module) -> bool:
    return isinstance(module, WEIGHT_LAYER_TYPES)


def is_activation(module: nn.Module) -> bool:
    return not isinstance(module, nn.Identity) and activations.find(module) is not None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every Linear, ConvNd and ConvTransposeNd, in registration order."""
    return [(n, m) for n, m in model.named_modules() if is_weight_layer(m)]


@dataclass
class Link:
    """A weight layer and the activation that consumes its output."""

    name: str
    module: nn.Module
    activation: ActivationSpec | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    normalized: bool = False  # a normalization layer sits between the layer and its activation


def _walk(leaves: list[tuple[str, nn.Module]]) -> dict[str, Link]:
    """Links for leaf modules in execution (or registration) order."""
    links: dict[str, Link] = {}
    for i, (name, module) in enumerate(leaves):
        if not is_weight_layer(module) or name in links:
            continue
        link = links[name] = Link(name, module)
        for _, nxt in leaves[i + 1 :]:
            if is_activation(nxt):
                spec = activations.get(nxt)
                link.activation, link.hyperparameters = spec, spec.hyperparameters_of(nxt)
                break
            if isinstance(nxt, NORM_TYPES):
                link.normalized = True
            elif not isinstance(nxt, TRANSPARENT_TYPES):
                break
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
                    spec = activations.get(sub)
                    link.hyperparameters = spec.hyperparameters_of(sub)
                elif isinstance(sub, TRANSPARENT_TYPES):
                    passes = True
                    link.normalized |= isinstance(sub, NORM_TYPES)
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


def _probe_leaves(model: nn.Module, example: Any) -> list[tuple[str, nn.Module]]:
    order: list[tuple[str, nn.Module]] = []
    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]

    def hook(name: str, module: nn.Module):  # noqa: ANN202
        return lambda *_: order.append((name, module))

    handles = [m.register_forward_hook(hook(n, m)) for n, m in leaves]
    try:
        with evaluating(model), torch.no_grad():
            model(*example) if isinstance(example, tuple) else model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def example_input(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """A standard-normal batch shaped for the model's first weight layer."""
    layers = weight_layers(model)
    if not layers:
        raise ValueError("the model has no weight layers to shape an input for")
    first = layers[0][1]
    param = first.weight
    if isinstance(first, nn.Linear):
        shape: tuple[int, ...] = (batch, first.in_features)
    else:
        dims = first.weight.dim() - 2
        shape = (batch, first.in_channels, *([{1: 64, 2: 32, 3: 16}[dims]] * dims))
    return torch.randn(shape, dtype=param.dtype, device=param.device)


def find_consumers(
    model: nn.Module, example: Any = None, *, order: Iterable[tuple[str, nn.Module]] | None = None
) -> tuple[dict[str, Link], Method]:
    """Map each weight layer's name to its :class:`Link`, and say which strategy found them.

    ``order`` (leaf modules in execution order, as a diagnosis pass records them) replaces the
    probe pass when tracing fails; otherwise ``example`` (an input batch) feeds the probe, or a
    standard-normal batch shaped for the first layer.
    """
    leaves = _sequential_leaves(model) if isinstance(model, nn.Sequential) else None
    if leaves is not None:
        return _walk(leaves), "sequential"
    try:
        return _fx_links(model), "fx"
    except Exception:  # noqa: BLE001 - any tracing failure falls back to the probe
        pass
    if order is None:
        try:
            order = _probe_leaves(model, example if example is not None else example_input(model))
        except Exception as exc:
            raise ValueError(
                f"could not trace {type(model).__name__} with torch.fx and a probe forward pass "
                f"failed ({type(exc).__name__}: {exc}); pass an example batch as data="
            ) from exc
    links = _walk(list(order))
    for name, module in weight_layers(model):  # layers the probe never ran
        links.setdefault(name, Link(name, module))
    return links, "probe"


_MERGE_FUNCTIONS = (operator.add, operator.iadd, torch.add, torch.cat, torch.stack)


def skip_connections(model: nn.Module) -> list[str] | None:
    """Modules whose output meets another branch in a sum or concatenation (a skip connection),
    found by tracing; ``[]`` for a plain stack, ``None`` when the model cannot be traced."""
    if isinstance(model, nn.Sequential) and _sequential_leaves(model) is not None:
        return []
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
