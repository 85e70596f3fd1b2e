"""``repair()``: probe the network, plan candidates from the doctor's findings, train them under
one budget, and hand back the first (or best) that trains, with the evidence.

Every run, the probe's and each candidate's, is a :class:`~trainability.experiments.runner.Task`
trained by compare's runner (:func:`~trainability.experiments.runner.train`) for ``budget_steps``
optimizer steps from the same initial weights, on the same batches, with the same seed; only the
candidate's change differs. Runs are evaluated every ``budget_steps / 10`` steps against the
criterion (:mod:`~trainability.repair.criterion`). A probe the doctor finds no error in stops at
the first evaluation that meets it (a healthy network costs only the steps it needed); candidates
run their whole budget, so that the winner's learning curve is the evidence, next to the probe's.
Without ``all=True`` the search stops at the first candidate that trains. Candidates run in worker
processes (compare's executors, one torch thread each) where the model can travel to one and
cores allow, else in this process.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainability.experiments.executors import InProcess, Lost, make_executor
from trainability.experiments.runner import (
    DOCTOR_SAMPLES,
    DataSpec,
    Outcome,
    Task,
    TrainSpec,
    train,
)
from trainability.repair.candidates import Candidate
from trainability.repair.criterion import Criterion
from trainability.repair.plan import plan
from trainability.repair.result import Attempt, RepairResult, diff_models, snippet

DEFAULT_BUDGET = 300
#: The smallest budget: fewer steps say nothing about whether a network trains.
MIN_BUDGET = 10
#: Evaluations per run (the budget is split into this many rounds).
ROUNDS = 10
#: With ``workers=None``, candidates go to worker processes only when the probe took at least
#: this long: starting a worker (a fresh interpreter importing torch) costs seconds.
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
    what the runner calls, in this process or a worker."""

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


def _settings_spec(settings: dict[str, Any], budget: int) -> TrainSpec:
    return TrainSpec(optimizer=settings["optimizer"], lr=settings["lr"], batch_size=settings["batch_size"],
                     epochs=min(ROUNDS, budget), steps=budget, momentum=settings["momentum"],
                     clip_norm=settings["clip_norm"])  # fmt: skip


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


