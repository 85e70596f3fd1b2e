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

import contextlib
import gc
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from trainability import adapters, graph
from trainability.batches import Batch, model_loss, output_tensor
from trainability.distributed import Ledger, initialized, world_size
from trainability.doctor import rules
from trainability.doctor.capture import Capture, Record, one_thread, preserved
from trainability.doctor.report import BlockStats, Finding, LayerStats, Report, TimeStats
from trainability.graph import find_consumers, skip_connections
from trainability.losses import default_loss, surrogate_loss

__all__ = ["BlockStats", "Finding", "LayerStats", "Report", "TimeStats", "diagnose", "surrogate_loss"]


def layer_stats(record: Record, links: dict, numel: int) -> list[LayerStats]:
    """The :class:`LayerStats` rows of one capture record (after ``Capture.collect``): one for
    an activation, one per weight for a weight module."""
    v = record.values
    non_finite = None
    if not (math.isfinite(v.get("mean", 0.0)) and math.isfinite(v.get("std", 0.0))):
        non_finite = "forward"
    elif not math.isfinite(v.get("grad_norm", 0.0)):
        non_finite = "backward"
    grad_norm = v.get("grad_norm")
    link = links.get(record.name)
    output = {
        "mean": v.get("mean"), "std": v.get("std"), "dead_fraction": v.get("dead_fraction"),
        "saturated_fraction": v.get("saturated_fraction"), "grad_norm": grad_norm,
        "grad_rms": grad_norm / math.sqrt(numel) if grad_norm is not None else None,
        "unit_grad_rms": v.get("unit_grad_rms"),
    }  # fmt: skip
    kind = type(record.module).__name__
    if record.role != "weight" or not record.weights:
        return [LayerStats(name=record.name, type=kind, role=record.role, activation=None,  # type: ignore[arg-type]
                           non_finite=non_finite, **output)]  # fmt: skip
    rows = []
    single = len(record.weights) == 1
    for i, w in enumerate(record.weights):
        weight_grad, weight_norm = v.get(f"weight_grad_norm:{w.name}"), v.get(f"weight_norm:{w.name}")
        bad = non_finite if i == 0 else None
        if bad is None and weight_grad is not None and not math.isfinite(weight_grad):
            bad = "weight_grad"
        rows.append(LayerStats(
            name=w.name, type=kind, role="weight",
            activation=(link.activation.name if link and link.activation else None) if single else None,
            **(output if i == 0 else dict.fromkeys(output)),  # type: ignore[arg-type]
            weight_std=v.get(f"weight_std:{w.name}"), weight_grad_norm=weight_grad,
            grad_weight_ratio=weight_grad / weight_norm if weight_grad is not None and weight_norm else None,
            non_finite=bad, module=record.name, weight_role=w.role,
        ))  # fmt: skip
    return rows


def block_stats(capture: Capture) -> list[BlockStats]:
    """The residual stream, block by block (empty for a network without residual blocks), from a
    capture built with ``blocks=graph.block_groups(model)``; the doctor and the Monitor judge
    gradient flow along it."""
    points = capture.stream_points()
    if not points:
        return []
    modules = capture.modules
    return [BlockStats(name, type(modules[name.removesuffix(":output")]).__name__, e.get("mean", math.nan),
                       e.get("std", math.nan), e.get("grad_rms"), e.get("unit_grad_rms"), e.get("shape"))
            for name, e in points]  # fmt: skip


def _projection_rms(capture: Capture, module: str, weight: adapters.Weight) -> float | None:
    """RMS per element of a query or key: the projection's own output when it is a module of
    its own, else its input's RMS times ``||W||_F / sqrt(units)`` (plus the bias), with ``units``
    the weight's fan-out (``(E, E)`` of a packed projection, ``heads x head_dim`` of a Keras
    ``EinsumDense`` kernel) and the input's statistics read off the module that produced it."""
    record = capture.records.get(module)
    if record is None:
        return None
    v = record.values
    if weight.rows is None and weight.module is record.module and "std" in v:
        return math.sqrt(v["mean"] ** 2 + v["std"] ** 2)
    producer = capture.records.get(record.inputs[0]) if record.inputs else None
    if producer is None or "std" not in producer.values:
        return None
    x_rms = math.hypot(producer.values["mean"], producer.values["std"])
    with torch.no_grad():
        units = weight.fans[1]
        square = x_rms**2 * float(weight.tensor.detach().double().pow(2).sum()) / units
        bias = weight.bias
        if bias is not None:
            square += float(bias.detach().double().pow(2).sum()) / units
    return math.sqrt(square)


