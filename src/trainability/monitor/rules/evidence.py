"""What the Monitor knows at a recorded step, as the training-time rules need it."""

from __future__ import annotations

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

    def median_update(self) -> float | None:
        values = sorted(v for v in self.updates.values() if math.isfinite(v))
        return values[len(values) // 2] if values else None

    def max_update(self, initial: bool = False) -> float | None:
        values = [v for v in (self.updates_initial if initial else self.updates).values() if math.isfinite(v)]
        return max(values) if values else None


@dataclass
class TrainingEvidence:
    """Every record so far (the current one last), the per-step losses, and the optimizer."""

    records: list[Record]
    losses: LossSeries
    optimizer: OptimizerView | None = None
    reported: set[str] = field(default_factory=set)  # kinds already reported in this run
    levels: list[float | None] | None = None  # each record's window median, kept by the monitor (computed if None)

    @property
    def current(self) -> Record:
        return self.records[-1]

    @property
    def previous(self) -> Record | None:
        return self.records[-2] if len(self.records) > 1 else None

    def window(self) -> tuple[int, int]:
        """The steps since the previous record, this one included."""
        prev = self.previous
        return (prev.step + 1 if prev is not None else self.current.step), self.current.step

    def level(self) -> float | None:
        """The median loss since the previous record."""
        return self.losses.level(*self.window())

    def best_level(self) -> float | None:
        """The lowest median loss of any earlier window (the initial level included)."""
        levels: list[float | None] = [self.losses.initial()]
        if self.levels is not None:
            levels += self.levels[:-1]
        else:
            for a, b in zip(self.records, self.records[1:-1], strict=False):
                levels.append(self.losses.level(a.step + 1, b.step))
        found = [v for v in levels if v is not None]
        return min(found) if found else None

    def max_lr(self) -> float | None:
        found = [r.lr for r in self.records if r.lr is not None]
        return max(found) if found else None


__all__ = ["Record", "TrainingEvidence"]
