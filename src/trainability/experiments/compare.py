"""``compare()``: run an experiment grid into a results folder, resumably, and return its results."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from trainability.experiments.executors import Lost, make_executor
from trainability.experiments.grid import FACTORS, PRESETS, Cell, Grid
from trainability.experiments.results import Results
from trainability.experiments.runner import DataSpec, ModelSpec, Task, TrainSpec, train

CHECKPOINTS = "checkpoints"
LOCK = ".lock"


def _writable_folder(out: Path) -> None:
    """Create ``out`` if needed and prove it takes files; else one clear ValueError."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot use {out} as a results folder: it is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write to the results folder {out}: {exc.strerror or exc}; choose another --out") from None


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One coordinating process per folder: an advisory lock, released even on SIGKILL."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, one process per folder is up to the user
        yield
        return
    handle = open(out / LOCK, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise ValueError(f"another trainability compare is writing to {out} (pid {handle.read().strip() or '?'}); "
                             "wait for it to finish or use another --out") from None  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _archive(out: Path) -> Path:
    """Move a folder's results aside (``--force-new``): nothing is deleted."""
    target = out / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir()
    for name in os.listdir(out):
        if name == FILE_NAME or name.startswith(FILE_NAME + "-") or name in (CHECKPOINTS, "report.html"):
            shutil.move(str(out / name), str(target / name))
    return target


FILE_NAME = "results.sqlite"


def _grid(data: Any, preset: str | None, epochs: int | None, seeds: int | None, target: str | int | None,
          standardize: bool, factors: dict[str, Any]) -> Grid:  # fmt: skip
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        base = dict(PRESETS[preset])
    given = {k: v for k, v in factors.items() if v is not None}
    settings = {**base, **given}
    if data is not None:
        settings["data"] = data
    settings.setdefault("data", "mnist1d")
    if epochs is not None:
        settings["epochs"] = epochs
    if seeds is not None:
        settings["seeds"] = seeds
    return Grid.build(settings.pop("data"), seeds=settings.pop("seeds", 3), epochs=settings.pop("epochs", 10),
                      target=target, standardize=standardize, **settings)  # fmt: skip


def _check_models(grid: Grid, splits: Any) -> None:
    """Build a tiny model per activation and normalization: a combination that cannot be built fails now."""
    from trainability.models import mlp

    for activation in grid.factors["activation"]:
        for batch_norm in grid.factors["batch_norm"]:
            mlp(splits.in_features, splits.n_outputs, depth=1, width=2, activation=activation, init="default",
                batch_norm=None if batch_norm == "none" else batch_norm)  # fmt: skip


def _task(cell: Cell, grid: Grid, data: DataSpec, out: Path) -> Task:
    c = cell.config
    return Task(cell.id, data, ModelSpec(c["activation"], c["init"], c["depth"], c["width"], c["batch_norm"]),
                TrainSpec(c["optimizer"], c["lr"], c["batch_size"], grid.epochs), cell.seed,
                str(out / CHECKPOINTS / cell.id))  # fmt: skip


def compare(
    data: str | os.PathLike[str] | None = None,
    *,
    activation: str | Sequence[str] | None = None,
    init: str | Sequence[str] | None = None,
    depth: int | Sequence[int] | None = None,
    width: int | Sequence[int] | None = None,
    batch_norm: str | None | Sequence[str | None] = None,
    optimizer: str | Sequence[str] | None = None,
    lr: float | Sequence[float] | None = None,
    batch_size: int | Sequence[int] | None = None,
    epochs: int | None = None,
    seeds: int | None = None,
    preset: str | None = None,
    out: str | os.PathLike[str] | None = None,
    workers: int = 1,
    backend: Literal["local", "ray"] = "local",
    address: str | None = None,
    force_new: bool = False,
    retry_failed: bool = False,
    target: str | int | None = None,
    standardize: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Results:
    """Train every cell of a grid (the product of the factors' values, times ``seeds``) and
    return the :class:`Results` in ``out`` (default ``runs/<preset>`` or ``runs/compare``).

    Factors (one value or a list each): ``activation``, ``init`` (``"auto"``: the textbook's
    pairing, ``"default"``: PyTorch's, ``"lsuv"``, or an initializer name), ``depth``, ``width``,
    ``batch_norm`` (``"none"``, ``"before"``, ``"after"``), ``optimizer``, ``lr``,
    ``batch_size``; each run trains an :func:`trainability.mlp` with :func:`trainability.fit` for
    ``epochs`` epochs on ``data`` (a name or a file, see :func:`trainability.datasets.load`).
    ``preset="textbook"`` fills in the chapter's question (see
    :data:`trainability.experiments.grid.PRESETS`); arguments given override it.

    Calling again with the same ``out`` resumes: finished runs are skipped (failed ones too,
    unless ``retry_failed``), interrupted runs restart from their last epoch checkpoint, and
    values added to a factor run only the new cells. Another grid in the same folder raises
    ``ValueError``; ``force_new`` starts afresh (the old results move to ``out/superseded-<time>/``).
    ``workers`` local processes, or ``backend="ray"`` (``address=`` for a cluster); from a
    script, call it under ``if __name__ == "__main__":`` (worker processes import the main
    module). Every check of the input happens before the first run starts.

    >>> results = compare("moons", activation=["relu", "tanh"], depth=2, width=16, epochs=1,
    ...                   seeds=1, out="runs/demo", progress=False)  # doctest: +SKIP
    >>> results.leaderboard()[["activation", "test_mean", "test_std"]]  # doctest: +SKIP
    """
    if getattr(sys.modules.get("__main__"), "__name__", None) == "__mp_main__":
        raise RuntimeError("compare() was called while a worker process imported your script: put the call under "
                           "if __name__ == '__main__': (worker processes import the main module)")  # fmt: skip
    grid = _grid(data, preset, epochs, seeds, target, standardize,
                 {"activation": activation, "init": init, "depth": depth, "width": width, "batch_norm": batch_norm,
                  "optimizer": optimizer, "lr": lr, "batch_size": batch_size})  # fmt: skip
    executor = make_executor(backend, workers, address)
    data_spec = DataSpec(grid.data, standardize, 0, target, None if data_dir is None else os.fspath(data_dir))
    splits = data_spec.load()  # a bad file fails here, before any run
    _check_models(grid, splits)
    folder = Path(out) if out is not None else Path("runs") / (preset or "compare")
    _writable_folder(folder)
    from trainability.experiments.store import Store

    with _exclusive(folder):
        if (folder / FILE_NAME).is_file():
            with Store(folder, readonly=True) as old_store:
                old = old_store.meta("grid")
            why = grid.extends(Grid.from_json(old)) if old is not None else None
            if why is not None and not force_new:
                raise ValueError(f"{folder} holds another grid ({why}); add values to its factors to extend it, use "
                                 "another --out, or --force-new to move the old results aside and start afresh")  # fmt: skip
            if force_new:
                moved = _archive(folder)
                if progress:
                    print(f"trainability compare: the old results moved to {moved}", file=sys.stderr)
            elif old is not None:
                grid = _union(grid, Grid.from_json(old))
        with Store(folder) as store:
            cells = grid.cells()
            store.set_grid(grid.to_json(), cells)
            store.set_meta("data", json.dumps({"name": splits.name, "in_features": splits.in_features, "n_outputs": splits.n_outputs,
                                               "classification": splits.classification, "train": splits.train.samples,
                                               "validation": splits.validation.samples, "test": splits.test.samples}))  # fmt: skip
            with executor:
                _run(store, grid, cells, data_spec, folder, executor, backend, retry_failed, progress)
    return Results(folder)


def _union(new: Grid, old: Grid) -> Grid:
    """The new grid's values in the order the old grid listed them, then the added ones."""
    factors = {f: tuple(dict.fromkeys([*old.factors[f], *new.factors[f]])) for f in FACTORS}
    return Grid(new.data, factors, max(new.seeds, old.seeds), new.epochs, new.data_options)


def _run(store: Any, grid: Grid, cells: list[Cell], data: DataSpec, folder: Path, executor: Any, backend: str,
         retry_failed: bool, progress: bool) -> None:  # fmt: skip
    from tqdm.auto import tqdm

    status = store.statuses()
    skip = {"finished", "failed"} if not retry_failed else {"finished"}
    todo = [c for c in cells if status.get(c.id) not in skip]
    for c in cells:  # checkpoints of runs already in the store are no longer needed
        if status.get(c.id) in skip:
            shutil.rmtree(folder / CHECKPOINTS / c.id, ignore_errors=True)
    by_id = {c.id: c for c in todo}
    tasks = [_task(c, grid, data, folder) for c in todo]
    grid_bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="grid", unit="run", disable=not progress,
                    file=sys.stderr, position=0, dynamic_ncols=True)  # fmt: skip
    run_bars: dict[str, Any] = {}
    counts = {"finished": 0, "failed": 0}
    lost: list[str] = []
    start = time.perf_counter()
    name = f"{backend}" + (f" x{executor.workers}" if executor.workers > 1 else "")

    started: set[str] = set()

    def on_progress(task_id: str, done: int, total: int) -> None:
        if task_id not in started:
            started.add(task_id)
            store.mark_running(task_id, name)
        if not progress:
            return
        bar = run_bars.get(task_id)
        if bar is None:
            bar = run_bars[task_id] = tqdm(total=total, desc=by_id[task_id].label, unit="epoch", leave=False, file=sys.stderr,
                                           position=1 + len(run_bars) % max(executor.workers, 1), dynamic_ncols=True)  # fmt: skip
        bar.update(done - bar.n)

    def on_result(task: Task, outcome: Any) -> None:
        if isinstance(outcome, Lost):  # its checkpoint stays: the next call resumes from it
            store.save_lost(task.id, outcome.reason, name)
            state = "lost"
            lost.append(outcome.reason)
        else:
            store.save(outcome, name)
            state = outcome.status
            shutil.rmtree(folder / CHECKPOINTS / task.id, ignore_errors=True)
        counts[state] = counts.get(state, 0) + 1
        bar = run_bars.pop(task.id, None)
        if bar is not None:
            bar.close()
        grid_bar.update(1)
        if state in ("failed", "lost") and progress:
            grid_bar.write(f"failed: {by_id[task.id].label}: {getattr(outcome, 'reason', '')}", file=sys.stderr)
        elif progress and getattr(outcome, "test_accuracy", None) is not None:
            grid_bar.set_postfix_str(f"last: {by_id[task.id].label} test acc {outcome.test_accuracy:.3f}")

    try:
        executor.map(train, tasks, on_result, on_progress)
    finally:
        for bar in run_bars.values():
            bar.close()
        grid_bar.close()
    if lost:
        raise ValueError(f"{len(lost)} runs could not run ({lost[0]}); they stay pending in {folder / FILE_NAME}: "
                         "run the same command again to retry them (from a script, call compare() under "
                         "if __name__ == '__main__':)")  # fmt: skip
    if progress:
        took = time.perf_counter() - start
        print(f"trainability compare: {counts['finished']} runs finished, {counts['failed']} failed, "
              f"{len(cells) - len(todo)} already in {folder / FILE_NAME} ({took:.0f} s)", file=sys.stderr)  # fmt: skip
