"""PyTorch modules as trainability sees them: every weight the gradient flows through, and what
each module is (a normalization, an activation, a pass-through).

A :class:`Weight` is one weight matrix, or one block of a packed one, with its fans read off its
real layout. The module that applies it is a *weight module*: the doctor hooks it, ``initialize``
fills its weights:

===============================  ==========================================================
module                           weights
===============================  ==========================================================
``nn.Linear``, ``nn.ConvNd``     ``weight`` ``(out, in/groups, *kernel)``
``nn.ConvTransposeNd``           ``weight`` ``(in, out/groups, *kernel)``: fans swap
``nn.Embedding``                 ``weight`` ``(num, dim)``: a lookup, fan_in 1 per row
``nn.MultiheadAttention``        packed ``in_proj_weight`` ``(3E, E)`` as q, k, v (or
                                 ``q/k/v_proj_weight``), and ``out_proj``
``nn.RNN``/``LSTM``/``GRU``      per layer and direction ``weight_ih_l{k}`` ``(gates*H, in)``
                                 and ``weight_hh_l{k}`` ``(gates*H, H)``; fans per gate
``nn.RNNCell`` and friends       ``weight_ih`` and ``weight_hh``, the same
any leaf with a 2-D ``weight``   used as ``x @ W`` (``transformers``' ``Conv1D``): stored
                                 ``(in, out)``, fans from that layout
===============================  ==========================================================

Modules of other libraries built on torch (``transformers``' ``Conv1D``, its activation classes,
``LlamaRMSNorm``) are recognized here too; a Keras 3 model has an adapter of its own
(:mod:`trainability.adapters.keras`) that speaks the same functions.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from trainability import activations
from trainability.activations import ActivationSpec
from trainability.adapters.base import GATES, Attention, Weight, join
from trainability.init import TRANSPOSED_TYPES, compute_fans

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *TRANSPOSED_TYPES)
RECURRENT_TYPES = (nn.RNNBase, nn.RNNCellBase)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip
#: Modules that pass each unit's signal on unchanged in kind (on the way to an activation).
TRANSPARENT_TYPES: tuple[type[nn.Module], ...] = (
    *NORM_TYPES, nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)  # fmt: skip
#: Class-name endings of normalization layers from other libraries (LlamaRMSNorm, T5LayerNorm, ...).
NORM_NAMES = ("LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm", "InstanceNorm")


# -- weights -------------------------------------------------------------------------------------
def _dense(name: str, module: nn.Module) -> list[Weight]:
    return [Weight(name, name, module, "weight", "dense", compute_fans(module.weight.shape))]


def _conv(name: str, module: nn.Module) -> list[Weight]:
    fans = compute_fans(module.weight.shape, transposed=isinstance(module, TRANSPOSED_TYPES), groups=module.groups)
    return [Weight(name, name, module, "weight", "conv", fans)]


def _embedding(name: str, module: nn.Module) -> list[Weight]:
    # A lookup: each output unit reads one row, so fan_in is 1 and fan_out the embedding size.
    return [Weight(name, name, module, "weight", "embedding", (1, int(module.weight.shape[1])))]


def _attention(name: str, module: nn.MultiheadAttention) -> list[Weight]:
    e = module.embed_dim
    out: list[Weight] = []
    for i, (part, role) in enumerate((("q", "attention_q"), ("k", "attention_k"), ("v", "attention_v"))):
        if module.in_proj_weight is not None:
            out.append(Weight(join(name, f"in_proj.{part}"), name, module, "in_proj_weight", role,  # type: ignore[arg-type]
                              (e, e), rows=(i * e, (i + 1) * e)))  # fmt: skip
        else:
            w = getattr(module, f"{part}_proj_weight")
            out.append(Weight(join(name, f"{part}_proj"), name, module, f"{part}_proj_weight", role,  # type: ignore[arg-type]
                              compute_fans(w.shape)))  # fmt: skip
    out.append(Weight(join(name, "out_proj"), name, module.out_proj, "weight", "attention_out",
                      compute_fans(module.out_proj.weight.shape)))  # fmt: skip
    return out


def _recurrent(name: str, module: nn.Module) -> list[Weight]:
    gates = GATES.get(getattr(module, "mode", type(module).__name__), 1)
    out = []
    for param, p in module.named_parameters(recurse=False):
        if not param.startswith(("weight_ih", "weight_hh")) or p.dim() != 2:
            continue
        rows = p.shape[0] // gates
        role = "recurrent_input" if param.startswith("weight_ih") else "recurrent_hidden"
        out.append(Weight(join(name, param), name, module, param, role, (int(p.shape[1]), int(rows)), gates=gates))  # type: ignore[arg-type]
    return out


def _matmul(name: str, module: nn.Module) -> list[Weight]:
    """A leaf with a 2-D ``weight`` applied as ``x @ W`` (``transformers``' ``Conv1D``, stored
    ``(in, out)``): the layout is read from ``nf``/``out_features`` when the module says, else
    ``(in, out)`` as in ``Conv1D``. Square weights have equal fans either way."""
    w = module.weight
    out_size = getattr(module, "nf", getattr(module, "out_features", None))
    transposed = not (out_size is not None and w.shape[0] == out_size and w.shape[1] != out_size)
    fan_in, fan_out = (int(w.shape[0]), int(w.shape[1])) if transposed else (int(w.shape[1]), int(w.shape[0]))
    return [Weight(name, name, module, "weight", "dense", (fan_in, fan_out), transposed=transposed)]


def _is_matmul(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    return (isinstance(w, torch.Tensor) and w.dim() == 2 and next(module.children(), None) is None
            and not isinstance(module, NORM_TYPES))  # fmt: skip


#: (predicate, adapter), tried in order; the first that matches describes the module.
ADAPTERS: list[tuple[Callable[[nn.Module], bool], Callable[[str, nn.Module], list[Weight]]]] = [
    (lambda m: isinstance(m, nn.Linear), _dense),
    (lambda m: isinstance(m, CONV_TYPES), _conv),
    (lambda m: isinstance(m, (nn.Embedding, nn.EmbeddingBag)), _embedding),
    (lambda m: isinstance(m, nn.MultiheadAttention), _attention),  # type: ignore[arg-type]
    (lambda m: isinstance(m, RECURRENT_TYPES), _recurrent),
    (_is_matmul, _matmul),
]


def module_weights(name: str, module: nn.Module) -> list[Weight]:
    """The :class:`Weight` s a module applies itself (``[]`` for a module that applies none)."""
    for matches, adapter in ADAPTERS:
        if matches(module):
            return adapter(name, module)
    return []


def is_weight_module(module: nn.Module) -> bool:
    return any(matches(module) for matches, _ in ADAPTERS)


#: Inside :func:`structure_fixed`: what has been read of each model's modules, by (what, id).
_structure: contextvars.ContextVar[dict[tuple[str, int], tuple[nn.Module, list[Any]]] | None] = contextvars.ContextVar(
    "structure", default=None)  # fmt: skip


@contextlib.contextmanager
def structure_fixed() -> Iterator[None]:
    """Within, the modules of a model are walked once: :func:`named_modules`, :func:`weight_modules`
    and :func:`hooked_modules` keep what they found for the next caller. For a single pass over
    a model whose modules do not change (``diagnose``: a dozen helpers ask, and on a 100-layer
    network each walk of 2,000 modules costs a fraction of a millisecond). Nested uses share one."""
    token = _structure.set({}) if _structure.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _structure.reset(token)


def _kept(what: str, model: nn.Module, read: Callable[[], list[Any]]) -> list[Any]:
    memo = _structure.get()
    if memo is None:
        return read()
    key = (what, id(model))
    if key not in memo:
        memo[key] = (model, read())  # the model is held, so that its id is not reused meanwhile
    return list(memo[key][1])


def weight_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[Weight]]]:
    """``(name, module, weights)`` for every module that applies weights, in registration order.

    A module that applies its children's weights itself (``nn.MultiheadAttention`` uses
    ``out_proj.weight`` without calling ``out_proj``) claims them: the children are not listed.
    """
    return _kept("weights", model, lambda: _weight_modules(model))


def _weight_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[Weight]]]:
    found, claimed = [], set()
    for name, module in named_modules(model):
        if name in claimed:
            continue
        weights = module_weights(name, module)
        if not weights:
            continue
        found.append((name, module, weights))
        if next(module.children(), None) is not None:
            claimed |= {f"{name}.{child}" if name else child for child, _ in module.named_modules() if child}
    return found


def hooked_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[Weight]]]:
    """What a pass watches: every weight module with its weights, and every other leaf module
    (with no weights), in registration order; a weight module's claimed children are left out."""
    return _kept("hooked", model, lambda: _hooked_modules(model))


