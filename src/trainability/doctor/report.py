"""What the doctor found: per-layer statistics, findings with their fixes, text, JSON and a plot."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from trainability._text import collapse, format_rows, span, value_range
from trainability.doctor.records import BlockStats, Finding, LayerStats, TimeStats


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    return f"{value:.{digits - 1}e}"


@dataclass(frozen=True)
class Report:
    """The doctor's answer for one model and batch."""

    layers: list[LayerStats]
    findings: list[Finding]
    loss: float
    batch_size: int
    blocks: list[BlockStats] = field(default_factory=list)
    time: list[TimeStats] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # "name (Type)": weight matrices no adapter reads
    notes: list[str] = field(default_factory=list)  # how the pass differed from the model as given, and why

    @property
    def healthy(self) -> bool:
        return not self.findings

    def by_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        out = {"findings": [f.to_dict() for f in self.findings], "layers": [asdict(s) for s in self.layers]}
        if self.blocks:
            out["blocks"] = [asdict(b) for b in self.blocks]
        if self.time:
            out["time"] = [asdict(t) for t in self.time]
        if self.unread:
            out["unread"] = list(self.unread)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    def verdict(self) -> str:
        unread = ""
        if self.unread:
            shown = ", ".join(self.unread[:6]) + (f" and {len(self.unread) - 6} more" if len(self.unread) > 6 else "")
            unread = (f"\nNot read: {shown}: weights applied in a way the doctor does not know, so their gradients "
                      "and scales are not judged.")  # fmt: skip
        unread += "".join(f"\nNote: {note}" for note in self.notes)
        if self.healthy:
            return (f"HEALTHY: no problem found in {len(self.layers)} layers "
                    f"(loss {_number(self.loss)}, batch {self.batch_size}).{unread}")  # fmt: skip
        errors = sum(f.severity == "error" for f in self.findings)
        lines = [f"{len(self.findings)} finding(s), {errors} error(s) (loss {_number(self.loss)}, batch {self.batch_size}):"]
        for f in self.findings:
            lines.append(f"  [{f.severity}] {f.kind}: {f.message}")
            lines.append(f"      fix: {f.fix}")
        return "\n".join(lines) + unread

    def table(self, *, compact: bool | None = None) -> str:
        """The per-layer statistics as text, in execution order.

        ``compact`` (the default for more than 20 layers) prints each run of alike layers as
        one row per member of the repeating pattern (Linear, ReLU, Linear, ReLU, ... gives one
        Linear row and one ReLU row): alike means equal in every field but the numbers and the
        layer's and module's names (type, role, consumer, non-finite flag, ...) and named by the
        same findings. A row gives the layer range and count and the range of
        each number; ``report.layers`` and ``to_dict()`` keep every layer.
        """
        header = ("layer", "type", "feeds", "mean", "std", "dead", "satur.", "grad norm", "weight std", "grad/weight", "non-finite")
        numbers = {"mean": _number, "std": _number, "dead_fraction": "{:.0%}".format, "saturated_fraction": "{:.0%}".format,
                   "grad_norm": _number, "weight_std": _number, "grad_weight_ratio": _number}  # fmt: skip
        names = [f.name for f in fields(LayerStats)]
        measured = {n for n in names if any(isinstance(getattr(s, n), float) for s in self.layers)}
        kinds: dict[str, set[str]] = {}
        for finding in self.findings:
            for layer in finding.layers:
                kinds.setdefault(layer, set()).add(finding.kind)

        def key(s: LayerStats) -> tuple[Any, ...]:  # every field but the numbers and the names of the layer
            alike = tuple(getattr(s, n) for n in names if n not in ("name", "module") and n not in measured)
            return (*alike, frozenset(kinds.get(s.name, ())))

        if compact is None:
            compact = len(self.layers) > 20
        groups = collapse(self.layers, key=key) if compact else [[s] for s in self.layers]
        rows = [
            (span([s.name for s in g]), g[0].type, g[0].activation or "-",
             *(value_range([getattr(s, n) for s in g], fmt) for n, fmt in numbers.items()), g[0].non_finite or "")
            for g in groups
        ]  # fmt: skip
        return format_rows(header, rows)

    def __str__(self) -> str:
        return f"{self.verdict()}\n\n{self.table()}"

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: activation std and gradient norm against depth (log scale), dead and
        saturated fractions, problem layers highlighted in red."""
        from trainability.doctor.plot import plot_report

        return plot_report(self, Path(path))
