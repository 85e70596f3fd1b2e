"""The doctor's verdicts while a model trains, at a cost nobody notices.

>>> import torch
>>> from trainability import Monitor, mlp
>>> model = mlp(8, 2, depth=3, width=16)
>>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
>>> with Monitor(model, every=10) as monitor:
...     for step in range(30):
...         loss = torch.nn.functional.cross_entropy(model(torch.randn(32, 8)), torch.randint(0, 2, (32,)))
...         loss.backward()
...         new_findings = monitor.step(loss)
...         optimizer.step()
...         optimizer.zero_grad()
>>> sorted(set(monitor.records_steps()))
[0, 10, 20]

*When* (the schedule) is kept apart from *what* (the doctor's statistics): a forward pre-hook on
the model arms the per-layer hooks only for a scheduled step, the statistics stay on the device,
and ``step()`` copies them to the host in one transfer. Between recorded steps the monitor costs
one hook call and a check of the loss.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from trainability import adapters
from trainability.batches import Batch, model_loss
from trainability.doctor import diagnose, layer_stats, rules
from trainability.doctor.capture import Capture
from trainability.doctor.records import Finding, LayerStats
from trainability.graph import find_consumers, hooked_modules

DEFAULT_EVERY = 100
#: A layer's weight-gradient norm this many times its median over earlier recordings: explosion.
EXPLOSION_FACTOR = 100.0
#: ... over this many earlier recordings (a running window).
HISTORY_WINDOW = 20
#: A ReLU layer whose dead fraction grew by this much since its first recording: dying units.
DEAD_GROWTH = 0.2
STATISTICS = ("mean", "std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_std",
              "weight_grad_norm", "grad_weight_ratio")  # fmt: skip

Schedule = int | Literal["log"] | Callable[[int], bool]


def make_schedule(every: Schedule) -> Callable[[int], bool]:
    """``every=N``: steps 0, N, 2N, ...; ``"log"``: steps 0, 1, 2, 4, 8, ...; or a predicate."""
    if every == "log":
        return lambda step: step == 0 or (step & (step - 1)) == 0
    if callable(every):
        return every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive int, 'log' or a callable step -> bool, got {every!r}")
    return lambda step: step % every == 0


class Monitor:
    """Record per-layer statistics on a schedule and raise findings, with their step, as training
    goes. Call ``step(loss)`` after ``backward()`` and before the gradients are zeroed."""

    def __init__(
        self,
        model: nn.Module,
        *,
        every: Schedule = DEFAULT_EVERY,
        layers: list[str] | None = None,
        writer: Any = None,
    ) -> None:
        adapters.check_model(model)  # a torch.nn.Module (a Keras model on another backend: set KERAS_BACKEND=torch)
        self.model = model
        self.schedule = make_schedule(every)
        leaves = {n for n, m in model.named_modules() if next(m.children(), None) is None}
        leaves |= {n for n, _, _ in hooked_modules(model)}  # what a capture hooks: a Keras model's layers too
        if layers is not None:
            unknown = sorted(set(layers) - leaves)
            if unknown:
                raise ValueError(f"layers not in the model: {', '.join(unknown)}; leaf modules: {', '.join(sorted(leaves))}")
        self.layers = set(layers) if layers is not None else None
        if writer is not None and not hasattr(writer, "add_scalar"):
            raise ValueError(f"writer must have add_scalar(tag, value, step) (a TensorBoard SummaryWriter), got {type(writer).__name__}")
        self.writer = writer
        self.steps_done = 0
        self.rows: list[tuple[int, str, str, float]] = []
        self.findings: list[Finding] = []
        self._reported: set[tuple[str, str]] = set()
        self._grad_history: dict[str, deque[float]] = {}
        self._first_dead: dict[str, float] = {}
        self._diagnosing = False
        self._last_inputs: Batch | None = None
        self._links: dict[str, Any] | None = None
        consumers = None
        if layers is None:  # weight layers only, dead/saturated units read off the pre-activation
            try:
                self._links = find_consumers(model)[0]
                consumers = {n: (None if link.normalized else link.activation) for n, link in self._links.items()}
            except ValueError:  # no forward to trace (a LightningModule, say): every leaf module
                pass
        self._capture = Capture(model, names=self.layers, precise=False, training_only=True, consumers=consumers)
        self._handle = model.register_forward_pre_hook(self._arm, with_kwargs=True)

    # -- when ---------------------------------------------------------------------------------
    def _arm(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._diagnosing:
            return
        self._last_inputs = Batch(args, kwargs)
        if module.training and torch.is_grad_enabled():
            self.arm()

    def arm(self) -> None:
        """Attach the per-layer hooks if the coming step is scheduled. The model's forward does
        this itself; call it where a training step does not go through ``model(...)``."""
        if self.schedule(self.steps_done) and not self._capture.attached:
            self._capture.attach()

    def step(self, loss: Any = None, *, inputs: Any = None) -> list[Finding]:
        """Close one training step: record it if it was scheduled, check the loss, and return the
        findings first seen at this step. ``loss`` is a tensor, a number, or the model's output
        when it holds its own ``loss`` (a ``transformers`` ``ModelOutput``). ``inputs`` (the
        batch's inputs: a tensor, tuple or dict) lets the doctor explain a NaN/Inf loss where the
        model's forward was not called directly."""
        step, new = self.steps_done, []
        if loss is not None and not isinstance(loss, (torch.Tensor, int, float)):
            own = model_loss(loss)
            if own is None:
                raise ValueError(f"loss must be a tensor, a number or a model output holding a loss, got {type(loss).__name__}")
            loss = own
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else loss
        if value is not None and not math.isfinite(value):
            if inputs is not None:
                self._last_inputs = Batch.of(inputs)
            new += self._explain_non_finite(value, step)
        capture = self._capture
        if capture.records:
            capture.collect()
            if self._links is None:
                self._links = find_consumers(self.model, order=capture.order)[0]
            stats = [row for r in capture.records.values() if r.role in ("weight", "activation")
                     for row in layer_stats(r, self._links, r.numel)]  # fmt: skip
            self._record(stats, step)
            new += self._judge(stats, capture, step)
            capture.reset()
        if capture.attached and not self.schedule(step + 1):  # hooks stay on while steps run back to back
            capture.detach()
        self.steps_done += 1
        self.findings += new
        return new

    # -- what ---------------------------------------------------------------------------------
    def _record(self, stats: list[LayerStats], step: int) -> None:
        for s in stats:
            for name in STATISTICS:
                value = getattr(s, name)
                if value is not None:
                    self.rows.append((step, s.name, name, float(value)))
                    if self.writer is not None:
                        self.writer.add_scalar(f"trainability/{s.name}/{name}", float(value), step)

    def _new(self, finding: Finding, step: int) -> list[Finding]:
        """The finding, stamped with its step, unless every layer it names was reported for it."""
        keys = {(finding.kind, n) for n in finding.layers or [""]}
        if keys <= self._reported:
            return []
        self._reported |= keys
        return [replace(finding, message=f"step {step}: {finding.message}", step=step)]

    def _judge(self, stats: list[LayerStats], capture: Capture, step: int) -> list[Finding]:
        evidence = rules.Evidence(
            layers=stats, weight_var={}, order=capture.order, links=self._links or {},
            numel={r.name: r.numel for r in capture.records.values()}, grad_finite={}, inputs_of={},
            loss=0.0, batch_size=2**20,
        )  # fmt: skip
        found = rules.gradient_flow(evidence) + rules.unit_health(evidence)
        exploding = []
        for s in stats:
            if s.weight_grad_norm is None or not math.isfinite(s.weight_grad_norm):
                continue
            history = self._grad_history.setdefault(s.name, deque(maxlen=HISTORY_WINDOW))
            baseline = statistics.median(history) if len(history) >= 3 else 0.0
            if baseline > 0 and s.weight_grad_norm > EXPLOSION_FACTOR * baseline:  # a gradient that was 0 has no scale
                exploding.append((s.name, s.weight_grad_norm / baseline))
            history.append(s.weight_grad_norm)
        if exploding:
            worst = max(exploding, key=lambda p: p[1])
            found.append(Finding(
                "exploding_gradients", "error", [n for n, _ in exploding],
                f"gradients start to explode: the weight gradient of {worst[0]} is {worst[1]:.3g}x its median "
                f"over earlier recordings ({len(exploding)} layers over {EXPLOSION_FACTOR:.0f}x)",
                "lower the learning rate and clip gradients at norm 1.0 (fit(..., clip_norm=1.0))",
                {"op": "clip", "clip_norm": 1.0, "layers": [n for n, _ in exploding]},
            ))  # fmt: skip
        dying = []
        for s in stats:
            if s.dead_fraction is None:
                continue
            first = self._first_dead.setdefault(s.name, s.dead_fraction)
            if s.dead_fraction - first >= DEAD_GROWTH:
                dying.append((s.name, first, s.dead_fraction))
        if dying:
            found.append(Finding(
                "dead_units", "warning", [n for n, _, _ in dying],
                f"the dead fraction grows during training: {dying[0][0]} went from {dying[0][1]:.0%} to "
                f"{dying[0][2]:.0%} ({len(dying)} layers grew by {DEAD_GROWTH:.0%} or more)",
                "use leaky_relu (negative_slope=0.2) or elu, and lower the learning rate",
                {"op": "swap_activation", "layers": [n for n, _, _ in dying], "activation": "leaky_relu"},
            ))  # fmt: skip
        return [f for finding in found for f in self._new(finding, step)]

    def _explain_non_finite(self, loss: float, step: int) -> list[Finding]:
        found: list[Finding] = []
        if self._last_inputs is not None:
            inputs, self._diagnosing = self._last_inputs, True
            try:
                report = diagnose(self.model, inputs)
                found = [f for f in report.findings if f.kind == "non_finite" and f.layers]
            except ValueError:
                found = []
            finally:
                self._diagnosing = False
        if not found:
            found = [Finding("non_finite", "error", [], f"the loss is {loss} while every layer's output is finite",
                             "check the loss function and the targets; lower the learning rate", {"op": "inspect_loss"})]  # fmt: skip
        first = found[0]
        return [replace(first, message=f"step {step}: the loss became {loss}; {first.message}", step=step)]

    # -- results ------------------------------------------------------------------------------
    def records_steps(self) -> list[int]:
        """The steps that were recorded, one entry per row."""
        return [r[0] for r in self.rows]

    @property
    def history(self) -> Any:
        """A tidy pandas DataFrame: step, layer, statistic, value."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ValueError("monitor.history needs pandas: pip install 'trainability[monitor]' (or use monitor.rows)") from exc
        return pd.DataFrame(self.rows, columns=["step", "layer", "statistic", "value"])

    def plot(self, path: str | Path) -> Path:
        """A heat map of each weight layer's output-gradient norm over the recorded steps, and the
        dead and saturated fractions over time."""
        from trainability.monitor.plot import plot_monitor

        return plot_monitor(self, Path(path))

    def close(self) -> None:
        """Remove every hook; the model is as it was before the monitor."""
        self._handle.remove()
        self._capture.detach()
        self._last_inputs = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
