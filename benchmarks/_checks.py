"""Targets against measurements, shared by the reproduction and performance scripts.

Each script builds a list of :class:`Check` rows (the claim, its published target, the measured
value, PASS/FAIL and a line on why), prints them, writes them into its section of
docs/RESULTS.md, and, when ``run_all.py`` asks (``TRAINABILITY_CHECKS`` names a folder), leaves
them as JSON for the page's summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass
class Check:
    claim: str
    target: str
    measured: str
    passed: bool | None  # None: reported, no target to pass
    note: str = ""

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "FAIL")


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every script shares: ``--quick`` (tiny settings, for the smoke run) and
    ``--threads`` (torch intra-op threads; 1 by default: the machine is shared)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs, not the figures")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    return p


def setup(args: argparse.Namespace) -> dict[str, float]:
    """Apply ``--threads``; return the load average and the start time for :func:`context`."""
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # saturating nets make denormals, which slow CPUs badly
    return {"load": os.getloadavg()[0], "start": time.perf_counter()}


def context(started: dict[str, float], described: str) -> str:
    """A line saying how long the script ran, on which machine and under which load."""
    seconds = time.perf_counter() - started["start"]
    return (f"Wall time {seconds:.0f} s. Machine: {described}; 1-minute load average {started['load']:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (the machine is shared).")  # fmt: skip


def mean_std(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "-"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def cell(text: str) -> str:
    """Text for a Markdown table cell: a literal ``|`` would end the cell."""
    return text.replace("|", "\\|")


def table(checks: Sequence[Check]) -> str:
    rows = [f"| {cell(c.claim)} | {cell(c.target)} | {cell(c.measured)} | **{c.verdict}** |" for c in checks]
    notes = [f"- {c.claim}: {c.note}" for c in checks if c.note]
    text = "| claim | target | measured | verdict |\n|---|---|---|---|\n" + "\n".join(rows)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def emit(script: str, checks: Sequence[Check]) -> None:
    """Print the checks and leave them for run_all's summary."""
    for c in checks:
        print(f"{c.verdict:4}  {c.claim}: target {c.target}; measured {c.measured}" + (f" ({c.note})" if c.note else ""))
    folder = os.environ.get("TRAINABILITY_CHECKS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{script}.json").write_text(json.dumps([asdict(c) for c in checks]))
