"""One instrumented forward and backward pass: per-module statistics, kept on the device.

Statistics are computed as 0-d tensors inside hooks and copied to the host once, at the end, in
one ``torch.stack(...).tolist()``: no host sync per module or per parameter. The capture owns its
hooks and removes them on exit, even when the forward pass raises; :func:`preserved` restores
everything a pass could touch (grads, train/eval flags, buffers such as BatchNorm's running
statistics, the RNG).

Besides every leaf module and every weight module (:mod:`trainability.adapters`), a capture can
watch two things that carry the signal in modern networks:

- *residual blocks* (``blocks=``): the gradient reaching each block's output is the gradient on
  the residual stream at that depth;
- *time* (``time=True``): for recurrent modules, the gradient reaching the module's input at
  each time step (``nn.RNN``/``LSTM``/``GRU``), or each call's output for a cell called in a
  loop (``nn.LSTMCell`` ...).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainability import adapters, graph
from trainability.distributed import Ledger
from trainability.doctor.records import LayerStats

#: A unit is saturated where phi'(x) is under this fraction of its maximum.
SATURATION_THRESHOLD = 0.01
#: Without ``precise``, weight sums and norms are re-read every this many collections.
WEIGHT_REFRESH = 10


@dataclass
class Record:
    """What one module did on the pass (its first call, if it ran more than once)."""

    name: str
    module: nn.Module
    role: str  # "weight", "activation" or "other"
    index: int
    numel: int
    forward_stats: list[str] = field(default_factory=list)
    forward: list[torch.Tensor] | None = None
    backward: list[torch.Tensor] | None = None
    units: int = 0
    grad_units: int = 0  # batch x units of the position-summed gradient
    inputs: list[str] = field(default_factory=list)  # producers of the inputs, by module name
    values: dict[str, float] = field(default_factory=dict)
    weights: list[adapters.Weight] = field(default_factory=list)
    time: list[torch.Tensor] = field(default_factory=list)  # per time step: gradient norms
    channel_axis: int = -1  # where a weight module's output keeps its units (1: a conv's channels first)
    time_values: list[float] = field(default_factory=list)
    unit_max: torch.Tensor | None = None  # each unit's maximum over the batch, counted in collect


def single_threaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` on one intra-op thread. Statistics are small reductions right after (or amid)
    large multithreaded kernels: handing each to a second thread costs more than computing it
    (measured here: sum + norm + amax of a 128 x 256 tensor in 8 us on one thread, tens of us on
    two when idle, milliseconds when the other core is busy). Setting the thread count is a
    thread-local flag (0.2 us a toggle)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        if threads == 1:
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside (see :func:`single_threaded`): for the many small
    reductions and copies that read a pass, each too small to share."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


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
    """Hooks on every leaf module and weight module around one forward and backward pass.

    Use as a context manager (attach on enter, detach on exit), or keep one capture and call
    :meth:`attach`, :meth:`reset` and :meth:`detach` across steps, as the monitor does. Forward
    passes without autograd (validation under ``no_grad``) are not recorded.
    """

    def __init__(self, model: nn.Module, *, names: set[str] | None = None, precise: bool = True,
                 training_only: bool = False, consumers: dict[str, Any] | None = None,
                 blocks: list[list[str]] | None = None, time: bool = False,
                 stream: adapters.Stream | None = None) -> None:  # fmt: skip
        """``names`` limits the hooks to those modules; ``precise=False`` reduces in the
        tensors' own dtype (faster, for the monitor) instead of float64, so a float32 square
        norm overflows to inf beyond about 1e19; ``training_only`` skips modules in eval mode.

        ``consumers`` (weight module name -> the ActivationSpec fed directly, or ``(spec,
        hyperparameters)``, or None) hooks weight modules only, half the hooks: dead and saturated
        units are then read off the pre-activation (a ReLU unit is alive where its input is ever
        positive; a sigmoid/tanh output saturates beyond ``spec.saturation_bound()``, a capped
        one at its cap). Without ``precise``, each weight's
        sum and norm are re-read every ``WEIGHT_REFRESH``-th collection.

        ``blocks`` (groups of sibling module names, :func:`trainability.graph.block_groups`) are
        watched as residual-block candidates: the gradient reaching each one's input (and the
        last one's output) is recorded, and each group is checked once for residual structure
        (:meth:`stream_points`). ``stream`` (:func:`trainability.adapters.residual_stream`) is a
        residual stream read off the layer graph, its blocks known to be residual: the output of
        the module entering each block, and leaving the last, is recorded as the stream there.
        ``time`` records gradients through time for recurrent modules (:attr:`Record.time`)."""
        self.model = model
        self._training_only = training_only
        self._dtype = torch.float64 if precise else None
        self._pre_activation = consumers is not None
        self._leaves: list[tuple[str, nn.Module, str, Any, list[adapters.Weight]]] = []
        self._weight_every = 1 if precise else WEIGHT_REFRESH
        self._weight_cache: dict[str, tuple[int, dict[str, float]]] = {}
        for name, module, weights in graph.hooked_modules(model):
            if names is not None and name not in names:
                continue
            role = "weight" if weights else "activation" if graph.is_activation(module) else "other"
            if consumers is not None:
                if role == "weight":
                    fed = consumers.get(name)
                    self._leaves.append((name, module, role, fed if fed is None or isinstance(fed, tuple) else (fed, {}), weights))
            else:
                act = graph.activation_and_hyperparameters(module) if role == "activation" else (None, {})
                self._leaves.append((name, module, role, act if act[0] is not None else None, weights))
        modules = self.modules = dict(adapters.named_modules(model))  # name -> module, read once
        self._groups = [[(n, modules[n]) for n in group] for group in (blocks or [])]
        self._stream = stream
        if stream is not None:  # one more group, residual by construction
            self._groups.append([(n, modules[n]) for n in stream.blocks])
        self._time = time
        # widths of the weight modules' outputs (for dead units), known before any pass
        self._widths = {name: width for name, module, role, _, _ in self._leaves
                        if role == "weight" and (width := adapters.output_units(module)) is not None}  # fmt: skip
        self._layouts: dict[bool, Any] = {}
        self._handles: list[Any] = []
        self.reset()

    def reset(self) -> None:
        """Forget the last pass's records (the hooks stay)."""
        self.records: dict[str, Record] = {}
        self.order: list[tuple[str, nn.Module]] = []
        self.points: dict[str, dict[str, Any]] = {}  # block input/output -> its statistics
        self.residual = graph.ResidualCheck()
        if self._stream is not None:
            self.residual.checks[len(self._groups) - 1] = {"pair": True, "self": True}
        self._point_of: dict[int, str] = {}
        self._producers: dict[int, str] = {}
        self._consumers: dict[str, int] = {}
        self._keep: list[torch.Tensor] = []
        self._last_axis = -1  # the channel axis of the last weight module's output
        self._time_boxes: dict[str, list[torch.Tensor]] = {}

    def attach(self) -> Capture:
        if not self._handles:
            for leaf in self._leaves:
                name, module, _, _, weights = leaf
                self._handles.append(module.register_forward_hook(self._hook(*leaf)))
                if self._time and adapters.time_dim(module) is not None:
                    self._handles.append(module.register_forward_pre_hook(self._time_hook(name)))
            if self._stream is not None:
                modules = dict(adapters.named_modules(self.model))
                g, stream = len(self._groups) - 1, self._stream
                points = [(enter, block, i, "input") for i, (enter, block) in enumerate(zip(stream.enters, stream.blocks, strict=True))]
                for enter, block, i, side in [*points, (stream.leaves, f"{stream.blocks[-1]}:output", len(points) - 1, "output")]:
                    self._handles.append(modules[enter].register_forward_hook(self._stream_hook(block, g, i, side)))
            for g, group in enumerate(self._groups[: len(self._groups) - (self._stream is not None)]):
                for i, (name, module) in enumerate(group):
                    pre, post = self._block_hooks(name, g, i)
                    self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
                    self._handles.append(module.register_forward_hook(post, with_kwargs=True))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._keep, self._producers = [], {}
        # the stream tensors carry gradient hooks that reference this capture: a cycle through
        # autograd's C++ graph, which Python's collector cannot break (60 MB a BERT pass, kept)
        self.residual.inputs.clear()

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

    def _active(self, mod: nn.Module) -> bool:
        return torch.is_grad_enabled() and not (self._training_only and not mod.training)

    def _hook(self, name: str, module: nn.Module, role: str, act: Any, weights: list[adapters.Weight]):  # noqa: ANN202
        cell = isinstance(module, nn.RNNCellBase) and self._time
        axis = adapters.channel_axis(module) if role == "weight" else -1

        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self._active(mod):
                return
            if name in self.records:
                if cell:  # a cell called once per time step: the gradient reaching each call's output
                    self._time_output(self.records[name], output)
                return
            self.order.append((name, mod))
            producers = []
            if self._dtype is not None:  # the doctor's pass: who feeds whom (the monitor needs none of it)
                producers = [self._producers[id(a)] for a in args if isinstance(a, torch.Tensor) and id(a) in self._producers]
                for p in producers:
                    self._consumers[p] = self._consumers.get(p, 0) + 1
            out = graph.first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            if role == "weight":
                self._last_axis = axis
            record = Record(name, mod, role, len(self.records), out.numel(), inputs=producers, weights=weights, channel_axis=axis)
            self._forward_stats(record, out.detach(), act)
            self.records[name] = record
            if self._dtype is not None:  # who feeds whom, by tensor identity: keep the tensor so its id stays its own
                self._producers[id(out)] = name
                self._keep.append(out)
            if out.requires_grad:
                out.register_hook(functools.partial(self._on_grad, record))
            if cell:
                self._time_output(record, output)

        return single_threaded(hook)

    def _time_output(self, record: Record, output: Any) -> None:
        out = graph.first_tensor(output)
        if out is None or not out.requires_grad:
            return
        slot = len(record.time)
        record.time.append(torch.full((), math.nan, dtype=self._dtype or out.dtype, device=out.device))

        def hook(grad: torch.Tensor) -> None:
            record.time[slot] = torch.linalg.vector_norm(grad.detach(), dtype=self._dtype or grad.dtype)

        out.register_hook(single_threaded(hook))

    def _time_hook(self, name: str):  # noqa: ANN202 - a hook factory
        """Before an RNN/LSTM/GRU runs: make its input's gradient observable and record its norm
        per time step (the input itself is returned unchanged, or as a leaf that requires grad
        when nothing upstream does)."""

        def hook(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not self._active(mod) or not args or not isinstance(args[0], torch.Tensor) or name in self.records:
                return None
            x = args[0]
            if not x.is_floating_point():
                return None
            replaced = None
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
                replaced = (x, *args[1:])
            time_dim = adapters.time_dim(mod) if x.dim() == 3 else 0  # unbatched: (time, features)
            dims = [d for d in range(x.dim()) if d != time_dim]
            dtype = self._dtype or x.dtype
            box: list[torch.Tensor] = []

            backwards = adapters.reads_backwards(mod)  # its first step is the input's last

            def grad_hook(grad: torch.Tensor) -> None:
                norms = torch.linalg.vector_norm(grad.detach(), dim=dims, dtype=dtype)
                box.append(norms.flip(0) if backwards else norms)

            x.register_hook(single_threaded(grad_hook))
            self._time_boxes[name] = box
            return replaced

        return hook

    def _block_hooks(self, name: str, group: int, index: int):  # noqa: ANN202 - a hook factory
        """A pre-hook that records the stream entering the block (outer blocks first, so a tensor
        that enters a stage and its first layer is the stage's), and a hook that records the
        block's output and checks, once per group, whether the blocks are residual."""

        @single_threaded
        def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not self._active(mod):
                return
            x = graph.block_input(args, kwargs)
            if x is None or not x.is_floating_point():
                return
            self.residual.entered(group, index, x)
            self._point(name, x, group, index, "input")

        @single_threaded
        def post(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            y = graph.first_tensor(output)
            if not self._active(mod) or y is None or not y.is_floating_point():
                return
            self.residual.left(group, index, y)
            self._point(f"{name}:output", y, group, index, "output")

        return pre, post

    def _stream_hook(self, name: str, group: int, index: int, side: str):  # noqa: ANN202 - a hook factory
        """A hook recording a module's output as the stream entering (or leaving) a block."""

        @single_threaded
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            y = graph.first_tensor(output)
            if self._active(mod) and y is not None and y.is_floating_point():
                self._point(name, y, group, index, side)

        return hook

    def _point(self, name: str, t: torch.Tensor, group: int, index: int, side: str) -> None:
        """Record a stream tensor's statistics and the gradient reaching it (once per tensor; a
        block's output that is the next block's input is recorded as that input)."""
        if name in self.points:
            return
        seen = self._point_of.get(id(t))
        if seen is not None:
            if side == "input" and self.points[seen]["side"] == "output":
                entry = self.points.pop(seen)
                entry.update(group=group, index=index, side=side)
                self.points[name] = entry
                self._point_of[id(t)] = name
            return
        dtype = self._dtype or t.dtype
        entry: dict[str, Any] = {"group": group, "index": index, "side": side, "numel": t.numel(), "order": len(self._point_of),
                                 "shape": tuple(t.shape),
                                 "sum": t.detach().sum(dtype=dtype), "norm": torch.linalg.vector_norm(t.detach(), dtype=dtype)}  # fmt: skip
        self.points[name] = entry
        self._point_of[id(t)] = name
        self._keep.append(t)
        if t.requires_grad:
            dims = _position_dims(t, channel_last=t.dim() <= 3)

            def grad_hook(grad: torch.Tensor) -> None:
                if "grad" not in entry:
                    g = grad.detach()
                    entry["grad"] = torch.linalg.vector_norm(g, dtype=dtype)
                    summed = g.sum(dims) if dims else g
                    entry["units"] = summed.numel()
                    entry["unit_grad"] = torch.linalg.vector_norm(summed, dtype=dtype)

            t.register_hook(grad_hook)

    def residual_blocks(self) -> list[str]:
        """The blocks of every group found residual."""
        return [n for g, group in enumerate(self._groups) if self.residual.residual(g) for n, _ in group]

    def stream_points(self) -> list[tuple[str, dict[str, Any]]]:
        """The residual stream: the input of every block in a group found residual, and the last
        block's output where the block adds its own input back, in execution order, each tensor
        once. Empty when no group of blocks is residual."""
        residual = {g for g in range(len(self._groups)) if self.residual.residual(g)}
        last: dict[int, int] = {}
        for entry in self.points.values():
            if entry["group"] in residual:
                last[entry["group"]] = max(last.get(entry["group"], -1), entry["index"])
        order = sorted(self.points.items(), key=lambda item: item[1]["order"])
        return [(name, e) for name, e in order if e["group"] in residual and (
            e["side"] == "input" or (e["index"] == last[e["group"]] and self.residual.adds_itself(e["group"])))]  # fmt: skip

    def _forward_stats(self, record: Record, x: torch.Tensor, act: tuple[Any, dict[str, Any]] | None) -> None:
        # The sum (NaN/Inf propagate; in float64 finite values cannot overflow) and the norm;
        # mean and std follow on the host (torch.std_mean is 30x slower on a CPU: 150 us against
        # 5 us for a 128 x 256 tensor). Fast mode (the monitor) reduces in the tensor's dtype.
        # Counts, not fractions, to save a division.
        dtype = self._dtype
        stats = list(_sum_and_norm(x, dtype))
        names = ["sum", "norm"]
        if act is not None:
            spec, hyperparameters = act
            if spec.can_die and x.dim() >= 2:
                unit_dim = -1 if x.dim() == 2 else self._last_axis
                units = x if x.dim() == 2 else x.movedim(unit_dim, -1).reshape(-1, x.shape[unit_dim])
                record.units = units.shape[1]
                record.unit_max = units.amax(dim=0)  # counted for every layer at once in collect()
            if spec.saturates():
                saturated = spec.saturated(x, pre_activation=self._pre_activation, threshold=SATURATION_THRESHOLD, **hyperparameters)
                stats.append(saturated.sum(dtype=dtype))
                names.append("saturated_count")
        record.forward, record.forward_stats = stats, names

    def _on_grad(self, record: Record, grad: torch.Tensor) -> None:
        """The gradient reaching a module's output: its norm, and for a weight module with
        positions (pixels, steps) the norm of the per-sample, per-unit gradient summed over them."""
        if record.backward is not None:
            return
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)  # see single_threaded
        try:
            g = grad.detach()
            dtype = self._dtype or g.dtype
            record.backward = [_norm(g, dtype)]  # non-finite exactly when grad is
            if record.role == "weight" and g.dim() > 2:
                module = record.module
                batch_first = getattr(module, "batch_first", True) or not isinstance(module, (nn.RNNBase, nn.MultiheadAttention))
                dims = _position_dims(g, channel_last=record.channel_axis == -1, batch_dim=0 if batch_first else 1)
                summed = g.sum(dims)  # what each unit learns from, per sample
                record.grad_units = summed.numel()
                record.backward.append(torch.linalg.vector_norm(summed, dtype=dtype))
        finally:
            if threads > 1:
                torch.set_num_threads(threads)

    # -- reading the pass ----------------------------------------------------------------------------
    def _layout(self, sharded: bool) -> dict[str, tuple[list[tuple[str, str, str]], dict[tuple[str, str, str], int]]]:
        """Where each statistic goes in the few vectors a pass is read in, one per way ranks
        combine them: built once from the modules (every leaf, weight and stream point), so that it
        is the same on every rank whatever ran where."""
        cached = self._layouts.get(sharded)
        if cached is not None:
            return cached
        keys: dict[str, list[tuple[str, str, str]]] = {"sum": [], "sumsq": [], "max": [], "same": []}
        for name, _, _, _, weights in self._leaves:
            keys["sum"] += [("r", name, stat) for stat in ("numel", "sum", "grads", "grad_units", "saturated_count", "saturates")]
            keys["sumsq"] += [("r", name, stat) for stat in ("norm", "grad_norm", "unit_grad_norm")]
            keys["max"].append(("r", name, "units"))
            for w in weights:
                keys["sumsq" if sharded else "same"] += [("w", w.name, "weight_norm"), ("w", w.name, "weight_grad_norm")]
                keys["sum" if sharded else "same"].append(("w", w.name, "weight_sum"))
        for group in self._groups:
            for name, _ in group:
                for point in (name, f"{name}:output"):
                    keys["sum"] += [("p", point, stat) for stat in ("sum", "numel", "units", "grads")]
                    keys["sumsq"] += [("p", point, stat) for stat in ("norm", "grad", "unit_grad")]
        layout = {op: (names, {k: i for i, k in enumerate(names)}) for op, names in keys.items()}
        self._layouts[sharded] = layout
        return layout

    def stage(self, ledger: Ledger, *, sharded: bool = False) -> None:
        """Put this pass's statistics in ``ledger`` as a few vectors laid out from the model only
        (:meth:`_layout`; a module that did not run contributes zeros): sums and counts add across
        ranks, norms add as squares, each unit's maximum combines by maximum (one slot per layer,
        counted as alive units). Weights and their gradients are the same on every rank under DDP
        (after the all-reduce) and add up from shards under FSDP2 (``sharded``). A weight
        module's width is read off the module (:func:`trainability.adapters.output_units`); other
        widths come from the pass (then read with ``agree=True``)."""
        layout = self._layout(sharded)
        tensors: dict[str, list[tuple[int, torch.Tensor]]] = {op: [] for op in layout}
        numbers: dict[str, list[tuple[int, float]]] = {op: [] for op in layout}
        where = {op: index for op, (_, index) in layout.items()}
        for name, _, role, act, _ in self._leaves:
            width = self._widths.get(name, 0) if role == "weight" else 0
            record = self.records.get(name)
            if record is not None and not width and record.units and act is not None and act[0].can_die:
                width = record.units
            if width:
                ledger.declare(("r", name, "alive_units"), "alive", width)
            if record is None:
                continue
            numbers["sum"].append((where["sum"][("r", name, "numel")], float(record.numel)))
            for stat, value in zip(record.forward_stats, record.forward or [], strict=False):
                op = "sumsq" if stat == "norm" else "sum"
                tensors[op].append((where[op][("r", name, stat)], value))
            if "saturated_count" in record.forward_stats:
                numbers["sum"].append((where["sum"][("r", name, "saturates")], 1.0))
            if record.unit_max is not None:
                ledger.put(("r", name, "alive_units"), record.unit_max, "alive")
                numbers["max"].append((where["max"][("r", name, "units")], float(record.units)))
            if record.backward is not None:
                numbers["sum"].append((where["sum"][("r", name, "grads")], 1.0))
                tensors["sumsq"].append((where["sumsq"][("r", name, "grad_norm")], record.backward[0]))
                if len(record.backward) > 1:
                    tensors["sumsq"].append((where["sumsq"][("r", name, "unit_grad_norm")], record.backward[1]))
                    numbers["sum"].append((where["sum"][("r", name, "grad_units")], float(record.grad_units)))
        self._weight_values(tensors, numbers, where, sharded)
        for point, entry in self.points.items():
            for stat in ("sum", "numel", "units", "norm", "grad", "unit_grad"):
                op = "sum" if stat in ("sum", "numel", "units") else "sumsq"
                position = where[op].get(("p", point, stat))
                if position is None or stat not in entry:
                    continue
                value = entry[stat]
                (tensors if isinstance(value, torch.Tensor) else numbers)[op].append((position, value))  # type: ignore[arg-type]
            if "grad" in entry and ("p", point, "grads") in where["sum"]:
                numbers["sum"].append((where["sum"][("p", point, "grads")], 1.0))
        for op, (names, _) in layout.items():
            ledger.put(("cap", op), _fill(len(names), tensors[op], numbers[op]), op)  # type: ignore[arg-type]

    def _weight_values(self, tensors: dict[str, list[tuple[int, torch.Tensor]]], numbers: dict[str, list[tuple[int, float]]],
                       where: dict[str, dict[tuple[str, str, str], int]], sharded: bool) -> None:  # fmt: skip
        """Every weight's sum and norm (in fast mode every ``WEIGHT_REFRESH``-th collection) and its
        gradient's norm, the norms in one ``_foreach_norm`` each; FSDP2's ``DTensor`` shards are
        read locally."""
        fresh: list[tuple[adapters.Weight, torch.Tensor]] = []
        grads: list[tuple[adapters.Weight, torch.Tensor]] = []
        norm_op, sum_op = ("sumsq", "sum") if sharded else ("same", "same")
        for _, _, _, _, weights in self._leaves:  # every weight, whether its module ran here or not (DDP: all ranks' are equal)
            for w in weights:
                cached = self._weight_cache.get(w.name)
                if cached is not None and cached[0] % self._weight_every and not sharded:  # fast mode: weights move slowly
                    self._weight_cache[w.name] = (cached[0] + 1, cached[1])
                    numbers["same"].append((where["same"][("w", w.name, "weight_norm")], cached[1]["weight_norm"]))
                    numbers["same"].append((where["same"][("w", w.name, "weight_sum")], cached[1]["weight_sum"]))
                else:
                    fresh.append((w, _local_block(w, w.parameter_tensor)))
                grad = w.parameter_tensor.grad
                if grad is not None:
                    grads.append((w, _local_block(w, grad)))
        for group, key in ((fresh, "weight_norm"), (grads, "weight_grad_norm")):
            if group:
                for (w, _), norm in zip(group, _precise_norms([t for _, t in group], self._dtype), strict=True):
                    tensors[norm_op].append((where[norm_op][("w", w.name, key)], norm))
        for (w, _), total in zip(fresh, _precise_sums([t for _, t in fresh], self._dtype), strict=True):
            tensors[sum_op].append((where[sum_op][("w", w.name, "weight_sum")], total))
        self._fresh = [w.name for w, _ in fresh]

    def stage_weight_grads(self, ledger: Ledger, *, sharded: bool = False) -> None:
        """Only each weight's gradient norm, into ``ledger``, without a pass through the hooks (the
        monitor's light records: what changes from one step to the next). One ``_foreach_norm``
        over the gradients; a weight without one holds 0 and is marked absent. Read back with
        :meth:`weight_grad_rows`."""
        weights = [w for _, _, _, _, ws in self._leaves for w in ws]
        present = [(i, _local_block(w, w.parameter_tensor.grad)) for i, w in enumerate(weights) if w.parameter_tensor.grad is not None]
        norms = _norms([t for _, t in present], self._dtype) if present else []
        ledger.put(("g", "has"), _fill(len(weights), [], [(i, 1.0) for i, _ in present]), "max")
        ledger.put(("g", "norm"), _fill(len(weights), [(i, n) for (i, _), n in zip(present, norms, strict=True)], []),
                   "sumsq" if sharded else "same")  # fmt: skip

    def weight_grad_rows(self, values: dict[Any, list[float]]) -> list[LayerStats]:
        """One :class:`~trainability.doctor.records.LayerStats` row per weight with a gradient,
        holding its gradient norm only, from a ledger read after :meth:`stage_weight_grads`."""
        has, norms = values.get(("g", "has"), []), values.get(("g", "norm"), [])
        rows: list[LayerStats] = []
        i = 0
        for name, module, _, _, ws in self._leaves:
            for w in ws:
                if i < len(has) and has[i] > 0:
                    g = norms[i]
                    rows.append(LayerStats(name=w.name, type=type(module).__name__, role="weight", activation=None, mean=None,
                                           std=None, weight_grad_norm=g, non_finite=None if math.isfinite(g) else "weight_grad",
                                           module=name, weight_role=w.role))  # fmt: skip
                i += 1
        return rows

    def absorb(self, values: dict[Any, list[float]], *, grad_scale: float = 1.0) -> None:
        """Fill each record's values from a read ledger: mean and std from the sums, the dead and
        saturated fractions, RMS gradients. ``grad_scale`` multiplies the gradients reaching
        activations: under data parallelism each rank's gradient is of its own mean loss, the
        whole batch's is ``1 / world_size`` of it."""
        layout = next((lay for sharded, lay in self._layouts.items() if ("cap", "sum") in values and
                       len(values[("cap", "sum")]) == len(lay["sum"][0]) and len(values[("cap", "same")]) == len(lay["same"][0])), None)  # fmt: skip
        if layout is None:
            return
        read: dict[tuple[str, str, str], float] = {}
        for op, (names, _) in layout.items():
            read.update(zip(names, values[("cap", op)], strict=True))
        for key, value in values.items():
            if isinstance(key, tuple) and len(key) == 3 and key[0] == "r" and key[2] == "alive_units":
                read[key] = value[0]
        leaves = {n: (m, role, ws) for n, m, role, _, ws in self._leaves}
        for name, (module, role, weights) in leaves.items():
            if name not in self.records and read.get(("r", name, "numel"), 0) > 0:  # it ran on another rank only
                self.records[name] = Record(name, module, role, len(self.records), 0, weights=weights)
        for name, record in self.records.items():
            v = record.values
            numel = read.get(("r", name, "numel"), 0.0)
            record.numel = int(numel)
            if read.get(("r", name, "units"), 0) > 0:
                record.units = int(read[("r", name, "units")])
                if ("r", name, "alive_units") in read:
                    v["alive_units"] = read[("r", name, "alive_units")]
            if numel > 0:
                v["sum"], v["norm"] = read[("r", name, "sum")], read[("r", name, "norm")]
                if read.get(("r", name, "saturates"), 0) > 0:
                    v["saturated_count"] = read[("r", name, "saturated_count")]
            if read.get(("r", name, "grads"), 0) > 0:
                v["grad_norm"] = read[("r", name, "grad_norm")] * grad_scale
                if read.get(("r", name, "grad_units"), 0) > 0:
                    record.grad_units = int(read[("r", name, "grad_units")])
                    v["unit_grad_norm"] = read[("r", name, "unit_grad_norm")] * grad_scale
            for w in record.weights:
                for stat in ("weight_norm", "weight_grad_norm", "weight_sum"):
                    if ("w", w.name, stat) in read and (stat != "weight_grad_norm" or w.parameter_tensor.grad is not None or read[("w", w.name, stat)]):
                        v[f"{stat}:{w.name}"] = read[("w", w.name, stat)]
        for point, entry in self.points.items():
            if read.get(("p", point, "numel"), 0) > 0:
                for stat in ("sum", "norm", "numel", "units"):
                    entry[stat] = read[("p", point, stat)]
            if read.get(("p", point, "grads"), 0) > 0:
                entry["grad"] = read[("p", point, "grad")] * grad_scale
                entry["unit_grad"] = read[("p", point, "unit_grad")] * grad_scale
        if self._weight_every != 1:
            for weight in getattr(self, "_fresh", []):
                record = next((r for r in self.records.values() if any(w.name == weight for w in r.weights)), None)
                if record is not None and f"weight_sum:{weight}" in record.values:
                    self._weight_cache[weight] = (1, {k: record.values[f"{k}:{weight}"] for k in ("weight_sum", "weight_norm")})
        for record in self.records.values():
            v = record.values
            if "sum" in v and record.numel:
                v["mean"], v["std"] = _moments(v["sum"], v["norm"], record.numel)
            record.unit_max = None
            if "alive_units" in v:
                v["dead_fraction"] = 1.0 - v["alive_units"] / max(record.units, 1)
            if "unit_grad_norm" in v:
                v["unit_grad_rms"] = v["unit_grad_norm"] / math.sqrt(max(record.grad_units, 1))
            elif "grad_norm" in v:
                v["unit_grad_rms"] = v["grad_norm"] / math.sqrt(max(record.numel, 1))
            if "saturated_count" in v:
                v["saturated_fraction"] = v["saturated_count"] / max(record.numel, 1)
            for w in record.weights:
                if f"weight_sum:{w.name}" in v:
                    _, v[f"weight_std:{w.name}"] = _moments(v[f"weight_sum:{w.name}"], v[f"weight_norm:{w.name}"], w.numel)
        for entry in self.points.values():
            if isinstance(entry.get("sum"), float) and entry.get("numel"):
                entry["mean"], entry["std"] = _moments(entry["sum"], entry["norm"], int(entry["numel"]))
            if isinstance(entry.get("grad"), float) and entry.get("numel"):
                entry["grad_rms"] = entry["grad"] / math.sqrt(entry["numel"])
                entry["unit_grad_rms"] = entry["unit_grad"] / math.sqrt(max(entry.get("units", 1), 1))

    @single_threaded
    def collect(self, group: Any = None, *, sharded: bool = False, grad_scale: float = 1.0, agree: bool = False) -> None:
        """Read every recorded statistic to the host in one transfer (combined across the ranks of
        ``group`` in one collective, every rank getting the same values)."""
        ledger = Ledger()
        self.stage(ledger, sharded=sharded)
        values = ledger.read(group, agree=agree)
        self.absorb(values or {}, grad_scale=grad_scale)
        self.read_time()

    def _time_vectors(self) -> list[tuple[Record, list[torch.Tensor]]]:
        vectors: list[tuple[Record, list[torch.Tensor]]] = []
        for name, box in self._time_boxes.items():
            if box and name in self.records:
                vectors.append((self.records[name], [box[0]]))
        for r in self.records.values():
            if len(r.time) > 1:
                vectors.append((r, r.time))
        return vectors

    def stage_time(self, ledger: Ledger) -> None:
        """The gradient norm reaching each time step of each recurrent module, into the ledger
        (their squares add across ranks; sequences of other lengths are padded with zeros, which
        needs ``agree=True`` when reading)."""
        if self._time:
            for name, module, _, _, _ in self._leaves:
                if adapters.time_dim(module) is not None:
                    ledger.declare(("t", name, "grad"), "sumsq", 0)
        for record, parts in self._time_vectors():
            ledger.put(("t", record.name, "grad"), torch.cat([p.reshape(-1).double() for p in parts]), "sumsq")

    def absorb_time(self, values: dict[Any, list[float]]) -> None:
        for key, value in values.items():
            if isinstance(key, tuple) and len(key) == 3 and key[0] == "t" and key[1] in self.records and value:
                self.records[key[1]].time_values = list(value)

    def read_time(self) -> None:
        """Gradients through time, read here (this rank's only)."""
        for record, parts in self._time_vectors():
            record.time_values = torch.cat([p.reshape(-1).double() for p in parts]).tolist()


def _fill(size: int, tensors: list[tuple[int, torch.Tensor]], numbers: list[tuple[int, float]]) -> torch.Tensor:
    """A float64 vector of ``size`` with the given values at their positions: the tensors of one
    dtype stacked and copied in with one kernel each, the numbers in one more; zeros elsewhere."""
    device = tensors[0][1].device if tensors else torch.device("cpu")
    out = torch.zeros(size, dtype=torch.float64, device=device)
    by_dtype: dict[torch.dtype, tuple[list[int], list[torch.Tensor]]] = {}
    for position, value in tensors:
        positions, values = by_dtype.setdefault(value.dtype, ([], []))
        positions.append(position)
        values.append(value.reshape(()) if value.dim() else value)
    for positions, values in by_dtype.values():
        out.index_copy_(0, torch.tensor(positions, device=device), torch.stack(values).to(device=device, dtype=torch.float64))
    if numbers:
        out.index_copy_(0, torch.tensor([p for p, _ in numbers], device=device),
                        torch.tensor([v for _, v in numbers], dtype=torch.float64, device=device))  # fmt: skip
    return out


def _local_block(weight: adapters.Weight, full: torch.Tensor) -> torch.Tensor:
    """A weight's block of a parameter-shaped tensor (its value or its gradient), on this rank: an
    FSDP2 ``DTensor`` is read from its local shard (dim 0 split evenly; a packed block's rows are
    intersected with the shard's), never gathered."""
    t = full.detach()
    if not hasattr(t, "to_local"):
        return t if weight.rows is None else weight.slice(t)
    local = t.to_local()
    if weight.rows is None:
        return local
    if weight.transposed:  # (in, out): the block is columns, the shard rows: a block of every row
        return local[:, weight.rows[0] : weight.rows[1]]
    rows = t.shape[0]
    world = t.device_mesh.size() if hasattr(t, "device_mesh") else 1
    chunk = -(-rows // max(world, 1))
    start = t.device_mesh.get_local_rank() * chunk if hasattr(t, "device_mesh") else 0
    lo, hi = max(weight.rows[0] - start, 0), min(weight.rows[1] - start, local.shape[0])
    return local[lo:hi] if hi > lo else local[:0]


def _position_dims(t: torch.Tensor, *, channel_last: bool, batch_dim: int = 0) -> list[int]:
    """The dimensions of ``t`` that index positions sharing one set of weights (sequence steps,
    pixels): all but the batch and the channel dimension (last for dense layers, 1 for convs)."""
    if t.dim() <= 2:
        return []
    channel = t.dim() - 1 if channel_last else 1
    return [d for d in range(t.dim()) if d not in (batch_dim, channel)]


def _norms(tensors: list[torch.Tensor], dtype: torch.dtype | None) -> list[torch.Tensor]:
    """The 2-norm of each tensor, in one call where torch has it (``_foreach_norm``)."""
    same = len({(t.dtype, t.device) for t in tensors}) == 1
    if same and hasattr(torch, "_foreach_norm"):
        try:
            return list(torch._foreach_norm(tensors, 2, dtype=dtype))
        except (TypeError, RuntimeError):  # older torch: no dtype argument
            pass
    return [torch.linalg.vector_norm(t, dtype=dtype or t.dtype) for t in tensors]


def _float32_first(x: torch.Tensor, dtype: torch.dtype | None) -> bool:
    """Whether a precise (float64) reduction of ``x`` may run in float32 first: on the CPU, where
    reading the result back costs nothing, for a float32 or lower-precision tensor. On a device,
    float64 is kept (the conversion is fused into the reduction there, and a read would stall)."""
    return dtype is torch.float64 and x.dtype in _BELOW_FLOAT64 and x.is_cpu


_BELOW_FLOAT64 = (torch.float32, torch.float16, torch.bfloat16)


def _sum_and_norm(x: torch.Tensor, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The sum and the 2-norm of ``x``, in ``dtype`` (or ``x``'s own). For float64 on the CPU both
    are reduced in float32 first (a third of the time: the conversion to float64 is what costs) and
    again in float64 only where either came out non-finite: a finite float32 sum means every entry
    is finite, and a finite float32 norm then cannot have overflowed; the rare tensor past 1e19
    (its squares overflow float32) or holding NaN/Inf is reduced again, exactly."""
    if _float32_first(x, dtype):
        total, norm = x.sum(dtype=torch.float32), torch.linalg.vector_norm(x, dtype=torch.float32)
        if math.isfinite(float(total)) and math.isfinite(float(norm)):
            return total, norm
    return x.sum(dtype=dtype or x.dtype), torch.linalg.vector_norm(x, dtype=dtype or x.dtype)


def _norm(x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The 2-norm of ``x`` in ``dtype``, in float32 first on the CPU as in :func:`_sum_and_norm`:
    a finite float32 norm is exact enough and means every entry was finite."""
    if _float32_first(x, dtype):
        norm = torch.linalg.vector_norm(x, dtype=torch.float32)
        if math.isfinite(float(norm)):
            return norm
    return torch.linalg.vector_norm(x, dtype=dtype or x.dtype)


def _all_finite(values: list[torch.Tensor]) -> bool:
    return bool(torch.stack([v.reshape(()) for v in values]).isfinite().all()) if values else True


def _precise_norms(tensors: list[torch.Tensor], dtype: torch.dtype | None) -> list[torch.Tensor]:
    """:func:`_norms` in ``dtype``; for float64 on the CPU in float32 first, all at once, and again
    in float64 only if any came out non-finite (as :func:`_sum_and_norm`, with one read for all)."""
    if tensors and all(_float32_first(t, dtype) for t in tensors):
        norms = _norms(tensors, torch.float32)
        if _all_finite(norms):
            return norms
    return _norms(tensors, dtype)


def _precise_sums(tensors: list[torch.Tensor], dtype: torch.dtype | None) -> list[torch.Tensor]:
    """Each tensor's sum in ``dtype``; float32 first on the CPU, as :func:`_precise_norms`."""
    if tensors and all(_float32_first(t, dtype) for t in tensors):
        sums = [t.sum(dtype=torch.float32) for t in tensors]
        if _all_finite(sums):
            return sums
    return [t.sum(dtype=dtype or t.dtype) for t in tensors]


def _moments(total: float, norm: float, n: int) -> tuple[float, float]:
    """Mean and (population) std from the sum and the 2-norm of n values."""
    mean = total / n
    if not (math.isfinite(mean) and math.isfinite(norm)):
        return mean if not math.isfinite(mean) else math.nan, math.nan
    return mean, math.sqrt(max(norm * norm / n - mean * mean, 0.0))
