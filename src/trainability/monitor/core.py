"""The doctor of training: what is going wrong, at which step and layer, why, and what to change.

>>> import torch
>>> from trainability import Monitor, mlp
>>> model = mlp(8, 2, depth=3, width=16)
>>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
>>> with Monitor(model, optimizer, every=10) as monitor:
...     for step in range(30):
...         loss = torch.nn.functional.cross_entropy(model(torch.randn(32, 8)), torch.randint(0, 2, (32,)))
...         loss.backward()
...         new_findings = monitor.step(loss)
...         optimizer.step()
...         optimizer.zero_grad()
>>> sorted(set(monitor.records_steps()))
[0, 10, 20]

*When* (the schedule, :mod:`trainability.monitor.schedule`) is kept apart from *what*: a forward
pre-hook on the model arms the per-layer hooks only for a scheduled step; the step before a
scheduled one keeps a sample of each weight's entries, so the scheduled step measures the update
that step made. Statistics stay on the device and are read in one transfer at a recorded step;
between records the monitor keeps each step's loss on its device (no host sync: on a GPU one
``float(loss)`` a step stalls the pipeline) and reads them all at the next record.

At a recorded step the doctor's statistics (activations, gradients along the residual stream,
dead and saturated units) meet the training-time ones: the update-to-weight ratio of every weight,
the learning rate and the optimizer's second moment, the largest attention logit of every
attention layer, the output's log-partition and its dependence on the input, and the loss's
history. Rules (:mod:`trainability.monitor.rules`) turn them into findings; docs/MONITOR.md says
why each fires and why it stays silent on a healthy run.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainability import adapters
from trainability.batches import Batch, model_loss, output_tensor
from trainability.distributed import Ledger, initialized, is_main, world_size
from trainability.doctor import block_stats, diagnose, layer_stats
from trainability.doctor import rules as doctor_rules
from trainability.doctor.capture import Capture
from trainability.doctor.records import Finding, LayerStats
from trainability.graph import block_groups, find_consumers, hooked_modules, inside_blocks
from trainability.monitor import rules
from trainability.monitor.attention import AttentionProbe
from trainability.monitor.losses import LossSeries
from trainability.monitor.optimizer import OptimizerView, effective_lr
from trainability.monitor.outputs import output_statistics, summarize
from trainability.monitor.rules.spikes import EPISODE
from trainability.monitor.schedule import DEFAULT_EVERY, Schedule, make_schedule
from trainability.monitor.updates import UpdateProbe

STATISTICS = ("mean", "std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_std",
              "weight_grad_norm", "grad_weight_ratio")  # fmt: skip
#: Where the schedule records consecutive steps (``every=1``), one record in this many is in full
#: detail (each layer's output and the gradient reaching it, the update-to-weight ratios, the
#: optimizer's state, attention logits, the output's log-partition) and the others are light: the
#: loss, the learning rate and each weight's gradient norm, what changes from one step to the next
#: (a spike is still named with its gradients at its own step). A full record costs a pass through
#: per-layer hooks; a light one, one norm over the gradients. Records further apart, those of the
#: first steps and those right after a spike are all in full.
DETAIL_EVERY = 10
#: After a loss spike, record every step in full detail for this many steps (a recurrence is then seen whole).
DENSE_AFTER_SPIKE = 50
#: Findings that name a cause; the doctor's init-time verdicts after them are its consequences.
CAUSES = frozenset({"learning_rate_too_high", "attention_logit_growth", "adam_epsilon_dominates", "non_finite",
                    "output_logit_divergence"})  # fmt: skip
#: Verdicts about the whole run: reported once.
ONCE = frozenset({"learning_rate_too_high", "learning_rate_too_low", "output_logit_divergence"})
#: What follows from a cause already named: not reported again as a finding of its own.
CONSEQUENCES = frozenset({"exploding_gradients", "vanishing_gradients", "dead_units", "saturated_units"})
#: The doctor's errors at the first record that say the initialization is broken.
INIT_FAILURES = frozenset({"exploding_gradients", "vanishing_gradients", "saturated_units"})
#: Verdicts on the step size and the output's drift: not said of a run whose initialization is broken
#: (an INIT_FAILURES error at the first record). Such a run fails whatever the rate and its cure is the
#: initialization: a ReLU stack on N(0, 1) weights diverges with SGD at 1e-4 as at 1e-1.
RATE_KINDS = frozenset({"learning_rate_too_high", "learning_rate_too_low", "output_logit_divergence"})
#: Name of the rows that describe the whole model (loss, learning rate, output) in ``rows``.
MODEL = "(model)"


def _training_fix(finding: Finding, lr: float | None) -> Finding:
    """An init-time verdict raised once the weights have moved: about what happens now."""
    rate = f" (now {lr:.3g})" if lr else ""
    fixes = {
        "vanishing_gradients": ("the gradient has shrunk during training (the weights have moved since initialization, "
                                "so re-initializing would not keep it from happening again): saturated or dead units "
                                f"downstream, or updates too large, usually; lower the learning rate{rate} 3-10x, add "
                                "normalization (LayerNorm/BatchNorm) before the activations"),
        "exploding_gradients": (f"clip gradients at norm 1.0 and lower the learning rate{rate} 3-10x; the weights have "
                                "grown since initialization"),
        "saturated_units": (f"units saturated during training: lower the learning rate{rate} 3-10x or add normalization "
                            "before the activation; use relu/gelu where the saturation is not wanted"),
        "dead_units": (f"units died during training: lower the learning rate{rate} 3-10x, or use leaky_relu "
                       "(negative_slope=0.2) or elu"),
    }  # fmt: skip
    if finding.kind not in fixes:
        return finding
    action = {"op": "lower_learning_rate", "factor": 3.0, "layers": list(finding.layers),
              "alternatives": [{"op": "insert_normalization", "norm": "layer"}, {"op": "clip", "clip_norm": 1.0}]}  # fmt: skip
    return replace(finding, fix=fixes[finding.kind], action=action)


class Monitor:
    """Record statistics on a schedule while a model trains, and judge them: findings with the
    step they were first seen, the layers, the numbers and the fix.

    ``optimizer`` (a ``torch.optim.Optimizer``; ``fit``, the Trainer, Lightning and Keras
    callbacks pass theirs) lets the monitor read each group's learning rate, betas, epsilon and
    weight decay and, at recorded steps, the optimizer's state. Call :meth:`step` once per
    optimizer step, after ``backward()`` and before ``optimizer.step()``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = None,
        *,
        every: Schedule = None,
        layers: list[str] | None = None,
        writer: Any = None,
    ) -> None:
        view = adapters.view(model)  # a torch.nn.Module, unwrapped from DDP/compile; a Keras model on the torch backend
        self.view = view
        self.model = view.model
        self.schedule = make_schedule(every)
        self.every = every
        leaves = {n for n, m in self.model.named_modules() if next(m.children(), None) is None}
        leaves |= {n for n, _, _ in hooked_modules(view)}  # what a capture hooks: a Keras model's layers too
        if layers is not None:
            unknown = sorted(set(layers) - leaves)
            if unknown:
                raise ValueError(f"layers not in the model: {', '.join(unknown)}; leaf modules: {', '.join(sorted(leaves))}")
        self.layers = set(layers) if layers is not None else None
        if writer is not None and not hasattr(writer, "add_scalar"):
            raise ValueError(f"writer must have add_scalar(tag, value, step) (a TensorBoard SummaryWriter), got {type(writer).__name__}")
        self.writer = writer
        self.optimizer: OptimizerView | None = None
        if optimizer is not None:
            self.set_optimizer(optimizer)
        self.steps_done = 0
        self.rows: list[tuple[int, str, str, float]] = []
        self.findings: list[Finding] = []
        self.records: list[rules.Record] = []
        self.losses = LossSeries()
        self.figures: dict[str, float] = {}
        self._reported: set[tuple[str, str]] = set()
        self._kinds: set[str] = set()
        self._spikes_seen = -1
        self._last_spike: int | None = None
        self._dense_until = -1
        self._diagnosing = False
        self._explained = False
        self._broken_at_init = False
        self._last_inputs: Batch | None = None
        self._last_loss: torch.Tensor | None = None
        self._output: dict[str, torch.Tensor] | None = None
        self._output_dtype: torch.dtype | None = None
        self._links: dict[str, Any] | None = None
        consumers = None
        if layers is None:  # weight layers only, dead/saturated units read off the pre-activation
            try:
                self._links = find_consumers(view)[0]
                consumers = {n: (None if link.normalized or link.activation is None else (link.activation, link.hyperparameters))
                             for n, link in self._links.items()}  # fmt: skip
            except ValueError:  # no forward to trace (a LightningModule, say): every leaf module
                pass
        blocks = block_groups(view) if layers is None else []
        self._stream = adapters.residual_stream(view) if layers is None else None  # a Keras graph's residual adds
        self._capture = Capture(self.model, names=self.layers, precise=False, training_only=True, consumers=consumers,
                                blocks=blocks, stream=self._stream)  # fmt: skip
        self._attention = AttentionProbe(view) if layers is None else None
        if self._attention is not None and not self._attention.layers:
            self._attention = None
        weights = []
        seen: set[int] = set()
        for module_name, _, ws in adapters.weight_modules(view):
            if self.layers is not None and module_name not in self.layers:
                continue
            for w in ws:
                p = w.parameter_tensor
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                weights.append((w.name if w.rows is None else f"{w.module_name}.{w.parameter}", p))
        self._updates = UpdateProbe(weights)
        # a model replicated (DDP) or sharded (FSDP2) over a process group: statistics are combined
        # across its ranks at each record, rank 0 judges; the schedule stays the same on every rank
        self._group = getattr(view.given, "process_group", None) if view.wrapper == "ddp" else None
        self._world = world_size(self._group) if view.wrapper in ("ddp", "fsdp") and initialized() else 1
        self._main = self._world == 1 or is_main(self._group)
        if self._world > 1 and view.sharded:
            self._capture._weight_every = 1  # shards add up: every rank reads its own at every record (no cache)
        self._ledger = Ledger()
        self._light_ledger = Ledger()
        self._agreed: set[bool] = set()  # the ledgers (full, light) whose sizes the ranks agreed on
        self._order: list[tuple[str, nn.Module]] | None = None
        self._history = rules.History()  # what the rules read from every record so far
        self._last_detail = -DETAIL_EVERY  # the last step recorded in full detail
        self._armed = -1  # the last step whose forward ran while scheduled
        self._inside: dict[tuple[str, ...], set[str]] = {}
        self._handles = [self.model.register_forward_pre_hook(self._arm, with_kwargs=True),
                         self.model.register_forward_hook(self._output_hook)]  # fmt: skip

    # -- what the loop hands over ----------------------------------------------------------------
    def set_optimizer(self, optimizer: Any) -> None:
        """Read this optimizer from now on (``fit`` and the callbacks call it when the optimizer
        exists only after the monitor)."""
        self.optimizer = optimizer if isinstance(optimizer, OptimizerView) else OptimizerView(optimizer)

    # -- when ---------------------------------------------------------------------------------------
    def _scheduled(self, step: int) -> bool:
        return self.schedule(step) or step <= self._dense_until

    def _detailed(self, step: int) -> bool:
        """Whether a record at ``step`` is in full detail (:data:`DETAIL_EVERY`)."""
        light = step >= DETAIL_EVERY and step - self._last_detail < DETAIL_EVERY and self.schedule(step - 1)
        return not light or step <= self._dense_until

    def _arm(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._diagnosing:
            return
        self._last_inputs = Batch(args, kwargs)
        if module.training and torch.is_grad_enabled():
            self.arm()

    def _output_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._diagnosing or not (module.training and torch.is_grad_enabled()):
            return
        own = model_loss(output)
        self._last_loss = own.detach() if isinstance(own, torch.Tensor) else None
        if self._capture.attached and self._output is None:
            out = output_tensor(output)
            if out is not None:
                self._output = output_statistics(out)
                self._output_dtype = out.dtype

    def arm(self) -> None:
        """Attach the per-layer hooks if the coming step is scheduled. The model's forward does
        this itself; call it where a training step does not go through ``model(...)``."""
        step = self.steps_done
        if not self._scheduled(step):
            return
        self._armed = step
        if self._detailed(step) and not self._capture.attached:
            self._capture.attach()
            if self._attention is not None:
                self._attention.attach()

    # -- a step ---------------------------------------------------------------------------------------
    def step(self, loss: Any = None, *, inputs: Any = None, grad_norm: Any = None) -> list[Finding]:
        """Close one training step: keep its loss, record it if it was scheduled, and return the
        findings first seen at this step.

        ``loss`` is a tensor, a number, or the model's output holding its own ``loss`` (a
        ``transformers`` ``ModelOutput``); without it, the loss the model's last training forward
        returned, if it returned one. ``grad_norm`` (the global gradient norm, as
        ``clip_grad_norm_`` returns it) lets a loss spike be matched with the gradient at its step.
        ``inputs`` (the batch's inputs) lets the doctor explain a NaN/Inf loss where the model's
        forward was not called directly."""
        step, new = self.steps_done, []
        if loss is not None and not isinstance(loss, (torch.Tensor, int, float)):
            own = model_loss(loss)
            if own is None:
                raise ValueError(f"loss must be a tensor, a number or a model output holding a loss, got {type(loss).__name__}")
            loss = own
        if loss is None:
            loss = self._last_loss
        self._last_loss = None
        if inputs is not None:
            self._last_inputs = Batch.of(inputs)
        value = self.losses.add(step, loss, grad_norm)
        if value is not None and not math.isfinite(value) and not self._explained and self._world == 1:
            new += self._explain_non_finite(value, step, step)
        capture = self._capture
        if capture.records or self._output is not None or self._armed == step:
            new += self._record(step)
        detail_next = self._scheduled(step + 1) and self._detailed(step + 1)
        if detail_next and self._updates.params:
            self._updates.snapshot()  # the next record measures the update this step makes
        if capture.attached and not detail_next:  # hooks stay on while detailed steps run back to back
            capture.detach()
            if self._attention is not None:
                self._attention.detach()
        self.steps_done += 1
        self.findings += new
        return new

    def _record(self, step: int) -> list[Finding]:
        """Read this step's statistics (from every rank, in one collective) and judge them. Only
        the main rank moves them to the host and judges; the others return no finding."""
        capture = self._capture
        local = self._world > 1 and not getattr(self.view.given, "require_backward_grad_sync", True)  # DDP's no_sync()
        group_size = 1 if local else self._world
        detail = self._detailed(step)
        ledger = self._ledger if detail else self._light_ledger  # a light record reads its few slots only
        ledger.clear()
        if detail:
            self._last_detail = step
            capture.stage(ledger, sharded=self.view.sharded)
            self._stage(ledger)
        else:
            capture.stage_weight_grads(ledger, sharded=self.view.sharded)
        self.losses.stage(ledger)
        first = detail not in self._agreed
        values = ledger.read(None if local else self._group, host=self._main or local, agree=group_size > 1 and first)
        if group_size > 1:
            self._agreed.add(detail)
        if values is None:  # another rank reports
            capture.reset()
            self.losses.absorb({}, 1)
            self._clear_probes()
            return []
        stats: list[LayerStats] = []
        stream = []
        if detail:
            capture.absorb(values, grad_scale=1.0 / group_size)
            capture.read_time()
        else:
            stats = capture.weight_grad_rows(values)
        if capture.records:
            if self._links is None:
                self._links = find_consumers(self.view, order=capture.order)[0]
            stats = [row for r in capture.records.values() if r.role in ("weight", "activation")
                     for row in layer_stats(r, self._links, r.numel)]  # fmt: skip
            stream = block_stats(capture)
        record = rules.Record(step, lr=effective_lr(self.optimizer), layers=stats, blocks=stream, local=local, detail=detail)
        self._absorb(record, values)
        self.losses.absorb(values, group_size)
        self.records.append(record)
        self._write(record)
        found = []
        first_bad = self.losses.first_non_finite
        if first_bad is not None and not self._explained:
            found += self._explain_non_finite(math.nan, first_bad, step)
        found += self._judge(record, capture)
        capture.reset()
        self._clear_probes()
        return found

    def _clear_probes(self) -> None:
        if self._attention is not None:
            self._attention.reset()
        self._output = None

    def _stage(self, ledger: Ledger) -> None:
        """The training-time statistics of this record, into the ledger: the update and weight
        sums of squares (DDP: the same on every rank; FSDP2: the local shards add), Adam's second
        moment (likewise), the largest attention logits (the largest over ranks) and the output's
        sums (they add)."""
        shared = "sum" if self.view.sharded else "same"
        probe = self._updates
        measured = probe.measure()
        for key, t in measured.items():
            ledger.put(("u", key), t, shared)  # type: ignore[arg-type]
        optimizer = self.optimizer
        if optimizer is not None and optimizer.adaptive and probe.params and (measured or not self.records):
            moments = [optimizer.second_moment(p) for p in probe.params]
            if any(v is not None for v in moments):
                sample = probe.sample(moments).float()
                eps = torch.tensor([optimizer.eps(p) or 0.0 for p in probe.params], device=sample.device)
                eps = eps.index_select(0, probe._segments.to(sample.device))  # type: ignore[union-attr]
                active = sample > 0
                root = sample.clamp_min(0).sqrt()
                ledger.put(("e", "active"), probe.per_weight(active.float()), shared)  # type: ignore[arg-type]
                ledger.put(("e", "dominated"), probe.per_weight((active & (root <= eps)).float()), shared)  # type: ignore[arg-type]
                ledger.put(("e", "log_root"), probe.per_weight(torch.where(active, root.clamp_min(1e-38).log(), 0.0)), shared)  # type: ignore[arg-type]
        if self._attention is not None:
            for layer in self._attention.layers:
                ledger.declare(("a", layer.name), "max")
            for name, t in self._attention.values().items():
                ledger.put(("a", name), t, "max")
        if self._output:
            for key, t in self._output.items():
                ledger.put(("o", key), t, "sum")

    def _absorb(self, record: rules.Record, values: dict[Any, list[float]]) -> None:
        """The training-time statistics of a read ledger, into the record."""
        names = self._updates.names
        keys = ("delta_sq", "weight_sq", "count", "initial_sq")
        if names and all(("u", key) in values for key in keys) and any(values[("u", "count")]):  # measured at this record
            measured = {key: values[("u", key)] for key in keys}
            record.updates = dict(zip(names, self._updates.ratios(measured), strict=True))
            record.updates_initial = dict(zip(names, self._updates.ratios(measured, initial=True), strict=True))
        if ("e", "active") in values:
            for i, name in enumerate(names):
                active = values[("e", "active")][i]
                if active > 0:
                    record.eps[name] = (values[("e", "dominated")][i] / active, math.exp(values[("e", "log_root")][i] / active))
        if self._attention is not None and record.detail:
            seen = self._attention.values()
            record.attention = {layer.name: values[("a", layer.name)][0] for layer in self._attention.layers
                                if ("a", layer.name) in values and (layer.name in seen or self._world > 1)}  # fmt: skip
        output = {key[1]: (value if key[1].startswith("class") else value[0])
                  for key, value in values.items() if isinstance(key, tuple) and len(key) == 2 and key[0] == "o"}  # fmt: skip
        summary = summarize(output)
        record.log_z, record.input_dependence = summary.get("log_z"), summary.get("input_dependence")
        record.mean_logit = summary.get("mean_logit")

    # -- what ------------------------------------------------------------------------------------------
    def _write(self, record: rules.Record) -> None:
        step = record.step
        rows: list[tuple[int, str, str, float]] = []
        for s in record.layers:
            for name in STATISTICS:
                value = getattr(s, name)
                if value is not None:
                    rows.append((step, s.name, name, float(value)))
        rows += [(step, name, "update_ratio", v) for name, v in record.updates.items()]
        rows += [(step, name, "attention_max_logit", v) for name, v in record.attention.items()]
        rows += [(step, name, "adam_eps_dominated", share) for name, (share, _) in record.eps.items()]
        level = self.losses.level(self.records[-2].step + 1 if len(self.records) > 1 else step, step)
        model = {"loss": level, "lr": record.lr, "log_z": record.log_z, "mean_logit": record.mean_logit,
                 "input_dependence": record.input_dependence}  # fmt: skip
        rows += [(step, MODEL, k, float(v)) for k, v in model.items() if v is not None]
        self.rows += rows
        if self.writer is not None:
            for s, layer, name, value in rows:
                self.writer.add_scalar(f"trainability/{layer}/{name}", value, s)
        self.figures = self._figures(record, level)

    @staticmethod
    def _figures(record: rules.Record, level: float | None) -> dict[str, float]:
        """The record in a few numbers (what a logger's dashboard shows)."""
        out: dict[str, float] = {"step": float(record.step)}
        if level is not None:
            out["loss"] = level
        if record.lr is not None:
            out["lr"] = record.lr
        if record.updates:
            out["update_ratio_max"] = record.max_update() or 0.0
            out["update_ratio_median"] = record.median_update() or 0.0
        if record.grad_norm is not None:
            out["grad_norm"] = record.grad_norm
        if record.attention:
            out["attention_logit_max"] = max(record.attention.values())
        if record.log_z is not None:
            out["log_z"] = record.log_z
        if record.input_dependence is not None:
            out["input_dependence"] = record.input_dependence
        dead = [s.dead_fraction for s in record.layers if s.dead_fraction is not None]
        if dead:
            out["dead_fraction_max"] = max(dead)
        return out

    def _new(self, finding: Finding, step: int) -> list[Finding]:
        """The finding, stamped with its step, unless every layer it names was reported for it."""
        keys = {(finding.kind, n) for n in finding.layers or [""]}
        if finding.kind in ONCE and finding.kind in self._kinds:
            return []
        if keys <= self._reported and finding.kind != "loss_spike":
            return []
        self._reported |= keys
        self._kinds.add(finding.kind)
        at = finding.step if finding.step is not None else step
        return [replace(finding, message=f"step {at}: {finding.message}", step=at)]

    def _judge(self, record: rules.Record, capture: Capture) -> list[Finding]:
        before = self.records[-2].step + 1 if len(self.records) > 1 else record.step
        self._history.add(record, self.losses.level(before, record.step))
        evidence = rules.TrainingEvidence(self.records, self.losses, self.optimizer, set(self._kinds), self._history)
        found: list[Finding] = []
        found += rules.too_high(evidence)
        found += rules.epsilon(evidence)
        found += rules.logit_growth(evidence)
        found += self._spikes(evidence)
        found += rules.exploding(evidence)
        found += rules.dying(evidence)
        if not (self._kinds | {f.kind for f in found}) & (CAUSES | {"exploding_gradients", "loss_spike"}):
            # a slow drift of its own, not the wake of an explosion or a spike
            dtype = self._output_dtype
            eps = torch.finfo(dtype).eps if dtype is not None and dtype.is_floating_point else None
            found += rules.output_divergence(evidence, eps)
        evidence.reported |= {f.kind for f in found}
        found += rules.too_low(evidence)
        caused = (self._kinds | {f.kind for f in found}) & CAUSES
        at_init: list[Finding] = []
        if record.layers and record.detail:
            doctor = self._doctor(record, capture)
            if record.step == self.records[0].step:
                at_init = doctor
                self._broken_at_init = any(f.severity == "error" and f.kind in INIT_FAILURES for f in doctor)
            elif not (caused or self._broken_at_init):
                lr = record.lr
                found += [_training_fix(f, lr) for f in doctor if f.kind not in {g.kind for g in found}]
        if caused or self._broken_at_init:
            # explosions, dying and saturating units that follow a named cause (or a broken
            # initialization) are its consequences
            found = [f for f in found if f.kind not in CONSEQUENCES]
        if self._broken_at_init:  # the step size is not to blame while the initialization is
            found = [f for f in found if f.kind not in RATE_KINDS]
        found += at_init
        return [f for finding in found for f in self._new(finding, record.step)]

    def _spikes(self, evidence: rules.TrainingEvidence) -> list[Finding]:
        spikes = rules.find_spikes(evidence, self._spikes_seen)
        found = rules.loss_spike(evidence, self._spikes_seen, spikes)
        self._spikes_seen = evidence.current.step
        if not found:
            return []
        step = spikes[0][0]
        if self._last_spike is not None and step - self._last_spike < EPISODE:
            return []  # the same episode
        self._last_spike = step
        if self._world == 1:  # every step in full detail for a while (ranks keep one schedule)
            self._dense_until = self.steps_done + DENSE_AFTER_SPIKE
        return [replace(f, step=step) for f in found]

    def _doctor(self, record: rules.Record, capture: Capture) -> list[Finding]:
        """The doctor's verdicts on this pass: gradients along the residual stream (or along the
        weight layers of a plain stack), dead and saturated units."""
        if self._order is None:
            self._order = adapters.named_modules(self.view)  # every module, so that a block's normalization is seen
        blocks = tuple(capture.residual_blocks())
        if blocks not in self._inside:
            self._inside[blocks] = inside_blocks([n for n, _ in self._order], blocks, self._stream)
        evidence = doctor_rules.Evidence(
            layers=record.layers, weight_var={}, order=self._order, links=self._links or {},
            numel={r.name: r.numel for r in capture.records.values()}, grad_finite={}, inputs_of={},
            loss=0.0, batch_size=2**20, blocks=record.blocks, inside_blocks=self._inside[blocks],
        )  # fmt: skip
        return doctor_rules.gradient_flow(evidence) + doctor_rules.unit_health(evidence)

    def _explain_non_finite(self, loss: float, step: int, now: int) -> list[Finding]:
        self._explained = True
        found: list[Finding] = []
        if self._last_inputs is not None and self._world == 1:  # the doctor's pass would need every rank
            inputs, self._diagnosing = self._last_inputs, True
            try:
                report = diagnose(self.view.given, inputs)
                found = [f for f in report.findings if f.kind == "non_finite" and f.layers]
            except ValueError:
                found = []
            finally:
                self._diagnosing = False
        if not found and self._world > 1:
            found = [Finding("non_finite", "error", [], "no layer is named: the doctor's pass that finds the first one would "
                             "need every rank, and the ranks learn of the NaN only at a record",
                             "lower the learning rate and clip gradients; run trainability.diagnose(model, batch) on every rank "
                             "to find the layer", {"op": "lower_learning_rate", "factor": 10.0})]  # fmt: skip
        if not found:
            found = [Finding("non_finite", "error", [], f"the loss is {loss} while every layer's output is finite",
                             "check the loss function and the targets; lower the learning rate", {"op": "inspect_loss"})]  # fmt: skip
        first = found[0]
        when = "" if now == step else f" (read at step {now}; the weights may have changed since)"
        value = "NaN/Inf" if math.isnan(loss) and now != step else str(loss)
        return [replace(first, message=f"step {step}: the loss became {value}{when}; {first.message}", step=step)]

    # -- results ---------------------------------------------------------------------------------------
    def records_steps(self) -> list[int]:
        """The steps that were recorded, one entry per row."""
        return [r[0] for r in self.rows]

    @property
    def history(self) -> Any:
        """A tidy pandas DataFrame: step, layer, statistic, value (``(model)`` rows: loss, lr,
        log_z, input_dependence)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ValueError("monitor.history needs pandas: pip install 'trainability[monitor]' (or use monitor.rows)") from exc
        return pd.DataFrame(self.rows, columns=["step", "layer", "statistic", "value"])

    def summary(self) -> str:
        """The timeline of findings, one per line with its fix, in the order they were seen."""
        if not self.findings:
            return f"no finding in {self.steps_done} steps ({len(self.records)} recorded)"
        lines = [f"{len(self.findings)} finding(s) in {self.steps_done} steps ({len(self.records)} recorded):"]
        for f in sorted(self.findings, key=lambda f: (f.step if f.step is not None else -1)):
            lines.append(f"  step {f.step:>6}  [{f.severity}] {f.kind}: {f.message.split(': ', 1)[-1]}")
            lines.append(f"                fix: {f.fix}")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Per layer over steps: the gradient norm, the update-to-weight ratio and, for attention
        layers, the largest attention logit; the loss with the findings marked; dead and saturated
        fractions."""
        from trainability.monitor.plot import plot_monitor

        return plot_monitor(self, Path(path))

    _STATE = ("steps_done", "rows", "findings", "records", "_reported", "_kinds", "_spikes_seen", "_last_spike",
              "_dense_until", "_explained", "_broken_at_init")  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """What the monitor knows, to resume it with a checkpoint (``fit`` saves it with its own):
        the step count, rows, findings, records and the per-step losses."""
        state = {name: getattr(self, name) for name in self._STATE}
        state["losses"] = {"start": self.losses.start, "values": list(self.losses.values),
                           "grad_norms": list(self.losses.grad_norms), "first_non_finite": self.losses.first_non_finite}  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (an older checkpoint's ``steps_done`` and ``rows`` alone work too)."""
        for name in self._STATE:
            if name in state:
                value = state[name]
                setattr(self, name, [tuple(r) for r in value] if name == "rows" else value)
        losses = state.get("losses")
        if losses:
            self.losses.flush()
            self.losses.start, self.losses.values = losses["start"], list(losses["values"])
            self.losses.grad_norms, self.losses.first_non_finite = list(losses["grad_norms"]), losses["first_non_finite"]
        self._history = rules.History.of(self.records, self.losses)

    def close(self) -> None:
        """Remove every hook; the model is as it was before the monitor."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._capture.detach()
        if self._attention is not None:
            self._attention.detach()
        self._updates.clear()
        self._last_inputs = None
        self._last_loss = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_EVERY", "MODEL", "STATISTICS", "Monitor", "Schedule", "make_schedule"]
