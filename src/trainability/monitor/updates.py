"""How far each weight moves in one step, against its own size: the update-to-weight ratio
``||W_after - W_before|| / ||W||`` (RMS over RMS), measured on the update of the step before a
recorded one.

The ratio is estimated on a fixed sample of each weight's entries (:data:`SAMPLE`, all of them for
a small weight): :data:`BLOCKS` runs of :data:`RUN` consecutive entries, evenly spaced from a random
offset (whole cache lines: a copy of every 17th entry touches every line of the weight, these
touch 1/16 of them), the spacing coprime with the row length so that the runs start in every part
of a row. The copy kept between the two steps is a few kilobytes per layer instead of a second copy
of the model, and an RMS from 4096 entries is within a few per cent (what a threshold spanning
orders of magnitude needs). The samples of all weights are copied with one ``cat``; the sums per
weight are one small reduction each. The same sample reads an adaptive optimizer's
second moment. Statistics are sums of squares and counts, so that shards and ranks add up (FSDP2:
each rank samples its own local shard).

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(10, 10))
>>> probe = UpdateProbe([("w", w)])
>>> probe.snapshot()
>>> with torch.no_grad():
...     _ = w.add_(0.01)
>>> [round(r, 3) for r in probe.ratios({k: [v.item() for v in t] for k, t in probe.measure().items()})]
[0.01]
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: Entries sampled per weight (weights with at most twice as many are read whole) ...
SAMPLE = 4096
#: ... in this many runs of consecutive entries.
RUN = 64
BLOCKS = SAMPLE // RUN


def _local(t: torch.Tensor) -> torch.Tensor:
    """A parameter's local values: the shard of an FSDP2 ``DTensor``, else the tensor."""
    t = t.detach()
    return t.to_local() if hasattr(t, "to_local") else t


def _spacing(numel: int, row: int) -> int:
    """The largest spacing of :data:`BLOCKS` runs that fits, sharing no factor with the row length."""
    k = max(RUN, numel // BLOCKS)
    while k > RUN and math.gcd(k, max(row, 1)) != 1:
        k -= 1
    return k


class UpdateProbe:
    """Sampled entries of each weight, before and after one optimizer step."""

    def __init__(self, parameters: list[tuple[str, torch.Tensor]], *, seed: int = 0) -> None:
        self.names = [n for n, _ in parameters]
        self.params = [p for _, p in parameters]
        g = torch.Generator().manual_seed(seed)
        self._slices: list[tuple[int, int, int]] = []  # (offset, spacing, runs) into each flattened local tensor
        for p in self.params:
            local = _local(p)
            n = local.numel()
            if n <= 2 * SAMPLE:
                self._slices.append((0, n, 1) if n else (0, 0, 0))
            else:
                spacing = _spacing(n, local.shape[-1] if local.dim() > 1 else 1)
                offset = int(torch.randint(0, n - BLOCKS * spacing + spacing - RUN + 1, (), generator=g))
                self._slices.append((offset, spacing, BLOCKS))
        counts = [(n if runs == 1 else runs * RUN) for (_, n, runs) in self._slices]
        device = _local(self.params[0]).device if self.params else torch.device("cpu")
        self._segments = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long)).to(device) if counts else None
        self._lengths = torch.tensor(counts, dtype=torch.long, device=device)
        self._ends = self._lengths.cumsum(0)
        self._counts = counts
        self._before: torch.Tensor | None = None
        # each weight's sampled sum of squares when the probe was made: the scale updates are compared with
        self.initial = self._per_weight(self.sample().float().square()) if self.params else None

    def values(self, i: int, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """The sampled entries of parameter ``i`` (or of a tensor shaped like its local shard), a view."""
        offset, spacing, runs = self._slices[i]
        flat = _local(self.params[i] if tensor is None else tensor).reshape(-1)
        if runs <= 1:
            return flat[offset : offset + spacing]
        return flat.as_strided((runs, RUN), (spacing, 1), flat.storage_offset() + offset)

    def sample(self, tensors: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Every weight's sample (or that of tensors shaped like them; ``None`` contributes zeros),
        in one vector."""
        parts = []
        for i in range(len(self.params)):
            t = self.params[i] if tensors is None else tensors[i]
            parts.append(self.values(i, t).reshape(-1) if t is not None else torch.zeros(self._counts[i], device=self._segments.device))  # type: ignore[union-attr]
        dtypes = {p.dtype for p in parts}
        if len(dtypes) > 1:
            parts = [p.float() for p in parts]
        return torch.cat(parts)

    def _per_weight(self, values: torch.Tensor) -> torch.Tensor:
        """Sums over each weight's segment of a sampled vector, in float64."""
        return torch.stack([part.sum(dtype=torch.float64) for part in values.split(self._counts)])

    def per_weight(self, values: torch.Tensor) -> torch.Tensor:
        return self._per_weight(values)

    def snapshot(self) -> None:
        """Keep the sampled entries before the coming optimizer step."""
        self._before = self.sample().clone()

    @property
    def armed(self) -> bool:
        return self._before is not None

    def measure(self) -> dict[str, torch.Tensor]:
        """The update's and the weights' sums of squares over each weight's sample, the sample's
        size and the initial sums of squares, each a vector over the weights (on their device);
        ``{}`` without a snapshot."""
        if self._before is None or not self.params:
            return {}
        now = self.sample().float()
        delta = now - self._before.float()
        self._before = None
        return {
            "delta_sq": self._per_weight(delta.square()),
            "weight_sq": self._per_weight(now.square()),
            "count": self._lengths.to(torch.float64),
            "initial_sq": self.initial,  # type: ignore[dict-item]
        }

    def ratios(self, measured: dict[str, Any], *, initial: bool = False) -> list[float]:
        """Host ratios from host values of :meth:`measure` (after the reduction): the update's RMS
        over the weight's (``initial=True``: over the weight's RMS when the probe was made)."""
        out = []
        reference = measured["initial_sq"] if initial else measured["weight_sq"]
        for d, w in zip(measured["delta_sq"], reference, strict=True):
            d, w = float(d), float(w)
            out.append(math.sqrt(d / w) if w > 0 else (math.inf if d > 0 else 0.0))
        return out

    def clear(self) -> None:
        self._before = None


__all__ = ["SAMPLE", "UpdateProbe"]
