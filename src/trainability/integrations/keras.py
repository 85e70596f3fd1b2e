"""The Monitor in Keras 3's ``model.fit`` (PyTorch backend):
``model.fit(x, y, callbacks=[TrainabilityCallback(every=10)])``.

Needs the optional extra: ``pip install 'trainability[keras]'`` and ``KERAS_BACKEND=torch`` set
before Keras is imported. The callback class is built on first use, so importing this module does
not import Keras.

**Which event, and what that means for the numbers.** Keras' torch ``train_step`` runs the
forward, zeroes the gradients, runs ``backward`` and applies the optimizer; the gradients stay in
the variables' ``.grad`` until the next ``train_step`` zeroes them. The callback closes the
Monitor's step in ``on_train_batch_end``, so a layer's weight-gradient norm is that step's
gradient as ``backward`` left it (a Keras optimizer's ``clipnorm``/``clipvalue`` clip a copy
inside ``apply``: the norms are unclipped), and the weight statistics are read *after* the
update. The loss is ``logs["loss"]``, Keras' running mean over the epoch. Keras calls this event
synchronously because the callback defines it (it is not ``async_safe``); with
``steps_per_execution=N`` it runs once per N steps, and the Monitor counts those.

The Monitor gets the model's Keras optimizer and reads its learning rate and epsilon; not its
moments, which Keras keeps as its own variables rather than as a ``torch.optim.Optimizer``'s
state, so the rule on Adam's epsilon has no second moment to compare under Keras.

**Where the numbers go.** The callback adds ``trainability/<figure>`` and
``trainability/finding/<kind>`` to the ``logs`` of each batch it recorded or found something at,
and to each epoch's ``logs`` the last figures and ``trainability/findings``, the number of
findings first seen during the epoch; ``model.fit``'s ``History`` and every callback after this
one in the list receive them (list it first).
"""

from __future__ import annotations

from typing import Any

from trainability.adapters import keras as keras_adapter
from trainability.integrations._shared import PREFIX, describe, figures, log_entries
from trainability.monitor import Monitor, Schedule, make_schedule


def __getattr__(name: str) -> Any:  # PEP 562: the callback subclasses Keras' own, imported on first use
    if name == "TrainabilityCallback":
        globals()[name] = cls = _callback_class(keras_adapter.load())
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _callback_class(keras: Any) -> type:
    class TrainabilityCallback(keras.callbacks.Callback):
        """Run a :class:`~trainability.Monitor` during Keras ``model.fit``:
        ``model.fit(x, y, callbacks=[TrainabilityCallback(every=10)])``. Findings are printed as
        they appear and kept on ``callback.monitor.findings``; ``layers`` limits the Monitor to
        those layers (Keras names); ``verbose=False`` prints nothing."""

        def __init__(self, *, every: Schedule = None, layers: list[str] | None = None, verbose: bool = True) -> None:
            super().__init__()
            make_schedule(every)  # a bad schedule fails here, not at the first step
            self.every, self.layers, self.verbose = every, layers, verbose
            self.monitor: Monitor | None = None
            self._figures: dict[str, float] = {}
            self._epoch_findings = 0

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            if self.monitor is not None:
                self.monitor.close()  # a fit that raised left its monitor behind
            self.monitor = Monitor(self.model, self.model.optimizer, every=self.every, layers=self.layers)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch_findings = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.monitor is None:
                return
            loss = (logs or {}).get("loss")
            before = len(self.monitor.records)
            new = self.monitor.step(float(loss) if loss is not None else None)
            recorded = figures(self.monitor, before)
            if recorded:
                self._figures = recorded
            self._epoch_findings += len(new)
            if logs is not None and (recorded or new):
                logs.update(log_entries(recorded, new))
            if self.verbose:
                for finding in new:
                    print(describe(finding), flush=True)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None and self.monitor is not None:
                logs.update(log_entries(self._figures, []))
                logs[f"{PREFIX}findings"] = float(self._epoch_findings)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.monitor is not None:
                self.monitor.close()

    return TrainabilityCallback


__all__ = ["TrainabilityCallback"]  # noqa: F822 - built on first use (__getattr__)
