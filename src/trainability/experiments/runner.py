"""Train one cell and return its records: a pure function of a picklable task description.

:func:`train` knows nothing of grids, stores or executors, so any caller (``compare``, a
repair search) can describe its own :class:`Task` and hand a list of them to an executor. A
task's model is a :class:`ModelSpec`; subclass it (keeping it a picklable dataclass) to build
other models.

What one run records: the doctor's report at initialization and after training (per weight
layer: gradient RMS at the layer's output and of its weight), per epoch the training and
validation loss and accuracy with the epoch's wall time, per epoch and layer the gradient RMS
the :class:`~trainability.Monitor` saw on the epoch's first step, and the test loss and
accuracy at the end. A NaN/Inf loss or an exception ends the run as ``failed`` with its reason.
With ``checkpoint_dir`` every epoch is checkpointed by :func:`trainability.fit`, so a task
killed half-way resumes where it stopped and ends with the same numbers.

A task may also train for a budget of optimizer steps instead of whole epochs
(``TrainSpec(steps=...)``, as repair's candidates do): the steps' batches are drawn from
permutations of the training split seeded by the task's seed, one after another, and cut into
``epochs`` equal rounds, each recorded like an epoch. ``Task.until`` ends a run early once its
epoch records meet a condition (a picklable callable).
"""

from __future__ import annotations

import functools
import math
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

#: ``progress(task_id, epochs_done, epochs_total)``, called after every epoch.
Progress = Callable[[str, int, int], None]
DOCTOR_SAMPLES = 256
EPOCH_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "steps")


@dataclass(frozen=True)
class DataSpec:
    """Which data, loaded in the worker (once per process) with :func:`trainability.datasets.load`."""

    name: str
    standardize: bool = True
    seed: int = 0
    target: str | int | None = None
    data_dir: str | None = None

    def load(self) -> Any:
        return _load(self)


@functools.lru_cache(maxsize=4)
def _load(spec: DataSpec) -> Any:
    from trainability import datasets

    return datasets.load(spec.name, standardize=spec.standardize, seed=spec.seed, target=spec.target,
                         data_dir=spec.data_dir)  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """The textbook's MLP (:func:`trainability.mlp`) and how to initialize it: ``init`` is
    ``"auto"`` (:func:`trainability.initialize`), ``"default"`` (PyTorch's own), ``"lsuv"``, or an
    initializer name applied to every weight layer."""

    activation: str
    init: str
    depth: int
    width: int
    batch_norm: str = "none"

    def build(self, in_features: int, out_features: int, *, seed: int, sample: torch.Tensor) -> nn.Module:
        from trainability.initialization import initialize
        from trainability.models import mlp

        torch.manual_seed(seed)
        model = mlp(in_features, out_features, depth=self.depth, width=self.width, activation=self.activation,
                    init="default", batch_norm=None if self.batch_norm == "none" else self.batch_norm)  # type: ignore[arg-type]  # fmt: skip
        if self.init == "lsuv":
            initialize(model, init="lsuv", data=sample, seed=seed)
        elif self.init != "default":
            initialize(model, init=self.init, seed=seed)
        return model


class Builds(Protocol):
    """What a task's model is: anything that builds the model to train (:class:`ModelSpec`, or
    another picklable object with this method)."""

    def build(self, in_features: int, out_features: int, *, seed: int, sample: torch.Tensor) -> nn.Module: ...


class Loads(Protocol):
    """What a task's data is: anything that loads :class:`~trainability.datasets.Splits`
    (:class:`DataSpec`, or another picklable object with this method)."""

    def load(self) -> Any: ...


@dataclass(frozen=True)
class TrainSpec:
    """How a task trains. ``steps`` (optional) is a budget of optimizer steps, split into
    ``epochs`` rounds; ``lr=None`` is the optimizer's default (:func:`trainability.fit`)."""

    optimizer: str = "sgd"
    lr: float | None = 1e-3
    batch_size: int = 32
    epochs: int = 10
    steps: int | None = None
    momentum: float = 0.0
    clip_norm: float | None = None


@dataclass(frozen=True)
class Task:
    """Everything one run needs; picklable, so it can travel to a worker process or a Ray node."""

    id: str
    data: Loads
    model: Builds
    train: TrainSpec
    seed: int
    checkpoint_dir: str | None = None
    until: Callable[[list[dict[str, Any]]], bool] | None = None  # stop once the epoch records meet it


