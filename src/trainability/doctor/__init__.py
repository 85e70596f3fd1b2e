"""The doctor: one forward and backward pass that says, layer by layer, whether a network can
train, which layers are the problem, why, and what to change.

>>> import torch
>>> from trainability import mlp
>>> model = mlp(20, 3, depth=30, width=64, activation="relu", init="default")
>>> report = diagnose(model, torch.randn(128, 20))
>>> sorted({f.kind for f in report.findings})
['beyond_depth_scale', 'init_mismatch', 'vanishing_gradients']
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trainability.doctor import rules
from trainability.doctor.capture import Capture, Record, preserved
from trainability.doctor.report import Finding, LayerStats, Report
from trainability.graph import find_consumers, skip_connections
from trainability.losses import default_loss, surrogate_loss

__all__ = ["Finding", "LayerStats", "Report", "diagnose", "surrogate_loss"]


def _split_batch(inputs: Any, targets: Any) -> tuple[tuple[Any, ...], Any]:
    if isinstance(inputs, torch.utils.data.DataLoader):
        inputs = next(iter(inputs))
    if isinstance(inputs, list) and len(inputs) == 2 and targets is None:  # a DataLoader batch
        inputs, targets = inputs
    if isinstance(inputs, dict):
        raise ValueError("dict batches are not supported: pass the input tensor(s) and targets= separately")
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise ValueError(
            f"inputs must be a tensor, a tuple of tensors or a DataLoader batch, got {type(inputs).__name__}"
        )
    return args, targets


def _input_standardization(x: torch.Tensor) -> tuple[float | None, float | None]:
    if not x.is_floating_point() or x.shape[0] < 2:
        return None, None
    flat = x.detach().float().reshape(x.shape[0], -1)
    std, mean = torch.std_mean(flat, dim=0)
    live = std > 0
    if not live.any():
        return float(mean.pow(2).mean().sqrt()), math.inf
    return float(mean.pow(2).mean().sqrt()), float(std[live].log().pow(2).mean().sqrt())


def layer_stats(record: Record, links: dict, numel: int) -> LayerStats:
    """A :class:`LayerStats` from one capture record (after ``Capture.collect``)."""
    v = record.values
    non_finite = None
    if not (math.isfinite(v.get("mean", 0.0)) and math.isfinite(v.get("std", 0.0))):
        non_finite = "forward"
    elif not math.isfinite(v.get("grad_norm", 0.0)):
        non_finite = "backward"
    elif not math.isfinite(v.get("weight_grad_norm", 0.0)):
        non_finite = "weight_grad"
    grad_norm = v.get("grad_norm")
    link = links.get(record.name)
    weight_grad, weight_norm = v.get("weight_grad_norm"), v.get("weight_norm")
    ratio = weight_grad / weight_norm if weight_grad is not None and weight_norm else None
    return LayerStats(
        name=record.name,
        type=type(record.module).__name__,
        role=record.role,  # type: ignore[arg-type]
        activation=(link.activation.name if link and link.activation else None) if record.role == "weight" else None,
        mean=v["mean"],
        std=v["std"],
        dead_fraction=v.get("dead_fraction"),
        saturated_fraction=v.get("saturated_fraction"),
        grad_norm=grad_norm,
        grad_rms=grad_norm / math.sqrt(numel) if grad_norm is not None else None,
        weight_std=v.get("weight_std"),
        weight_grad_norm=weight_grad,
        grad_weight_ratio=ratio,
        non_finite=non_finite,
    )


def diagnose(
    model: nn.Module,
    inputs: Any,
    targets: torch.Tensor | None = None,
    *,
    loss_fn: Any = None,
) -> Report:
    """Run one instrumented forward and backward pass and return the doctor's :class:`Report`.

    ``inputs`` is a tensor, a tuple of tensors (positional arguments of ``forward``), a
    ``[inputs, targets]`` batch from a DataLoader, or a DataLoader (its first batch). The loss is
    ``loss_fn(output, targets)`` if given; otherwise cross-entropy for integer class targets, MSE
    for float targets, and :func:`surrogate_loss` without targets.

    The model is left exactly as it was: parameters, ``.grad``, train/eval mode, buffers (BatchNorm
    running statistics), the RNG state; and no hook stays behind, even when the forward raises.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    args, targets = _split_batch(inputs, targets)
    if targets is not None and not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    batch_size = int(args[0].shape[0]) if args[0].dim() else 1
    input_finite = all(bool(torch.isfinite(a).all()) for a in args if a.is_floating_point())
    mean_rms, log_std_rms = _input_standardization(args[0])

    with preserved(model), Capture(model) as capture, torch.enable_grad():
        try:
            output = model(*args)
        except Exception as exc:
            shapes = ", ".join(str(tuple(a.shape)) for a in args)
            raise ValueError(f"the model's forward pass failed on inputs of shape {shapes}: {type(exc).__name__}: {exc}") from exc
        out = output if isinstance(output, torch.Tensor) else next(
            (o for o in (output.values() if isinstance(output, dict) else output) if isinstance(o, torch.Tensor)), None
        ) if isinstance(output, (tuple, list, dict)) else None  # fmt: skip
        if out is None:
            raise ValueError(f"the model returned {type(output).__name__}; the doctor needs a tensor output")
        loss = loss_fn(out, targets) if loss_fn is not None else default_loss(out, targets)
        if loss.requires_grad:
            loss.backward()
        capture.collect()
        loss_value = float(loss.detach())
        links, _ = find_consumers(model, order=capture.order)
        records = [r for r in capture.records.values() if r.role in ("weight", "activation")
                   or not math.isfinite(r.values.get("grad_norm", 0.0)) or not math.isfinite(r.values.get("std", 0.0))]  # fmt: skip
        layers = [layer_stats(r, links, r.numel) for r in records]
        skips = skip_connections(model)
        if skips is None:  # untraceable: a module output consumed twice is a branch
            skips = [n for n in capture.records if capture.consumers(n) > 1]
        evidence = rules.Evidence(
            layers=layers,
            weight_var={s.name: s.weight_std**2 for s in layers if s.weight_std is not None},
            order=capture.order,
            links=links,
            numel={r.name: r.numel for r in capture.records.values()},
            grad_finite={r.name: math.isfinite(r.values["grad_norm"]) for r in capture.records.values() if "grad_norm" in r.values},
            inputs_of={r.name: r.inputs for r in capture.records.values()},
            loss=loss_value,
            batch_size=batch_size,
            input_finite=input_finite,
            input_mean_rms=mean_rms,
            input_log_std_rms=log_std_rms,
            skips=skips,
        )
        found: list[Finding] = rules.non_finite(evidence)
        if not found:
            found += rules.gradient_flow(evidence)
            found += rules.init_mismatch(evidence)
            found += rules.unit_health(evidence)
            found += rules.beyond_depth_scale(evidence, list(model.named_modules()))
        found += rules.self_normalization(evidence, list(model.named_modules()))
    return Report(layers=layers, findings=found, loss=loss_value, batch_size=batch_size)
