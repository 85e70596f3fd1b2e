"""What every callback does with the Monitor's results: the same log entries (numbers only,
which every logger takes) and the same printed lines, whatever the framework.

A log entry holds ``trainability/<figure>`` for each of the Monitor's figures of the last
recorded step and ``trainability/finding/<kind>``: how many findings of that kind were first
seen at the step. The findings themselves (message, layers, fix) are printed once and kept on
``monitor.findings``; where a log can hold more than numbers (the Hugging Face Trainer's
``log_history``), they go there as dicts too.

>>> from trainability.doctor.records import Finding
>>> found = Finding("dead_units", "warning", ["net.2"], "the dead fraction grows", "use leaky_relu")
>>> log_entries({"grad_norm": 0.5}, [found])
{'trainability/grad_norm': 0.5, 'trainability/finding/dead_units': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from trainability.doctor.records import Finding
from trainability.monitor import Monitor

PREFIX = "trainability/"


def log_entries(figures: Mapping[str, float], findings: list[Finding]) -> dict[str, float]:
    """The figures and the new findings as ``{name: number}``, every name under ``trainability/``."""
    out = {f"{PREFIX}{name}": float(value) for name, value in figures.items()}
    for finding in findings:
        key = f"{PREFIX}finding/{finding.kind}"
        out[key] = out.get(key, 0.0) + 1.0
    return out


def describe(finding: Finding) -> str:
    """A finding as printed: kind, severity, message (with its step) and fix."""
    return f"[trainability] {finding.kind} ({finding.severity}): {finding.message}\n    fix: {finding.fix}"


def figures(monitor: Monitor, since: int) -> dict[str, float]:
    """Summary scalars of the rows the Monitor recorded from row ``since`` on (one recorded
    step): the global weight-gradient norm (the root of the sum of the layers' squares), the
    largest gradient-to-weight norm ratio of a layer and the largest dead and saturated
    fractions (NaN where any layer's is NaN). Empty when nothing was recorded."""
    rows = monitor.rows[since:]
    if not rows:
        return {}
    by_statistic: dict[str, list[float]] = {}
    for _, _, statistic, value in rows:
        by_statistic.setdefault(statistic, []).append(value)
    out = {}
    if "weight_grad_norm" in by_statistic:
        out["grad_norm"] = math.sqrt(sum(v * v for v in by_statistic["weight_grad_norm"]))
    for statistic, name in (("grad_weight_ratio", "max_grad_weight_ratio"), ("dead_fraction", "max_dead_fraction"),
                            ("saturated_fraction", "max_saturated_fraction")):  # fmt: skip
        if statistic in by_statistic:
            out[name] = max(by_statistic[statistic], key=lambda v: (math.isnan(v), v))  # a NaN shows
    return out


__all__ = ["PREFIX", "describe", "figures", "log_entries"]
