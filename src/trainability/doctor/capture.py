"""One instrumented forward and backward pass: per-module statistics, kept on the device.

Statistics are computed as 0-d tensors inside hooks and copied to the host once, at the end, in
one ``torch.cat(...).tolist()``: no host sync per module or per parameter. The capture owns its
hooks and removes them on exit, even when the forward pass raises; :func:`preserved` restores
everything a pass could touch (grads, train/eval flags, buffers such as BatchNorm's running
statistics, the RNG).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainability import activations
from trainability.graph import is_activation, is_weight_layer

#: A unit is saturated where phi'(x) is under this fraction of its maximum.
SATURATION_THRESHOLD = 0.01
#: Without ``precise``, weight sums and norms are re-read every this many collections.
WEIGHT_REFRESH = 10


@dataclass
class Record:
    """What one leaf module did on the pass (its first call, if it ran more than once)."""

    name: str
    module: nn.Module
    role: str  # "weight", "activation" or "other"
    index: int
    numel: int
    forward_stats: list[str] = field(default_factory=list)
    forward: list[torch.Tensor] | None = None
    backward: list[torch.Tensor] | None = None
    units: int = 0
    inputs: list[str] = field(default_factory=list)  # producers of the inputs, by module name
    values: dict[str, float] = field(default_factory=dict)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        return next((o for o in obj if isinstance(o, torch.Tensor)), None)
    return None


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Restore grads, train/eval flags, buffers and the RNG state on exit."""
    params = list(model.parameters())
    grads = [p.grad for p in params]
    flags = [m.training for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    for p in params:
        p.grad = None
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        for m, t in zip(model.modules(), flags, strict=True):
            m.training = t
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


class Capture:
    """Hooks on every leaf module around one forward and backward pass.

    Use as a context manager (attach on enter, detach on exit), or keep one capture and call
    :meth:`attach`, :meth:`reset` and :meth:`detach` across steps, as the monitor does. Forward
    passes without autograd (validation under ``no_grad``) are not recorded.
    """

    def __init__(self, model: nn.Module, *, names: set[str] | None = None, precise: bool = True,
                 training_only: bool = False, consumers: dict[str, Any] | None = None) -> None:  # fmt: skip
        """``names`` limits the hooks to those leaf modules; ``precise=False`` reduces in the
        tensors' own dtype (faster, for the monitor) instead of float64, so a float32 square
        norm overflows to inf beyond about 1e19; ``training_only`` skips modules in eval mode.

        ``consumers`` (weight layer name -> the ActivationSpec fed directly, or None) hooks weight
        layers only, half the hooks: dead and saturated units are then read off the
        pre-activation (a ReLU unit is alive where its input is ever positive; a sigmoid/tanh
        output saturates beyond ``spec.saturation_bound()``). Without ``precise``, each weight
        layer's weight sum and norm are re-read every ``WEIGHT_REFRESH``-th collection."""
        self.model = model
        self._training_only = training_only
        self._dtype = torch.float64 if precise else None
        self._pre_activation = consumers is not None
        self._leaves: list[tuple[str, nn.Module, str, Any]] = []
        # fast mode: a layer's weight sum and norm are re-read every 10th recording only (a step
        # moves weights by lr * grad, a relative change far below the statistics' precision)
        self._weight_every = 1 if precise else WEIGHT_REFRESH
        self._weight_cache: dict[str, tuple[int, dict[str, float]]] = {}
        for name, module in model.named_modules():
            if next(module.children(), None) is not None or (names is not None and name not in names):
                continue
            role = "weight" if is_weight_layer(module) else "activation" if is_activation(module) else "other"
            if consumers is not None:
                if role == "weight":
                    self._leaves.append((name, module, role, consumers.get(name)))
            else:
                self._leaves.append((name, module, role, activations.get(module) if role == "activation" else None))
        self._handles: list[Any] = []
        self.reset()

    def reset(self) -> None:
        """Forget the last pass's records (the hooks stay)."""
        self.records: dict[str, Record] = {}
        self.order: list[tuple[str, nn.Module]] = []
        self._producers: dict[int, str] = {}
        self._consumers: dict[str, int] = {}
        self._keep: list[torch.Tensor] = []
        self._last_weight: nn.Module | None = None

    def attach(self) -> Capture:
        if not self._handles:
            self._handles = [leaf[1].register_forward_hook(self._hook(*leaf)) for leaf in self._leaves]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._keep, self._producers = [], {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> Capture:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def consumers(self, name: str) -> int:
        """How many module calls took this module's output as an input."""
        return self._consumers.get(name, 0)

    def _hook(self, name: str, module: nn.Module, role: str, spec: Any):  # noqa: ANN202 - a hook factory
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name in self.records or not torch.is_grad_enabled() or (self._training_only and not mod.training):
                return
            self.order.append((name, mod))
            producers = [self._producers[id(a)] for a in args if isinstance(a, torch.Tensor) and id(a) in self._producers]
            for p in producers:
                self._consumers[p] = self._consumers.get(p, 0) + 1
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            if role == "weight":
                self._last_weight = mod
            record = Record(name, mod, role, len(self.records), out.numel(), inputs=producers)
            self._forward_stats(record, out.detach(), spec)
            self.records[name] = record
            self._producers[id(out)] = name
            self._keep.append(out)
            if out.requires_grad:
                out.register_hook(self._grad_hook(record))

        return hook

    def _forward_stats(self, record: Record, x: torch.Tensor, spec: Any) -> None:
        # The sum (NaN/Inf propagate; in float64 finite values cannot overflow) and the norm;
        # mean and std follow on the host. Counts, not fractions, to save a division per layer.
        dtype = self._dtype or x.dtype
        stats = [x.sum(dtype=dtype), torch.linalg.vector_norm(x, dtype=dtype)]
        names = ["sum", "norm"]
        if spec is not None:
            if spec.can_die and x.dim() >= 2:
                unit_dim = -1 if x.dim() == 2 or isinstance(self._last_weight, nn.Linear) else 1
                units = x if x.dim() == 2 else x.movedim(unit_dim, -1).reshape(-1, x.shape[unit_dim])
                record.units = units.shape[1]
                stats.append((units.amax(dim=0) > 0).sum(dtype=dtype))
                names.append("alive_units")
            if spec.relative_derivative is not None:
                if self._pre_activation:
                    saturated = x.abs() > spec.saturation_bound(SATURATION_THRESHOLD)
                else:
                    saturated = spec.relative_derivative(x) < SATURATION_THRESHOLD
                stats.append(saturated.sum(dtype=dtype))
                names.append("saturated_count")
        record.forward, record.forward_stats = stats, names

    def _grad_hook(self, record: Record):  # noqa: ANN202 - a hook factory
        dtype = self._dtype

        def hook(grad: torch.Tensor) -> None:
            if record.backward is None:  # in float64, non-finite exactly when grad is
                record.backward = [torch.linalg.vector_norm(grad.detach(), dtype=dtype or grad.dtype)]

        return hook

    def collect(self) -> None:
        """Copy every recorded statistic to the host in one transfer."""
        names: list[tuple[Record, str]] = []
        scalars: list[torch.Tensor] = []
        for r in self.records.values():
            if r.forward is not None:
                names += [(r, n) for n in r.forward_stats]
                scalars += r.forward
            if r.backward is not None:
                names.append((r, "grad_norm"))
                scalars += r.backward
            if r.role == "weight":
                w = r.module.weight.detach()
                dtype = self._dtype or w.dtype
                cached = self._weight_cache.get(r.name)
                if cached is not None and cached[0] % self._weight_every:  # fast mode: weights move slowly
                    self._weight_cache[r.name] = (cached[0] + 1, cached[1])
                    r.values.update(cached[1])
                else:
                    names += [(r, "weight_sum"), (r, "weight_norm")]
                    scalars += [w.sum(dtype=dtype), torch.linalg.vector_norm(w, dtype=dtype)]
                if r.module.weight.grad is not None:
                    names.append((r, "weight_grad_norm"))
                    scalars.append(torch.linalg.vector_norm(r.module.weight.grad.detach(), dtype=dtype))
        if not scalars:
            return
        if len({(t.dtype, t.device) for t in scalars}) > 1:  # mixed precision or devices
            scalars = [t.to(device=scalars[0].device, dtype=torch.float64) for t in scalars]
        flat = torch.stack(scalars).tolist()
        for (record, name), value in zip(names, flat, strict=True):
            record.values[name] = value
        if self._weight_every != 1:
            for record, name in names:
                if name == "weight_sum":
                    self._weight_cache[record.name] = (1, {k: record.values[k] for k in ("weight_sum", "weight_norm")})
        for record in self.records.values():
            v = record.values
            if "sum" in v:
                v["mean"], v["std"] = _moments(v["sum"], v["norm"], record.numel)
            if "alive_units" in v:
                v["dead_fraction"] = 1.0 - v["alive_units"] / max(record.units, 1)
            if "saturated_count" in v:
                v["saturated_fraction"] = v["saturated_count"] / max(record.numel, 1)
            if "weight_sum" in v:
                _, v["weight_std"] = _moments(v["weight_sum"], v["weight_norm"], record.module.weight.numel())


def _moments(total: float, norm: float, n: int) -> tuple[float, float]:
    """Mean and (population) std from the sum and the 2-norm of n values."""
    mean = total / n
    if not (math.isfinite(mean) and math.isfinite(norm)):
        return mean if not math.isfinite(mean) else math.nan, math.nan
    return mean, math.sqrt(max(norm * norm / n - mean * mean, 0.0))
