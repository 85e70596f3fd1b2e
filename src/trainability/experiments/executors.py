"""Where tasks run: in this process, in N local worker processes, or as Ray tasks.

Every executor takes a function ``fn(task, progress) -> result`` (module-level, so it pickles
by reference) and a list of tasks, and calls ``on_result(task, result)`` in the coordinating
process as results arrive, and ``on_progress(task_id, done, total)`` as workers report. Workers
only compute and return; the caller alone writes results down. Tasks start in the order given;
``on_result`` returning ``True`` stops the map: tasks not yet started are dropped, and tasks
already running finish and are reported (a search that stops at its first success).

Local workers use the spawn start method (no fork of a process holding threads or a database
connection), one torch thread each, with ``OMP_NUM_THREADS=1`` in their environment before
torch is imported: two PyTorch processes with two threads each on two cores slow each other
down many-fold. A worker that dies (out of memory, killed) is replaced and its task retried
up to :data:`RETRIES` times. Workers die with the coordinating process (Linux).

Ray (``pip install 'trainability[ray]'``) runs plain tasks with ``num_cpus=1``, retried by Ray
when their worker process dies; ``address=None`` starts a local instance with as many CPUs as
``workers``, or give a cluster's address.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_module
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

Fn = Callable[[Any, Any], Any]
OnResult = Callable[[Any, Any], bool | None]  # True: stop
OnProgress = Callable[[str, int, int], None]
RETRIES = 2
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Executor(Protocol):
    """``with executor: executor.map(...)``; entering starts what the executor needs (Ray)."""

    workers: int

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def map(self, fn: Fn, tasks: Sequence[Any], on_result: OnResult, on_progress: OnProgress | None = None) -> None: ...


@dataclass(frozen=True)
class Lost:
    """The result of a task the executor could not run to the end (its worker kept dying)."""

    reason: str


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread for the duration (the parent's setting comes back after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Plain:
    workers = 1

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class InProcess(_Plain):
    """Run tasks one after another here, with one torch thread (the same numbers as workers)."""

    def map(self, fn: Fn, tasks: Sequence[Any], on_result: OnResult, on_progress: OnProgress | None = None) -> None:
        with single_thread():
            for task in tasks:
                if on_result(task, fn(task, on_progress)):
                    return


# -- local worker processes ---------------------------------------------------------------------
_progress_queue: Any = None


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_init(progress_queue: Any) -> None:
    global _progress_queue
    _die_with_parent()
    _progress_queue = progress_queue
    import torch

    torch.set_num_threads(1)


def _report(task_id: str, done: int, total: int) -> None:
    if _progress_queue is not None:
        with contextlib.suppress(Exception):
            _progress_queue.put_nowait((task_id, done, total))


def _call(fn: Fn, task: Any) -> Any:
    return fn(task, _report)


@contextlib.contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set environment variables for child processes started meanwhile; restore them after."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LocalPool(_Plain):
    """``workers`` spawned processes on this machine."""

    def __init__(self, workers: int) -> None:
        _check_workers(workers)
        self.workers = workers

    def map(self, fn: Fn, tasks: Sequence[Any], on_result: OnResult, on_progress: OnProgress | None = None) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        progress_queue = context.Queue()
        attempts = {id(t): 0 for t in tasks}
        pending = list(tasks)
        with _environment(**dict.fromkeys(_THREAD_VARIABLES, "1")):
            while pending:
                pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_init,
                                           initargs=(progress_queue,))  # fmt: skip
                try:
                    pending = self._drain(pool, fn, pending, attempts, on_result, on_progress, progress_queue)
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        progress_queue.close()

    def _drain(self, pool: ProcessPoolExecutor, fn: Fn, tasks: list[Any], attempts: dict[int, int], on_result: OnResult,
               on_progress: OnProgress | None, progress_queue: Any) -> list[Any]:  # fmt: skip
        """Run until done or the pool breaks; return the tasks to run again on a new pool."""
        waiting = list(tasks)  # submitted as workers free up, so that a stop drops exactly the unstarted
        futures: dict[Future, Any] = {}
        retry: list[Any] = []
        stop = False
        while waiting or futures:
            while waiting and not stop and len(futures) < self.workers:
                try:
                    futures[pool.submit(_call, fn, waiting[0])] = waiting[0]
                except BrokenProcessPool:  # a worker died: the rest waits for the next pool
                    retry += waiting
                    waiting.clear()
                    break
                waiting.pop(0)
            done, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
            _forward(progress_queue, on_progress)
            for future in done:
                task = futures.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    attempts[id(task)] += 1
                    if attempts[id(task)] > RETRIES:
                        result = Lost(f"its worker process died {attempts[id(task)]} times")
                    else:
                        retry.append(task)
                        continue
                if on_result(task, result):  # drop what has not started; the running finish and are reported
                    stop = True
                    waiting.clear()
        _forward(progress_queue, on_progress)
        return [] if stop else retry


def _forward(progress_queue: Any, on_progress: OnProgress | None) -> None:
    while True:
        try:
            event = progress_queue.get_nowait()
        except (queue_module.Empty, OSError, ValueError):
            return
        if on_progress is not None:
            on_progress(*event)


# -- Ray ---------------------------------------------------------------------------------------
def _ray_call(fn: Fn, task: Any, progress_queue: Any) -> Any:
    import torch

    torch.set_num_threads(1)

    def report(task_id: str, done: int, total: int) -> None:
        with contextlib.suppress(Exception):
            progress_queue.put_nowait((task_id, done, total))

    return fn(task, report if progress_queue is not None else None)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'trainability[ray]'") from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a Ray head at ``host:port`` does not answer: ``ray.init``
    itself retries for minutes and floods the terminal. ``auto`` and other forms are left to Ray."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start its head node "
                         "(ray start --head) and give its host:port (6379 by default), or drop --address to run "
                         "Ray on this machine") from None  # fmt: skip


class RayExecutor:
    """Plain Ray tasks, ``num_cpus=1`` each, retried when their worker process dies."""

    def __init__(self, workers: int = 2, address: str | None = None, max_retries: int = 3) -> None:
        _check_workers(workers)
        self.workers, self.address, self.max_retries = workers, address, max_retries
        self._started = False
        import_ray()

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            try:
                if self.address:
                    check_reachable(self.address)
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise ValueError(f"cannot start or reach {where}: {exc}".splitlines()[0]) from None
            self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import_ray().shutdown()
            self._started = False

    def map(self, fn: Fn, tasks: Sequence[Any], on_result: OnResult, on_progress: OnProgress | None = None) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            with self:
                return self.map(fn, tasks, on_result, on_progress)
        from ray.util.queue import Queue

        progress_queue = Queue(actor_options={"num_cpus": 0}) if on_progress is not None else None
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(_ray_call)
        refs = {remote.remote(fn, t, progress_queue): t for t in tasks}
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
                if progress_queue is not None and on_progress is not None:
                    waiting = progress_queue.qsize()
                    for event in progress_queue.get_nowait_batch(waiting) if waiting else []:
                        on_progress(*event)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a task Ray gave up on
                        result = Lost(f"Ray task failed: {type(exc).__name__}: {exc}".splitlines()[0])
                    if on_result(task, result):
                        return None  # the tasks still out are cancelled below
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if progress_queue is not None:
                progress_queue.shutdown()
        return None


def _check_workers(workers: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")


def make_executor(backend: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    """``local`` with 1 worker runs in this process; more workers spawn processes; ``ray`` uses Ray."""
    if backend == "ray":
        return RayExecutor(workers, address)
    if backend != "local":
        raise ValueError(f"unknown backend {backend!r}; valid: local, ray")
    if address is not None:
        raise ValueError("--address applies to --backend ray")
    _check_workers(workers)
    cores = os.cpu_count() or 1
    if workers > cores:
        raise ValueError(f"{workers} workers on {cores} CPU cores: runs would slow each other down many-fold; "
                         f"use --workers {cores} or fewer (or --backend ray on a cluster)")  # fmt: skip
    return InProcess() if workers == 1 else LocalPool(workers)