@dataclass
class Outcome:
    """What a run returns to the coordinating process, which alone writes the store."""

    id: str
    status: str  # "finished" or "failed"
    reason: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    doctor: dict[str, Any] = field(default_factory=dict)  # "init" and "end": verdict and findings
    test_loss: float | None = None
    test_accuracy: float | None = None
    seconds: float = 0.0
    resumed_from: int = 0
    environment: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)  # the monitor's, while training (with actions)
    stopped_early: bool = False  # ``Task.until`` was met before the last epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def environment() -> dict[str, Any]:
    from trainability._version import __version__

    return {"trainability": __version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "host": platform.node(), "pid": os.getpid(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}  # fmt: skip


def _diagnose(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[Any, dict[str, Any]]:
    """The doctor's report and verdict; a doctor that fails is recorded, and the run goes on."""
    from trainability.doctor import diagnose

    try:
        report = diagnose(model, *batch)
    except Exception as exc:  # noqa: BLE001 - the diagnosis is a measurement, not the run
        return None, {"verdict": f"doctor failed: {type(exc).__name__}: {exc}", "findings": []}
    return report, _verdict(report)


def _verdict(report: Any) -> dict[str, Any]:
    findings = [{"kind": f.kind, "severity": f.severity, "layers": len(f.layers), "message": f.message, "fix": f.fix}
                for f in report.findings]  # fmt: skip
    kinds = sorted({f.kind for f in report.findings})
    return {"verdict": "healthy" if report.healthy else ", ".join(kinds), "findings": findings}


def _weight_rows(model: nn.Module, report: Any) -> list[tuple[int, Any]]:
    rows = [s for s in report.layers if s.role == "weight"] if report is not None else []
    return list(enumerate(rows, start=1))


def _layer_records(model: nn.Module, report: Any, source: str, epoch: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if report is None:
        return out
    for position, s in _weight_rows(model, report):
        weight = getattr(_module(model, s.name), "weight", None)
        wg = s.weight_grad_norm
        out.append({"source": source, "epoch": epoch, "layer": s.name, "position": position, "grad_rms": s.grad_rms,
                    "weight_grad_rms": wg / math.sqrt(weight.numel()) if wg is not None and weight is not None else None,
                    "weight_std": s.weight_std, "dead_fraction": s.dead_fraction,
                    "saturated_fraction": s.saturated_fraction})  # fmt: skip
    return out


def _module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _monitor_records(model: nn.Module, rows: list[tuple], positions: dict[str, int], steps_per_epoch: int,
                     batch: int) -> list[dict[str, Any]]:  # fmt: skip
    """The monitor's rows (step, layer, statistic, value) as one record per recorded epoch and layer."""
    by_key: dict[tuple[int, str], dict[str, Any]] = {}
    for step, layer, statistic, value in rows:
        if layer not in positions or step % steps_per_epoch:
            continue
        rec = by_key.setdefault((step, layer), {"source": "monitor", "epoch": step // steps_per_epoch, "layer": layer,
                                                "position": positions[layer], "grad_rms": None, "weight_grad_rms": None,
                                                "weight_std": None, "dead_fraction": None, "saturated_fraction": None})  # fmt: skip
        module = _module(model, layer)
        if statistic == "grad_norm" and isinstance(module, nn.Linear):
            rec["grad_rms"] = value / math.sqrt(batch * module.out_features)
        elif statistic == "weight_grad_norm" and module is not None and hasattr(module, "weight"):
            rec["weight_grad_rms"] = value / math.sqrt(module.weight.numel())
        elif statistic in ("dead_fraction", "saturated_fraction"):
            rec[statistic] = value  # (the monitor's weight_std is a cache refreshed every few recordings: left out)
    return sorted(by_key.values(), key=lambda r: (r["epoch"], r["position"]))


def _evaluate(model: nn.Module, split: Any) -> tuple[float, float | None]:
    from trainability.graph import evaluating
    from trainability.losses import default_loss

    with evaluating(model), torch.no_grad():
        out = model(split.x)
        loss = float(default_loss(out, split.y))
        accuracy = float((out.argmax(1) == split.y).float().mean()) if not split.y.is_floating_point() else None
    return loss, accuracy


def train(task: Task, progress: Progress | None = None) -> Outcome:
    """Run one task to the end and return its :class:`Outcome`; never raises for a failed run."""
    start = time.perf_counter()
    outcome = Outcome(task.id, "finished")
    try:
        _train(task, progress, outcome)
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, the grid goes on
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        outcome.status, outcome.reason = "failed", f"{type(exc).__name__}: {exc}{where}"
    outcome.seconds = time.perf_counter() - start
    outcome.environment = environment()
    return outcome


def _train(task: Task, progress: Progress | None, outcome: Outcome) -> None:
    """Fill ``outcome`` as the run goes, so a run that fails half-way keeps what it measured."""
    from trainability.monitor import Monitor
    from trainability.training import fit

    torch.set_flush_denormal(True)  # saturated sigmoid stacks make denormal floats, slow on CPUs
    splits = task.data.load()
    batch = (splits.train.x[:DOCTOR_SAMPLES], splits.train.y[:DOCTOR_SAMPLES])
    model = task.model.build(splits.in_features, splits.n_outputs, seed=task.seed, sample=batch[0])
    at_init, outcome.doctor["init"] = _diagnose(model, batch)
    positions = {s.name: p for p, s in _weight_rows(model, at_init)}
    outcome.layers = _layer_records(model, at_init, "doctor", 0)

    spec = task.train
    rounds = _rounds(task, splits.train)
    steps_per_epoch = math.ceil((splits.train if rounds is None else rounds[0]).samples / spec.batch_size)
    monitor = Monitor(model, every=steps_per_epoch)  # one recording per epoch, on its first step
    checkpoints = task.checkpoint_dir
    scratch = None
    if checkpoints is None:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="trainability-run-")
        checkpoints = scratch.name
    batch_rows = min(spec.batch_size, splits.train.samples)
    stopped = None
    try:
        done = _epochs_in_checkpoint(checkpoints)
        outcome.resumed_from = done
        for epoch in range(max(done, 1), spec.epochs + 1):  # one epoch per call: fit resumes from its checkpoint
            history = fit(model, splits.train if rounds is None else rounds[epoch - 1], val_data=splits.validation,
                          epochs=epoch, batch_size=spec.batch_size, optimizer=spec.optimizer, lr=spec.lr,
                          momentum=spec.momentum, clip_norm=spec.clip_norm, monitor=monitor, seed=task.seed,
                          checkpoint_dir=checkpoints, progress=False)  # fmt: skip
            outcome.epochs = [{k: e.get(k) for k in EPOCH_KEYS} for e in history.epochs]
            outcome.findings = [{**f.to_dict(), "action": f.action} for f in history.findings]
            if progress is not None:
                progress(task.id, len(history.epochs), spec.epochs)
            if task.until is not None and not history.stopped and epoch < spec.epochs and task.until(outcome.epochs):
                outcome.stopped_early = True
                break
            if history.stopped:
                found = [f for f in history.findings if f.kind == "non_finite"]
                stopped = found[0].message if found else "the loss became NaN or infinite"
                break
    finally:
        monitor.close()
        if scratch is not None:
            scratch.cleanup()
        outcome.layers += _monitor_records(model, monitor.rows, positions, steps_per_epoch, batch_rows)
    if stopped is not None:
        outcome.status, outcome.reason = "failed", f"stopped at epoch {len(outcome.epochs) + 1}: {stopped}"
        return
    at_end, outcome.doctor["end"] = _diagnose(model, batch)
    outcome.layers += _layer_records(model, at_end, "doctor", spec.epochs)
    outcome.test_loss, outcome.test_accuracy = _evaluate(model, splits.test)
    if not math.isfinite(outcome.test_loss):
        outcome.status, outcome.reason = "failed", "the test loss is NaN or infinite after training"


def _rounds(task: Task, train: Any) -> list[Any] | None:
    """With a step budget, each round's training data: ``steps`` batches drawn from seeded
    permutations of the training split, one after another, cut into ``epochs`` rounds."""
    from trainability.datasets import Split

    spec = task.train
    if spec.steps is None:
        return None
    if spec.steps < spec.epochs:
        raise ValueError(f"a budget of {spec.steps} steps cannot be split into {spec.epochs} rounds")
    generator = torch.Generator().manual_seed(task.seed)
    needed = spec.steps * spec.batch_size
    order = torch.cat([torch.randperm(train.samples, generator=generator)
                       for _ in range(math.ceil(needed / train.samples))])[:needed]  # fmt: skip
    bounds = [spec.steps * k // spec.epochs * spec.batch_size for k in range(spec.epochs + 1)]
    return [Split(train.x[order[a:b]], train.y[order[a:b]]) for a, b in zip(bounds, bounds[1:], strict=False)]


def _epochs_in_checkpoint(folder: str) -> int:
    from trainability.training import CHECKPOINT

    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception:  # noqa: BLE001 - an unreadable checkpoint: fit raises the clear error itself
        return 0
