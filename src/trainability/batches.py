"""Batches and outputs as models really take and give them.

A batch's inputs are a tensor, a tuple of tensors (positional arguments of ``forward``) or a dict
passed as keyword arguments (``input_ids``, ``attention_mask``, ``pixel_values``, ``labels``...);
integer token ids are fine. NumPy arrays are taken wherever tensors are (what Keras' ``fit``
takes), and a list of them as the inputs of a multi-input model: float arrays become torch's
default dtype (float32, as Keras' ``floatx``), integer arrays int64 (what embeddings and
cross-entropy take). A model's output is a tensor, a tuple or list (its first tensor), a
dict or a ``transformers`` ``ModelOutput``: its ``loss`` is used when the model computed one
(``labels`` in the batch), else its ``logits`` or first tensor goes to the default loss.

>>> import torch
>>> batch = Batch.of({"x": torch.zeros(4, 3)})
>>> batch.kwargs.keys(), batch.size
(dict_keys(['x']), 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainability import adapters


@dataclass
class Batch:
    """Positional and keyword inputs for ``model(*args, **kwargs)``, and targets if given."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    targets: Any = None

    @classmethod
    def of(cls, inputs: Any, targets: Any = None) -> Batch:
        """Read a batch: a tensor or NumPy array, a tuple or list of them (positional arguments,
        or a Keras model's inputs), a dict of keyword arguments, an ``[inputs, targets]`` pair of
        tensors from a DataLoader, or a DataLoader (its first batch). NumPy arrays are converted
        (:func:`as_tensor`); a list that holds one is inputs, never a DataLoader's pair."""
        if isinstance(inputs, torch.utils.data.DataLoader):
            inputs = next(iter(inputs))
        if isinstance(inputs, list) and len(inputs) == 2 and targets is None and not any(isinstance(v, np.ndarray) for v in inputs):
            inputs, targets = inputs  # a DataLoader batch (its collate gives tensors, never arrays)
        if isinstance(inputs, Batch):
            return inputs if targets is None else cls(inputs.args, inputs.kwargs, as_tensor(targets, "targets"))
        if isinstance(inputs, Mapping):
            kwargs = {k: as_tensor(v, f"inputs[{k!r}]") if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
            if not kwargs or not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
                raise ValueError("a dict batch must hold at least one tensor or NumPy array (e.g. input_ids or pixel_values)")
            return cls((), kwargs, _targets(targets))
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        args = tuple(as_tensor(a, "inputs") if isinstance(a, np.ndarray) else a for a in args)
        if not args or not all(isinstance(a, torch.Tensor) for a in args):
            got = type(inputs).__name__ if not args or not isinstance(inputs, (tuple, list)) else (
                f"a {type(inputs).__name__} holding {', '.join(sorted({type(a).__name__ for a in args}))}")  # fmt: skip
            raise ValueError(
                "inputs must be a tensor or NumPy array, a tuple or list of them, a dict of keyword tensors or a "
                f"DataLoader batch, got {got}"
            )
        return cls(args, {}, _targets(targets))

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (*self.args, *self.kwargs.values()) if isinstance(t, torch.Tensor)]

    @property
    def first(self) -> torch.Tensor:
        """The main input: the first positional tensor, else ``input_ids``/``pixel_values``/... ."""
        return self.tensors[0]

    @property
    def size(self) -> int:
        first = self.first
        return int(first.shape[0]) if first.dim() else 1

    @property
    def labels_inside(self) -> bool:
        """The model computes its own loss (``labels`` passed as a keyword)."""
        return self.kwargs.get("labels") is not None

    def describe(self) -> str:
        parts = [str(tuple(a.shape)) for a in self.args if isinstance(a, torch.Tensor)]
        parts += [f"{k}={tuple(v.shape)}" for k, v in self.kwargs.items() if isinstance(v, torch.Tensor)]
        return ", ".join(parts)

    def to(self, device: torch.device) -> Batch:
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return Batch(tuple(move(a) for a in self.args), {k: move(v) for k, v in self.kwargs.items()},
                     move(self.targets))  # fmt: skip

    def head(self, n: int) -> Batch:
        """The first ``n`` samples (tensors sliced along dim 0)."""
        cut = lambda t: t[:n] if isinstance(t, torch.Tensor) and t.dim() else t  # noqa: E731
        return Batch(tuple(cut(a) for a in self.args), {k: cut(v) for k, v in self.kwargs.items()}, cut(self.targets))

    def __call__(self, model: nn.Module) -> Any:
        """``model(*args, **kwargs)``, with what the model's library needs besides (a Keras
        model's ``training``, from its train/eval flag; :func:`trainability.adapters.call_options`),
        several inputs as the model takes them (a Keras model: one list)."""
        return model(*adapters.call_args(model, self.args), **{**adapters.call_options(model), **self.kwargs})


def as_tensor(value: Any, what: str = "inputs") -> torch.Tensor:
    """A tensor for a tensor or NumPy array: float arrays in torch's default dtype (float32, as
    Keras' ``fit`` converts them to its ``floatx``), integer arrays as int64 (class labels and
    token ids, as cross-entropy and embeddings take them), booleans as they are. Anything else
    raises ``ValueError`` naming ``what`` and the fix.

    >>> as_tensor(np.zeros((2, 3))).dtype, as_tensor(np.arange(3, dtype=np.int32)).dtype
    (torch.float32, torch.int64)
    """
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be a tensor or a NumPy array, got {type(value).__name__}")
    if value.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(value)).to(torch.get_default_dtype())
    if value.dtype.kind in "iu":
        return torch.from_numpy(value.astype(np.int64))
    if value.dtype.kind == "b":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(
        f"{what} is a NumPy array of dtype {value.dtype}, which is not numbers a model takes: convert it first "
        "(x.astype('float32') for features, integer class indices for labels)"
    )


def _targets(targets: Any) -> torch.Tensor | None:
    return None if targets is None else as_tensor(targets, "targets")


def output_tensor(output: Any) -> torch.Tensor | None:
    """The prediction in a model's output: the tensor itself, ``logits`` of a dict or
    ``ModelOutput``, else its first tensor (skipping a ``loss``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        return next((v for k, v in output.items() if k != "loss" and isinstance(v, torch.Tensor)), None)
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


def model_loss(output: Any) -> torch.Tensor | None:
    """The loss a model computed itself (``output.loss``), or ``None``."""
    if isinstance(output, Mapping):
        loss = output.get("loss")
        return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else None
    return None


__all__ = ["Batch", "as_tensor", "model_loss", "output_tensor"]
