"""An experiment grid: fixed settings, factors with their values, and the cells they span.

A cell is one configuration (one value per factor) and one seed index. Its id is a hash of
the grid's fixed settings and the cell's configuration, and its training seed is derived from
that id, so the same command gives the same numbers, whatever else the grid holds.

>>> grid = Grid.build("digits", activation=["relu", "selu"], depth=[2, 3], seeds=2, epochs=1)
>>> len(grid.cells()), grid.cells()[0].config["activation"]
(8, 'relu')
>>> grid.extends(Grid.build("digits", activation=["relu"], depth=[2, 3], seeds=2, epochs=1)) is None
True
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainability import activations
from trainability import init as inits
from trainability.training import OPTIMIZERS

#: The factors a grid varies, in the order cells are listed.
FACTORS = ("activation", "init", "depth", "width", "batch_norm", "optimizer", "lr", "batch_size")
#: ``init`` values besides the registered initializer names.
SPECIAL_INITS = {
    "auto": "the textbook's pairing per activation (trainability.initialize)",
    "default": "PyTorch's own initialization, left as torch made it",
    "lsuv": "LSUV on a batch of training inputs",
}
BATCH_NORM = ("none", "before", "after")

#: ``--preset textbook``: the chapter's question, "SELU > ELU > leaky ReLU > ReLU > tanh > logistic?"
#: Each activation with its matched initializer, a 50-layer width-100 MLP, SGD lr 1e-3 batch 32,
#: MNIST-1D, 3 seeds. 60 epochs of 100 steps give 6000 steps, the MNIST-1D paper's training length.
PRESETS: dict[str, dict[str, Any]] = {
    "textbook": {
        "data": "mnist1d",
        "activation": ["selu", "elu", "leaky_relu", "relu", "tanh", "sigmoid"],
        "init": ["auto"],
        "depth": [50],
        "width": [100],
        "batch_norm": ["none"],
        "optimizer": ["sgd"],
        "lr": [1e-3],
        "batch_size": [32],
        "seeds": 3,
        "epochs": 60,
    },
}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _normalize(factor: str, value: Any) -> Any:
    """The canonical spelling of one factor value; unknown names raise ValueError."""
    if factor == "activation":
        if not isinstance(value, str):
            raise ValueError(f"activation names a registered activation, got {value!r}")
        return activations.get(value).name
    if factor == "init":
        if not isinstance(value, str):
            raise ValueError(f"init names an initializer, got {value!r}")
        key = value.strip().lower()
        if key in SPECIAL_INITS:
            return key
        try:
            return inits.get(value).name  # type: ignore[union-attr]
        except ValueError as exc:
            raise ValueError(f"{exc}; or one of {', '.join(SPECIAL_INITS)}") from None
    if factor in ("depth", "width", "batch_size"):
        return _positive_int(factor, value)
    if factor == "batch_norm":
        key = "none" if value is None else str(value).lower()
        if key not in BATCH_NORM:
            raise ValueError(f"batch_norm must be one of {', '.join(BATCH_NORM)}, got {value!r}")
        return key
    if factor == "optimizer":
        if not isinstance(value, str) or value.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {value!r}; valid names: {', '.join(OPTIMIZERS)}")
        return value.lower()
    if factor == "lr":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"lr must be a positive number, got {value!r}")
        return float(value)
    raise ValueError(f"unknown factor {factor!r}; factors: {', '.join(FACTORS)}")


def _values(factor: str, given: Any) -> tuple[Any, ...]:
    items = list(given) if isinstance(given, (list, tuple)) else [given]
    if not items:
        raise ValueError(f"{factor} needs at least one value")
    out: list[Any] = []
    for item in items:
        value = _normalize(factor, item)
        if value not in out:
            out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Cell:
    """One run of a grid: a configuration and a seed index."""

    id: str
    config: dict[str, Any]  # one value per factor, plus "seed_index"
    seed: int  # the training seed, derived from the id

    @property
    def label(self) -> str:
        c = self.config
        bn = "" if c["batch_norm"] == "none" else f" bn-{c['batch_norm']}"
        return f"{c['activation']}/{c['init']} d{c['depth']}x{c['width']}{bn} seed {c['seed_index']}"


@dataclass(frozen=True)
class Grid:
    """Fixed settings (data, epochs), and the values of each factor; ``seeds`` is a factor too."""

    data: str
    factors: dict[str, tuple[Any, ...]]
    seeds: int
    epochs: int
    data_options: dict[str, Any]  # target, standardize, and the data file's SHA-256

    @classmethod
    def build(cls, data: str | os.PathLike[str], *, seeds: int = 3, epochs: int = 10, target: str | int | None = None,
              standardize: bool = True, **factors: Any) -> Grid:  # fmt: skip
        """Validate and normalize every value; factors left out take :data:`DEFAULTS`."""
        unknown = sorted(set(factors) - set(FACTORS))
        if unknown:
            raise ValueError(f"unknown factor(s) {', '.join(unknown)}; factors: {', '.join(FACTORS)}")
        values = {f: _values(f, factors.get(f, DEFAULTS[f])) for f in FACTORS}
        name = os.fspath(data)
        options: dict[str, Any] = {"standardize": bool(standardize), "target": target}
        path = Path(name)
        if path.suffix.lower() in (".npz", ".csv") and path.is_file():
            name = str(path.resolve())
            options["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(name, values, _positive_int("seeds", seeds), _positive_int("epochs", epochs), options)

    def settings(self) -> dict[str, Any]:
        """What must match for two grids to share a results folder."""
        return {"data": self.data, "data_options": self.data_options, "epochs": self.epochs}

    def cells(self) -> list[Cell]:
        """Seed-major: every configuration once before any gets a second seed."""
        settings = json.dumps(self.settings(), sort_keys=True)
        out = []
        for seed_index in range(self.seeds):
            for combo in itertools.product(*(self.factors[f] for f in FACTORS)):
                config = {**dict(zip(FACTORS, combo, strict=True)), "seed_index": seed_index}
                digest = hashlib.sha256((settings + json.dumps(config, sort_keys=True)).encode()).hexdigest()
                out.append(Cell(digest[:16], config, int(digest[16:24], 16) & 0x7FFFFFFF))
        return out

    def extends(self, old: Grid) -> str | None:
        """None when this grid keeps ``old``'s settings and every value of every factor (adding
        values is allowed); otherwise what differs, in words."""
        mine, theirs = self.settings(), old.settings()
        changed = [f"{k} {theirs[k]!r} -> {mine[k]!r}" for k in mine if mine[k] != theirs[k]]
        for f in FACTORS:
            dropped = [v for v in old.factors[f] if v not in self.factors[f]]
            if dropped:
                changed.append(f"{f} drops {', '.join(map(str, dropped))}")
        if self.seeds < old.seeds:
            changed.append(f"seeds {old.seeds} -> {self.seeds}")
        return "; ".join(changed) or None

    def describe(self) -> str:
        varying = [f"{f} {','.join(map(str, v))}" for f, v in self.factors.items()]
        return f"{self.data}, {self.epochs} epochs, {self.seeds} seeds; " + "; ".join(varying)

    def to_json(self) -> str:
        return json.dumps({"data": self.data, "factors": {k: list(v) for k, v in self.factors.items()},
                           "seeds": self.seeds, "epochs": self.epochs, "data_options": self.data_options}, sort_keys=True)  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Grid:
        d = json.loads(text)
        return cls(d["data"], {k: tuple(v) for k, v in d["factors"].items()}, d["seeds"], d["epochs"], d["data_options"])


#: Values of the factors a call leaves out.
DEFAULTS: dict[str, Sequence[Any]] = {
    "activation": ["relu"],
    "init": ["auto"],
    "depth": [10],
    "width": [100],
    "batch_norm": ["none"],
    "optimizer": ["sgd"],
    "lr": [1e-3],
    "batch_size": [32],
}
