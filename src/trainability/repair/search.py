"""``repair()``: probe the network, plan ladders of candidates from the findings, screen each
candidate with the doctor, race the ones it clears, and hand back the smallest change that trains.

1. **Probe.** The doctor at initialization on 256 training samples. When it finds no error, the
   network as it is trains under the budget with the :class:`~trainability.Monitor` attached,
   and stops at the first evaluation where it meets the criterion with no error-severity
   training-time finding (healthy: nothing is tried), when its loss turns NaN/Inf, when it is
   still flat at the constant predictor's level after half the budget, or at the monitor's first
   error (a learning rate too high, Adam's epsilon, attention logits growing, ...). When the
   doctor finds an error, the probe is not trained alone: the network as it is runs in the race
   below, beside the candidates, on the same prefix.
2. **Plan** (:mod:`~trainability.repair.plan`): the doctor's and the monitor's findings become
   ladders, each a fix in ordered strengths.
3. **Screen** (:mod:`~trainability.repair.screen`): each ladder is climbed rung by rung with the
   doctor at initialization, until a rung the doctor clears; rungs that leave the error in place
   are recorded as screened out, with the doctor's reason, and never trained.
4. **Race** (successive halving; Jamieson & Talwalkar 2016, Li et al. 2018): up to
   :data:`WAVE` screened candidates (and the network as it is) train side by side for one round
   (a tenth of the budget); then the better half goes on to two rounds, four, and the budget.
   Runs that clearly failed drop out at once. After each rung the first candidate in order that
   meets the criterion (and beats the network as it is, when that trains too) wins. When none
   does, the ladders of the candidates that lost climb a rung (screened again) and a new wave
   races, until the ladders are spent. ``all=True`` trains every screened candidate for the
   whole budget instead, and the best score wins.

Learning-rate rungs take their rate from the range test (:func:`trainability.lr_finder.find_lr`,
on a copy of the network, run only when such a rung is reached). Every run trains from the same
initial weights on the same batches with the same seed (:mod:`~trainability.repair.runs`); only
the candidate's change differs. Runs go to worker processes (compare's executors, one torch
thread each) where the model can travel to one and a run is long enough to pay for starting
them, else they run here.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainability.experiments.executors import Lost, make_executor, single_thread
from trainability.experiments.runner import DOCTOR_SAMPLES, DataSpec
from trainability.repair.candidates import Candidate
from trainability.repair.criterion import Criterion
from trainability.repair.plan import RANGE_TEST, Ladder, plan
from trainability.repair.result import Attempt, RepairResult, diff_models, snippet
from trainability.repair.runs import (
    ROUNDS,
    Run,
    Segment,
    effective_lr,
    full_settings,
    rounds_of,
    segment,
)
from trainability.repair.screen import Screened, screen

DEFAULT_BUDGET = 300
#: The smallest budget: fewer steps say nothing about whether a network trains.
MIN_BUDGET = 10
#: Successive halving: the rounds at which contestants are compared and the better half goes on.
RUNGS = (2, 4, ROUNDS)
#: Training-time findings that make a run "not train" whatever its score (error severity only):
#: the monitor's judgments of training (issue 18), a NaN/Inf loss, gradients exploding as it trains.
TRAINING_FAILURES = frozenset({"learning_rate_too_high", "learning_rate_too_low", "adam_epsilon_dominates",
                               "attention_logit_growth", "output_logit_divergence", "loss_spike"})
DURING_TRAINING = frozenset({"non_finite", "exploding_gradients"})  # these count from the first step on
#: Candidates per wave of the race (the network as it is races beside the first wave).
WAVE = 3
#: Steps of a learning-rate range test (from 1e-7 to 10: 12.5 steps a decade).
RANGE_TEST_STEPS = 100
#: With ``workers=None``, runs go to worker processes only when one whole run is expected to take
#: at least this long: starting a worker (a fresh interpreter importing torch) costs seconds.
STARTUP_SECONDS = 10.0


@dataclass(frozen=True)
class InMemory:
    """Data already in memory, as a task's data (it travels to workers pickled)."""

    splits: Any

    def load(self) -> Any:
        return self.splits


@dataclass(frozen=True)
class CandidateModel:
    """The user's model in its initial state with one candidate's change applied; ``build`` is
    what a run calls, in this process or a worker."""

    original: nn.Module
    candidate: Candidate | None = None

    def build(self, in_features: int, out_features: int, *, seed: int, sample: torch.Tensor) -> nn.Module:
        model = copy.deepcopy(self.original)
        if self.candidate is not None:
            self.candidate.apply(model, seed=seed)
        return model


