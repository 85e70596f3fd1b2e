"""Repair's training runs: one model trained under a step budget, in rounds, and resumable.

A run trains for ``budget`` optimizer steps on batches drawn from seeded permutations of the
training split (the same batches for every run with the same seed), cut into :data:`ROUNDS`
equal rounds; after each round the validation split is evaluated and one record kept (``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``, ``steps``), as compare's runner
records an epoch. Each round is one :func:`trainability.fit` call (one epoch over the round's
batches) with the run's :class:`~trainability.Monitor` attached, so the monitor's training-time
findings (with their actions) are the run's too.

A run can stop after any round and go on later (:meth:`Run.advance`): that is what lets repair
race candidates on a short prefix and continue only the most promising (successive halving). In
this process a run keeps its model, optimizer and monitor alive; in a worker process a run is
rebuilt from its state (the model's and the optimizer's ``state_dict``, the records so far), and
:func:`segment` returns the state again. Both give the same numbers: every round is seeded by
the run's seed and the round's index alone.

The training settings are a dict: ``optimizer``, ``lr`` (``None``: the optimizer's default),
``momentum``, ``batch_size``, ``clip_norm``, and the training-time fixes ``warmup`` (steps of
linear warm-up from ``lr / warmup`` to ``lr``; Goyal et al. 2017), ``eps`` (Adam's epsilon) and
``z_loss`` (a coefficient ``c`` adding ``c * log^2 Z`` to the loss, ``Z`` the softmax's
normalizer; PaLM, Chowdhery et al. 2022).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: Evaluations per run: the budget is cut into this many rounds.
ROUNDS = 10
#: Keys of a round's record.
RECORD_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "steps")
#: The settings every run has, and their values when nothing is said.
DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "lr": None, "momentum": 0.0, "batch_size": 32, "clip_norm": None,
                            "warmup": None, "eps": None, "z_loss": None}  # fmt: skip


def full_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every key of :data:`DEFAULTS`."""
    return {**DEFAULTS, **settings}


def effective_lr(settings: Mapping[str, Any]) -> float:
    """The learning rate a run uses: the given one, or the optimizer's default (as ``fit``)."""
    from trainability.training import OPTIMIZERS

    lr = settings.get("lr")
    return float(lr) if lr is not None else OPTIMIZERS[str(settings["optimizer"]).lower()][1]


class Warmup:
    """Linear learning-rate warm-up as an optimizer step pre-hook: step ``t`` (from 0) uses
    ``lr * min(1, (t + 1) / steps)``. ``done`` counts the steps already taken, so a resumed run
    goes on where it was."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int, done: int = 0) -> None:
        self.steps, self.done = steps, done
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.handle = optimizer.register_step_pre_hook(self)

    def __call__(self, optimizer: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        scale = min(1.0, (self.done + 1) / self.steps)
        for group, base in zip(optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * scale
        self.done += 1


def build_optimizer(model: nn.Module, settings: Mapping[str, Any], done: int = 0) -> torch.optim.Optimizer:
    """The optimizer ``settings`` describe, with Adam's ``eps`` and the warm-up applied."""
    from trainability.training import make_optimizer

    opt = make_optimizer(settings["optimizer"], model, lr=settings.get("lr"), momentum=settings.get("momentum", 0.0))
    if settings.get("eps") is not None:
        if not all("eps" in group for group in opt.param_groups):
            raise ValueError(f"eps applies to Adam-style optimizers, not {settings['optimizer']}")
        for group in opt.param_groups:
            group["eps"] = float(settings["eps"])
    if settings.get("warmup"):
        Warmup(opt, int(settings["warmup"]), done)
    return opt


