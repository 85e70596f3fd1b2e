"""The Monitor in Lightning: ``Trainer(callbacks=[TrainabilityCallback()])``.

Needs the optional extra: ``pip install 'trainability[lightning]'``. Findings are printed as they
appear, on global rank zero only, and kept on ``callback.monitor.findings``.

**Which event, and what that means for the numbers.** The callback closes the Monitor's step in
``on_before_optimizer_step``: once per optimizer step, after gradient accumulation and the AMP
unscaling, before gradient clipping (``gradient_clip_val``) and before the weights change. So a
layer's weight-gradient norm is the unclipped, unscaled gradient the optimizer is about to use,
summed over the accumulated batches and, under DDP, averaged over ranks. The loss is the one
handed to ``backward`` (``on_before_backward``: divided by ``accumulate_grad_batches``, the last
accumulated batch's). The Monitor's step ``s`` is ``trainer.global_step`` at that moment.

**Where the numbers go.** Every logger of the Trainer (``trainer.loggers``; Lightning's loggers
write on rank zero only) receives, at step ``s``, ``trainability/<figure>`` for the step's
figures, ``trainability/finding/<kind>`` for the findings raised at it, and
``trainability/<layer>/<statistic>`` for each layer the step recorded.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("trainability.integrations.lightning needs Lightning: pip install 'trainability[lightning]'") from exc

from trainability.adapters.wrappers import unwrap
from trainability.integrations._shared import PREFIX, describe, figures, log_entries
from trainability.monitor import MODEL, Monitor, Schedule, make_schedule


class TrainabilityCallback(pl.Callback):
    """Run a :class:`~trainability.Monitor` on the LightningModule during ``fit``, with the
    Trainer's (first) optimizer: every step of the schedule ``every`` is recorded (``None``: the
    Monitor's default), ``layers`` limits it to those modules, and ``verbose=False`` prints
    nothing."""

    def __init__(self, *, every: Schedule = None, layers: list[str] | None = None, verbose: bool = True) -> None:
        super().__init__()
        make_schedule(every)  # a bad schedule fails here, not at the first step
        self.every, self.layers, self.verbose = every, layers, verbose
        self.monitor: Monitor | None = None
        self._loss: torch.Tensor | None = None
        self._inputs: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()  # a fit that raised left its monitor behind
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        # the module as the strategy runs it (DDP's wrapper): the Monitor combines statistics across its ranks
        wrapped = trainer.strategy.model
        model = wrapped if wrapped is not None and unwrap(wrapped)[0] is pl_module else pl_module
        self.monitor = Monitor(model, optimizer, every=self.every, layers=self.layers)
        self.monitor.steps_done = trainer.global_step  # resumed from a checkpoint: Lightning's count goes on

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.monitor is not None:
            self.monitor.arm()  # training_step may not call pl_module(...) itself
        self._inputs = batch[0] if isinstance(batch, (tuple, list)) else batch

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        if self.monitor is None:
            return
        before, rows_before = len(self.monitor.records), len(self.monitor.rows)
        new = self.monitor.step(self._loss, inputs=self._inputs)
        self._loss = None
        if self.verbose and trainer.is_global_zero:
            for finding in new:
                print(describe(finding), flush=True)
        rows = [r for r in self.monitor.rows[rows_before:] if r[1] != MODEL]  # the model's own rows are figures
        if len(self.monitor.records) == before and not new:
            return
        metrics = log_entries(figures(self.monitor, before), new)
        metrics |= {f"{PREFIX}{layer}/{name}": value for _, layer, name, value in rows}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()


__all__ = ["TrainabilityCallback"]
