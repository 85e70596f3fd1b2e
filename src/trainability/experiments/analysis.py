"""What a grid's runs say: the leaderboard, and the ranking per depth against the textbook's.

The textbook (Geron, chapter 11): "in general SELU > ELU > leaky ReLU (and its variants) >
ReLU > tanh > logistic", with "your mileage will vary". Two measured activations are ordered
only when the difference is larger than seed noise: Welch's t-test (unequal variances,
two-sided) on the per-seed test accuracies, p < :data:`ALPHA`; otherwise they are a tie.
With 3 seeds only large gaps pass, which is the honest answer 3 seeds can give. Each activation
enters its depth's ranking with the configuration (initializer, width, ...) that had the best
mean *validation* accuracy, and is scored by its *test* accuracy.

>>> welch_p([0.60, 0.61, 0.62], [0.50, 0.51, 0.52]) < 0.001
True
>>> welch_p([0.6], [0.5]) is None   # one seed: no estimate of the noise
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainability.experiments.grid import FACTORS

TEXTBOOK_ORDER = ("selu", "elu", "leaky_relu", "relu", "tanh", "sigmoid")
ALPHA = 0.05


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); NaN for fewer than two values."""
    if len(values) < 2:
        return math.nan
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None when either side has fewer than two values.

    ``t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b)`` with the Welch-Satterthwaite degrees
    of freedom ``(s_a^2/n_a + s_b^2/n_b)^2 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))``
    (Welch 1947); identical seeds on one side (a run stuck at chance) are fine.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    qa, qb = _std(a) ** 2 / len(a), _std(b) ** 2 / len(b)
    if qa + qb == 0:
        return 1.0 if _mean(a) == _mean(b) else 0.0
    from scipy import stats

    t = (_mean(a) - _mean(b)) / math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa**2 / (len(a) - 1) + qb**2 / (len(b) - 1))
    return float(2 * stats.t.sf(abs(t), df))


@dataclass(frozen=True)
class Metric:
    """The score runs are ranked by: test accuracy (classification) or test loss (regression)."""

    column: str
    validation: str
    higher_is_better: bool
    label: str

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


def metric_for(runs: list[dict[str, Any]]) -> Metric:
    if any(r.get("test_accuracy") is not None for r in runs) or not any(r.get("test_loss") is not None for r in runs):
        return Metric("test_accuracy", "val_accuracy", True, "test accuracy")
    return Metric("test_loss", "val_loss", False, "test loss")