def _hooked_modules(model: nn.Module) -> list[tuple[str, nn.Module, list[Weight]]]:
    weight_mods = weight_modules(model)
    by_name = {n: (n, m, ws) for n, m, ws in weight_mods}
    claimed = {c for n, m, _ in weight_mods for c, _ in m.named_modules(prefix=n) if c != n}
    out = []
    for name, module in named_modules(model):
        if name in by_name:
            out.append(by_name[name])
        elif name not in claimed and next(module.children(), None) is None:
            out.append((name, module, []))
    return out


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return _kept("named", model, lambda: list(model.named_modules()))


def _matrix(name: str, shape: tuple[int, ...]) -> bool:
    """A parameter that looks like a weight matrix: two or more axes, named ``weight``/``kernel``."""
    return len(shape) >= 2 and name.rsplit(".", 1)[-1].rsplit("/", 1)[-1].endswith(("weight", "kernel"))




def unread_weights(model: nn.Module) -> list[str]:
    """``"name (Type)"`` for every module that holds a weight matrix no adapter reads (a custom
    layer applying its own ``weight``): the doctor measures neither its gradient nor its scale,
    and ``initialize`` leaves it alone. Normalizations and activations with parameters
    (``PReLU``) are read elsewhere; 1-D parameters (scales, layer scale) and positional tables
    are not weight matrices."""
    found = weight_modules(model)
    read = {n for n, _, _ in found}
    claimers = tuple(f"{n}." for n, m, _ in found if next(m.children(), None) is not None)  # they apply their children's
    out = []
    for name, module in named_modules(model):
        if name in read or "" in read or name.startswith(claimers) or is_norm(module):
            continue
        if activation(module) is None and any(_matrix(n, tuple(p.shape)) for n, p in module.named_parameters(recurse=False)):
            out.append(f"{name or '(model)'} ({type(module).__name__})")
    return out


