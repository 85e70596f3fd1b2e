"""The loss, step by step, without a host sync between recorded steps.

Each step's loss (and the global gradient norm, when the loop hands it over) is kept as a 0-d
tensor on its device; at a recorded step the pending values are stacked and read in one transfer,
so a spike or a NaN between two records is still named by its own step. On the CPU, where
reading a number is free and stalls nothing, a non-finite loss is seen at once (so that the doctor
can explain it on the very weights that produced it).

The statistics here are robust (medians, the median absolute deviation): a loss series is noisy
batch to batch and heavy-tailed, and a mean and standard deviation are dragged by the very spikes
they should expose.

>>> series = LossSeries()
>>> for step, value in enumerate([2.3, 2.2, 2.1, float("nan")]):
...     series.add(step, value)
>>> series.flush(); series.first_non_finite
3
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

import torch

#: Median absolute deviation to the standard deviation of a normal distribution.
MAD_SCALE = 1.4826


class LossSeries:
    """Per-step losses (``values[i]`` is step ``start + i``; NaN where a step gave none)."""

    def __init__(self) -> None:
        self.start: int | None = None
        self.values: list[float] = []
        self.grad_norms: list[float] = []
        self._pending: list[tuple[int, Any, Any]] = []
        self.first_non_finite: int | None = None
        self._highest: tuple[list[float], int, float | None] = (self.values, 0, None)  # (of which list, values read, largest)

    def add(self, step: int, loss: Any, grad_norm: Any = None) -> float | None:
        """Keep this step's loss; returns its value when it is already on the host (a number, or
        a CPU tensor), else ``None`` (read at the next :meth:`flush`)."""
        if self.start is None:
            self.start = step
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()
            if loss.dim():  # a 0-d loss as it is (no view to make at every step)
                loss = loss.reshape(-1)[0] if loss.numel() else None
        if isinstance(grad_norm, torch.Tensor):
            grad_norm = grad_norm.detach()
            if grad_norm.dim():
                grad_norm = grad_norm.reshape(-1)[0]
        self._pending.append((step, loss, grad_norm))
        if isinstance(loss, torch.Tensor) and loss.is_cpu:
            return float(loss)
        return float(loss) if isinstance(loss, (int, float)) else None

    def stage(self, ledger: Any) -> None:
        """Put the pending losses and gradient norms in a :class:`~trainability.distributed.Ledger`
        (every rank has as many: the ranks step together); :meth:`absorb` takes them back."""
        if not self._pending:
            return

        def value(v: Any) -> torch.Tensor:
            if isinstance(v, torch.Tensor):
                return v.to(torch.float64)
            return torch.tensor(math.nan if v is None else float(v), dtype=torch.float64)

        device = next((v.device for _, a, b in self._pending for v in (a, b) if isinstance(v, torch.Tensor)), torch.device("cpu"))
        ledger.put(("loss", "values"), torch.stack([value(loss).to(device) for _, loss, _ in self._pending]), "sum")
        ledger.put(("loss", "grad_norms"), torch.stack([value(norm).to(device) for _, _, norm in self._pending]), "sum")

    def absorb(self, values: dict[Any, list[float]] | None, world: int = 1) -> None:
        """Take the staged values back (averaged over ``world`` ranks: each rank's loss is of its
        own batch), or, without a ledger, read them here."""
        if not self._pending:
            return
        if values is None or ("loss", "values") not in values:
            self.flush()
            return
        losses = [v / world for v in values[("loss", "values")]]
        norms = [v / world for v in values[("loss", "grad_norms")]]
        self._store(list(zip([s for s, _, _ in self._pending], losses, norms, strict=False)),
                    [loss is not None for _, loss, _ in self._pending])  # fmt: skip

    def flush(self) -> None:
        """Read every pending value to the host in one transfer."""
        if not self._pending:
            return
        device_values = [v for _, loss, norm in self._pending for v in (loss, norm) if isinstance(v, torch.Tensor)]
        read: list[float] = []
        if device_values:
            stacked = torch.stack([v.to(device_values[0].device, torch.float64) for v in device_values])
            read = stacked.tolist()
        it = iter(read)
        rows = []
        for step, loss, norm in self._pending:
            value = next(it) if isinstance(loss, torch.Tensor) else (float(loss) if loss is not None else math.nan)
            g = next(it) if isinstance(norm, torch.Tensor) else (float(norm) if norm is not None else math.nan)
            rows.append((step, value, g))
        self._store(rows, [loss is not None for _, loss, _ in self._pending])

    def _store(self, rows: list[tuple[int, float, float]], given: list[bool]) -> None:
        for (step, value, g), has_loss in zip(rows, given, strict=True):
            index = step - (self.start or 0)
            while len(self.values) <= index:
                self.values.append(math.nan)
                self.grad_norms.append(math.nan)
            self.values[index], self.grad_norms[index] = value, g
            if index < self._highest[1]:  # a step already counted in highest(), filled late
                self._highest = (self.values, 0, None)
            if has_loss and not math.isfinite(value) and self.first_non_finite is None:
                self.first_non_finite = step
        self._pending = []

    # -- views ----------------------------------------------------------------------------------
    def finite(self, first: int | None = None, last: int | None = None) -> list[float]:
        """The finite losses of steps ``first..last`` (inclusive; all by default)."""
        lo = 0 if first is None else max(first - (self.start or 0), 0)
        hi = len(self.values) if last is None else last - (self.start or 0) + 1
        return [v for v in self.values[lo:hi] if math.isfinite(v)]

    def initial(self) -> float | None:
        """The loss's level when the monitor started: the median of its first five finite values,
        or the first value where that is lower (a run that blows up at once starts where it started)."""
        first = list(itertools.islice((v for v in self.values if math.isfinite(v)), 5))  # not the whole run
        return min(first[0], statistics.median(first)) if first else None

    def highest(self) -> float | None:
        """The largest finite loss so far (kept as values arrive: no pass over the whole run)."""
        seen, read, top = self._highest
        if seen is not self.values:  # replaced (a loaded state): read it all again
            read, top = 0, None
        for v in self.values[read:]:
            if math.isfinite(v) and (top is None or v > top):
                top = v
        self._highest = (self.values, len(self.values), top)
        return top

    def level(self, first: int, last: int) -> float | None:
        """The median loss of steps ``first..last``."""
        window = self.finite(first, last)
        return statistics.median(window) if window else None

    def step_of(self, index: int) -> int:
        return (self.start or 0) + index


def robust_scale(values: list[float]) -> tuple[float, float]:
    """(median, MAD x 1.4826): the centre and spread of a window, unmoved by its outliers."""
    center = statistics.median(values)
    return center, MAD_SCALE * statistics.median(abs(v - center) for v in values)


__all__ = ["MAD_SCALE", "LossSeries", "robust_scale"]
