"""How foreign models look to trainability: every weight the gradient flows through.

A :class:`Weight` is one weight matrix, or one block of a packed one, with its fans read off its
real layout. The module that applies it is a *weight module*: the doctor hooks it, ``initialize``
fills its weights. Architecture knowledge lives in this package only, one adapter per framework,
each speaking the same functions:

- :mod:`trainability.adapters.pytorch`: ``torch.nn`` modules and those of libraries built on them
  (``transformers``' GPT-2 ``Conv1D``, its activation classes, ``LlamaRMSNorm``);
- :mod:`trainability.adapters.keras`: Keras 3 models on the PyTorch backend (``Dense`` kernels
  ``(in, out)``, layers by their Keras names); Keras is never imported for a torch model;
- :mod:`trainability.adapters.wrappers`: what a model is wrapped in (DDP, FSDP2, ``torch.compile``,
  Accelerate).

The framework is decided once, at an entry point (``diagnose``, ``Monitor``, ``initialize``,
``repair``), by :func:`view`: a :class:`View` holds the unwrapped model and its adapter, and every
function here that takes a model takes a view as well, without deciding again. Functions that take
one module (``module_weights``, ``time_dim``) ask that module's adapter.

>>> from torch import nn
>>> [(w.name, w.fans) for w in module_weights("lstm", nn.LSTM(8, 16))]
[('lstm.weight_ih_l0', (8, 16)), ('lstm.weight_hh_l0', (16, 16))]
>>> view(nn.Sequential(nn.Linear(4, 2))).framework
'torch'
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import nn

from trainability.activations import ActivationSpec
from trainability.adapters import pytorch
from trainability.adapters.base import GATES, Attention, Role, Stream, Weight, join
from trainability.adapters.pytorch import (
    ADAPTERS,
    CONV_TYPES,
    FOREIGN_ACTIVATIONS,
    NORM_TYPES,
    PACKED_QKV,
    QK_PAIRS,
    RECURRENT_TYPES,
    TRANSPARENT_TYPES,
)
from trainability.adapters.wrappers import unwrap


def keras_of(obj: Any) -> ModuleType | None:
    """The Keras adapter (:mod:`trainability.adapters.keras`) when ``obj`` is a Keras layer or
    model (or its stand-in for a fused activation), else ``None``; Keras is never imported here."""
    if "keras" not in sys.modules:
        return None
    from trainability.adapters import keras

    return keras if keras.owns(obj) else None


def adapter_of(obj: Any) -> ModuleType:
    """The adapter module that describes ``obj`` (a model or one of its modules)."""
    if isinstance(obj, View):
        return obj.adapter
    return keras_of(obj) or pytorch


@dataclass(frozen=True, eq=False)
class View:
    """One model as trainability sees it, decided once.

    ``model`` is the user's model with any wrapper taken off (what is hooked and read);
    ``given`` is what the user passed (what a forward pass calls: DDP's forward synchronizes
    buffers, a compiled module runs its graph); ``adapter`` describes its modules; ``wrapper`` is
    ``"ddp"``, ``"fsdp"`` (FSDP2), ``"compiled"``, ... or ``None``."""

    model: nn.Module = field(repr=False)
    given: Any = field(repr=False)
    adapter: ModuleType = field(repr=False)
    wrapper: str | None = None

    def __repr__(self) -> str:
        return f"View({self.framework} {type(self.model).__name__}, wrapper={self.wrapper!r})"

    @property
    def framework(self) -> str:
        return "keras" if self.adapter is not pytorch else "torch"

    @property
    def keras(self) -> ModuleType | None:
        """The Keras adapter for a Keras model, else ``None``."""
        return None if self.adapter is pytorch else self.adapter

    @property
    def sharded(self) -> bool:
        """FSDP2: parameters and their gradients are ``DTensor`` shards."""
        return self.wrapper == "fsdp"

    def weight_modules(self) -> list[tuple[str, nn.Module, list[Weight]]]:
        return self.adapter.weight_modules(self.model)

    def weights(self) -> list[Weight]:
        return [w for _, _, ws in self.weight_modules() for w in ws]

    def named_modules(self) -> list[tuple[str, nn.Module]]:
        return self.adapter.named_modules(self.model)

    def hooked_modules(self) -> list[tuple[str, nn.Module, list[Weight]]]:
        return self.adapter.hooked_modules(self.model)

    def call_options(self) -> dict[str, Any]:
        return self.adapter.call_options(self.model)

    def call_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return self.adapter.call_args(self.model, args)


def view(model: Any) -> View:
    """The :class:`View` of a model: wrappers taken off, its framework decided (a view is
    returned as it is). Raises ``ValueError`` for anything that is not a model trainability can
    read (a Keras model on another backend is told to set ``KERAS_BACKEND=torch``)."""
    if isinstance(model, View):
        return model
    inner, wrapper = unwrap(model)
    adapter = adapter_of(inner)
    adapter.check(inner)
    if wrapper == "fsdp1":
        raise ValueError(
            "FullyShardedDataParallel (FSDP1) flattens the model's parameters, so no layer can be read; "
            "shard with FSDP2 instead (torch.distributed.fsdp.fully_shard), or pass the model before wrapping"
        )
    return View(inner, model, adapter, wrapper)


def check_model(model: Any) -> None:
    """Raise ``ValueError`` unless ``model`` is a ``torch.nn.Module`` (or one wrapped for data
    parallelism); a Keras model on another backend is told to set ``KERAS_BACKEND=torch``."""
    view(model)


def _model(model: Any) -> tuple[ModuleType, nn.Module]:
    v = view(model)
    return v.adapter, v.model


# -- a whole model -------------------------------------------------------------------------------
def weight_modules(model: nn.Module | View) -> list[tuple[str, nn.Module, list[Weight]]]:
    """``(name, module, weights)`` for every module that applies weights, in registration order.

    A module that applies its children's weights itself (``nn.MultiheadAttention`` uses
    ``out_proj.weight`` without calling ``out_proj``) claims them: the children are not listed.
    A Keras model's layers come from ``model.layers``, by their Keras names.
    """
    adapter, m = _model(model)
    return adapter.weight_modules(m)


def weights(model: nn.Module | View) -> list[Weight]:
    """Every :class:`Weight` of the model, in registration order."""
    return [w for _, _, ws in weight_modules(model) for w in ws]


def structure_fixed() -> contextlib.AbstractContextManager[None]:
    """A scope in which no model's modules change: they are walked once, and what was found is
    kept for the next helper that asks (:func:`trainability.adapters.pytorch.structure_fixed`)."""
    return pytorch.structure_fixed()


def named_modules(model: nn.Module | View) -> list[tuple[str, nn.Module]]:
    """``model.named_modules()``, or a Keras model's layers by their Keras names."""
    adapter, m = _model(model)
    return adapter.named_modules(m)