# -- inputs ----------------------------------------------------------------------------------------
def _instantiate(model: nn.Module | Callable[[], nn.Module], seed: int) -> nn.Module:
    if isinstance(model, nn.Module):
        try:
            return copy.deepcopy(model)
        except Exception as exc:
            raise ValueError(f"repair needs to copy the model (copy.deepcopy), which failed: {type(exc).__name__}: {exc}"
                             .splitlines()[0]) from exc  # fmt: skip
    if not callable(model):
        raise ValueError(f"model must be a torch.nn.Module or a zero-argument factory returning one, got {type(model).__name__}")
    name = getattr(model, "__name__", type(model).__name__)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            built = model()
    except Exception as exc:
        raise ValueError(f"the model factory {name}() raised {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(built, nn.Module):
        raise ValueError(f"the model factory {name}() returned {type(built).__name__}, not a torch.nn.Module")
    return built


def _materialize(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset or DataLoader of (input, target) pairs as two tensors."""
    from torch.utils.data import DataLoader

    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=1024)  # type: ignore[arg-type]
    xs, ys = [], []
    for batch in loader:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError("a Dataset or DataLoader for repair must give (inputs, targets) pairs")
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise ValueError("the data is empty")
    return torch.cat(xs), torch.cat(ys)


def _tensor_splits(x: torch.Tensor, y: torch.Tensor) -> Any:
    """Train / validation / test (64 / 16 / 20%, stratified for classes, seed 0), unstandardized."""
    from trainability.datasets import Split, Splits
    from trainability.datasets.splits import split_indices

    if len(x) != len(y):
        raise ValueError(f"the data has {len(x)} inputs but {len(y)} targets")
    if len(x) < 10:
        raise ValueError(f"the data has {len(x)} samples; repair needs at least 10 to split off validation data")
    labels = y.numpy() if not y.is_floating_point() else y.reshape(len(y), -1)[:, 0].numpy()
    rest, test = split_indices(labels, 0.2, 0, what="test")
    keep, val = split_indices(labels[rest], 0.2, 1, what="validation")
    train, val = rest[keep], rest[val]
    pick = lambda idx: Split(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)])  # noqa: E731
    return Splits("tensors", pick(train), pick(val), pick(test))


def load_data(data: Any) -> tuple[Any, Any]:
    """(Splits, what a task loads) for anything repair accepts: a data set name or file (as
    :func:`trainability.datasets.load`), :class:`~trainability.datasets.Splits`, an
    ``(inputs, targets)`` tuple of tensors, a Dataset or a DataLoader."""
    from torch.utils.data import DataLoader, Dataset

    from trainability import datasets

    if isinstance(data, (str, os.PathLike)):
        spec = DataSpec(os.fspath(data))
        return spec.load(), spec
    if isinstance(data, datasets.Splits):
        return data, InMemory(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        splits = _tensor_splits(*data)
    elif isinstance(data, (DataLoader, Dataset)):
        splits = _tensor_splits(*_materialize(data))
    else:
        raise ValueError(f"data must be a data set name or file, trainability.datasets.Splits, an (inputs, targets) tuple "
                         f"of tensors, a Dataset or a DataLoader; got {type(data).__name__}")  # fmt: skip
    return splits, InMemory(splits)


def _check_fits(model: nn.Module, splits: Any) -> None:
    """One forward pass and loss on two training samples; a misfit is one clear ValueError."""
    from trainability.graph import evaluating
    from trainability.losses import default_loss

    x, y = splits.train.x[:2], splits.train.y[:2]
    try:
        with evaluating(model), torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise ValueError(f"the model cannot take the data's inputs (shape {tuple(x.shape[1:])} per sample): "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc  # fmt: skip
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the model returned {type(out).__name__}; repair needs a tensor of outputs")
    if splits.classification and (out.dim() != 2 or out.shape[-1] < splits.n_outputs):
        raise ValueError(f"the model outputs shape {tuple(out.shape[1:])} per sample but the data has {splits.n_outputs} "
                         "classes: the last layer needs one output per class")  # fmt: skip
    try:
        default_loss(out, y)
    except Exception as exc:
        raise ValueError(f"the model's outputs (shape {tuple(out.shape[1:])}) and the data's targets "
                         f"(shape {tuple(y.shape[1:]) or 'scalars'}) do not fit: {exc}".splitlines()[0]) from exc  # fmt: skip


def travel_problem(model: nn.Module) -> str | None:
    """Why the model cannot be sent to a spawned worker process, or ``None`` if it can: its
    classes must be importable by module name in a fresh interpreter, and it must pickle."""
    for module in model.modules():
        where = type(module).__module__
        if where == "__main__":
            return f"{type(module).__name__} is defined in __main__ (a script or a notebook), which a worker cannot import"
        if where not in sys.modules or importlib.util.find_spec(where.split(".")[0]) is None:
            return f"{type(module).__name__}'s module {where} cannot be imported by a worker process"
    try:
        pickle.dumps(model)
    except Exception as exc:  # noqa: BLE001 - any reason it cannot be pickled
        return f"the model cannot be pickled ({type(exc).__name__}: {exc})".splitlines()[0]
    return None




def _validate(budget_steps: int, optimizer: Any, lr: Any, momentum: Any, batch_size: Any, seed: Any, workers: Any) -> None:
    from trainability.training import OPTIMIZERS

    if isinstance(budget_steps, bool) or not isinstance(budget_steps, int) or budget_steps < MIN_BUDGET:
        raise ValueError(f"budget_steps must be an int of at least {MIN_BUDGET} (a shorter run cannot show whether a "
                         f"network trains), got {budget_steps!r}")  # fmt: skip
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid names: {', '.join(OPTIMIZERS)}")
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number (or None for the optimizer's default), got {lr!r}")
    if not isinstance(momentum, (int, float)) or momentum < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None (automatic), got {workers!r}")
    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        raise ValueError(f"{workers} workers on {cores} CPU cores: runs would slow each other down many-fold; "
                         f"use workers={cores} or fewer")  # fmt: skip


# -- the search ------------------------------------------------------------------------------------
def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


@dataclass
class Contestant:
    """One run in the race: the network as it is (``candidate is None``) or a candidate, with
    the ladder and rung it came from and the doctor's screening of it."""

    candidate: Candidate | None
    run: Run
    order: int
    ladder: _Rungs | None = None
    screened: Screened | None = None
    dropped_at: int | None = None  # the step at which successive halving left it behind
    optimizer_state: dict[str, Any] | None = None  # after a worker trained it

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.run.records


@dataclass
class _Rungs:
    """A ladder being climbed: the next rung to consider, and the doctor's judgment of each
    rung screened so far."""

    ladder: Ladder
    order: int
    next: int = 0
    screened: dict[int, Screened] = field(default_factory=dict)
    chosen: tuple[int, Screened] | None = None

    @property
    def spent(self) -> bool:
        return self.chosen is None and self.next >= len(self.ladder.rungs)


class _Search:
    """One repair call: the runs, the ladders, where runs train, and what was tried, in order."""

    def __init__(self, original: nn.Module, splits: Any, data_spec: Any, criterion: Criterion, settings: dict[str, Any],
                 budget: int, seed: int, workers: int | None, progress: bool, everything: bool, sample: tuple[Any, Any],
                 errors: list[dict[str, Any]], training_first: bool) -> None:  # fmt: skip
        self.original, self.splits, self.data_spec, self.criterion = original, splits, data_spec, criterion
        self.settings, self.budget, self.seed, self.progress, self.everything = settings, budget, seed, progress, everything
        self.sample, self.errors, self.training_first = sample, errors, training_first
        self.condemned = bool(errors)  # the doctor found an error at initialization
        self.rounds = rounds_of(splits.train, budget, settings["batch_size"], seed)
        self.monitor_every = None  # the monitor's own schedule: steps 0, 1, 2, 4, 8, 16, then every 25
        self.workers_asked = workers
        self.remote: int | None = None  # worker processes, once runs go to them
        self.ran_here: str | None = None
        self.floor: Criterion | None = None
        self.range_tests: dict[str, Any] = {}
        self.extra_steps = 0
        self.attempts: list[Attempt | Contestant] = []  # screened out and raced, in the order considered
        self.contestants: list[Contestant] = []
        self.skipped: list[str] = []
        self.counter = 0
        self.reference: Contestant | None = None  # the network as it is

    # -- runs ----------------------------------------------------------------------------------
    def new_run(self, candidate: Candidate | None, model: nn.Module | None = None) -> Run:
        """A run of the original with ``candidate`` applied (``model``: already applied, by screening)."""
        if model is None:
            model = CandidateModel(self.original, candidate).build(self.splits.in_features, self.splits.n_outputs,
                                                                   seed=self.seed, sample=self.sample[0])  # fmt: skip
        settings = candidate.train(self.settings) if candidate is not None else dict(self.settings)
        self.counter += 1
        return Run(f"run-{self.counter}", model, settings, self.rounds, self.splits.validation, self.seed, self.monitor_every)

    def _decide_workers(self, contestants: list[Contestant]) -> None:
        """Whether runs go to worker processes from now on: asked for, or (``workers=None``)
        when a whole run is expected to take ``STARTUP_SECONDS`` and more cores are there."""
        if self.remote is not None or len(contestants) < 2:
            return
        cores = os.cpu_count() or 1
        if self.workers_asked is not None:
            count = self.workers_asked
        else:
            timed = [c.run for c in self.contestants if c.run.steps > 0]
            per_step = max((r.seconds / r.steps for r in timed), default=0.0)
            count = cores if per_step * self.budget >= STARTUP_SECONDS else 1
        if count <= 1:
            return
        problem = travel_problem(self.original)
        if problem is not None:
            self.ran_here = problem
            self.remote = 0
            return
        self.remote = count

    def advance(self, contestants: list[Contestant], to_round: int) -> None:
        """Train each contestant up to ``to_round`` (stopping early where a run clearly fails),
        here or, once runs go to workers, two or more at a time in worker processes."""
        active = [c for c in contestants if c.run.status == "running" and c.run.done < to_round]
        if not active:
            return
        self._decide_workers(active)
        if not self.remote or len(active) < 2:
            for c in active:
                if c.optimizer_state is not None:  # back from a worker: go on here with its optimizer's state
                    c.run.resume(c.optimizer_state)
                    c.optimizer_state = None
                c.run.advance(to_round, stop=lambda run: self.criterion.flat(run.records, ROUNDS))
            return
        tasks = []
        for c in active:
            state = c.run.hand_over()
            if state is not None and c.optimizer_state is not None:
                state["optimizer"] = c.optimizer_state
            tasks.append(Segment(c.run.key, self.data_spec, CandidateModel(self.original, c.candidate), c.run.settings,
                                 self.seed, self.budget, to_round, self.monitor_every, state, self.criterion))  # fmt: skip
        results: dict[str, Any] = {}
        make_executor("local", min(self.remote, len(tasks))).map(segment, tasks, lambda t, r: results.__setitem__(t.key, r))
        for c in active:
            state = results.get(c.run.key)
            if state is None or isinstance(state, Lost):
                c.run.status, c.run.reason = "failed", state.reason if isinstance(state, Lost) else "its worker did not report"
                continue
            c.optimizer_state = c.run.take_back(state)

    # -- judging -------------------------------------------------------------------------------
    def errors_in(self, run: Run) -> list[dict[str, Any]]:
        """The monitor's error-severity findings about training itself (:data:`TRAINING_FAILURES`
        at any step; a NaN/Inf loss or exploding gradients after the first step). What the monitor
        sees at step 0 of the network's structure is what the doctor saw at initialization."""
        return [f for f in run.findings if f.get("severity") == "error" and (
            f.get("kind") in TRAINING_FAILURES or f.get("kind") in DURING_TRAINING and (f.get("step") or 0) > 0)]  # fmt: skip

    def vetoes(self, c: Contestant) -> list[dict[str, Any]]:
        """The monitor's training-time errors that deny a run the verdict "trains": for the
        network as it is, any (the issue's rule: a probe with such a finding is not healthy); for
        a candidate, one of a kind that asked for it or, when the doctor found no error at
        initialization, that the network as it is showed while training: the failure persists (as
        a doctor's error does at screening). A new kind raised on the way (the loss rising at step
        1 of a freshly drawn network), or one the network as it is raised as a consequence of the
        doctor's error, is left to the criterion, which the run must meet at two evaluations in a
        row."""
        errors = self.errors_in(c.run)
        if c.candidate is None:
            return errors
        persisting = {a["kind"] for a in c.ladder.ladder.asked} if c.ladder is not None else set()
        if self.reference is not None and not self.condemned:  # what the sound-looking network showed while training
            persisting |= {f.get("kind") for f in self.errors_in(self.reference.run)}
        return [f for f in errors if f.get("kind") in persisting]

    def trains(self, c: Contestant, judge: Criterion | None = None) -> bool:
        judge = judge or self.criterion
        return c.run.status != "failed" and judge.trains(c.records) and not self.vetoes(c)

    def failed(self, c: Contestant) -> bool:
        return c.run.status == "failed" or self.criterion.flat(c.records, ROUNDS)

    # -- ladders and screening -------------------------------------------------------------------
    def resolve(self, candidate: Candidate) -> Candidate | None:
        """A learning-rate rung's rate from the range test (run once per optimizer); ``None``
        when that rate is the one the network already trains with."""
        if candidate.params.get("from") != RANGE_TEST:
            return candidate
        from trainability.lr_finder import find_lr

        optimizer = candidate.params.get("optimizer", self.settings["optimizer"])
        momentum = self.settings["momentum"] if optimizer == self.settings["optimizer"] else 0.0
        if optimizer not in self.range_tests:
            try:
                test = find_lr(self.original, (self.splits.train.x, self.splits.train.y), optimizer=optimizer, momentum=momentum,
                               batch_size=self.settings["batch_size"], steps=RANGE_TEST_STEPS, clip_norm=self.settings["clip_norm"],
                               seed=self.seed)  # fmt: skip
                self.extra_steps += test.steps
            except ValueError:
                test = None
            self.range_tests[optimizer] = test
            if test is not None:
                _say(self.progress, f"  range test ({optimizer}): {test.summary().splitlines()[-1]}")
        test = self.range_tests[optimizer]
        below = float(candidate.params.get("below", 1.0))
        params = {k: v for k, v in candidate.params.items() if k not in ("from", "below")}
        if test is not None and test.falls:
            params["lr"] = float(f"{test.suggestion / below:.3g}")
            params["source"] = "the range test's choice" if below == 1 else f"{below:g}x below the range test's choice"
        elif candidate.kind == "change_optimizer":
            params["lr"] = None
        else:
            params["lr"] = float(f"{effective_lr(self.settings) * 0.1 / below:.3g}")
            params["source"] = f"x{0.1 / below:g}: the range test found no rate where the loss falls"
        if candidate.kind == "lower_learning_rate" and optimizer == self.settings["optimizer"]:
            current = effective_lr(self.settings)
            if 1 / 1.5 <= params["lr"] / current <= 1.5:
                self.skipped.append(f"{candidate.label} ({candidate.reason}): the range test's rate ({params['lr']:.3g}) is "
                                    f"the one it trains with ({current:.3g})")  # fmt: skip
                return None
        return Candidate(candidate.kind, params, candidate.reason)

    def climb(self, rungs: _Rungs) -> None:
        """Screen the ladder's rungs from ``rungs.next`` on and choose the first the doctor clears
        (or cannot judge), else the first it clears but for a warning or another error; rungs
        that leave the error in place are recorded as screened out, once."""
        partial: int | None = None
        for index in range(rungs.next, len(rungs.ladder.rungs)):
            found = rungs.screened.get(index)
            if found is None:
                candidate = rungs.ladder.rungs[index]  # a range-test rate is measured only when the rung is raced
                found = screen(self.original, candidate, *self.sample, rungs.ladder.asked, self.seed, self.errors)
                rungs.screened[index] = found
                if found.status == "out":
                    found.model = None
                    self.attempts.append(Attempt(candidate, "screened out", found.reason, [], None, 0, 0.0, found.verdict))
                    _say(self.progress, f"  screened out: {candidate.label}: {found.reason[:160]}")
            if found.status in ("clear", "unjudged", "unknown"):
                for weaker in range(rungs.next, index):  # passed over for this one: never trained
                    passed = rungs.screened.get(weaker)
                    if passed is not None and passed.status == "partial":
                        passed.model = None
                        self.attempts.append(Attempt(passed.candidate, "screened out", f"{passed.reason} (a stronger rung of "
                                                     "its ladder is clear)", [], None, 0, 0.0, passed.verdict))  # fmt: skip
                rungs.chosen, rungs.next = (index, found), index + 1
                return
            if found.status == "partial" and partial is None:
                partial = index
        if partial is not None:
            rungs.chosen, rungs.next = (partial, rungs.screened[partial]), partial + 1
        else:
            rungs.next = len(rungs.ladder.rungs)

    def _class(self, rungs: _Rungs) -> int:
        """Which contestants go first: those the doctor clears, then those it cannot judge
        (training settings; first instead when the doctor found nothing at initialization), then
        the partly cleared."""
        status = rungs.chosen[1].status if rungs.chosen else "out"
        if status == "unjudged":
            return 0 if self.training_first else 1
        return {"clear": 0, "unknown": 1, "partial": 2}.get(status, 3)

    def pick(self, queue: list[_Rungs], count: int) -> list[Contestant]:
        """The next wave: ladders in order, each climbed to a rung to train, the doctor-cleared
        first; at most ``count`` (every one with ``all=True``)."""
        ready: list[_Rungs] = []
        for rungs in queue:
            if rungs.chosen is None and not rungs.spent:
                self.climb(rungs)
            if rungs.chosen is not None:
                ready.append(rungs)
            if sum(self._class(r) == 0 for r in ready) >= count:
                break
        ready.sort(key=lambda r: (self._class(r), r.order))
        wave: list[Contestant] = []
        for rungs in ready:
            candidate = None
            while rungs.chosen is not None and candidate is None:
                index, found = rungs.chosen
                rungs.chosen = None
                candidate = self.resolve(found.candidate)
                if candidate is None and not rungs.spent:
                    self.climb(rungs)
            if candidate is None:
                continue
            model, found.model = found.model, None  # the screened copy becomes the run's model
            found = Screened(candidate, found.status, found.reason, found.verdict, found.report)
            c = Contestant(candidate, self.new_run(candidate, model), rungs.order, rungs, found)
            wave.append(c)
            self.contestants.append(c)
            self.attempts.append(c)
            if len(wave) == count:
                break
        return wave

    def every_rung(self, queue: list[_Rungs]) -> list[Contestant]:
        """``all=True``: every rung of every ladder that the doctor does not screen out, at once."""
        wave: list[Contestant] = []
        for rungs in queue:
            while not rungs.spent:
                self.climb(rungs)
                if rungs.chosen is None:
                    break
                _, found = rungs.chosen
                rungs.chosen = None
                candidate = self.resolve(found.candidate)
                if candidate is None:
                    continue
                model, found.model = found.model, None
                found = Screened(candidate, found.status, found.reason, found.verdict, found.report)
                c = Contestant(candidate, self.new_run(candidate, model), rungs.order, rungs, found)
                wave.append(c)
                self.contestants.append(c)
                self.attempts.append(c)
        return wave

    # -- the race --------------------------------------------------------------------------------
    def race(self, wave: list[Contestant], reference: Contestant | None) -> Contestant | None:
        """Successive halving over ``wave`` (and the network as it is, ``reference``): all train
        round by round (rung by rung in worker processes); after each, the first candidate in
        order that trains (and beats the reference when that trains) wins; at each rung of
        :data:`RUNGS` the better half goes on; runs that clearly failed drop out at once."""
        alive = wave + ([reference] if reference is not None else [])
        rungs = (ROUNDS,) if self.everything else RUNGS
        ends = sorted(set(rungs) | (set() if self.remote or self.everything else set(range(1, ROUNDS + 1))))
        judge = self.floor
        for end in ends:
            self.advance(alive, end)
            alive = [c for c in alive if not self.failed(c)]
            judge = self.floor
            if reference in alive and self.trains(reference):
                judge = self.criterion.better_than(self.criterion.metric(reference.records))  # type: ignore[arg-type]
            trained = [c for c in alive if c is not reference and self.trains(c, judge)]
            if trained and not self.everything:
                for c in sorted(trained, key=lambda c: c.order):
                    if self.confirmed(c, judge):
                        return c
                alive = [c for c in alive if not self.failed(c)]
            candidates = [c for c in alive if c is not reference]
            if not candidates or end == ends[-1]:
                break
            if end not in rungs:
                continue
            ranked = sorted(alive, key=functools.cmp_to_key(self._compare))
            keep = [c for c in ranked if c is not reference][: max(1, math.ceil(len(candidates) / 2))]
            if reference in alive and (self.trains(reference) or ranked.index(reference) < math.ceil(len(ranked) / 2)):
                keep.append(reference)  # in the better half, or the score to beat: it stays measured
            for c in alive:
                if c not in keep:
                    c.dropped_at = c.run.steps
            alive = keep
        if self.everything:
            trained = [c for c in alive if c is not reference and self.trains(c, judge)]
            if trained:
                return max(trained, key=lambda c: (self.criterion.score_key(c.records), -c.order))
        return None

    def confirmed(self, c: Contestant, judge: Criterion | None) -> bool:
        """A candidate that meets the criterion wins once it meets it at two evaluations in a row
        (one more round here if need be; at the end of the budget, one is enough): a rate that
        trains for a round and then diverges does not win on that round."""
        if not self.trains(c, judge):
            return False
        if len(c.records) >= 2 and (judge or self.criterion).trains(c.records[:-1]):
            return True
        if c.run.done >= ROUNDS or c.run.status != "running":
            return True
        self.advance([c], c.run.done + 1)
        return not self.failed(c) and self.trains(c, judge)

    def _compare(self, a: Contestant, b: Contestant) -> int:
        """Order for successive halving: a clearly better validation score first; within noise,
        the smaller change (the plan's order) first."""
        sa, sb = self.criterion.metric(a.records), self.criterion.metric(b.records)
        if self.criterion.clearly_better(sa, sb):
            return -1
        if self.criterion.clearly_better(sb, sa):
            return 1
        return -1 if a.order < b.order else (1 if a.order > b.order else 0)


def _attempt(c: Contestant, criterion: Criterion, search: _Search, winner: bool) -> Attempt:
    run = c.run
    if run.status == "failed":
        status, reason = "failed", run.reason
    elif winner or search.trains(c):
        status, reason = "trains", None
    elif c.dropped_at is not None:
        status, reason = "dropped", f"behind the others after {c.dropped_at} steps (successive halving)"
    else:
        status = "does not train"
        errors = search.vetoes(c)
        reason = f"the monitor: {errors[0]['message']}" if errors else ("still at the constant predictor's level"
                                                                         if criterion.flat(run.records, ROUNDS) else None)  # fmt: skip
    doctor = c.screened.verdict if c.screened is not None else None
    return Attempt(c.candidate, status, reason, list(run.records), criterion.metric(run.records), run.steps, run.seconds,
                   doctor, bool(run.records) and run.done < ROUNDS and status == "trains", list(run.findings))  # fmt: skip


def repair(
    model: nn.Module | Callable[[], nn.Module],
    data: Any,
    *,
    budget_steps: int = DEFAULT_BUDGET,
    lr: float | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    batch_size: int = 32,
    all: bool = False,  # noqa: A002 - the issue's name, as the CLI's --all
    seed: int = 0,
    workers: int | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> RepairResult:
    """Find the smallest change that makes ``model`` train on ``data``, prove it, and return it.

    The probe, the plan, the screening and the race are described in this module's docstring.
    ``budget_steps`` is one run's budget of optimizer steps (``optimizer``, ``lr``, ``momentum``,
    ``batch_size`` as :func:`trainability.fit` takes them); ``all=True`` trains every screened
    candidate for the whole budget and returns the best. The result
    (:class:`~trainability.repair.result.RepairResult`) holds the repaired model at
    initialization (``.model``), the settings to train it with (``.settings``; the original ones
    are ``.original_settings``), the layer-by-layer diff, a snippet applying the change to the
    original model, every candidate considered (screened out, raced, dropped) with its cost, and
    the doctor before and after; ``out`` (a folder) gets the HTML page, its PNGs, the snippet
    and JSON.

    ``model`` is an ``nn.Module`` (left untouched) or a zero-argument factory (called once, with
    the global RNG seeded by ``seed`` and restored after). ``data`` is a data set name or file,
    ``trainability.datasets.Splits``, an ``(inputs, targets)`` tuple (split 64/16/20), a Dataset
    or a DataLoader. ``workers``: processes for the runs (``None``: as many as cores allow when a
    run is long enough to pay for starting them; models whose classes live in ``__main__``
    always run here).

    >>> import trainability
    >>> model = trainability.mlp(64, 10, depth=20, width=32, activation="relu", init="default")
    >>> result = trainability.repair(model, "digits", budget_steps=100)   # doctest: +SKIP
    >>> result.verdict, result.change.label                                # doctest: +SKIP
    ('repaired', 're-initialize every layer with the matched initializer')
    """
    start = time.perf_counter()
    _validate(budget_steps, optimizer, lr, momentum, batch_size, seed, workers)
    from trainability.adapters import check_model, keras_of
    from trainability.doctor import diagnose

    keras = ("repair rebuilds and retrains PyTorch modules and cannot yet change a Keras model's layers; "
             "for a Keras model use trainability.diagnose(model, x) and trainability.initialize(model)")  # fmt: skip
    if keras_of(model) is not None:
        raise ValueError(keras)
    original = _instantiate(model, seed)
    check_model(original)
    if keras_of(original) is not None:  # a factory's
        raise ValueError(keras)
    splits, data_spec = load_data(data)
    _check_fits(original, splits)
    criterion = Criterion.for_splits(splits)
    settings = full_settings({"optimizer": optimizer.lower(), "lr": lr, "momentum": float(momentum), "batch_size": batch_size})
    x, y = splits.train.x[:DOCTOR_SAMPLES], splits.train.y[:DOCTOR_SAMPLES]

    torch.set_flush_denormal(True)  # saturated sigmoid stacks make denormal floats, slow on CPUs
    before = diagnose(original, x, y)
    errors = [f for f in before.findings if f.severity == "error"]
    search = _Search(original, splits, data_spec, criterion, settings, budget_steps, seed, workers, progress, all, (x, y),
                     [{"kind": f.kind, "layers": list(f.layers)} for f in errors], not before.findings)  # fmt: skip
    reference = Contestant(None, search.new_run(None), 10**6)  # after every candidate where scores tie
    search.reference = reference
    if not errors:
        _say(progress, f"repair: {len(before.findings)} finding(s) at initialization, no error; probing up to {budget_steps} steps")

        def settled(run: Run) -> bool:
            return (criterion.trains(run.records) or criterion.flat(run.records, ROUNDS)
                    or bool(search.errors_in(run)))  # fmt: skip

        with single_thread():
            reference.run.advance(ROUNDS, stop=settled)
    else:
        _say(progress, f"repair: {len(errors)} error(s) at initialization ({', '.join(sorted({f.kind for f in errors}))}); "
                       "the network as it is races beside the candidates")  # fmt: skip
    result = RepairResult(original=original, model=copy.deepcopy(original), verdict="healthy", change=None,
                          settings=dict(settings), original_settings=dict(settings), probe=_attempt(reference, criterion, search, False),
                          attempts=[], skipped=[], before=before, after=before, criterion=criterion, budget_steps=budget_steps,
                          seed=seed, data=getattr(splits, "name", "data"), workers=1, ran_here=None, untried=0)  # fmt: skip
    if not errors and search.trains(reference):
        reference.run.close()
        _say(progress, f"probe: {result.probe.describe()}: healthy")
        return _finish(result, start, out, search)
    if not errors:
        _say(progress, f"probe: {result.probe.describe()}")

    findings = [{**f.to_dict(), "action": f.action} for f in before.findings]
    findings += [f for f in _while_training(reference.run.findings) if f.get("kind") not in {g["kind"] for g in findings}]
    findings.sort(key=lambda f: f.get("severity") != "error")  # errors first, each source's order kept
    search.errors += [{"kind": f["kind"], "layers": list(f.get("layers") or [])} for f in search.errors_in(reference.run)]
    racing = None if search.failed(reference) else reference  # the score to beat, if it trains
    ladders, skipped = plan(original, x, findings, settings, fallbacks=True, training_first=not before.findings, report=before)
    search.skipped += skipped
    queue = [_Rungs(ladder, i) for i, ladder in enumerate(ladders)]
    _say(progress, f"{len(ladders)} ladder(s) of candidates: " + "; ".join(f"{i + 1}. {lad.rungs[0].label}" + (
        f" (+{len(lad.rungs) - 1})" if len(lad.rungs) > 1 else "") for i, lad in enumerate(ladders)))  # fmt: skip

    winner = None
    with single_thread():
        first = True
        while winner is None:
            wave = (search.every_rung(queue) if first else []) if all else search.pick(queue, WAVE)
            if not wave:
                break
            _say(progress, "race: " + ", ".join(c.candidate.label for c in wave) + (" and the network as it is" if first and racing else ""))  # type: ignore[union-attr]
            winner = search.race(wave, racing if first else None)
            if first and racing is not None and search.trains(racing):
                search.floor = criterion.better_than(criterion.metric(racing.records))  # type: ignore[arg-type]
            first = False
            for c in wave:
                c.run.close()
                if c is not winner and c.ladder is not None and not c.ladder.spent:
                    c.ladder.chosen = None  # climb on: the training prefix shows the failure persists
    reference.run.close()
    result.probe = _attempt(reference, criterion, search, False)
    result.attempts = [a if isinstance(a, Attempt) else _attempt(a, criterion, search, a is winner) for a in search.attempts]
    result.skipped = list(dict.fromkeys(search.skipped))
    result.untried = sum(not r.spent and r.next == 0 for r in queue)
    result.workers = search.remote or 1
    result.ran_here = search.ran_here
    result.criterion = search.floor or criterion
    result.range_tests = {k: v for k, v in search.range_tests.items() if v is not None}
    if winner is not None:
        repaired = copy.deepcopy(original)
        notes = winner.candidate.apply(repaired, seed=seed)  # type: ignore[union-attr]
        result.verdict, result.change, result.model = "repaired", winner.candidate, repaired
        result.settings = winner.candidate.train(settings)  # type: ignore[union-attr]
        try:
            result.after = diagnose(repaired, x, y)
        except Exception as exc:  # noqa: BLE001 - the repair stands on its training run; say why there is no report
            result.after, result.after_error = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.diff = diff_models(original, repaired, notes, settings, result.settings)
        result.snippet = snippet(winner.candidate, settings, result.settings, seed)  # type: ignore[arg-type]
    else:
        result.verdict = "trains_as_is" if racing is not None and search.trains(racing) else "not_repaired"
    return _finish(result, start, out, search)


def _while_training(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The monitor's findings about training: every one after the first step, and the
    training-time kinds at any step. At step 0 the network's structure is what the monitor sees,
    on one mini-batch, which the doctor judged at initialization on 256 samples."""
    return [f for f in findings if (f.get("step") or 0) > 0 or f.get("kind") in TRAINING_FAILURES | DURING_TRAINING]


def _finish(result: RepairResult, start: float, out: str | os.PathLike[str] | None, search: _Search) -> RepairResult:
    result.extra_steps = search.extra_steps
    result.seconds = time.perf_counter() - start
    if result.change is None:
        result.snippet = snippet(None, result.settings, result.settings, result.seed)
    if out is not None:
        result.write(out)
    return result


__all__ = ["DEFAULT_BUDGET", "MIN_BUDGET", "RUNGS", "WAVE", "CandidateModel", "InMemory", "load_data", "repair", "travel_problem"]
