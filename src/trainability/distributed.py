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


def _covered(spans: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """The positions ``start, ..., start + length - 1`` of every ``(start, length)`` span, in
    order, in a few kernels whatever the number of spans (a ledger has one per layer)."""
    if not spans:
        return torch.zeros(0, dtype=torch.long)
    starts, lengths = torch.tensor(spans, dtype=torch.long).unbind(1)
    offsets = lengths.cumsum(0) - lengths  # where each span begins in the output
    return torch.repeat_interleave(starts - offsets, lengths) + torch.arange(int(lengths.sum()))


class Ledger:
    """Named slots of statistics, read in one transfer and combined across ranks in one collective.
    The slots persist across :meth:`clear` (a monitor declares its layout once); the values do not."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, tuple[Op, int]] = {}
        self._values: dict[Hashable, torch.Tensor | float] = {}
        self._cache: dict[Any, torch.Tensor] = {}

    def declare(self, key: Hashable, op: Op, size: int = 1) -> None:
        """A slot of the layout, whether or not this rank will have a value for it."""
        if key not in self._slots:
            self._slots[key] = (op, size)

    def put(self, key: Hashable, value: torch.Tensor | float, op: Op = "sum") -> None:
        """This rank's value of a slot (declared now, with this value's size, if it was not)."""
        if key not in self._slots:
            self._slots[key] = (op, value.numel() if isinstance(value, torch.Tensor) else 1)
        self._values[key] = value

    def clear(self) -> None:
        """Forget the values (the layout stays)."""
        self._values = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def _index(self, name: str, spans: tuple[tuple[int, int], ...], device: torch.device) -> torch.Tensor:
        """The positions covered by ``(start, length)`` spans, as a tensor, built once per layout."""
        key = (name, spans, device)
        found = self._cache.get(key)
        if found is None:
            found = _covered(spans).to(device)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = found
        return found

    def read(self, group: Any = None, *, host: bool = True, agree: bool = False) -> dict[Hashable, list[float]] | None:
        """Every slot's combined value, as host lists (``None`` where ``host`` is false: the
        collective still runs, nothing is copied to the host). Without a process group (or with
        one rank) nothing is communicated."""
        if not self._slots:
            return {} if host else None
        device = next((v.device for v in self._values.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
        distributed = initialized() and world_size(group) > 1
        values = self._values
        sizes = []
        for k, (_, size) in self._slots.items():
            v = values.get(k)
            sizes.append(max(size, (v.numel() if isinstance(v, torch.Tensor) else 1) if v is not None else 0))
        if distributed and agree:  # vector sizes known only from the data: agree on the largest
            mine = torch.tensor(sizes, dtype=torch.int64, device=device)
            gathered = [torch.empty_like(mine) for _ in range(world_size(group))]
            torch.distributed.all_gather(gathered, mine, group=group)
            sizes = torch.stack(gathered).amax(0).tolist()
            self._slots = {k: (op, size) for (k, (op, _)), size in zip(self._slots.items(), sizes, strict=True)}
        ops = [op for op, _ in self._slots.values()]
        starts = [0]
        for size in sizes:
            starts.append(starts[-1] + size)
        # one buffer, filled with a few kernels: tensors grouped by dtype, concatenated once and
        # cast once, plain numbers in one tensor; the positions they fill are built once per layout
        groups: dict[torch.dtype, tuple[list[torch.Tensor], list[tuple[int, int]]]] = {}
        numbers: tuple[list[float], list[int]] = ([], [])
        for key, start in zip(self._slots, starts, strict=False):
            v = values.get(key)
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                tensors, spans = groups.setdefault(v.dtype, ([], []))
                tensors.append(v.reshape(-1))
                spans.append((start, v.numel()))
            else:
                numbers[0].append(float(v))
                numbers[1].append(start)
        flat = torch.zeros(starts[-1], dtype=torch.float64, device=device)
        for dtype, (tensors, spans) in groups.items():
            joined = torch.cat(tensors) if len(tensors) > 1 else tensors[0]
            flat.index_copy_(0, self._index(str(dtype), tuple(spans), device), joined.detach().to(device=device, dtype=torch.float64))
        if numbers[0]:
            flat.index_copy_(0, torch.tensor(numbers[1], device=device), torch.tensor(numbers[0], dtype=torch.float64, device=device))
        squares = tuple((starts[i], sizes[i]) for i, op in enumerate(ops) if op == "sumsq" and sizes[i])
        if squares:
            index = self._index("squares", squares, device)
            flat = flat.index_copy(0, index, flat.index_select(0, index).square())
        if distributed:
            gathered = [torch.empty_like(flat) for _ in range(world_size(group))]
            torch.distributed.all_gather(gathered, flat, group=group)
            stacked = torch.stack(gathered)
            largest = self._index("max", tuple((starts[i], sizes[i]) for i, op in enumerate(ops) if op in ("max", "alive")), device)
            same = self._index("same", tuple((starts[i], sizes[i]) for i, op in enumerate(ops) if op == "same"), device)
            combined = stacked.sum(0)
            combined.index_copy_(0, largest, stacked.index_select(1, largest).amax(0))
            combined.index_copy_(0, same, stacked[0].index_select(0, same))
            flat = combined
        if squares:
            flat = flat.index_copy(0, index, flat.index_select(0, index).sqrt())
        alive = [i for i, op in enumerate(ops) if op == "alive"]
        if alive:  # each alive slot becomes the count of its positive entries: a few kernels for all of them
            spans = tuple((starts[i], sizes[i]) for i in alive)
            alive_index = self._index("alive", spans, device)
            lengths = torch.tensor([n for _, n in spans], device=device)
            ends = lengths.cumsum(0)
            counts = torch.cat([torch.zeros(1, dtype=torch.float64, device=device), (flat.index_select(0, alive_index) > 0).double().cumsum(0)])
            alive_counts = counts[ends] - counts[ends - lengths]
            keep = self._index("keep", tuple((starts[i], sizes[i]) for i, op in enumerate(ops) if op != "alive" and sizes[i]), device)
            flat = torch.cat([flat.index_select(0, keep), alive_counts])
        if not host:
            return None
        read = flat.tolist()
        out: dict[Hashable, list[float]] = {}
        offset = 0
        for key, op, size in zip(self._slots, ops, sizes, strict=True):
            if op == "alive":
                continue
            out[key] = read[offset : offset + size]
            offset += size
        for key, op in zip(self._slots, ops, strict=True):
            if op == "alive":
                out[key] = [read[offset]]
                offset += 1
        return out


__all__ = ["Ledger", "Op", "initialized", "is_main", "rank", "world_size"]