def _config(run: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(run[f] for f in FACTORS)


def leaderboard(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: mean and std over seeds of the test and validation scores,
    median time per epoch, the doctor's most common verdict at initialization; best first."""
    metric = metric_for(runs)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_config(run), []).append(run)
    rows = []
    for config, members in groups.items():
        done = [r for r in members if r["status"] == "finished"]
        test = [r[metric.column] for r in done if r[metric.column] is not None]
        val = [r[metric.validation] for r in done if r[metric.validation] is not None]
        per_epoch = sorted(r["seconds_per_epoch"] for r in done if r["seconds_per_epoch"] is not None)
        verdicts = [r["doctor_init"] for r in members if r["doctor_init"]]
        failed = [r for r in members if r["status"] == "failed"]
        rows.append({
            **dict(zip(FACTORS, config, strict=True)),
            "runs": len(members), "finished": len(done), "failed": len(failed),
            "test_mean": _mean(test), "test_std": _std(test), "val_mean": _mean(val), "val_std": _std(val),
            "seconds_per_epoch": per_epoch[len(per_epoch) // 2] if per_epoch else math.nan,
            "doctor_init": max(set(verdicts), key=verdicts.count) if verdicts else None,
            "failure": failed[0]["reason"] if failed else None,
        })  # fmt: skip
    sign = -1 if metric.higher_is_better else 1
    rows.sort(key=lambda r: (math.isnan(r["test_mean"]), sign * r["test_mean"] if not math.isnan(r["test_mean"]) else 0))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


@dataclass
class Entry:
    """One activation in a depth's ranking: its best configuration's per-seed scores."""

    activation: str
    config: dict[str, Any]
    values: list[float]
    failed: int

    @property
    def mean(self) -> float:
        return _mean(self.values)

    @property
    def std(self) -> float:
        return _std(self.values)


@dataclass
class Ranking:
    """The activations at one depth, best first (those with no finished run last); ``steps[i]``
    relates the i-th and (i+1)-th measured entries (``">"`` better beyond seed noise, ``"≈"``
    within it, ``"?"`` untested: one seed), ``pairs`` holds
    every pair the textbook orders, with ``"agrees"``, ``"disagrees"``, ``"within seed noise"``
    or ``"untested"``."""

    depth: int
    entries: list[Entry]
    steps: list[tuple[str, float | None]] = field(default_factory=list)
    pairs: list[tuple[str, str, str, float | None]] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(1 for p in self.pairs if p[2] == verdict)

    def order(self) -> str:
        """``selu > elu ≈ relu``, then the activations with no finished run."""
        measured = [e for e in self.entries if e.values]
        parts = [measured[0].activation] if measured else []
        for (symbol, _), entry in zip(self.steps, measured[1:], strict=False):
            parts.append(f"{symbol} {entry.activation}")
        failed = [e.activation for e in self.entries if not e.values]
        return " ".join(parts) + (f" (no finished run: {', '.join(failed)})" if failed else "")


def _relation(a: Entry, b: Entry, metric: Metric) -> tuple[str, float | None]:
    p = welch_p(a.values, b.values)
    if p is None:
        return "?", None
    return (">" if p < ALPHA and metric.better(a.mean, b.mean) else "≈"), p


def rankings(runs: list[dict[str, Any]]) -> list[Ranking]:
    """Per depth: each activation at its best configuration (by validation), ordered by test score."""
    metric = metric_for(runs)
    out = []
    for depth in sorted({r["depth"] for r in runs}):
        at_depth = [r for r in runs if r["depth"] == depth]
        entries = []
        for activation in dict.fromkeys(r["activation"] for r in at_depth):
            groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for r in at_depth:
                if r["activation"] == activation:
                    groups.setdefault(_config(r), []).append(r)

            def validation(members: list[dict[str, Any]]) -> float:
                vals = [r[metric.validation] for r in members if r["status"] == "finished" and r[metric.validation] is not None]
                if not vals:
                    return -math.inf
                return _mean(vals) if metric.higher_is_better else -_mean(vals)

            config, members = max(groups.items(), key=lambda kv: validation(kv[1]))
            values = [r[metric.column] for r in members if r["status"] == "finished" and r[metric.column] is not None]
            entries.append(Entry(activation, dict(zip(FACTORS, config, strict=True)), values,
                                 sum(r["status"] == "failed" for r in members)))  # fmt: skip
        sign = -1 if metric.higher_is_better else 1
        entries.sort(key=lambda e: (not e.values, sign * e.mean if e.values else 0))
        ranking = Ranking(depth, entries)
        measured_entries = [e for e in entries if e.values]
        ranking.steps = [_relation(a, b, metric) for a, b in zip(measured_entries, measured_entries[1:], strict=False)]
        measured = {e.activation: e for e in entries if e.values}
        textbook = [a for a in TEXTBOOK_ORDER if a in measured]
        for i, a in enumerate(textbook):
            for b in textbook[i + 1 :]:
                p = welch_p(measured[a].values, measured[b].values)
                if p is None:
                    verdict = "untested"
                elif p >= ALPHA:
                    verdict = "within seed noise"
                else:
                    verdict = "agrees" if metric.better(measured[a].mean, measured[b].mean) else "disagrees"
                ranking.pairs.append((a, b, verdict, p))
        out.append(ranking)
    return out
