"""Statistics combined across the ranks of a process group, in one collective.

A :class:`Ledger` holds named slots, each a vector of float64 values with the rule that combines
it across ranks:

- ``"sum"``: sums and counts (a layer's sum of activations, the number of them); a mean or a
  standard deviation follows on the host, from the sums (divide yourself: gloo's AVG depends on
  the torch version);
- ``"sumsq"``: a 2-norm, squared before the reduction and rooted after (norms do not add, their
  squares do; FSDP2's shards: ``||g||^2 = sum over ranks of ||local shard||^2``);
- ``"max"``: a maximum (the largest attention logit);
- ``"alive"``: each unit's largest value, combined by maximum and read as the number of positive
  entries (a ReLU unit is alive where it fires on any sample of any rank);
- ``"same"``: a value every rank holds identically (DDP's parameters and their gradients after the
  all-reduce): rank 0's is kept.

The layout (slots, their order and sizes) is declared from the model, so it is the same on every
rank; a slot a rank has no value for (a layer that did not run there) contributes zeros, never a
different shape, so no rank waits forever. :meth:`Ledger.read` concatenates the slots into one
buffer, gathers it from every rank with one ``all_gather`` (``agree=True`` first gathers the
slots' sizes, for layouts whose vector sizes are only known from the data), combines it slot by
slot on the device, and moves it to the host in one transfer only where asked (rank 0 for the
Monitor; every rank for ``diagnose``, which returns the same report on each).

>>> import torch
>>> ledger = Ledger()
>>> ledger.put("sum", torch.tensor([1.0, 2.0]), "sum")
>>> ledger.put("norm", torch.tensor(3.0), "sumsq")
>>> ledger.put("units", torch.tensor([0.5, 0.0, -1.0]), "alive")
>>> ledger.read()
{'sum': [1.0, 2.0], 'norm': [3.0], 'units': [1.0]}
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

import torch

Op = Literal["sum", "sumsq", "max", "alive", "same"]


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size(group: Any = None) -> int:
    return torch.distributed.get_world_size(group) if initialized() else 1


def rank(group: Any = None) -> int:
    return torch.distributed.get_rank(group) if initialized() else 0


def is_main(group: Any = None) -> bool:
    """Rank 0 of the group (or no process group at all): the rank that reports, prints and writes."""
    return rank(group) == 0


class Ledger:
    """Named slots of statistics, read in one transfer and combined across ranks in one collective.
    The slots persist across :meth:`clear` (a monitor declares its layout once); the values do not."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, tuple[Op, int]] = {}
        self._values: dict[Hashable, torch.Tensor] = {}

    def declare(self, key: Hashable, op: Op, size: int = 1) -> None:
        """A slot of the layout, whether or not this rank will have a value for it."""
        if key not in self._slots:
            self._slots[key] = (op, size)

    def put(self, key: Hashable, value: torch.Tensor | float, op: Op = "sum") -> None:
        """This rank's value of a slot (declared now, with this value's size, if it was not)."""
        t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)
        t = t.detach().reshape(-1)
        if key not in self._slots:
            self._slots[key] = (op, t.numel())
        self._values[key] = t

    def clear(self) -> None:
        """Forget the values (the layout stays)."""
        self._values = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def read(self, group: Any = None, *, host: bool = True, agree: bool = False) -> dict[Hashable, list[float]] | None:
        """Every slot's combined value, as host lists (``None`` where ``host`` is false: the
        collective still runs, nothing is copied to the host). Without a process group (or with
        one rank) nothing is communicated."""
        if not self._slots:
            return {} if host else None
        device = next((v.device for v in self._values.values()), torch.device("cpu"))
        distributed = initialized() and world_size(group) > 1
        sizes = [max(size, self._values[k].numel() if k in self._values else 0) for k, (_, size) in self._slots.items()]
        if distributed and agree:  # vector sizes known only from the data: agree on the largest
            mine = torch.tensor(sizes, dtype=torch.int64, device=device)
            gathered = [torch.empty_like(mine) for _ in range(world_size(group))]
            torch.distributed.all_gather(gathered, mine, group=group)
            sizes = torch.stack(gathered).amax(0).tolist()
            self._slots = {k: (op, size) for (k, (op, _)), size in zip(self._slots.items(), sizes, strict=True)}
        ops = [op for op, _ in self._slots.values()]
        parts = []
        for key, size in zip(self._slots, sizes, strict=True):
            value = self._values.get(key)
            if value is not None and value.numel() == size:
                parts.append(value.to(device=device, dtype=torch.float64))
            else:
                part = torch.zeros(size, dtype=torch.float64, device=device)
                if value is not None:
                    part[: value.numel()] = value.to(device=device, dtype=torch.float64)
                parts.append(part)
        flat = torch.cat(parts)
        bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
        squares = [i for i, op in enumerate(ops) if op == "sumsq"]
        if squares:
            index = torch.cat([torch.arange(bounds[i], bounds[i + 1]) for i in squares]).to(device)
            flat = flat.index_copy(0, index, flat.index_select(0, index).square())
        if distributed:
            gathered = [torch.empty_like(flat) for _ in range(world_size(group))]
            torch.distributed.all_gather(gathered, flat, group=group)
            stacked = torch.stack(gathered)
            total, largest, first = stacked.sum(0), stacked.amax(0), stacked[0]
            pick = torch.zeros(flat.numel(), dtype=torch.int64, device=device)  # 0 sum, 1 max, 2 same
            for i, op in enumerate(ops):
                if op in ("max", "alive", "same"):
                    pick[bounds[i] : bounds[i + 1]] = 1 if op != "same" else 2
            flat = torch.where(pick == 1, largest, torch.where(pick == 2, first, total))
        if squares:
            flat = flat.index_copy(0, index, flat.index_select(0, index).sqrt())
        alive = [i for i, op in enumerate(ops) if op == "alive"]
        if alive:  # each alive slot becomes the count of its positive entries: three kernels for all of them
            index = torch.cat([torch.arange(bounds[i], bounds[i + 1]) for i in alive]).to(device)
            ends = torch.tensor([bounds[i + 1] - bounds[i] for i in alive]).cumsum(0).to(device)
            counts = torch.cat([torch.zeros(1, device=device), (flat.index_select(0, index) > 0).double().cumsum(0)])
            alive_counts = counts[ends] - counts[ends - torch.tensor([bounds[i + 1] - bounds[i] for i in alive], device=device)]
            keep = torch.ones(flat.numel(), dtype=torch.bool, device=device)
            keep[index] = False
            flat = torch.cat([flat[keep], alive_counts])
        if not host:
            return None
        values = flat.tolist()
        out: dict[Hashable, list[float]] = {}
        offset = 0
        for key, op, size in zip(self._slots, ops, sizes, strict=True):
            if op == "alive":
                continue
            out[key] = values[offset : offset + size]
            offset += size
        for key, op in zip(self._slots, ops, strict=True):
            if op == "alive":
                out[key] = [values[offset]]
                offset += 1
        return out


__all__ = ["Ledger", "Op", "initialized", "is_main", "rank", "world_size"]
