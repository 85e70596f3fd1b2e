"""Experiments: grids of training runs, a results store that survives a kill, local and Ray workers.

- :func:`compare` runs a grid (activation x init x depth x ... x seeds) into ``runs/NAME/``
  and returns :class:`Results` (pandas views of runs, epochs and layers; ``report()``);
- :mod:`~trainability.experiments.grid`: :class:`Grid`, its cells, the ``textbook`` preset;
- :mod:`~trainability.experiments.runner`: :func:`train`, one run as a pure function of a
  picklable :class:`Task`, for any caller that brings its own tasks;
- :mod:`~trainability.experiments.executors`: in-process, local worker processes, Ray;
- :mod:`~trainability.experiments.store`: the SQLite store (one writer, WAL);
- :mod:`~trainability.experiments.analysis`: leaderboard and ranking against the textbook.
"""

from trainability.experiments.compare import compare
from trainability.experiments.executors import InProcess, LocalPool, RayExecutor, make_executor
from trainability.experiments.grid import FACTORS, PRESETS, Cell, Grid
from trainability.experiments.results import Results
from trainability.experiments.runner import DataSpec, ModelSpec, Outcome, Task, TrainSpec, train
from trainability.experiments.store import Store

__all__ = [
    "FACTORS",
    "PRESETS",
    "Cell",
    "DataSpec",
    "Grid",
    "InProcess",
    "LocalPool",
    "ModelSpec",
    "Outcome",
    "RayExecutor",
    "Results",
    "Store",
    "Task",
    "TrainSpec",
    "compare",
    "make_executor",
    "train",
]