# -- what a module is ------------------------------------------------------------------------------
def channel_axis(module: nn.Module) -> int:
    """Where a weight module's output keeps its units: 1 for a convolution's channels, else the last."""
    return 1 if isinstance(module, nn.modules.conv._ConvNd) else -1


def output_units(module: nn.Module) -> int | None:
    """How many units a weight module's output has (its features, or its channels), read off the
    module, not off a pass; ``None`` where the module does not say."""
    for attribute in ("out_features", "out_channels", "nf", "embedding_dim", "embed_dim"):
        value = getattr(module, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    if isinstance(module, RECURRENT_TYPES):
        return int(module.hidden_size) * (2 if getattr(module, "bidirectional", False) else 1)
    return None


def is_norm(module: nn.Module) -> bool:
    """A normalization layer: torch's (BatchNorm, LayerNorm, GroupNorm, RMSNorm) or another
    library's, recognized by its class name (``LlamaRMSNorm``, ``T5LayerNorm``)."""
    return isinstance(module, NORM_TYPES) or (type(module).__name__.endswith(NORM_NAMES) and not is_weight_module(module))


def is_transparent(module: nn.Module) -> bool:
    """Does the module pass each unit's signal on unchanged in kind (dropout, pooling, reshaping)?"""
    return isinstance(module, TRANSPARENT_TYPES)


def is_ordinary_dropout(module: nn.Module) -> bool:
    """Dropout that is not SELU's AlphaDropout (it breaks self-normalization)."""
    return isinstance(module, nn.modules.dropout._DropoutNd) and not isinstance(module, (nn.AlphaDropout, nn.FeatureAlphaDropout))


#: (registered activation, hyperparameters). ``transformers``' GELUActivation, NewGELUActivation
#: (the tanh approximation), SiLUActivation, MishActivation, ...
FOREIGN_ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "gelu": ("gelu", {}), "newgelu": ("gelu", {"approximate": "tanh"}), "fastgelu": ("gelu", {"approximate": "tanh"}),
    "pytorchgelutanh": ("gelu", {"approximate": "tanh"}), "gelupytorchtanh": ("gelu", {"approximate": "tanh"}),
    "quickgelu": ("gelu", {}), "accurategelu": ("gelu", {}), "silu": ("silu", {}), "swish": ("silu", {}),
    "mish": ("mish", {}), "relu": ("relu", {}), "tanh": ("tanh", {}), "sigmoid": ("sigmoid", {}),
    "leakyrelu": ("leaky_relu", {}), "elu": ("elu", {}), "selu": ("selu", {}),
}  # fmt: skip