def z_loss(coefficient: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy plus ``coefficient * mean(logsumexp(logits)^2)`` (PaLM's auxiliary z-loss:
    it keeps the softmax normalizer near 1, so the output logits cannot drift)."""
    return _ZLoss(coefficient)


@dataclass(frozen=True)
class _ZLoss:
    coefficient: float

    def __call__(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from trainability.losses import default_loss

        base = default_loss(output, targets)
        if targets.is_floating_point() or output.dim() != 2:
            return base
        return base + self.coefficient * torch.logsumexp(output, dim=-1).pow(2).mean()


def rounds_of(train: Any, budget: int, batch_size: int, seed: int, rounds: int = ROUNDS) -> list[Any]:
    """The budget's batches: ``budget * batch_size`` samples from seeded permutations of the
    training split, one after another, cut into ``rounds`` equal rounds (as compare's runner)."""
    from trainability.datasets import Split

    generator = torch.Generator().manual_seed(seed)
    needed = budget * batch_size
    order = torch.cat([torch.randperm(train.samples, generator=generator)
                       for _ in range(math.ceil(needed / train.samples))])[:needed]  # fmt: skip
    bounds = [budget * k // rounds * batch_size for k in range(rounds + 1)]
    return [Split(train.x[order[a:b]], train.y[order[a:b]]) for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class Run:
    """One model under training (see the module docstring). ``monitor_every`` is the monitor's
    schedule (``None``: its default, dense over the first steps where a rate far too high shows)."""

    key: str
    model: nn.Module
    settings: dict[str, Any]
    rounds: list[Any]
    validation: Any
    seed: int
    monitor_every: int | None
    records: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"  # running | failed (NaN/Inf loss or an error) | stopped (the search stopped it)
    reason: str | None = None
    seconds: float = 0.0
    _optimizer: Any = None
    _monitor: Any = None

    @property
    def steps(self) -> int:
        return sum(int(r.get("steps") or 0) for r in self.records)

    @property
    def done(self) -> int:
        """Rounds trained."""
        return len(self.records)

    @property
    def finished(self) -> bool:
        return self.status != "running" or self.done >= len(self.rounds)

    def resume(self, optimizer_state: dict[str, Any] | None = None) -> None:
        """Build the optimizer (with ``optimizer_state``: where a worker left it) and the monitor
        for the steps to come; the monitor counts steps from where the run is."""
        from trainability.monitor import Monitor

        self._optimizer = build_optimizer(self.model, self.settings, done=self.steps)
        if optimizer_state:
            self._optimizer.load_state_dict(optimizer_state)
        self._monitor = Monitor(self.model, every=self.monitor_every)
        self._monitor.steps_done = self.steps

    def hand_over(self) -> dict[str, Any] | None:
        """The state a worker goes on from (``None`` before the first round), after which this
        process's optimizer and monitor are dropped: the worker's copy is the run now."""
        state = self.state() if self.done else None
        self.close()
        self._optimizer = None
        return state

    def take_back(self, state: dict[str, Any]) -> dict[str, Any]:
        """A worker's state into this run (weights, records, findings); returns the optimizer's
        state, for the next worker or for :meth:`resume`."""
        self.model.load_state_dict(state["model"])
        self.records, self.findings = list(state["records"]), list(state["findings"])
        self.status, self.reason, self.seconds = state["status"], state["reason"], state["seconds"]
        return state["optimizer"] or {}

    def advance(self, to_round: int, stop: Callable[[Run], bool] | None = None) -> None:
        """Train round after round up to ``to_round`` (at most the budget's), or until the loss
        turns NaN/Inf, or until ``stop(self)`` holds after a round."""
        from trainability.training import fit

        to_round = min(to_round, len(self.rounds))
        if self.status != "running" or self.done >= to_round:
            return
        if self._optimizer is None:
            self.resume()
        start = time.perf_counter()
        loss = z_loss(self.settings["z_loss"]) if self.settings.get("z_loss") else None
        try:
            with torch.random.fork_rng(devices=[]):
                while self.done < to_round:
                    index = self.done
                    history = fit(self.model, self.rounds[index], val_data=self.validation, epochs=1,
                                  batch_size=self.settings["batch_size"], optimizer=self._optimizer, loss=loss,
                                  clip_norm=self.settings.get("clip_norm"), monitor=self._monitor,
                                  seed=self.seed * 1009 + index, progress=False)  # fmt: skip
                    self.findings = [{**f.to_dict(), "action": f.action} for f in self._monitor.findings]
                    if history.stopped or not history.epochs:
                        found = [f for f in self._monitor.findings if f.kind == "non_finite"]
                        said = found[0].message if found else "the loss became NaN or infinite"
                        self.status, self.reason = "failed", f"stopped in round {index + 1}: {said}"
                        break
                    record = {k: history.epochs[-1].get(k) for k in RECORD_KEYS}
                    record["epoch"] = index + 1
                    self.records.append(record)
                    if stop is not None and stop(self):
                        break
        except Exception as exc:  # noqa: BLE001 - a run that fails is a result
            self.status, self.reason = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            self.seconds += time.perf_counter() - start

    def close(self) -> None:
        """Remove the monitor's hooks: the model is as a plain module again."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    def state(self) -> dict[str, Any]:
        """What a worker needs to go on: weights, optimizer state, records and findings."""
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self._optimizer.state_dict()) if self._optimizer is not None else None,
                "records": list(self.records), "findings": list(self.findings), "status": self.status,
                "reason": self.reason, "seconds": self.seconds}  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """A piece of a run for a worker process: build the model (``model.build``, as compare's
    runner does), restore ``state`` if there is one, train up to ``to_round``; picklable."""

    key: str
    data: Any  # loads Splits (repair.search.InMemory or experiments.runner.DataSpec)
    model: Any  # builds the model (repair.search.CandidateModel)
    settings: dict[str, Any]
    seed: int
    budget: int
    to_round: int
    monitor_every: int | None
    state: dict[str, Any] | None = None
    criterion: Any = None  # stops the run once ``criterion.flat`` says it clearly failed, as here

    def stop(self, run: Run) -> bool:
        return self.criterion is not None and self.criterion.flat(run.records, len(run.rounds))


def run_of(segment: Segment) -> Run:
    """The run a segment continues (built, then its state restored)."""
    splits = segment.data.load()
    sample = splits.train.x[:2]
    model = segment.model.build(splits.in_features, splits.n_outputs, seed=segment.seed, sample=sample)
    run = Run(segment.key, model, dict(segment.settings), rounds_of(splits.train, segment.budget, segment.settings["batch_size"],
              segment.seed), splits.validation, segment.seed, segment.monitor_every)  # fmt: skip
    if segment.state is not None:
        model.load_state_dict(segment.state["model"])
        run.records = list(segment.state["records"])
        run.findings = list(segment.state["findings"])
        run.status, run.reason, run.seconds = segment.state["status"], segment.state["reason"], segment.state["seconds"]
        if run.status == "running":
            run.resume(segment.state["optimizer"])
    return run


def segment(task: Segment, progress: Any = None) -> dict[str, Any]:
    """Train one segment (a worker's function: module level, so it pickles by reference) and
    return the run's state."""
    torch.set_flush_denormal(True)  # saturated sigmoid stacks make denormal floats, slow on CPUs
    run = run_of(task)
    try:
        run.advance(task.to_round, stop=task.stop)
        return run.state()
    finally:
        run.close()


__all__ = ["DEFAULTS", "RECORD_KEYS", "ROUNDS", "Run", "Segment", "Warmup", "build_optimizer", "effective_lr",
           "full_settings", "rounds_of", "run_of", "segment", "z_loss"]  # fmt: skip
