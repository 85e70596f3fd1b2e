"""The Monitor in Lightning: ``Trainer(callbacks=[TrainabilityCallback()])``.

Needs the optional extra: ``pip install 'trainability[lightning]'``. Findings are printed as they
appear (rank zero) and kept on ``callback.monitor.findings``; statistics go to the Trainer's
logger when it has ``log_metrics``.
"""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("trainability.integrations.lightning needs Lightning: pip install 'trainability[lightning]'") from exc

from trainability.monitor import DEFAULT_EVERY, Monitor, Schedule


class TrainabilityCallback(pl.Callback):
    """Run a :class:`~trainability.Monitor` on the LightningModule during ``fit``."""

    def __init__(self, *, every: Schedule = DEFAULT_EVERY, layers: list[str] | None = None, verbose: bool = True) -> None:
        super().__init__()
        self.every, self.layers, self.verbose = every, layers, verbose
        self.monitor: Monitor | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor = Monitor(pl_module, every=self.every, layers=self.layers)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.monitor is not None:
            self.monitor.arm()  # training_step may not call pl_module(...) itself

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.monitor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        before = len(self.monitor.rows)
        for finding in self.monitor.step(loss, inputs=inputs):
            if self.verbose and trainer.is_global_zero:
                print(f"[trainability] {finding.kind} ({finding.severity}): {finding.message}\n    fix: {finding.fix}")
        logger = trainer.logger
        if logger is not None and hasattr(logger, "log_metrics") and len(self.monitor.rows) > before:
            step = self.monitor.rows[-1][0]
            metrics = {f"trainability/{layer}/{name}": value for _, layer, name, value in self.monitor.rows[before:]}
            logger.log_metrics(metrics, step=step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()