def _attention(model: nn.Module, capture: Capture) -> list[tuple[str, float, list[str]]]:
    """(attention layer, estimated std of its logits, its q/k projection modules) for each
    attention layer found."""
    out = []
    for layer in adapters.attention_layers(model):
        q = _projection_rms(capture, layer.q_module, layer.q)
        k = _projection_rms(capture, layer.k_module, layer.k)
        if q is not None and k is not None:
            out.append((layer.name, q * k, list(dict.fromkeys([layer.q_module, layer.k_module]))))
    return out


def _untouched_note(untouched: list[tuple[str, Any]], batch_size: int) -> list[str]:
    """Normalizations in eval mode whose running statistics no batch has updated (mean 0, variance
    1) do not normalize: a forward through them is the network neither a training step (batch
    statistics) nor a trained model (the data's running statistics) runs, and judging it reports
    what no one will train (a plain stack of identity norms: a stream that grows, a vanishing
    gradient at PyTorch's default conv init, an overconfident first loss). So the pass ran them on
    the batch's statistics, and the report says so."""
    if not untouched:
        return []
    names = [n for n, _ in untouched]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    what = (f"{len(names)} normalization layer(s) ({shown}) are in eval mode with running statistics no batch has "
            "updated yet (mean 0, variance 1), so they would not normalize; ")
    if batch_size < 2:  # a batch of one has no statistics of its own
        return [what + "with one sample this pass could not use the batch's statistics instead, so what it found "
                "may not hold in training: pass two samples or more, or train before evaluating in eval mode."]
    return [what + "this pass used each batch's statistics, as training does. Train, or run batches in train mode, "
            "before evaluating the model in eval mode."]


def _time(capture: Capture, model: nn.Module) -> list[TimeStats]:
    found = {r.name: TimeStats(r.name, type(r.module).__name__, r.time_values)
             for r in capture.records.values() if len(r.time_values) > 1}  # fmt: skip
    for wrapper, (forward, backward) in adapters.bidirectional_halves(model).items():
        f, b = found.get(forward), found.get(backward)
        if f is None or b is None or len(f.grad_norms) != len(b.grad_norms):
            continue
        # the backward half's steps come in the order it reads them (the capture flips them): back to
        # input order; per input step the two directions' gradients add, their norms (taken as
        # uncorrelated) in quadrature
        merged = [math.hypot(x, y) for x, y in zip(f.grad_norms, b.grad_norms[::-1], strict=True)]
        del found[forward], found[backward]
        found[wrapper] = TimeStats(wrapper, f"Bidirectional({f.type})", merged, bidirectional=True, parts=(forward, backward))
    return list(found.values())