def activation(module: nn.Module) -> tuple[ActivationSpec, dict[str, Any]] | None:
    """The activation a module applies and its hyperparameters: a torch activation, or one from
    another library recognized by its class name (``transformers``' ``GELUActivation`` is GELU);
    ``None`` for any other module."""
    if isinstance(module, nn.Identity):
        return None
    spec = activations.find(module)
    if spec is not None:
        return spec, spec.hyperparameters_of(module)
    key = type(module).__name__.lower().replace("activation", "").replace("_", "")
    found = FOREIGN_ACTIVATIONS.get(key)
    return (activations.get(found[0]), dict(found[1])) if found else None


def internal_activations(model: nn.Module) -> dict[str, tuple[ActivationSpec, dict[str, Any]]]:
    """Activations that a module applies from a plain function attribute, invisible to hooks:
    ``nn.TransformerEncoderLayer``/``DecoderLayer`` apply ``self.activation`` (``F.relu`` by
    default) to ``linear1``'s output. Weight module name -> (activation, hyperparameters)."""
    out = {}
    for name, module in named_modules(model):
        if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            spec = activations.find(module.activation)
            if spec is not None:
                hyper = spec.hyperparameters_of(module.activation) if isinstance(module.activation, nn.Module) else {}
                out[f"{name}.linear1" if name else "linear1"] = (spec, hyper)
    return out



# -- recurrent layers -------------------------------------------------------------------------------
def time_dim(module: nn.Module) -> int | None:
    """The time axis of an ``nn.RNN``/``LSTM``/``GRU``'s (batched) input, by ``batch_first``;
    ``None`` for any other module."""
    if isinstance(module, nn.RNNBase):
        return 1 if module.batch_first else 0
    return None


def bidirectional_halves(model: nn.Module) -> dict[str, tuple[str, str]]:
    """``nn.LSTM(bidirectional=True)`` is one module: no halves to merge."""
    return {}


def reads_backwards(module: nn.Module) -> bool:
    return False


