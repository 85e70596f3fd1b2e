"""Repair: find the smallest change that makes a failing network train, prove it, and hand it
back as code.

>>> import trainability
>>> model = trainability.mlp(64, 10, depth=30, width=32, activation="relu", init="default")
>>> result = trainability.repair(model, "digits")        # doctest: +SKIP
>>> print(result.snippet)                                # doctest: +SKIP

The pieces: :mod:`~trainability.repair.criterion` (when a run trains, when it clearly failed),
:mod:`~trainability.repair.candidates` (the changes, each with its code),
:mod:`~trainability.repair.plan` (from the findings to ladders of candidates),
:mod:`~trainability.repair.screen` (the doctor at initialization judges each candidate first),
:mod:`~trainability.repair.runs` (training under a step budget, in resumable rounds),
:mod:`~trainability.repair.search` (the probe, the race by successive halving, the climb),
:mod:`~trainability.repair.result` and :mod:`~trainability.repair.report` (what comes back).
The learning-rate range test its learning-rate candidates use is :func:`trainability.find_lr`.

``trainability.repair`` is both this package and the function: calling the package calls
:func:`~trainability.repair.search.repair`, so ``trainability.repair(model, data)`` works
whichever of the two an earlier import left at ``trainability.repair``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from trainability.repair.candidates import KINDS, Candidate
from trainability.repair.criterion import Criterion
from trainability.repair.result import Attempt, DiffRow, RepairResult
from trainability.repair.search import repair
from trainability.repair.surgery import LSTMAsRNN


class _CallablePackage(types.ModuleType):
    """``trainability.repair(...)``: importing a submodule binds the package, not the function,
    to ``trainability.repair``; calling the package calls the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> RepairResult:
        return repair(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["KINDS", "Attempt", "Candidate", "Criterion", "DiffRow", "LSTMAsRNN", "RepairResult", "repair"]