def _attempt(candidate: Candidate | None, outcome: Any, criterion: Criterion) -> Attempt:
    if isinstance(outcome, Lost):
        return Attempt(candidate, "failed", outcome.reason, [], None, 0, 0.0, None, False)
    trains = outcome.status == "finished" and criterion.trains(outcome.epochs)
    return Attempt(candidate, "trains" if trains else ("failed" if outcome.status == "failed" else "does not train"),
                   outcome.reason, outcome.epochs, criterion.metric(outcome.epochs),
                   sum(int(e.get("steps") or 0) for e in outcome.epochs), outcome.seconds,
                   outcome.doctor.get("init", {}).get("verdict"), outcome.stopped_early)  # fmt: skip


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

    1. **Probe**: the doctor at initialization (:func:`trainability.diagnose` on 256 training
       samples) and a training run of ``budget_steps`` steps (``optimizer``, ``lr``,
       ``momentum``, ``batch_size`` as :func:`trainability.fit` takes them). If the network
       trains (:class:`~trainability.repair.criterion.Criterion`) and the doctor found no error,
       it is healthy: nothing is tried.
    2. **Candidates** from the findings' actions, smallest change first
       (:mod:`~trainability.repair.plan`), each trained from the same initial weights on the same
       batches with the same seed under the same budget. The first that trains wins; with
       ``all=True`` every one runs its whole budget and the best validation score wins.
    3. **Result** (:class:`~trainability.repair.result.RepairResult`): the repaired, initialized
       model (``.model``), the layer-by-layer diff, a snippet applying the change to the original
       model, every attempt with its cost, and the doctor before and after; ``out`` (a folder)
       gets the HTML page, its PNGs, the snippet and JSON.

    ``model`` is an ``nn.Module`` (left untouched) or a zero-argument factory (called once, with
    the global RNG seeded by ``seed`` and restored after). ``data`` is a data set name or file,
    ``trainability.datasets.Splits``, an ``(inputs, targets)`` tuple (split 64/16/20), a Dataset
    or a DataLoader. ``workers``: processes for candidates (``None``: as many as cores allow
    when a run is long enough to pay for starting them; models whose classes live in
    ``__main__`` always run here).

    >>> import trainability
    >>> model = trainability.mlp(64, 10, depth=20, width=32, activation="relu", init="default")
    >>> result = trainability.repair(model, "digits", budget_steps=100)   # doctest: +SKIP
    >>> result.verdict, result.change.label                                # doctest: +SKIP
    ('repaired', 're-initialize every layer with the matched initializer')
    """
    start = time.perf_counter()
    _validate(budget_steps, optimizer, lr, momentum, batch_size, seed, workers)
    from trainability.adapters import check_model, keras_of

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
    settings = {"optimizer": optimizer.lower(), "lr": lr, "momentum": float(momentum), "batch_size": batch_size,
                "clip_norm": None}  # fmt: skip
    x, y = splits.train.x[:DOCTOR_SAMPLES], splits.train.y[:DOCTOR_SAMPLES]

    from trainability.doctor import diagnose

    before = diagnose(original, x, y)
    errors = [f for f in before.findings if f.severity == "error"]
    _say(progress, f"repair: {len(before.findings)} finding(s) at initialization ({len(errors)} error(s)); probing {budget_steps} steps")
    probe_outcomes: list[Outcome] = []
    probe_task = Task("probe", data_spec, CandidateModel(original), _settings_spec(settings, budget_steps), seed,
                      until=None if errors else criterion)  # fmt: skip
    InProcess().map(train, [probe_task], lambda _t, o: probe_outcomes.append(o))
    probe = _attempt(None, probe_outcomes[0], criterion)
    _say(progress, f"probe: {probe.describe()}")
    result = RepairResult(original=original, model=copy.deepcopy(original), verdict="healthy", change=None,
                          settings=dict(settings), train_settings=dict(settings), probe=probe, attempts=[], skipped=[],
                          before=before, after=before, criterion=criterion, budget_steps=budget_steps, seed=seed,
                          data=getattr(splits, "name", "data"), workers=1, ran_here=None, untried=0)  # fmt: skip
    if probe.status == "trains" and not errors:
        return _finish(result, start, out)

    findings = [{**f.to_dict(), "action": f.action} for f in before.findings]
    findings += [f for f in probe_outcomes[0].findings if f.get("kind") not in {g["kind"] for g in findings}]
    candidates, result.skipped = plan(original, x, findings, settings, fallbacks=probe.status != "trains",
                                      training_first=not before.findings)  # fmt: skip
    judge = criterion.better_than(probe.score) if probe.status == "trains" and probe.score is not None else criterion
    result.criterion = judge
    tasks = [Task(f"candidate-{i}", data_spec, CandidateModel(original, c), _settings_spec(c.train(settings), budget_steps),
                  seed) for i, c in enumerate(candidates)]  # fmt: skip
    count = workers if workers is not None else (min(os.cpu_count() or 1, len(tasks)) if probe.seconds >= STARTUP_SECONDS else 1)
    count = max(1, min(count, len(tasks)))
    result.ran_here = travel_problem(original) if count > 1 else None
    result.workers = 1 if result.ran_here is not None else count
    _say(progress, f"{len(candidates)} candidate(s), {result.workers} at a time" + (f" ({result.ran_here})" if result.ran_here else ""))

    outcomes: dict[str, Any] = {}
    by_id = {t.id: (t, c) for t, c in zip(tasks, candidates, strict=True)}

    def on_result(task: Task, outcome: Any) -> bool:
        outcomes[task.id] = outcome
        number = int(task.id.split("-")[1]) + 1
        _say(progress, f"  {number}. {by_id[task.id][1].label}: {_attempt(by_id[task.id][1], outcome, judge).describe()}")
        if all:
            return False
        for t in tasks:  # the first in order decides: stop once it trains, wait while it runs
            if t.id not in outcomes:
                return False
            if _attempt(None, outcomes[t.id], judge).status == "trains":
                return True
        return False

    if tasks:
        make_executor("local", result.workers).map(train, tasks, on_result)
    result.attempts = [_attempt(c, outcomes[t.id], judge) for t, c in zip(tasks, candidates, strict=True) if t.id in outcomes]
    result.untried = len(tasks) - len(result.attempts)
    winners = [a for a in result.attempts if a.status == "trains"]
    if all and winners:
        better = (lambda a: a.score) if criterion.classification else (lambda a: -a.score)  # type: ignore[operator]
        winners = sorted(winners, key=better, reverse=True)
    if winners:
        winner = winners[0]
        repaired = copy.deepcopy(original)
        notes = winner.candidate.apply(repaired, seed=seed)  # type: ignore[union-attr]
        result.verdict, result.change, result.model = "repaired", winner.candidate, repaired
        result.train_settings = winner.candidate.train(settings)  # type: ignore[union-attr]
        result.after = diagnose(repaired, x, y)
        result.diff = diff_models(original, repaired, notes, settings, result.train_settings)
        result.snippet = snippet(winner.candidate, settings, result.train_settings, seed)  # type: ignore[arg-type]
    else:
        result.verdict = "trains_as_is" if probe.status == "trains" else "not_repaired"
    return _finish(result, start, out)


def _finish(result: RepairResult, start: float, out: str | os.PathLike[str] | None) -> RepairResult:
    result.seconds = time.perf_counter() - start
    if result.change is None:
        result.snippet = snippet(None, result.settings, result.train_settings, result.seed)
    if out is not None:
        result.write(out)
    return result


__all__ = ["DEFAULT_BUDGET", "MIN_BUDGET", "ROUNDS", "CandidateModel", "InMemory", "load_data", "repair", "travel_problem"]
