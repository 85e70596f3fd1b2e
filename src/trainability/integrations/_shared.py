"""What every callback does with the Monitor's results: the same log entries (numbers only,
which every logger takes) and the same printed lines, whatever the framework.

A log entry holds ``trainability/<figure>`` for each of the Monitor's figures of the step it
recorded and ``trainability/finding/<kind>``: how many findings of that kind the Monitor raised at
the step (a finding's own ``step`` can be earlier: a loss spike is judged once the steps after it
are seen). The findings themselves (message, layers, fix) are printed once and kept on
``monitor.findings``; where a log can hold more than numbers (the Hugging Face Trainer's
``log_history``), they go there as dicts too.

>>> from trainability.doctor.records import Finding
>>> found = Finding("dead_units", "warning", ["net.2"], "the dead fraction grows", "use leaky_relu")
>>> log_entries({"grad_norm": 0.5}, [found])
{'trainability/grad_norm': 0.5, 'trainability/finding/dead_units': 1.0}
"""

from __future__ import annotations

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


def figures(monitor: Monitor, records_before: int) -> dict[str, float]:
    """The Monitor's figures (``monitor.figures``: loss, learning rate, largest update-to-weight
    ratio, global weight-gradient norm, largest attention logit, ...) if it recorded a step since
    it held ``records_before`` records, else nothing; without the step, which the framework's log
    carries in its own count."""
    if len(monitor.records) <= records_before:
        return {}
    return {name: value for name, value in monitor.figures.items() if name != "step"}


__all__ = ["PREFIX", "describe", "figures", "log_entries"]
