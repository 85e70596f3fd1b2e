"""How far each weight moves in one step, against its own size: the update-to-weight ratio
``||W_after - W_before|| / ||W||`` (RMS over RMS), measured on the update of the step before a
recorded one.

The ratio is estimated on a fixed random sample of each weight's entries (:data:`SAMPLE`; all of
them for small weights): the copy kept between the two steps is a few kilobytes per layer instead
of a second copy of the model, and the estimate of an RMS from 4096 entries is within a few per
cent (what a threshold spanning orders of magnitude needs). The same sample reads an adaptive
optimizer's second moment. Statistics are sums of squares and counts, so that shards and ranks
add up (FSDP2: each rank samples its own local shard).

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(10, 10))
>>> probe = UpdateProbe([("w", w)])
>>> probe.snapshot()
>>> with torch.no_grad():
...     _ = w.add_(0.01)
>>> [round(r, 3) for r in probe.ratios(probe.measure())]
[0.01]
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: Entries sampled per weight (weights with at most 4x as many are read whole).
SAMPLE = 4096


def _local(t: torch.Tensor) -> torch.Tensor:
    """A parameter's local values: the shard of an FSDP2 ``DTensor``, else the tensor."""
    t = t.detach()
    return t.to_local() if hasattr(t, "to_local") else t


class UpdateProbe:
    """Sampled entries of each weight, before and after one optimizer step."""

    def __init__(self, parameters: list[tuple[str, torch.Tensor]], *, seed: int = 0) -> None:
        self.names = [n for n, _ in parameters]
        self.params = [p for _, p in parameters]
        self._seed = seed
        self._index: list[torch.Tensor | None] = []
        for i, p in enumerate(self.params):
            local = _local(p)
            n = local.numel()
            if n <= 4 * SAMPLE:
                self._index.append(None)
            else:
                g = torch.Generator().manual_seed(seed * 100_003 + i)
                self._index.append(torch.randint(0, n, (SAMPLE,), generator=g).to(local.device))
        self._before: list[torch.Tensor] | None = None
        # each weight's sampled sum of squares when the probe was made: the scale updates are compared with
        self.initial: list[torch.Tensor] = [self.values(i).float().pow(2).sum() for i in range(len(self.params))]

    def values(self, i: int, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """The sampled entries of parameter ``i`` (or of a tensor shaped like its local shard)."""
        local = _local(self.params[i] if tensor is None else tensor)
        flat = local.reshape(-1)
        index = self._index[i]
        return flat if index is None else flat[index]

    def snapshot(self) -> None:
        """Keep the sampled entries before the coming optimizer step."""
        self._before = [self.values(i).clone() for i in range(len(self.params))]

    @property
    def armed(self) -> bool:
        return self._before is not None

    def measure(self) -> dict[str, list[torch.Tensor]]:
        """Per weight, as 0-d tensors on its device: the update's and the weight's sums of squares
        over the sample, and the sample's size; ``{}`` without a snapshot."""
        if self._before is None:
            return {}
        delta, weight, count = [], [], []
        for i, before in enumerate(self._before):
            now = self.values(i).float()
            delta.append((now - before.float()).pow(2).sum())
            weight.append(now.pow(2).sum())
            count.append(torch.tensor(float(now.numel()), device=now.device))
        self._before = None
        return {"delta_sq": delta, "weight_sq": weight, "count": count, "initial_sq": list(self.initial)}

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