def hooked_modules(model: nn.Module | View) -> list[tuple[str, nn.Module, list[Weight]]]:
    """What a pass watches: every weight module with its weights, and every other leaf module
    (with no weights), in registration order; a Keras layer's fused activation split out."""
    adapter, m = _model(model)
    return adapter.hooked_modules(m)


def unread_weights(model: nn.Module | View) -> list[str]:
    """``"name (Type)"`` for every module that holds a weight matrix no adapter reads (a custom
    layer applying its own ``weight``, Keras' ``EinsumDense``): the doctor measures neither its
    gradient nor its scale, and ``initialize`` leaves it alone."""
    adapter, m = _model(model)
    return adapter.unread_weights(m)


def call_options(model: nn.Module | View) -> dict[str, Any]:
    """Keyword arguments a forward call needs besides the batch: a Keras model's ``training``."""
    adapter, m = _model(model)
    return adapter.call_options(m)


def call_args(model: nn.Module | View, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A batch's positional inputs as the model takes them: one argument each for a torch model,
    one list for a Keras model with several inputs."""
    adapter, m = _model(model)
    return adapter.call_args(m, args)


@contextlib.contextmanager
def preserved_state(model: nn.Module | View) -> Iterator[None]:
    """Restore, on exit, what a training-mode pass changes in a Keras model besides the weights:
    its non-trainable variables (BatchNormalization's moving statistics, the dropout seed
    generators' states). A torch model's buffers are restored by ``doctor.capture.preserved``."""
    adapter, m = _model(model)
    saved = [(t, t.detach().clone()) for t in adapter.state(m)]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, value in saved:
                t.copy_(value)


def residual_stream(model: nn.Module | View) -> Stream | None:
    """The residual stream read off a model's own layer graph (a Keras functional model whose
    blocks are written inline, joined by ``Add``), or ``None`` (a torch model's blocks are modules,
    found on a pass by :func:`trainability.graph.block_groups`)."""
    adapter, m = _model(model)
    return adapter.residual_stream(m)


def untouched_statistics(model: nn.Module | View) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` for every normalization that a pass in the model's current mode would run
    on running statistics no batch has updated yet (eval mode, BatchNorm still at mean 0 and
    variance 1): that pass is not the network anyone trains or deploys."""
    adapter, m = _model(model)
    return adapter.untouched_statistics(m)


@contextlib.contextmanager
def batch_statistics(model: nn.Module | View, layers: list[tuple[str, nn.Module]]) -> Iterator[None]:
    """Run these normalizations (from :func:`untouched_statistics`) on the batch's own statistics
    for the duration, as a training step does; what that updates is restored by the doctor's
    ``preserved`` and :func:`preserved_state`."""
    adapter, m = _model(model)
    with adapter.batch_statistics(m, layers):
        yield


def build(model: nn.Module | View, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Make the model's weights exist: a Keras model that has never run builds on this batch."""
    adapter, m = _model(model)
    adapter.build(m, args, kwargs)


def bidirectional_halves(model: nn.Module | View) -> dict[str, tuple[str, str]]:
    """``{wrapper: (forward half, backward half)}`` for recurrent layers built as two modules (Keras'
    ``Bidirectional``); ``nn.LSTM(bidirectional=True)`` is one module and needs none."""
    adapter, m = _model(model)
    return adapter.bidirectional_halves(m)


def attention_layers(model: nn.Module | View) -> list[Attention]:
    """The attention layers of a model whose query/key projections can be found:
    ``nn.MultiheadAttention``, packed q/k/v projections (:data:`PACKED_QKV`, output size three
    times the input) and sibling q/k projections (:data:`QK_PAIRS`)."""
    adapter, m = _model(model)
    return adapter.attention_layers(m)


def internal_activations(model: nn.Module | View) -> dict[str, tuple[ActivationSpec, dict[str, Any]]]:
    """Activations that a module applies from a plain function attribute, invisible to hooks
    (``nn.TransformerEncoderLayer.activation``): weight module name -> (activation, hyperparameters)."""
    adapter, m = _model(model)
    return adapter.internal_activations(m)


def example_batch(model: nn.Module | View, batch: int = 2) -> Any:
    """Inputs shaped for the model (token ids, pixel values, features, sequences); raises
    ``ValueError`` (asking for ``data=``) when no shape can be read off the model."""
    adapter, m = _model(model)
    return adapter.example_batch(m, batch)


def keras_initializer(identifier: Any) -> Any:
    """A Keras initializer object as trainability's initializer of the same name and config;
    anything else unchanged."""
    keras = keras_of(identifier)
    return keras.initializer(identifier) if keras is not None else identifier


# -- one module ------------------------------------------------------------------------------------
def module_weights(name: str, module: nn.Module) -> list[Weight]:
    """The :class:`Weight` s a module applies itself (``[]`` for a module that applies none)."""
    return adapter_of(module).module_weights(name, module)


def is_weight_module(module: nn.Module) -> bool:
    return adapter_of(module).is_weight_module(module)


def is_norm(module: nn.Module) -> bool:
    """A normalization layer: torch's, another library's (``LlamaRMSNorm``), or Keras'."""
    return adapter_of(module).is_norm(module)


def channel_axis(module: nn.Module) -> int:
    """Where a weight module's output keeps its units: 1 for a torch convolution or a Keras one
    with ``channels_first``, else -1 (dense layers, Keras' ``channels_last`` convolutions)."""
    return adapter_of(module).channel_axis(module)


def output_units(module: nn.Module) -> int | None:
    """How many units a weight module's output has, read off the module (``None`` where it does
    not say): the layout of per-unit statistics every rank agrees on before any pass."""
    return adapter_of(module).output_units(module)


def is_transparent(module: nn.Module) -> bool:
    """Does the module pass each unit's signal on unchanged in kind (dropout, pooling, reshaping)?"""
    return adapter_of(module).is_transparent(module)


def activation(module: nn.Module) -> tuple[ActivationSpec, dict[str, Any]] | None:
    """The activation a module applies and its hyperparameters, or ``None``."""
    return adapter_of(module).activation(module)


def foreign_activation(module: nn.Module) -> ActivationSpec | None:
    """The registered activation a module applies (``None`` when it applies none)."""
    found = activation(module)
    return found[0] if found else None


def foreign_hyperparameters(module: nn.Module) -> dict[str, Any]:
    found = activation(module)
    return dict(found[1]) if found else {}


def time_dim(module: nn.Module) -> int | None:
    """The time axis of a recurrent module's (batched) input: ``nn.RNN``/``LSTM``/``GRU`` by
    ``batch_first``, a Keras recurrent layer's; ``None`` for any other module."""
    return adapter_of(module).time_dim(module)


def reads_backwards(module: nn.Module) -> bool:
    """Whether a recurrent module reads its input from the last step to the first (a Keras layer
    with ``go_backwards=True``, as ``Bidirectional`` builds its backward half)."""
    return adapter_of(module).reads_backwards(module)


def forget_gate_bias(module: nn.Module, *, hidden: bool = False) -> list[torch.Tensor]:
    """Views of an LSTM's forget-gate biases: ``bias_ih``'s block per layer and direction for
    ``nn.LSTM``/``nn.LSTMCell`` (``hidden=True``: ``bias_hh``'s, which adds to it), the cell
    bias's for a Keras ``LSTM`` (which has one bias: nothing for ``hidden=True``); empty for any
    other module."""
    return adapter_of(module).forget_gate_bias(module, hidden=hidden)


def biases(module: nn.Module) -> list[torch.Tensor]:
    """The biases of a weight module (an LSTM's ``bias_ih_l0`` and ``bias_hh_l0`` too)."""
    return adapter_of(module).biases(module)


def norm_affine(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A normalization layer's scale and shift (``weight``/``bias``, Keras' ``gamma``/``beta``)."""
    return adapter_of(module).norm_affine(module)


def is_ordinary_dropout(module: nn.Module) -> bool:
    """Dropout that is not SELU's AlphaDropout (it breaks self-normalization)."""
    return adapter_of(module).is_ordinary_dropout(module)


__all__ = [
    "ADAPTERS", "CONV_TYPES", "FOREIGN_ACTIVATIONS", "GATES", "NORM_TYPES", "PACKED_QKV", "QK_PAIRS",
    "RECURRENT_TYPES", "TRANSPARENT_TYPES", "Attention", "Role", "Stream", "View", "Weight", "activation", "adapter_of",
    "attention_layers", "batch_statistics", "biases", "bidirectional_halves", "build", "call_args", "call_options", "channel_axis", "check_model",
    "example_batch", "foreign_activation", "foreign_hyperparameters", "forget_gate_bias", "hooked_modules",
    "internal_activations", "is_norm", "is_ordinary_dropout", "is_transparent", "is_weight_module", "join",
    "keras_initializer", "keras_of", "module_weights", "named_modules", "norm_affine", "output_units", "preserved_state",
    "reads_backwards", "residual_stream", "structure_fixed", "time_dim", "unread_weights", "untouched_statistics", "view", "weight_modules", "weights",
]  # fmt: skip
