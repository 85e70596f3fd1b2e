"""Keras 3 models on the PyTorch backend, as trainability sees them.

With ``KERAS_BACKEND=torch`` a Keras model is a ``torch.nn.Module`` whose weights are torch
``Parameter`` s, and torch forward hooks on its layers fire; but its layers are reached through
``model.layers`` (recursively for nested models), not ``named_modules()``. This module is the one
place that knows Keras; :mod:`trainability.adapters` and :mod:`trainability.graph` ask it:

===============================  ==========================================================
Keras layer                      weights (fans as trainability's initializers use them)
===============================  ==========================================================
``Dense``                        ``kernel`` ``(in, out)``
``Conv1D/2D/3D``                 ``kernel`` ``(*kernel, in/groups, out)``
``Conv1D/2D/3DTranspose``        ``kernel`` ``(*kernel, out, in)``
``DepthwiseConv1D/2D``           ``kernel`` ``(*kernel, in, multiplier)``: fan_in = kernel size
``Embedding``                    ``embeddings`` ``(num, dim)``: a lookup, fan_in 1
``LSTM``/``GRU``/``SimpleRNN``   the cell's ``kernel`` ``(in, gates*units)`` and
                                 ``recurrent_kernel`` ``(units, gates*units)``; fans per gate
``SeparableConv1D/2D``           ``depthwise_kernel`` ``(*kernel, in, multiplier)`` feeding
                                 ``pointwise_kernel`` ``(1.., in*multiplier, out)``
``EinsumDense``                  ``kernel``: fan-in the axes the equation contracts, fan-out
                                 the axes the output keeps
``MultiHeadAttention``           one leaf, as ``nn.MultiheadAttention``: its ``query``, ``key``,
                                 ``value`` ``(dim, heads, head_dim)`` and ``attention_output``
                                 ``(heads, head_dim, dim)`` ``EinsumDense`` kernels
===============================  ==========================================================

A functional model whose residual blocks are written inline (``Add()([x, branch(x)])``) has its
residual stream read off the layer graph (:func:`residual_stream`); blocks that are layers of
their own are found on a pass (:func:`block_groups`), as torch modules are. A convolution with
``data_format="channels_first"`` keeps its units on axis 1 (:func:`channel_axis`).

A recurrent layer is one leaf (its cell runs inside the layer's loop, where no hook sees it): its
output is what the layer returns, and the gradient through time is read at its input (batch,
time, features), as for ``nn.LSTM(batch_first=True)``.

Layers are named by their Keras names (``dense_1``; ``inner/dense_2`` inside a nested model).
Activations are read from the separate layers (``ReLU``, ``LeakyReLU``, ``PReLU``, ``ELU``,
``Softmax``, ``Activation("selu")``) and from ``activation=`` inside a layer. A fused activation
is applied inside the layer's ``call``, where no hook can see the pre-activation; while a pass is
watched, the layer's ``activation`` is swapped, for the duration of each call only, for two
hookable modules (:class:`PreActivation` stands for the layer and sees ``z = x W + b``;
:class:`FusedActivation` applies the activation), so dead and saturated units and the gradient at
the pre-activation are read exactly as for ``nn.Linear`` followed by ``nn.ReLU``. Outside a call
the layer is untouched, so ``model.save`` and ``model.fit`` never see the swap.

Keras is imported only for a Keras object (``import trainability`` never imports it). With
``KERAS_BACKEND=torch`` set before Keras is imported::

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu")])
    [(n, w.fans) for n, _, ws in weight_modules(model) for w in ws]    # [('dense', (8, 16))]
    [n for n, _, _ in hooked_modules(model)]                           # ['dense', 'dense/activation']
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainability import activations
from trainability.activations import ActivationSpec
from trainability.adapters.base import Attention, Role, Stream, Weight

INSTALL = "Keras 3 is not installed: pip install 'trainability[keras]' (Keras 3 on the PyTorch backend)"
BACKEND = (
    "{what} the {backend} backend, and trainability works with Keras 3 on the PyTorch backend: set "
    "KERAS_BACKEND=torch before Keras is imported (os.environ['KERAS_BACKEND'] = 'torch' at the top of the "
    "script, before `import keras`, or KERAS_BACKEND=torch in the shell)"
)

#: Keras layer classes (any class in the layer's MRO) whose output a normalization keeps at scale.
NORMS = frozenset({"BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization", "UnitNormalization"})
#: Layers that pass a unit's signal through on the way to an activation (as graph.TRANSPARENT_TYPES).
TRANSPARENT = frozenset({
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout",
    "GaussianNoise", "Flatten", "Reshape", "Permute", "Identity", "Masking", "ActivityRegularization", "Cropping1D",
    "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "BaseMaxPooling", "BaseAveragePooling",
    "BaseGlobalPooling", "Add", "Concatenate",
})  # fmt: skip
#: Dropout that is not SELU's AlphaDropout: it breaks self-normalization.
ORDINARY_DROPOUT = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout"})
#: Layers that join branches (a skip connection when one input is an earlier layer's output).
MERGES = frozenset({"Add", "Concatenate", "Average", "Multiply", "Subtract", "Maximum", "Minimum"})
#: Keras argument names where trainability's activations name the same hyperparameter otherwise.
_RENAMED = {"axis": "dim"}


# -- Keras itself ------------------------------------------------------------------------------
def _keras_classes(obj: Any) -> list[type]:
    return [c for c in type(obj).__mro__ if c.__module__ == "keras" or c.__module__.startswith("keras.")]


def is_keras(obj: Any) -> bool:
    """Is ``obj`` a Keras object (a layer or model, on any backend)? Never imports Keras."""
    return "keras" in sys.modules and bool(_keras_classes(obj))


def owns(obj: Any) -> bool:
    """Does this module describe ``obj``: a Keras object, or one of its stand-ins for a fused activation?"""
    return isinstance(obj, _Watched) or is_keras(obj)


def keras_class(layer: Any) -> str:
    """The name of the Keras class a layer is (``Dense`` for a user's subclass of ``Dense``)."""
    classes = _keras_classes(layer)
    return classes[0].__name__ if classes else type(layer).__name__


def _is(layer: Any, names: frozenset[str] | set[str]) -> bool:
    return any(c.__name__ in names for c in _keras_classes(layer))


def backend() -> str:
    """The backend Keras runs on (imported) or will run on (``KERAS_BACKEND``, else tensorflow)."""
    module = sys.modules.get("keras")
    if module is not None and hasattr(module, "backend"):
        return str(module.backend.backend())
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def load() -> Any:
    """Import Keras 3 on the PyTorch backend, or raise ``ValueError`` saying what to do: install
    it (``trainability[keras]``), or set ``KERAS_BACKEND=torch`` before Keras is imported."""
    if "keras" not in sys.modules and os.environ.get("KERAS_BACKEND", "torch") != "torch":
        raise ValueError(BACKEND.format(what="KERAS_BACKEND asks for", backend=os.environ["KERAS_BACKEND"]))
    try:
        import keras
    except ImportError as exc:
        if exc.name == "keras":
            raise ValueError(INSTALL) from exc
        raise ValueError(f"{BACKEND.format(what='Keras failed to load', backend=backend())} ({type(exc).__name__}: {exc})") from exc
    if keras.backend.backend() != "torch":
        raise ValueError(BACKEND.format(what="Keras runs on", backend=keras.backend.backend()))
    return keras


def check(model: Any) -> None:
    """Raise the backend error for a Keras model that is not a ``torch.nn.Module``."""
    if is_keras(model) and not isinstance(model, nn.Module):
        raise ValueError(BACKEND.format(what=f"{type(model).__name__} is a Keras model on", backend=backend()))
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def explain(exc: BaseException) -> str | None:
    """What to do when importing a user's model file failed because of Keras (not installed, or
    on another backend), or ``None`` when Keras is not the cause."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, ImportError) and cause.name == "keras":
        return INSTALL
    keras_seen = any(name == "keras" or name.startswith("keras.") for name in sys.modules)
    if keras_seen and os.environ.get("KERAS_BACKEND", "torch") != "torch":
        return BACKEND.format(what="KERAS_BACKEND asks for", backend=os.environ["KERAS_BACKEND"])
    return None


# -- layers ------------------------------------------------------------------------------------
def is_recurrent(layer: Any) -> bool:
    """A Keras recurrent layer (``LSTM``, ``GRU``, ``SimpleRNN``, ``RNN(cell)``)."""
    return _is(layer, {"RNN"})


def time_dim(layer: Any) -> int | None:
    """The time axis of a recurrent layer's input (Keras' RNNs are batch-major), else ``None``."""
    return (0 if getattr(layer, "time_major", False) else 1) if is_recurrent(layer) else None


def reads_backwards(layer: Any) -> bool:
    """Whether a recurrent layer reads its input from the last step to the first
    (``go_backwards=True``, as ``Bidirectional`` builds its backward half)."""
    return bool(getattr(layer, "go_backwards", False))


def bidirectional_halves(model: Any) -> dict[str, tuple[str, str]]:
    """``{wrapper: (forward half, backward half)}`` for every ``Bidirectional`` layer, by name."""
    return {n: (f"{n}/{layer.forward_layer.name}", f"{n}/{layer.backward_layer.name}")
            for n, layer in named_layers(model) if n and _is(layer, {"Bidirectional"})}  # fmt: skip


def _children(layer: Any) -> list[Any]:
    if is_recurrent(layer) or _is(layer, ATTENTION):  # its cell, or its projections, are read through it
        return []
    found = layer.layers if hasattr(layer, "layers") else layer._flatten_layers(include_self=False, recursive=False)
    return [c for c in found if keras_class(c) != "InputLayer"]


def named_modules(model: Any) -> list[tuple[str, Any]]:
    """The model and its layers by their Keras names (as ``named_modules()`` for a torch model)."""
    return named_layers(model)


def named_layers(model: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` for every layer, containers (nested models) before their layers, in
    ``model.layers`` order; nested names join Keras names with ``/``. The model itself is ``""``."""
    out: list[tuple[str, Any]] = [("", model)]
    seen = {id(model)}

    def visit(layer: Any, prefix: str) -> None:
        for child in _children(layer):
            if id(child) in seen:  # a shared layer is listed once
                continue
            seen.add(id(child))
            name = f"{prefix}{child.name}"
            out.append((name, child))
            visit(child, name + "/")

    visit(model, "")
    return out


