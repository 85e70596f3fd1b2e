"""What the Monitor knows at a recorded step, as the training-time rules need it."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from trainability.doctor.records import BlockStats, LayerStats
from trainability.monitor.losses import LossSeries
from trainability.monitor.optimizer import OptimizerView


@dataclass
class Record:
    """One recorded step, on the host.

    ``updates`` and ``updates_initial`` hold, per weight, the update-to-weight RMS ratio of the
    step before this one: the change over the weight's RMS now, and over its RMS at the first
    recorded step. ``eps`` holds, per weight of an adaptive optimizer, the share of its entries
    (among those that ever had a gradient) where ``eps >= sqrt(v_hat)``, and the geometric mean
    of ``sqrt(v_hat)`` over them."""

    step: int
    lr: float | None = None
    layers: list[LayerStats] = field(default_factory=list)
    blocks: list[BlockStats] = field(default_factory=list)
    updates: dict[str, float] = field(default_factory=dict)
    updates_initial: dict[str, float] = field(default_factory=dict)
    eps: dict[str, tuple[float, float]] = field(default_factory=dict)
    attention: dict[str, float] = field(default_factory=dict)
    log_z: float | None = None
    mean_logit: float | None = None
    input_dependence: float | None = None
    local: bool = False  # statistics of this rank only (a step under DDP's no_sync)
    detail: bool = True  # False: a light record (the loss, the rate and each weight's gradient norm only)

    @functools.cached_property
    def grad_norm(self) -> float | None:
        """The global weight-gradient norm (over every weight with a gradient), None without one."""
        norms = [s.weight_grad_norm for s in self.layers if s.weight_grad_norm is not None]
        return math.sqrt(sum(n * n for n in norms)) if norms else None

    def median_update(self) -> float | None:
        values = sorted(v for v in self.updates.values() if math.isfinite(v))
        return values[len(values) // 2] if values else None

    def max_update(self, initial: bool = False) -> float | None:
        values = [v for v in (self.updates_initial if initial else self.updates).values() if math.isfinite(v)]
        return max(values) if values else None


class History:
    """What the rules read from every record so far, kept as the records arrive: a rule reading
    every record at each one would make a long run recorded at every step cost O(records) a
    step. Built from a list of records (``of``) where no monitor kept one."""

    def __init__(self) -> None:
        self.levels: list[float | None] = []  # each record's median loss since the record before
        self._mins: list[float] = []  # _mins[i]: the lowest of levels[: i + 1] (inf while none)
        self.first_dead: dict[str, float] = {}  # each layer's dead fraction at its first record
        self.max_lr: float | None = None
        self.min_input_dependence: float | None = None
        self.max_update_initial = 0.0
        self.max_update = 0.0  # the largest update-to-weight ratio of any layer at any record

    def add(self, record: Record, level: float | None) -> None:
        self.levels.append(level)
        low = self._mins[-1] if self._mins else math.inf
        self._mins.append(min(low, level) if level is not None else low)
        for s in record.layers:
            if s.dead_fraction is not None:
                self.first_dead.setdefault(s.name, s.dead_fraction)
        if record.lr is not None:
            self.max_lr = record.lr if self.max_lr is None else max(self.max_lr, record.lr)
        if record.input_dependence is not None:
            low_dep = self.min_input_dependence
            self.min_input_dependence = record.input_dependence if low_dep is None else min(low_dep, record.input_dependence)
        self.max_update_initial = max(self.max_update_initial, record.max_update(initial=True) or 0.0)
        self.max_update = max(self.max_update, record.max_update() or 0.0)

    def lowest_level(self, before: int) -> float | None:
        """The lowest level of the records before the ``before``-th last one (1: every earlier record)."""
        k = len(self._mins) - before
        return self._mins[k - 1] if k > 0 and math.isfinite(self._mins[k - 1]) else None

    @classmethod
    def of(cls, records: list[Record], losses: LossSeries) -> History:
        history = cls()
        for i, record in enumerate(records):
            start = records[i - 1].step + 1 if i else record.step
            history.add(record, losses.level(start, record.step))
        return history


@dataclass
class TrainingEvidence:
    """Every record so far (the current one last), the per-step losses, the optimizer, and what
    the rules read from every record (``history``; built from the records if not given)."""

    records: list[Record]
    losses: LossSeries
    optimizer: OptimizerView | None = None
    reported: set[str] = field(default_factory=set)  # kinds already reported in this run
    history: History = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.history is None:
            self.history = History.of(self.records, self.losses)

    @property
    def levels(self) -> list[float | None]:
        """Each record's median loss since the record before."""
        return self.history.levels

    @property
    def current(self) -> Record:
        return self.records[-1]

    @property
    def previous(self) -> Record | None:
        return self.records[-2] if len(self.records) > 1 else None

    def previous_with(self, attribute: str) -> Record | None:
        """The latest record before the current one where ``attribute`` was measured, or (with
        ``"detail"``) the latest in full detail: a light record measures the loss, the rate and
        the weights' gradients only."""
        for i in range(len(self.records) - 2, -1, -1):
            record = self.records[i]
            if record.detail if attribute == "detail" else getattr(record, attribute) is not None:
                return record
        return None

    def window(self) -> tuple[int, int]:
        """The steps since the previous record, this one included."""
        prev = self.previous
        return (prev.step + 1 if prev is not None else self.current.step), self.current.step

    def level(self) -> float | None:
        """The median loss since the previous record."""
        return self.losses.level(*self.window())

    def best_level(self, before: int = 1) -> float | None:
        """The lowest median loss of any window before the ``before``-th last record (1: of any
        earlier window), the initial level included."""
        found = [v for v in (self.losses.initial(), self.history.lowest_level(before)) if v is not None]
        return min(found) if found else None

    def max_lr(self) -> float | None:
        return self.history.max_lr


__all__ = ["History", "Record", "TrainingEvidence"]
