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


@dataclass
class Record:
    """What one leaf module did on the pass (its first call, if it ran more than once)."""

    name: str
    module: nn.Module
    role: str  # "weight", "activation" or "other"
    index: int
    numel: int
    forward_stats: list[str] = field(default_factory=list)
    forward: torch.Tensor | None = None
    backward: torch.Tensor | None = None
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
    """Hooks on every leaf module; use as a context manager around one forward+backward."""

    def __init__(self, model: nn.Module, *, names: set[str] | None = None, precise: bool = True) -> None:
        """``names`` limits the hooks to those leaf modules; ``precise=False`` reduces in the
        tensors' own dtype (faster, for the monitor) instead of float64, so a float32 square
        norm overflows to inf beyond about 1e19."""
        self.model = model
        self.names = names
        self._dtype = torch.float64 if precise else None
        self.records: dict[str, Record] = {}
        self.order: list[tuple[str, nn.Module]] = []
        self._producers: dict[int, str] = {}
        self._consumers: dict[str, int] = {}
        self._keep: list[torch.Tensor] = []
        self._handles: list[Any] = []
        self._last_weight: nn.Module | None = None

    def __enter__(self) -> Capture:
        for name, module in self.model.named_modules():
            if next(module.children(), None) is None and (self.names is None or name in self.names):
                self._handles.append(module.register_forward_hook(self._hook(name, module)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._keep.clear()
        self._producers.clear()

    def consumers(self, name: str) -> int:
        """How many module calls took this module's output as an input."""
        return self._consumers.get(name, 0)

    def _hook(self, name: str, module: nn.Module):  # noqa: ANN202 - a hook factory
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name in self.records:
                return
            self.order.append((name, mod))
            producers = [self._producers[id(a)] for a in args if isinstance(a, torch.Tensor) and id(a) in self._producers]
            for p in producers:
                self._consumers[p] = self._consumers.get(p, 0) + 1
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            role = "weight" if is_weight_layer(mod) else "activation" if is_activation(mod) else "other"
            if role == "weight":
                self._last_weight = mod
            record = Record(name, mod, role, len(self.records), out.numel(), inputs=producers)
            self._forward_stats(record, out.detach())
            self.records[name] = record
            self._producers[id(out)] = name
            self._keep.append(out)
            if out.requires_grad:
                out.register_hook(self._grad_hook(record))

        return hook

    def _forward_stats(self, record: Record, x: torch.Tensor) -> None:
        # Two reductions in float64: the sum (NaN/Inf propagate, finite values cannot overflow)
        # and the norm; mean and std follow from them on the host.
        dtype = self._dtype
        stats = [x.sum(dtype=dtype), torch.linalg.vector_norm(x, dtype=dtype)]
        names = ["sum", "norm"]
        if record.role == "activation":
            spec = activations.get(record.module)
            if spec.can_die and x.dim() >= 2:
                unit_dim = -1 if x.dim() == 2 or isinstance(self._last_weight, nn.Linear) else 1
                units = x.movedim(unit_dim, -1).reshape(-1, x.shape[unit_dim])
                stats.append(1.0 - (units.amax(dim=0) > 0).to(x.dtype).mean())
                names.append("dead_fraction")
            if spec.relative_derivative is not None:
                stats.append((spec.relative_derivative(x) < SATURATION_THRESHOLD).to(x.dtype).mean())
                names.append("saturated_fraction")
        record.forward, record.forward_stats = torch.stack([t.to(torch.float64) for t in stats]), names

    def _grad_hook(self, record: Record):  # noqa: ANN202 - a hook factory
        dtype = self._dtype

        def hook(grad: torch.Tensor) -> None:
            if record.backward is None:  # a float64 norm: non-finite exactly when grad is
                record.backward = torch.linalg.vector_norm(grad.detach(), dtype=dtype).reshape(1)

        return hook

    def collect(self) -> None:
        """Copy every recorded statistic to the host in one transfer."""
        parts: list[tuple[Record, list[str], torch.Tensor]] = []
        for r in self.records.values():
            if r.forward is not None:
                parts.append((r, r.forward_stats, r.forward))
            if r.backward is not None:
                parts.append((r, ["grad_norm"], r.backward))
            if r.role == "weight":
                w = r.module.weight.detach()
                stats = [w.sum(dtype=self._dtype), torch.linalg.vector_norm(w, dtype=self._dtype)]
                names = ["weight_sum", "weight_norm"]
                if r.module.weight.grad is not None:
                    stats.append(torch.linalg.vector_norm(r.module.weight.grad.detach(), dtype=self._dtype))
                    names.append("weight_grad_norm")
                parts.append((r, names, torch.stack([t.to(torch.float64) for t in stats])))
        if not parts:
            return
        device = parts[0][2].device
        flat = torch.cat([t.to(device) for _, _, t in parts]).tolist()
        i = 0
        for record, names, _ in parts:
            for n in names:
                record.values[n] = flat[i]
                i += 1
            v = record.values
            if "sum" in v and "mean" not in v:
                v["mean"], v["std"] = _moments(v["sum"], v["norm"], record.numel)
            if "weight_sum" in v and "weight_std" not in v:
                _, v["weight_std"] = _moments(v["weight_sum"], v["weight_norm"], record.module.weight.numel())


def _moments(total: float, norm: float, n: int) -> tuple[float, float]:
    """Mean and (population) std from the sum and the 2-norm of n values."""
    mean = total / n
    if not (math.isfinite(mean) and math.isfinite(norm)):
        return mean if not math.isfinite(mean) else math.nan, math.nan
    return mean, math.sqrt(max(norm * norm / n - mean * mean, 0.0))