def _leaves(model: Any) -> list[tuple[str, Any]]:
    return [(n, m) for n, m in named_layers(model) if n and not _children(m)]


def _unbuilt(model: Any) -> ValueError:
    return ValueError(
        f"the Keras model {model.name!r} is not built yet, so its layers have no weights: start it with "
        "keras.Input(shape=...), call model.build((None, ...)), or pass a batch (diagnose(model, x), "
        "initialize(model, data=x))"
    )


def build(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Build a Keras model that has not run yet by calling it once on the batch (inference mode,
    no autograd), as Keras does on its first call."""
    if is_keras(model) and not model.built:
        with torch.no_grad():
            model(*call_args(model, args), **{"training": False, **kwargs})


# -- weights -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class KerasWeight(Weight):
    """A Keras variable as a :class:`~trainability.adapters.Weight`: ``tensor`` is the torch
    ``Parameter`` the variable holds (written in place, so Keras sees every change), and
    :meth:`blocks` gives a dense or conv kernel as the ``(out, fan_in)`` view PyTorch's layout has."""

    variable: Any = None
    bias_variable: Any = None  # where the layer's own ``bias`` is not this weight's (a recurrent cell's)
    biased: bool = True  # False where no bias is added to this weight's outputs (a separable conv's depthwise kernel)
    matrix: tuple[int, int] | None = None  # (fan_in, fan_out) an einsum kernel reshapes to, contracted axes first

    @property
    def parameter_tensor(self) -> nn.Parameter:
        return self.variable.value

    @property
    def bias(self) -> torch.Tensor | None:
        if self.role == "recurrent_hidden" or not self.biased:  # the cell's one bias belongs to its input kernel
            return None
        b = self.bias_variable if self.role == "recurrent_input" else getattr(self.module, "bias", None)
        return b.value if b is not None and hasattr(b, "value") else None

    def blocks(self):  # noqa: ANN201 - an iterator of views
        t = self.tensor
        if self.role in ("recurrent_input", "recurrent_hidden"):  # (in, gates*units): one (units, in) view a gate
            n = t.shape[1] // self.gates
            for g in range(self.gates):
                yield t[:, g * n : (g + 1) * n].T
            return
        if self.matrix is not None:  # an einsum kernel: (contracted axes..., output axes...)
            yield t.reshape(self.matrix).T
            return
        yield t.reshape(-1, t.shape[-1]).T if self.role in ("dense", "conv") and t.dim() >= 2 else t


def _variable(layer: Any, name: str) -> Any:
    return next((v for v in layer.weights if v.name == name), None)


def _weight(name: str, layer: Any, parameter: str, role: Role, fans: tuple[int, int], transposed: bool = True) -> list[Weight]:
    variable = _variable(layer, parameter)
    if variable is None:
        return []
    return [KerasWeight(name, name, layer, parameter, role, (int(fans[0]), int(fans[1])), transposed=transposed, variable=variable)]


def _receptive(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape[:-2]:
        out *= s
    return out


def _dense(name: str, layer: Any) -> list[Weight]:
    shape = tuple(_variable(layer, "kernel").shape)
    return _weight(name, layer, "kernel", "dense", (shape[0], shape[1]))


def _conv(name: str, layer: Any) -> list[Weight]:  # (*kernel, in/groups, out)
    shape = tuple(_variable(layer, "kernel").shape)
    r, groups = _receptive(shape), getattr(layer, "groups", 1) or 1
    return _weight(name, layer, "kernel", "conv", (shape[-2] * r, shape[-1] // groups * r))


def _conv_transpose(name: str, layer: Any) -> list[Weight]:  # (*kernel, out, in)
    shape = tuple(_variable(layer, "kernel").shape)
    r = _receptive(shape)
    return _weight(name, layer, "kernel", "conv", (shape[-1] * r, shape[-2] * r))


def _depthwise(name: str, layer: Any) -> list[Weight]:  # (*kernel, in, multiplier): one input channel per unit
    shape = tuple(_variable(layer, "kernel").shape)
    r = _receptive(shape)
    return _weight(name, layer, "kernel", "conv", (r, shape[-1] * r))


def _separable(name: str, layer: Any) -> list[Weight]:
    """A depthwise kernel ``(*kernel, in, multiplier)`` then a pointwise one ``(1.., in*multiplier,
    out)``, both applied inside the layer's call: the depthwise one feeds the pointwise one, never
    the activation (``inner``), and takes no bias."""
    depthwise, pointwise = _variable(layer, "depthwise_kernel"), _variable(layer, "pointwise_kernel")
    if depthwise is None or pointwise is None:
        return []
    d, p = tuple(depthwise.shape), tuple(pointwise.shape)
    r = _receptive(d)
    return [
        KerasWeight(f"{name}/depthwise_kernel", name, layer, "depthwise_kernel", "conv", (r, d[-1] * r), transposed=True,
                    variable=depthwise, biased=False, inner=True),
        KerasWeight(f"{name}/pointwise_kernel", name, layer, "pointwise_kernel", "conv", (p[-2] * _receptive(p), p[-1]),
                    transposed=True, variable=pointwise),
    ]  # fmt: skip


def einsum_layout(equation: str, shape: tuple[int, ...]) -> tuple[tuple[int, int], bool]:
    """``(fan_in, fan_out)`` of an einsum kernel, and whether its contracted axes come first (so it
    reshapes to a ``(fan_in, fan_out)`` matrix as a view). The kernel's axes that the output keeps
    are its units (fan-out); those summed over with the input are its fan-in.

    >>> einsum_layout("abc,cde->abde", (32, 4, 8))  # MultiHeadAttention's query: (dim, heads, head_dim)
    ((32, 32), True)
    >>> einsum_layout("abcd,cde->abe", (4, 8, 32))  # its output projection
    ((32, 32), True)
    """
    terms, output = equation.replace(" ", "").replace("...", "").split("->")
    kernel = terms.split(",")[1]
    if len(kernel) != len(shape):
        raise ValueError(f"the einsum kernel {kernel!r} of {equation!r} does not match its shape {shape}")
    kept = [axis in output for axis in kernel]
    fan_in = fan_out = 1
    for keep, size in zip(kept, shape, strict=True):
        if keep:
            fan_out *= size
        else:
            fan_in *= size
    return (fan_in, fan_out), kept == sorted(kept)


def _einsum(name: str, layer: Any, role: Role = "dense", module_name: str | None = None) -> list[Weight]:
    """An ``EinsumDense`` kernel with its fans from the layer's equation."""
    kernel = _variable(layer, "kernel")
    if kernel is None or not isinstance(getattr(layer, "equation", None), str):
        return []
    fans, contracted_first = einsum_layout(layer.equation, tuple(kernel.shape))
    return [KerasWeight(name, module_name or name, layer, "kernel", role, fans, transposed=True, variable=kernel,
                        matrix=fans if contracted_first else None)]  # fmt: skip


#: Attention layers read as one leaf each, as ``nn.MultiheadAttention``: their projections (sublayers),
#: with the role each plays.
ATTENTION = frozenset({"MultiHeadAttention", "GroupedQueryAttention"})
_PROJECTIONS = (("_query_dense", "attention_q"), ("_key_dense", "attention_k"), ("_value_dense", "attention_v"),
                ("_output_dense", "attention_out"))  # fmt: skip


def _attention(name: str, layer: Any) -> list[Weight]:
    """``MultiHeadAttention``: its query, key, value and output ``EinsumDense`` projections, named
    ``<layer>/query`` ..., each with the fans of its equation (query ``(dim, heads * key_dim)``,
    output ``(heads * value_dim, dim)``); applied inside the layer, which is one leaf."""
    out: list[Weight] = []
    for attribute, role in _PROJECTIONS:
        sub = getattr(layer, attribute, None)
        if sub is not None:
            out += _einsum(f"{name}/{sub.name}", sub, role, module_name=name)  # type: ignore[arg-type]
    return out


def _embedding(name: str, layer: Any) -> list[Weight]:
    shape = tuple(_variable(layer, "embeddings").shape)
    return _weight(name, layer, "embeddings", "embedding", (1, shape[1]), transposed=False)


#: Gates stacked along the last axis of a recurrent cell's kernels: LSTM (input, forget, cell,
#: output), GRU (update, reset, new).
GATES = {"LSTMCell": 4, "GRUCell": 3, "SimpleRNNCell": 1}


def _recurrent(name: str, layer: Any) -> list[Weight]:
    cell = layer.cell
    gates = next((g for c, g in GATES.items() if _is(cell, {c})), None)
    kernel, hidden = _variable(cell, "kernel"), _variable(cell, "recurrent_kernel")
    if gates is None or kernel is None or hidden is None:
        return []  # a custom cell: its weights are not read
    units = int(hidden.shape[0])
    bias = _variable(cell, "bias")
    return [
        KerasWeight(f"{name}/kernel", name, layer, "kernel", "recurrent_input", (int(kernel.shape[0]), units),
                    gates=gates, transposed=True, variable=kernel, bias_variable=bias),
        KerasWeight(f"{name}/recurrent_kernel", name, layer, "recurrent_kernel", "recurrent_hidden", (units, units),
                    gates=gates, transposed=True, variable=hidden),
    ]  # fmt: skip


def forget_gate_bias(layer: Any, *, hidden: bool = False) -> list[torch.Tensor]:
    """The forget gate's block of a Keras LSTM's bias (a view), or ``[]`` for other layers. A
    Keras LSTM has one bias: nothing for ``hidden=True`` (PyTorch's second bias)."""
    cell = getattr(layer, "cell", None)
    bias = _variable(cell, "bias") if cell is not None and _is(cell, {"LSTMCell"}) and not hidden else None
    if bias is None:
        return []
    units = int(bias.shape[-1]) // 4
    return [bias.value[units : 2 * units]]


#: (Keras class in the layer's MRO, adapter), tried in order.
ADAPTERS: list[tuple[str, Callable[[str, Any], list[Weight]]]] = [
    ("Dense", _dense), ("BaseConv", _conv), ("BaseConvTranspose", _conv_transpose),
    ("BaseDepthwiseConv", _depthwise), ("BaseSeparableConv", _separable), ("Embedding", _embedding),
    ("RNN", _recurrent), ("EinsumDense", _einsum), ("MultiHeadAttention", _attention), ("GroupedQueryAttention", _attention),
]  # fmt: skip


def module_weights(name: str, module: Any) -> list[Weight]:
    """The weights a Keras layer applies itself (or the layer a :class:`PreActivation` stands for)."""
    layer = module.layer if isinstance(module, _Watched) else module
    if isinstance(module, FusedActivation) or not getattr(layer, "built", False):
        return []
    classes = {c.__name__ for c in _keras_classes(layer)}
    for cls, adapter in ADAPTERS:
        if cls in classes:
            return adapter(name, layer)
    return []


def is_weight_module(module: Any) -> bool:
    return bool(module_weights("", module))


def attention_layers(model: Any) -> list[Attention]:
    """Every ``MultiHeadAttention`` (``GroupedQueryAttention``): its query and key projections,
    applied inside the layer, which sees the attention's input (as ``nn.MultiheadAttention``)."""
    found = []
    for name, layer, weights in weight_modules(model):
        roles = {w.role: w for w in weights}
        if _is(layer, ATTENTION) and "attention_q" in roles and "attention_k" in roles:
            found.append(Attention(name, roles["attention_q"], roles["attention_k"], name, name))
    return found


def internal_activations(model: Any) -> dict[str, Any]:
    """Keras applies a layer's activation where a hook sees it (:class:`FusedActivation`): none hidden."""
    return {}


def unread_weights(model: Any) -> list[str]:
    """``"name (Class)"`` for every leaf layer holding a trainable weight matrix that no adapter
    reads (``EinsumDense``, as inside ``MultiHeadAttention``; ``SeparableConv``)."""
    if not model.built:
        raise _unbuilt(model)
    return [f"{n} ({keras_class(m)})" for n, m in _leaves(model)
            if not module_weights(n, m) and not is_norm(m) and activation(m) is None
            and any(v.trainable and len(v.shape) >= 2 for v in m.weights)]  # fmt: skip


def weight_modules(model: Any) -> list[tuple[str, Any, list[Weight]]]:
    """``(name, layer, weights)`` for every Keras layer that applies weights, in layer order."""
    check(model)
    if not model.built:
        raise _unbuilt(model)
    return [(n, m, ws) for n, m in _leaves(model) if (ws := module_weights(n, m))]


# -- activations -------------------------------------------------------------------------------
def _function_activation(function: Any) -> tuple[ActivationSpec, dict[str, Any]] | None:
    """The registered activation a Keras (or torch) activation function applies, with its
    hyperparameters (Keras' defaults, and a ``functools.partial``'s keywords); ``None`` for
    ``linear`` and for functions the registry does not know."""
    keywords: dict[str, Any] = {}
    while isinstance(function, functools.partial):
        keywords = {**function.keywords, **keywords}
        function = function.func
    spec = activations.find(function) or activations.find(getattr(function, "__name__", ""))  # torch's, else by name
    if spec is None or spec.name == "identity":
        return None
    try:
        defaults = {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
    except (TypeError, ValueError):
        defaults = {}
    given = {_RENAMED.get(k, k): v for k, v in {**defaults, **keywords}.items()}
    if spec.name == "relu" and given.get("negative_slope"):
        spec = activations.get("leaky_relu")
    elif spec.name == "relu" and given.get("max_value") is not None:  # relu(x, max_value=6): capped
        spec, given = activations.get("relu6"), {"max_val": float(given["max_value"])}
    if spec.name == "gelu" and isinstance(given.get("approximate"), bool):
        given["approximate"] = "tanh" if given["approximate"] else "none"
    return spec, {k: v for k, v in given.items() if k in spec.defaults}


def _layer_activation(layer: Any) -> tuple[ActivationSpec, dict[str, Any]] | None:
    kind = keras_class(layer)
    if kind == "ReLU":  # ReLU(max_value=6) is ReLU6; a leaky one is read as leaky (its cap, if any, is not)
        slope = float(layer.negative_slope or 0.0)
        if slope:
            return activations.get("leaky_relu"), {"negative_slope": slope}
        cap = getattr(layer, "max_value", None)
        return (activations.get("relu6"), {"max_val": float(cap)}) if cap is not None else (activations.get("relu"), {})
    if kind == "LeakyReLU":
        return activations.get("leaky_relu"), {"negative_slope": float(layer.negative_slope)}
    if kind == "PReLU":
        alpha = _variable(layer, "alpha")
        slope = float(alpha.value.detach().float().mean()) if alpha is not None else 0.0
        return activations.get("prelu"), {"num_parameters": int(alpha.value.numel()) if alpha is not None else 1, "init": slope}
    if kind == "ELU":
        return activations.get("elu"), {"alpha": float(layer.alpha)}
    if kind == "Softmax":
        axis = layer.axis
        return activations.get("softmax"), {"dim": axis if isinstance(axis, int) else -1}
    if kind == "Activation":
        return _function_activation(layer.activation)
    return None


def activation(module: Any) -> tuple[ActivationSpec, dict[str, Any]] | None:
    """The activation a Keras activation layer (or a :class:`FusedActivation`) applies, with
    its hyperparameters, mapped to trainability's registry; ``None`` for any other layer."""
    if isinstance(module, FusedActivation):
        return module.split.activation
    if isinstance(module, PreActivation) or not is_keras(module):
        return None
    return _layer_activation(module)


#: Convolution layers, whose ``data_format`` says where their channels are.
CONVOLUTIONS = frozenset({"BaseConv", "BaseConvTranspose", "BaseDepthwiseConv", "BaseSeparableConv"})


def channel_axis(module: Any) -> int:
    """Where a layer's output keeps its units: 1 for a convolution with ``data_format="channels_first"``,
    else the last axis (Keras' default, ``channels_last``)."""
    layer = module.layer if isinstance(module, _Watched) else module
    return 1 if _is(layer, CONVOLUTIONS) and getattr(layer, "data_format", None) == "channels_first" else -1


def output_units(module: Any) -> int | None:
    """How many units a layer's output has (``units``, ``filters``), or ``None``."""
    layer = module.layer if isinstance(module, _Watched) else module
    for attribute in ("units", "filters", "output_dim"):
        value = getattr(layer, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def is_norm(module: Any) -> bool:
    return is_keras(module) and _is(module, NORMS)


def is_transparent(module: Any) -> bool:
    return is_keras(module) and _is(module, TRANSPARENT)


def is_ordinary_dropout(module: Any) -> bool:
    return is_keras(module) and _is(module, ORDINARY_DROPOUT)


# -- fused activations: split out for hooks while a pass is watched -----------------------------
class _Split:
    """A weight layer's fused activation, split into two hookable modules for the duration of
    each call while any of them is hooked (reference-counted, so captures can overlap)."""

    def __init__(self, layer: Any, function: Callable[..., Any]) -> None:
        self._layer = weakref.ref(layer)
        self.function = function
        self.activation = _function_activation(function)
        self.pre = _named(PreActivation, keras_class(layer))(self)
        spec = self.activation[0] if self.activation else None
        self.post = _named(FusedActivation, spec.module_type.__name__ if spec else "Activation")(self)
        self._apply = self.apply  # one bound method: what the layer calls while watched
        self._users = 0
        self._handles: list[Any] = []

    @property
    def layer(self) -> Any:
        return self._layer()

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        return self.post(self.pre(z))

    def acquire(self) -> None:
        layer = self.layer
        if self._users == 0 and layer is not None:
            swap = lambda m, *_: m.__dict__.__setitem__("activation", self._apply)  # noqa: E731
            restore = lambda m, *_: m.__dict__.__setitem__("activation", self.function)  # noqa: E731
            self._handles = [layer.register_forward_pre_hook(swap), layer.register_forward_hook(restore, always_call=True)]
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            for handle in self._handles:
                handle.remove()
            self._handles = []


class _Handle:
    """A hook handle that also releases the swap when removed (once)."""

    def __init__(self, handle: Any, split: _Split) -> None:
        self._handle, self._split = handle, split

    def remove(self) -> None:
        if self._split is not None:
            self._handle.remove()
            self._split.release()
            self._split = None


class _Watched(nn.Module):
    def __init__(self, split: _Split) -> None:
        super().__init__()
        self.split = split

    @property
    def layer(self) -> Any:
        return self.split.layer

    def register_forward_hook(self, hook: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.split.acquire()
        return _Handle(super().register_forward_hook(hook, **kwargs), self.split)

    def register_forward_pre_hook(self, hook: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.split.acquire()
        return _Handle(super().register_forward_pre_hook(hook, **kwargs), self.split)


class PreActivation(_Watched):
    """Stands for a Keras layer with a fused activation: its output is the layer's pre-activation
    ``z`` (the class is named after the layer's, ``Dense``)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


class FusedActivation(_Watched):
    """The activation a Keras layer applies inside its call (named after the registered
    activation's module, ``ReLU``)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.split.function(z)


@functools.cache
def _named(base: type[_Watched], name: str) -> type[_Watched]:
    return type(name, (base,), {"__module__": __name__, "__qualname__": name})


_SPLITS: weakref.WeakKeyDictionary[Any, _Split] = weakref.WeakKeyDictionary()


def _split(layer: Any) -> _Split | None:
    """The split of a weight layer's fused activation (one per layer, kept while the layer
    lives), or ``None`` when the layer applies none (``linear``)."""
    function = layer.__dict__.get("activation")
    base = function.func if isinstance(function, functools.partial) else function
    if function is None or getattr(base, "__name__", "") == "linear":
        return None
    split = _SPLITS.get(layer)
    if split is None or (split.function is not function and split._apply is not function):
        split = _SPLITS[layer] = _Split(layer, function)
    return split


def hooked_modules(model: Any) -> list[tuple[str, nn.Module, list[Weight]]]:
    """What a pass hooks: every leaf layer, in layer order; a weight layer with a fused activation
    as its :class:`PreActivation` (named as the layer) and its :class:`FusedActivation`
    (``<layer>/activation``)."""
    if not model.built:
        raise _unbuilt(model)
    out: list[tuple[str, nn.Module, list[Weight]]] = []
    for name, module, weights in [(n, m, module_weights(n, m)) for n, m in _leaves(model)]:
        split = _split(module) if weights else None
        if split is None:
            out.append((name, module, weights))
        else:
            out += [(name, split.pre, weights), (f"{name}/activation", split.post, [])]
    return out


# -- structure ---------------------------------------------------------------------------------
def kind(model: Any) -> str:
    """``"sequential"``, ``"functional"`` or ``"subclassed"``."""
    classes = {c.__name__ for c in _keras_classes(model)}
    if "Sequential" in classes:
        return "sequential"
    return "functional" if "Functional" in classes else "subclassed"


def _subgraph(layer: Any, name: str, hooked: dict[str, Any], edges: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Entry and exit module names of one layer, adding the edges inside it to ``edges``."""
    if not _children(layer):
        if f"{name}/activation" in hooked:
            edges.setdefault(name, []).append(f"{name}/activation")
            return [name], [f"{name}/activation"]
        return ([name], [name]) if name in hooked else ([], [])
    prefix = f"{name}/" if name else ""
    parts = {id(c): (c, _subgraph(c, prefix + c.name, hooked, edges)) for c in _children(layer)}
    if kind(layer) == "functional":
        for child, (_, exits) in parts.values():
            consumers = [parts[id(n.operation)][1][0] for n in child._outbound_nodes if id(n.operation) in parts]
            for a in exits:
                edges.setdefault(a, []).extend(e for entries in consumers for e in entries)
        sources = [c for c in layer.layers if keras_class(c) == "InputLayer"]
        entries = [e for s in sources for n in s._outbound_nodes if id(n.operation) in parts for e in parts[id(n.operation)][1][0]]
        produced = {id(t._keras_history.operation) for t in layer.outputs}
        exits = [x for key, (_, (_, outs)) in parts.items() if key in produced for x in outs]
        return entries, exits
    if kind(layer) == "sequential":
        chain = [io for _, io in parts.values()]
        for (_, exits), (entries, _) in zip(chain, chain[1:], strict=False):
            for a in exits:
                edges.setdefault(a, []).extend(entries)
        return (chain[0][0], chain[-1][1]) if chain else ([], [])
    return [], []  # a subclassed model: its order is known only from a pass


def successors(model: Any) -> dict[str, list[str]] | None:
    """Hooked module name -> the hooked modules that take its output, from the Keras graph of a
    Sequential or Functional model (nested ones too); ``None`` for a subclassed model."""
    if kind(model) == "subclassed":
        return None
    hooked = {n: m for n, m, _ in hooked_modules(model)}
    edges: dict[str, list[str]] = {}
    _subgraph(model, "", hooked, edges)
    return edges


def _graph(model: Any) -> tuple[list[Any], dict[int, list[Any]]]:
    """A functional model's operations (layers and ops on Keras tensors) in topological order, and
    each one's inputs (``InputLayer`` s included), from its first call."""
    order = list(model.operations)
    parents = {id(op): [p.operation for p in op._inbound_nodes[0].parent_nodes] if op._inbound_nodes else []
               for op in order}  # fmt: skip
    return order, parents


def block_groups(model: Any) -> list[list[str]]:
    """Sibling layers of one class, two or more, each with weights and layers of its own (a
    ``TransformerBlock`` layer used twice), by their Keras names: candidate residual blocks,
    decided on a pass as torch modules are (:func:`trainability.graph.block_groups`)."""
    found = []
    for name, layer in named_layers(model):
        by_class: dict[type, list[str]] = {}
        for child in _children(layer):
            if _children(child) and any(v.trainable for v in child.weights):
                by_class.setdefault(type(child), []).append(f"{name}/{child.name}" if name else child.name)
        found += [names for names in by_class.values() if len(names) >= 2]
    return found


def residual_stream(model: Any) -> Stream | None:
    """The residual stream of a functional model whose blocks are written inline, as the
    textbook's encoder (``x = LayerNormalization()(Add()([x, MultiHeadAttention(...)(x, x)]))``):
    every ``Add`` one of whose inputs (the skip) is computed before the other (the branch, which
    reads it) adds a residual block. The blocks must follow each other along one stream (each
    skip downstream of the previous addition); a block ends where the next one's stream starts
    (a post-norm block with its normalization), the last one after as many layers again. ``None``
    for other models, or when no such chain is found. Blocks that are layers of their own
    (subclassed) are found on a pass instead, as torch modules are."""
    if kind(model) != "functional":
        return None
    order, parents = _graph(model)
    ancestors: dict[int, set[int]] = {}
    for layer in order:
        found: set[int] = set()
        for p in parents[id(layer)]:
            found |= {id(p)} | ancestors.get(id(p), set())
        ancestors[id(layer)] = found
    layers = {n for n, _ in named_layers(model) if n}  # hookable: layers, not ops on Keras tensors
    adds = []
    for layer in order:
        inputs = parents[id(layer)]
        if keras_class(layer) != "Add" or len(inputs) < 2 or layer.name not in layers:
            continue
        skips = [p for p in inputs if all(p is q or id(p) in ancestors[id(q)] for q in inputs)]
        if skips and keras_class(skips[0]) != "InputLayer" and skips[0].name in layers:
            adds.append((layer, skips[0]))
    if len(adds) < 2:
        return None
    for (add, _), (_, skip) in zip(adds, adds[1:], strict=False):
        if not (skip is add or id(add) in ancestors[id(skip)]):
            return None  # not one stream
    ends = [skip for _, skip in adds[1:]]
    steps, layer = 0, ends[-1]  # the layers from the one-but-last addition to the stream it leaves (a post-norm)
    while layer is not adds[-2][0] and len(parents[id(layer)]) == 1:
        steps, layer = steps + 1, parents[id(layer)][0]
    if layer is not adds[-2][0]:
        steps = 0
    tail, layer = [], adds[-1][0]  # the last block ends after as many single-input layers
    for _ in range(steps):
        nxt = [c for c in order if len(parents[id(c)]) == 1 and parents[id(c)][0] is layer]
        if len(nxt) != 1:
            break
        layer = nxt[0]
        tail.append(layer)
    ends.append(tail[-1] if tail else adds[-1][0])
    members = {}
    for (add, skip), end in zip(adds, ends, strict=True):
        inside = [c for c in order if id(skip) in ancestors[id(c)] and (c is end or id(c) in ancestors[id(end)])]
        members[add.name] = tuple(c.name for c in inside)
    return Stream(tuple(a.name for a, _ in adds), tuple(s.name for _, s in adds), ends[-1].name, members)


def skip_connections(model: Any) -> list[str] | None:
    """Layers whose output meets another branch in a merge layer (``Add``, ``Concatenate``, ...),
    from the Keras graph: ``[]`` for a Sequential, ``None`` for a subclassed model."""
    found: list[str] = []
    for name, layer in named_layers(model):
        if kind(layer) == "subclassed" and _children(layer):  # its connections are in Python code
            return None
        if not (name and _is(layer, MERGES)):
            continue
        for node in layer._inbound_nodes:
            parents = [p.operation for p in node.parent_nodes]
            if len(parents) >= 2:
                for op in parents:
                    label = "input" if keras_class(op) == "InputLayer" else op.name
                    if label not in found:
                        found.append(label)
    return found


# -- passes and state --------------------------------------------------------------------------
def call_options(model: Any) -> dict[str, Any]:
    """Keras decides dropout and batch statistics by the ``training`` call argument, not by
    torch's train/eval flag; pass the flag (a fresh model is in training mode, as in PyTorch;
    ``model.fit`` leaves it in eval mode)."""
    return {"training": bool(model.training)}


def call_args(model: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A Keras model takes several inputs as one list (``model([x1, x2])``, as ``fit([x1, x2], y)``),
    not as positional arguments."""
    return ([*args],) if len(args) > 1 else args


def state(model: Any) -> list[torch.Tensor]:
    """Tensors a training-mode pass may change besides the weights: every non-trainable variable
    (BatchNormalization's moving statistics, the dropout seed generators' states)."""
    return [v.value for v in model.non_trainable_variables]


def untouched_statistics(model: Any) -> list[tuple[str, Any]]:
    """``BatchNormalization`` layers that this pass would run in inference mode (the model in eval
    mode, so ``training=False``) on moving statistics no batch has updated: still at Keras' initial
    mean 0 and variance 1. A model Keras' ``fit`` has trained has none."""
    if model.training:
        return []
    found = []
    for name, layer in named_layers(model):
        mean, variance = _variable(layer, "moving_mean"), _variable(layer, "moving_variance")
        if name and _is(layer, {"BatchNormalization"}) and mean is not None and variance is not None:
            with torch.no_grad():
                if bool((mean.value == 0).all()) and bool((variance.value == 1).all()):
                    found.append((name, layer))
    return found


@contextlib.contextmanager
def batch_statistics(model: Any, layers: list[tuple[str, Any]]) -> Iterator[None]:
    """For the duration, these ``BatchNormalization`` layers are called with ``training=True``
    (batch statistics, as in a training step; Keras has resolved the argument when the torch
    pre-hook sees it). The moving statistics such a call updates are restored by
    :func:`trainability.adapters.preserved_state`."""

    def train(_layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, {**kwargs, "training": True}

    handles = [layer.register_forward_pre_hook(train, with_kwargs=True) for _, layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def biases(module: Any) -> list[torch.Tensor]:
    return [b for w in module_weights("", module) if (b := w.bias) is not None]


def norm_affine(module: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A Keras normalization's scale and offset (``gamma``, ``beta``), either ``None`` if absent."""
    gamma, beta = _variable(module, "gamma"), _variable(module, "beta")
    return (gamma.value if gamma is not None else None), (beta.value if beta is not None else None)


def example_batch(model: Any, batch: int = 2) -> torch.Tensor:
    """Inputs shaped for a Keras model: from its ``keras.Input`` when it has one, else from the
    first weight layer (features for ``Dense``, channels-last images or sequences for a
    convolution, token ids for ``Embedding``)."""
    found = weight_modules(model)
    if not found:
        raise ValueError("the model has no weight layers to shape an input for")
    _, first, weights = found[0]
    param = weights[0].tensor
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if keras_class(first) == "Embedding":
        shape = tuple(inputs[0].shape[1:]) if len(inputs) == 1 and None not in inputs[0].shape[1:] else (16,)
        return torch.randint(0, int(param.shape[0]), (batch, *shape), device=param.device)
    if len(inputs) == 1 and None not in inputs[0].shape[1:]:
        return torch.randn(batch, *inputs[0].shape[1:], dtype=param.dtype, device=param.device)
    if weights[0].role == "dense":
        return torch.randn(batch, int(param.shape[0]), dtype=param.dtype, device=param.device)
    if weights[0].role == "conv":
        dims = param.dim() - 2
        size = [{1: 64, 2: 32, 3: 16}[dims]] * dims
        transposed = _is(first, {"BaseConvTranspose"})  # (*kernel, out, in), else (*kernel, in/groups, out)
        channels = int(param.shape[-1]) if transposed else int(param.shape[-2]) * (getattr(first, "groups", 1) or 1)
        shape = (batch, channels, *size) if getattr(first, "data_format", "channels_last") == "channels_first" else (batch, *size, channels)
        return torch.randn(shape, dtype=param.dtype, device=param.device)
    raise ValueError(f"cannot shape an example input for a Keras model that starts with {keras_class(first)}; pass data=")


def initializer(identifier: Any) -> Any:
    """A Keras initializer object as trainability's initializer of the same name and config
    (``VarianceScaling(scale=2, mode="fan_avg", distribution="uniform")`` draws the same
    variance); any other identifier is returned unchanged."""
    if not is_keras(identifier) or not hasattr(identifier, "get_config"):
        return identifier
    from trainability import init as inits

    config = {k: v for k, v in identifier.get_config().items() if v is not None}  # None: Keras' defaults
    try:
        return inits.get({"class_name": keras_class(identifier), "config": config})
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"cannot use the Keras initializer {keras_class(identifier)}({config}) here ({exc}); pass its name "
            f"or one of trainability.init's: {', '.join(inits.names())}"
        ) from exc


def __getattr__(name: str) -> Any:  # PEP 562: a deprecated alias, resolved on first use
    if name == "TrainabilityCallback":
        import importlib
        import warnings

        warnings.warn(
            "trainability.adapters.keras.TrainabilityCallback moved to trainability.integrations.keras.TrainabilityCallback",
            DeprecationWarning, stacklevel=2,
        )  # fmt: skip
        # by name: the adapter describes Keras models and does not depend on the Monitor
        return importlib.import_module("trainability.integrations.keras").TrainabilityCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ADAPTERS", "BACKEND", "INSTALL", "FusedActivation", "KerasWeight", "PreActivation", "activation", "backend", "build",
    "call_options", "check", "example_batch", "explain", "hooked_modules", "initializer", "is_keras", "keras_class",
    "load", "module_weights", "named_layers", "skip_connections", "successors", "weight_modules",
]  # fmt: skip