def forget_gate_bias(module: nn.Module, *, hidden: bool = False) -> list[torch.Tensor]:
    """Views of an LSTM's forget-gate biases: ``bias_ih``'s block per layer and direction for
    ``nn.LSTM``/``nn.LSTMCell`` (PyTorch's gates: input, forget, cell, output; ``hidden=True``:
    ``bias_hh``'s, which adds to it); empty for any other module."""
    if not isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return []
    prefix = "bias_hh" if hidden else "bias_ih"
    return [p[p.shape[0] // 4 : p.shape[0] // 2] for name, p in module.named_parameters() if name.startswith(prefix)]


def biases(module: nn.Module) -> list[torch.Tensor]:
    """The biases of a weight module (an LSTM's ``bias_ih_l0`` and ``bias_hh_l0`` too)."""
    return [p for name, p in module.named_parameters()
            if name == "bias" or name.endswith((".bias", "in_proj_bias")) or name.startswith("bias_")]  # fmt: skip


def norm_affine(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A normalization layer's scale and shift (``weight``/``bias``)."""
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    return (weight if isinstance(weight, torch.Tensor) else None), (bias if isinstance(bias, torch.Tensor) else None)


# -- attention ---------------------------------------------------------------------------------------
#: Names of projections that pack q, k and v along their outputs (GPT-2's ``c_attn``, ViT/timm's
#: ``qkv``, MosaicBERT's ``Wqkv``, GPT-NeoX's ``query_key_value``, Baichuan's ``W_pack``).
PACKED_QKV = ("c_attn", "qkv", "wqkv", "query_key_value", "qkv_proj", "w_pack", "in_proj")
#: Sibling names of separate query and key projections (BERT, ViT, Llama, DistilBERT, T5, ...).
QK_PAIRS = (("query", "key"), ("q_proj", "k_proj"), ("q", "k"), ("q_lin", "k_lin"), ("wq", "wk"),
            ("to_q", "to_k"), ("linear_q", "linear_k"), ("w_q", "w_k"))  # fmt: skip



#: Sibling names of the normalizations of queries and keys (qk-layernorm).
QK_NORMS = (("q_norm", "k_norm"), ("query_norm", "key_norm"), ("q_layernorm", "k_layernorm"), ("q_ln", "k_ln"))
#: Attributes that give an attention module's head size, or its number of heads.
HEAD_DIM_ATTRIBUTES = ("head_dim", "attention_head_size", "d_head", "dim_head")
HEADS_ATTRIBUTES = ("num_heads", "num_attention_heads", "n_heads", "n_head", "heads")


def head_dim(modules: list[nn.Module], width: int) -> int | None:
    """The size of one attention head, read off the first of ``modules`` that says it (its head
    size, its number of heads for a projection ``width`` wide, or its ``config``)."""
    for module in modules:
        for attribute in HEAD_DIM_ATTRIBUTES:
            value = getattr(module, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        config = getattr(module, "config", None)
        for source in (module, config):
            for attribute in (*HEADS_ATTRIBUTES, "num_attention_heads"):
                heads = getattr(source, attribute, None)
                if isinstance(heads, int) and heads > 0 and width % heads == 0:
                    return width // heads
    return None


def attention_layers(model: nn.Module) -> list[Attention]:
    """The attention layers of a model whose query/key projections can be found:
    ``nn.MultiheadAttention``, packed q/k/v projections (:data:`PACKED_QKV`, output size three
    times the input) and sibling q/k projections (:data:`QK_PAIRS`), each with its head size."""
    found: list[Attention] = []
    modules = dict(named_modules(model))
    for name, module, ws in weight_modules(model):
        if isinstance(module, nn.MultiheadAttention):
            q, k = ws[0], ws[1]
            found.append(Attention(name, q, k, name, name, module.head_dim))
            continue
        leaf = name.rsplit(".", 1)[-1].lower()
        if len(ws) == 1 and ws[0].role == "dense" and leaf in PACKED_QKV:
            w = ws[0]
            fan_in, fan_out = w.fans
            if fan_out == 3 * fan_in:
                e = fan_in
                q = Weight(join(name, "q"), name, module, w.parameter, "attention_q", (e, e), rows=(0, e), transposed=w.transposed)
                k = Weight(join(name, "k"), name, module, w.parameter, "attention_k", (e, e), rows=(e, 2 * e), transposed=w.transposed)
                parent = modules.get(name.rsplit(".", 1)[0] if "." in name else "")
                found.append(Attention(name, q, k, name, name, head_dim([m for m in (module, parent) if m is not None], e)))
    for parent_name, parent in modules.items():
        children = {n.lower(): (n, m) for n, m in parent.named_children()}
        for q_name, k_name in QK_PAIRS:
            if q_name in children and k_name in children:
                (qn, qm), (kn, km) = children[q_name], children[k_name]
                qw, kw = module_weights(qn, qm), module_weights(kn, km)
                if len(qw) == 1 and len(kw) == 1 and qw[0].role == "dense" and kw[0].role == "dense":
                    prefix = f"{parent_name}." if parent_name else ""
                    norms = next(((children[a][0], children[b][0]) for a, b in QK_NORMS if a in children and b in children), None)
                    found.append(Attention(parent_name, qw[0], kw[0], prefix + qn, prefix + kn,
                                           head_dim([parent, model], qw[0].fans[1]),
                                           *((prefix + norms[0], prefix + norms[1]) if norms else (None, None))))  # fmt: skip
    return found


# -- the framework's calling conventions (a torch model needs none) ----------------------------------
def check(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def call_options(model: nn.Module) -> dict[str, Any]:
    return {}


def call_args(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Positional inputs as ``forward`` takes them: one argument each."""
    return args


def build(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A torch model's weights exist from its construction."""


def state(model: nn.Module) -> list[torch.Tensor]:
    """Non-trainable state a training pass changes besides buffers (none: ``doctor.capture.preserved``
    restores a torch model's buffers)."""
    return []


def untouched_statistics(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Normalizations that would normalize with running statistics no batch has updated: in eval
    mode, tracking running statistics, and still at the values they are reset to (mean 0,
    variance 1). A model loaded from a checkpoint, or trained, has none."""
    found = []
    for name, m in named_modules(model):
        if (isinstance(m, nn.modules.batchnorm._NormBase) and not m.training and m.track_running_stats
                and m.running_mean is not None and m.running_var is not None):  # fmt: skip
            with torch.no_grad():
                if bool((m.running_mean == 0).all()) and bool((m.running_var == 1).all()):
                    found.append((name, m))
    return found


@contextlib.contextmanager
def batch_statistics(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> Iterator[None]:
    """For the duration, these normalizations (and only they) normalize with the batch's own
    statistics, as in a training step: each is put in training mode. The running statistics such
    a pass updates are restored by ``doctor.capture.preserved``."""
    flags = [m.training for _, m in layers]
    for _, m in layers:
        m.train()
    try:
        yield
    finally:
        for (_, m), flag in zip(layers, flags, strict=True):
            m.training = flag


def initializer(identifier: Any) -> Any:
    return identifier


def residual_stream(model: nn.Module) -> None:
    """A torch model's residual blocks are modules, found on a pass (:func:`trainability.graph.block_groups`)."""
    return None


def successors(model: nn.Module) -> dict[str, list[str]] | None:
    """A torch model's data flow is found by tracing (:mod:`trainability.graph`), not read off a
    layer graph."""
    return None


def example_batch(model: nn.Module, batch: int = 2) -> Any:
    """Inputs shaped for the model: from a ``transformers`` config (token ids, or pixel values of
    the configured image size), else from the first weight module (features for a Linear,
    images or sequences for a conv, token ids for an embedding, sequences for a recurrent layer).
    Raises ``ValueError`` (asking for ``data=``) when no shape can be read off the model."""
    found = weight_modules(model)
    if not found:
        raise ValueError("the model has no weight layers to shape an input for")
    _, first, weights = found[0]
    param = weights[0].tensor
    config = getattr(model, "config", None)
    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        length = min(16, getattr(config, "max_position_embeddings", 16) or 16)
        return torch.randint(0, first.num_embeddings, (batch, length), device=param.device)
    image_size, channels = getattr(config, "image_size", None), getattr(config, "num_channels", None)
    if isinstance(image_size, int) and isinstance(channels, int):
        return torch.randn(batch, channels, image_size, image_size, dtype=param.dtype, device=param.device)
    if isinstance(first, nn.Linear):
        return torch.randn(batch, first.in_features, dtype=param.dtype, device=param.device)
    if isinstance(first, CONV_TYPES):
        dims = first.weight.dim() - 2
        shape = (batch, first.in_channels, *([{1: 64, 2: 32, 3: 16}[dims]] * dims))
        return torch.randn(shape, dtype=param.dtype, device=param.device)
    if isinstance(first, nn.MultiheadAttention):  # inside an encoder that takes (batch, seq, embed)
        shape = (batch, 16, first.embed_dim) if first.batch_first else (16, batch, first.embed_dim)
        return torch.randn(shape, dtype=param.dtype, device=param.device)
    if isinstance(first, nn.RNNBase):
        shape = (batch, 16, first.input_size) if first.batch_first else (16, batch, first.input_size)
        return torch.randn(shape, dtype=param.dtype, device=param.device)
    if weights[0].role == "dense":  # x @ W
        return torch.randn(batch, weights[0].fans[0], dtype=param.dtype, device=param.device)
    raise ValueError(f"cannot shape an example input for a model that starts with {type(first).__name__}; pass data=")


__all__ = [
    "ADAPTERS", "CONV_TYPES", "FOREIGN_ACTIVATIONS", "NORM_TYPES", "PACKED_QKV", "QK_PAIRS", "RECURRENT_TYPES",
    "TRANSPARENT_TYPES", "activation", "attention_layers", "biases", "bidirectional_halves", "build", "call_options",
    "check", "example_batch", "forget_gate_bias", "hooked_modules", "initializer", "internal_activations",
    "is_norm", "is_ordinary_dropout", "is_transparent", "is_weight_module", "module_weights", "named_modules",
    "norm_affine", "reads_backwards", "state", "successors", "time_dim", "unread_weights", "weight_modules",
]  # fmt: skip
