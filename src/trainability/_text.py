"""Plain-text tables, as the table command, InitPlan and the doctor's report print them.

Long stacks of alike layers print compactly: :func:`collapse` groups consecutive rows with the
same key (or the same repeating pattern of keys, such as Linear, ReLU, Linear, ReLU, ...) so that
each group prints as one row, with :func:`span` naming its layers and :func:`value_range` giving
the range of each measured number.

>>> collapse(["Linear", "ReLU", "Linear", "ReLU", "Linear"], key=str)
[['Linear', 'Linear'], ['ReLU', 'ReLU'], ['Linear']]
>>> span(["0", "2", "4"]), value_range([0.14, 0.1412, 0.139], "{:.3g}".format)
('0..4 (3)', '0.139..0.141')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, a dashed rule under the header."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _repeats(keys: Sequence[Hashable], start: int, period: int) -> int:
    """How many times ``keys[start:start + period]`` repeats back to back from ``start``."""
    pattern, count = keys[start : start + period], 1
    while keys[start + count * period : start + (count + 1) * period] == pattern:
        count += 1
    return count


def collapse(items: Sequence[T], key: Callable[[T], Hashable], *, max_period: int = 4) -> list[list[T]]:
    """Group ``items`` (in order) into the rows of a compact table.

    From the left, the pattern of ``period`` keys (1 to ``max_period``) that repeats back to back
    over the most items wins (the shortest on a tie); a pattern repeated ``n`` times becomes
    ``period`` groups of ``n`` items each (every ``period``-th item). Items in no repeat stay alone.
    Concatenating the groups of one pattern, item by item, gives back the input order.
    """
    keys = [key(item) for item in items]
    groups: list[list[T]] = []
    i = 0
    while i < len(items):
        best_period, best_count = 1, 1
        for period in range(1, max_period + 1):
            if i + 2 * period > len(items):
                break
            count = _repeats(keys, i, period)
            if count > 1 and count * period > best_count * best_period:
                best_period, best_count = period, count
        for offset in range(best_period):
            groups.append([items[i + offset + k * best_period] for k in range(best_count)])
        i += best_period * best_count
    return groups


def span(names: Sequence[str]) -> str:
    """One name, or ``first..last (count)``."""
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]} ({len(names)})"


def value_range(values: Sequence[float | None], fmt: Callable[[float], str]) -> str:
    """``fmt(min)..fmt(max)`` over the numbers present (``"-"`` when none), one value when both
    print alike; NaN is listed after the range."""
    present = [v for v in values if v is not None]
    numbers = [v for v in present if not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return "-"
    if not numbers:
        return fmt(float("nan"))
    low, high = fmt(min(numbers)), fmt(max(numbers))
    text = low if low == high else f"{low}..{high}"
    return text + (", nan" if len(numbers) < len(present) else "")