def diagnose(
    model: nn.Module,
    inputs: Any,
    targets: torch.Tensor | None = None,
    *,
    loss_fn: Any = None,
) -> Report:
    """Run one instrumented forward and backward pass and return the doctor's :class:`Report`.

    ``inputs`` is a tensor, a tuple of tensors (positional arguments of ``forward``), a dict of
    keyword arguments (``input_ids``, ``attention_mask``, ``pixel_values``, ...; integer token ids
    are fine), an ``[inputs, targets]`` batch from a DataLoader, or a DataLoader (its first
    batch). The loss is ``loss_fn(output, targets)`` if given; else the model's own ``loss`` when
    it computed one (``labels`` in a dict batch, a ``transformers`` ``ModelOutput``); else
    cross-entropy for integer class targets, MSE for float targets, and :func:`surrogate_loss`
    without targets, on the output tensor (``logits`` of a dict output, or its first tensor).

    The model is left exactly as it was: parameters, ``.grad``, train/eval mode, buffers (BatchNorm
    running statistics), the RNG state; and no hook stays behind, even when the forward raises.
    A Keras 3 model (PyTorch backend) runs with ``training=`` its torch train/eval flag, and its
    layers are reported by their Keras names. NumPy arrays are taken wherever tensors are.

    The pass runs in the model's own mode, but for normalizations in eval mode whose running
    statistics no batch has updated (mean 0, variance 1): those normalize with the batch's
    statistics, as a training step does, and ``report.notes`` says so (docs/DOCTOR.md).
    """
    with adapters.structure_fixed(), _collector_paused():  # a dozen helpers below walk the modules: once is enough
        return _diagnose(model, inputs, targets, loss_fn)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one pass: the pass allocates thousands of small
    objects (hooks, records, autograd nodes), and the collections they trigger walk every object
    the process holds (1-5 ms of a 50 ms pass on a 100-layer MLP, measured). What the pass leaves
    is collected at the first collection after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _diagnose(model: nn.Module, inputs: Any, targets: torch.Tensor | None, loss_fn: Any) -> Report:
    view = adapters.view(model)
    group = getattr(view.given, "process_group", None) if view.wrapper == "ddp" else None
    world = world_size(group) if view.wrapper in ("ddp", "fsdp") and initialized() else 1
    batch = Batch.of(inputs, targets)
    adapters.build(model, batch.args, batch.kwargs)  # a Keras model that has never run builds on this batch
    targets = batch.targets
    batch_size = batch.size
    input_finite = all(bool(torch.isfinite(a).all()) for a in batch.tensors if a.is_floating_point())
    moments = rules.input_moments(batch.first)
    blocks, layer_stream = graph.block_groups(model), adapters.residual_stream(model)  # modules; or a Keras graph's

    untouched = adapters.untouched_statistics(model)
    with (preserved(model), adapters.preserved_state(model),  # a Keras model's moving statistics too
          adapters.batch_statistics(model, untouched if batch_size > 1 else []),  # as training normalizes (_untouched_note)
          Capture(model, blocks=blocks, time=True, stream=layer_stream) as capture, torch.enable_grad(),
          contextlib.ExitStack() as reading):  # fmt: skip
        try:
            output = batch(model)
        except Exception as exc:
            raise ValueError(f"the model's forward pass failed on inputs of shape {batch.describe()}: {type(exc).__name__}: {exc}") from exc
        own = model_loss(output) if loss_fn is None and targets is None else None
        if own is not None:
            loss = own
        else:
            out = output_tensor(output)
            if out is None:
                raise ValueError(f"the model returned {type(output).__name__}; the doctor needs a tensor output")
            loss = loss_fn(out, targets) if loss_fn is not None else default_loss(out, targets)
        if loss.requires_grad:
            loss.backward()
        # what follows reads the pass: many small reductions and copies, each too small to share
        # between threads (a handoff costs more than the work): on one thread until the pass ends
        reading.enter_context(one_thread())
        # one read of every statistic; under DDP/FSDP2 combined across the ranks (each ran its own
        # batch through the same model), so that every rank returns the same report
        ledger = Ledger()
        capture.stage(ledger, sharded=view.sharded)
        capture.stage_time(ledger)
        ledger.put(("d", "loss"), loss.detach(), "sum")
        ledger.put(("d", "batch"), float(batch_size), "sum")
        ledger.put(("d", "non_finite_inputs"), 0.0 if input_finite else 1.0, "sum")
        if moments is not None:
            ledger.put(("d", "input_sum"), moments[0], "sum")
            ledger.put(("d", "input_squares"), moments[1], "sum")
            ledger.put(("d", "input_rows"), float(moments[2]), "sum")
        values = ledger.read(group if world > 1 else None, agree=world > 1) or {}
        capture.absorb(values, grad_scale=1.0 / world)
        capture.absorb_time(values)
        loss_value = values[("d", "loss")][0] / world
        batch_size = int(values[("d", "batch")][0])
        input_finite = values[("d", "non_finite_inputs")][0] == 0
        input_summary = (rules.input_stats_of(values[("d", "input_sum")], values[("d", "input_squares")],
                                              int(values[("d", "input_rows")][0])) if moments is not None else None)  # fmt: skip
        links, _ = find_consumers(model, order=capture.order)
        records = [r for r in capture.records.values() if r.role in ("weight", "activation")
                   or not math.isfinite(r.values.get("grad_norm", 0.0)) or not math.isfinite(r.values.get("std", 0.0))]  # fmt: skip
        layers = [row for r in records for row in layer_stats(r, links, r.numel)]
        skips = skip_connections(model)
        if skips is None:  # untraceable: a module output consumed twice is a branch
            skips = [n for n in capture.records if capture.consumers(n) > 1]
        stream, time = block_stats(capture), _time(capture, model)
        out = output_tensor(output)
        integer = targets if targets is not None else batch.kwargs.get("labels") if own is not None else None
        classes = int(out.shape[-1]) if (isinstance(integer, torch.Tensor) and not integer.is_floating_point()
                                         and out is not None and out.dim() >= 2 and loss_fn is None) else None  # fmt: skip
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
            inputs=input_summary,
            skips=skips,
            blocks=stream,
            time=time,
            inside_blocks=graph.inside_blocks([n for n, _ in capture.order], capture.residual_blocks(), layer_stream),
            classes=classes,
            attention=_attention(model, capture),
        )
        found: list[Finding] = rules.non_finite(evidence)
        if not found:
            found += rules.gradient_flow(evidence)
            found += rules.gradient_through_time(evidence)
            found += rules.init_mismatch(evidence)
            found += rules.unit_health(evidence)
            found += rules.attention_saturation(evidence)
            if any(f.kind in ("vanishing_gradients", "exploding_gradients") for f in found):
                # the theory explains a measured problem; where the measurement on this very network
                # shows none, the mean-field prediction for a typical draw is not a finding
                found = rules.explain_depth(found, rules.beyond_depth_scale(evidence, adapters.named_modules(model)))
        found += rules.self_normalization(evidence, adapters.named_modules(model))
    return Report(layers=layers, findings=found, loss=loss_value, batch_size=batch_size, blocks=stream, time=time,
                  unread=adapters.unread_weights(model), notes=_untouched_note(untouched, batch_size))
