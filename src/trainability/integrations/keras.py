"""The Monitor in Keras 3's ``model.fit`` (PyTorch backend):
``model.fit(x, y, callbacks=[TrainabilityCallback(every=10)])``.

Needs the optional extra: ``pip install 'trainability[keras]'`` and ``KERAS_BACKEND=torch`` set
before Keras is imported. The callback class is built on first use, so importing this module does
not import Keras.
"""

from __future__ import annotations

from typing import Any

from trainability.adapters import keras as keras_adapter
from trainability.monitor import DEFAULT_EVERY, Monitor, Schedule


def __getattr__(name: str) -> Any:  # PEP 562: the callback subclasses Keras' own, imported on first use
    if name == "TrainabilityCallback":
        globals()[name] = cls = _callback_class(keras_adapter.load())
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _callback_class(keras: Any) -> type:
    class TrainabilityCallback(keras.callbacks.Callback):
        """Run a :class:`~trainability.Monitor` during Keras ``model.fit``:
        ``model.fit(x, y, callbacks=[TrainabilityCallback(every=10)])``. Findings are printed as
        they appear and kept on ``callback.monitor.findings``."""

        def __init__(self, *, every: Schedule = DEFAULT_EVERY, verbose: bool = True) -> None:
            super().__init__()
            self.every, self.verbose = every, verbose
            self.monitor: Monitor | None = None

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.monitor = Monitor(self.model, every=self.every)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.monitor is None:
                return
            loss = (logs or {}).get("loss")
            for finding in self.monitor.step(float(loss) if loss is not None else None):
                if self.verbose:
                    print(f"[trainability] {finding.kind} ({finding.severity}): {finding.message}\n    fix: {finding.fix}")

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.monitor is not None:
                self.monitor.close()

    return TrainabilityCallback


__all__ = ["TrainabilityCallback"]  # noqa: F822 - built on first use (__getattr__)
