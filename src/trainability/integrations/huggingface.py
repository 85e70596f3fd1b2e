"""The Monitor in Hugging Face's ``transformers.Trainer``:
``Trainer(model, args, train_dataset=data, callbacks=[TrainabilityCallback()])``.

Needs the optional extra: ``pip install 'trainability[huggingface]'``. Findings are printed as
they appear, on the world's process zero only, and kept on ``callback.monitor.findings``.

**Which event, and what that means for the numbers.** A Trainer step runs forward and backward
on each micro-batch (gradient accumulation; under DDP the all-reduce comes with the last
backward), clips the gradients to ``max_grad_norm``, calls ``on_pre_optimizer_step``, steps the
optimizer, calls ``on_optimizer_step``, zeroes the gradients, calls ``on_step_end`` and logs.
The callback closes the Monitor's step in ``on_pre_optimizer_step``: the last event where the
gradients exist and the weights are still those the gradients were computed for
(``on_step_end`` comes after ``zero_grad``). So a layer's weight-gradient norm is the gradient
the optimizer uses: summed over micro-batches, averaged over ranks, and *clipped* (together at
most ``max_grad_norm``, 1.0 by default, so the Monitor's explosion rule cannot fire above it; the
update-to-weight ratio, read from the weights, is unaffected; the Trainer's own ``grad_norm`` log
is the norm before clipping). The gradients reaching each layer's output are read by hooks during backward, before
clipping. The loss is the one the model computed itself (``labels`` in the batch), the last
micro-batch's. The Monitor's step ``s`` is the optimizer step that takes ``state.global_step``
from ``s`` to ``s + 1``; its log entry carries ``"step": s + 1``, as the Trainer's own logs do.

**Where the numbers go.** ``Trainer.log`` appends a copy of a log to ``state.log_history`` and
then calls ``on_log`` on its callbacks in order, and the ``report_to`` integrations (TensorBoard,
W&B, MLflow, ...) come before the callbacks passed to the Trainer: editing ``logs`` in a user
callback's ``on_log`` reaches neither. So, at ``on_train_begin``, the callback moves itself to the
front of the Trainer's callback list (that of the ``CallbackHandler`` calling it, found up the
call stack); its ``on_log`` then runs before every integration, adds ``trainability/<figure>``
and ``trainability/finding/<kind>`` numbers to ``logs`` (what the integrations receive) and the
same, with the findings as dicts under ``trainability/findings``, to the entry just appended to
``state.log_history``. At ``on_step_end`` of each recorded step it sets ``control.should_log`` so
that the Trainer logs that very step.

**Under DDP** the Monitor is given the model as the Trainer runs it (``trainer.model_wrapped``,
DDP's wrapper, from the Trainer owning that handler), so it combines its statistics across ranks
and judges on rank 0 alone: rank 0 prints and logs the findings. A log gathers the loss from every
rank, so only the schedule, which is the same on every rank, asks for one (asking on rank 0 alone,
where the findings are, would be a collective mismatch).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import CallbackHandler
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("trainability.integrations.huggingface needs transformers: pip install 'trainability[huggingface]'") from exc

from trainability.adapters.wrappers import unwrap
from trainability.integrations._shared import PREFIX, describe, figures, log_entries
from trainability.monitor import Monitor, Schedule, make_schedule


class TrainabilityCallback(TrainerCallback):
    """Run a :class:`~trainability.Monitor` on the Trainer's model, with the Trainer's optimizer.

    ``every`` is the Monitor's schedule (``None``: its default, ``N``, ``"log"`` or a callable
    ``step -> bool``) counted in the Trainer's ``global_step`` after the step, so that recorded
    steps fall on the Trainer's round numbers: ``every=N`` records the first step and each step
    after which ``global_step`` is a multiple of ``N``, the steps the Trainer logs when
    ``logging_steps=N``. ``layers`` limits the Monitor to those modules; ``verbose=False``
    prints nothing."""

    def __init__(self, *, every: Schedule = None, layers: list[str] | None = None, verbose: bool = True) -> None:
        base = make_schedule(every)  # a bad schedule fails here, not at the first step
        self.schedule: Callable[[int], bool] = lambda step: step == 0 or base(step + 1)  # step s ends at global_step s + 1
        self.every, self.layers, self.verbose = every, layers, verbose
        self.monitor: Monitor | None = None
        self._entries: dict[str, float] = {}
        self._found: list[dict[str, Any]] = []

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: nn.Module | None = None, optimizer: Any = None, **kwargs: Any) -> None:  # fmt: skip
        if model is None:
            raise ValueError("TrainabilityCallback needs the Trainer's model: the Trainer passes it to on_train_begin")
        self.on_train_end(args, state, control)  # a run that raised left its monitor behind
        handler, trainer = _callers(self)
        if handler is None:
            warnings.warn(
                "TrainabilityCallback could not find the Trainer calling it: its figures and findings reach "
                "trainer.state.log_history but not the report_to integrations, and under DDP each rank judges "
                "its own statistics",
                RuntimeWarning,
                stacklevel=2,
            )
        else:  # first in the list the handler is iterating over: every later callback keeps its index
            handler.callbacks.remove(self)
            handler.callbacks.insert(0, self)
        # the model as the Trainer runs it (DDP's wrapper): the Monitor combines statistics across its ranks
        wrapped = getattr(trainer, "model_wrapped", None)
        if wrapped is None or unwrap(wrapped)[0] is not model:
            wrapped = model
        self.monitor = Monitor(wrapped, optimizer, every=self.schedule, layers=self.layers)
        self.monitor.steps_done = state.global_step  # resumed from a checkpoint: the Trainer's count goes on

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.monitor is None:
            return
        before = len(self.monitor.records)
        new = self.monitor.step()  # the loss: the one the model's last training forward returned
        for key, value in log_entries(figures(self.monitor, before), new).items():  # until the next log
            counted = key.startswith(f"{PREFIX}finding/")
            self._entries[key] = self._entries.get(key, 0.0) + value if counted else value
        self._found += [f.to_dict() for f in new]
        if self.verbose and state.is_world_process_zero:
            for finding in new:
                print(describe(finding), flush=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # The Trainer logs this step, with what was recorded. Logging gathers the loss from every
        # rank, so under DDP only the schedule, the same on every rank, may ask for it (rank 0
        # alone has findings); on one process a finding between records is logged at its step too.
        if self.monitor is not None and (self.schedule(state.global_step - 1) or (self._entries and args.world_size == 1)):
            control.should_log = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
        if not self._entries or logs is None:
            return
        logs.update(self._entries)  # the report_to integrations run after this callback
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(self._entries)  # Trainer.log appended a copy of logs
            if self._found:
                state.log_history[-1][f"{PREFIX}findings"] = self._found
        self._entries, self._found = {}, []

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _callers(callback: TrainerCallback) -> tuple[CallbackHandler | None, Any]:
    """The ``CallbackHandler`` calling ``callback`` and the Trainer owning that handler, found up
    the call stack (``None`` where not found)."""
    handler = trainer = None
    frame = inspect.currentframe()
    try:
        caller = frame.f_back if frame is not None else None
        for _ in range(12):
            if caller is None:
                break
            owner = caller.f_locals.get("self")
            if handler is None and isinstance(owner, CallbackHandler) and any(cb is callback for cb in owner.callbacks):
                handler = owner
            elif handler is not None and getattr(owner, "callback_handler", None) is handler:
                trainer = owner
                break
            caller = caller.f_back
        return handler, trainer
    finally:
        del frame


__all__ = ["TrainabilityCallback"]
