"""Initialize a whole model for the activation that follows each layer.

>>> from trainability import mlp
>>> model = mlp(64, 10, depth=3, width=32, activation="selu", init="default")
>>> plan = initialize(model)
>>> [entry.initializer for entry in plan]
['lecun_normal', 'lecun_normal', 'lecun_normal', 'glorot_uniform']
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from trainability import init as inits
from trainability._text import collapse, format_rows, span, value_range
from trainability.graph import NORM_TYPES, Link, Method, evaluating, find_consumers, weight_layers
from trainability.table import recommended_init


@dataclass(frozen=True)
class PlanEntry:
    """What :func:`initialize` did to one weight layer."""

    layer: str
    type: str
    activation: str | None
    initializer: str
    fan_in: int
    fan_out: int
    weight_std: float


@dataclass(frozen=True)
class InitPlan:
    """The per-layer record of an :func:`initialize` call; prints as a table."""

    entries: tuple[PlanEntry, ...]
    method: Method

    def __iter__(self) -> Iterator[PlanEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | str) -> PlanEntry:
        if isinstance(key, int):
            return self.entries[key]
        for entry in self.entries:
            if entry.layer == key:
                return entry
        raise KeyError(f"no layer named {key!r} in the plan; layers: {', '.join(e.layer for e in self)}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "layers": [asdict(e) for e in self.entries]}

    def to_dataframe(self) -> Any:
        """Every weight layer as a row of a pandas DataFrame, one column per :class:`PlanEntry`
        field (never collapsed, unlike the printed table)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ValueError("InitPlan.to_dataframe needs pandas: pip install 'trainability[monitor]' (or use plan.to_dict())") from exc
        return pd.DataFrame([asdict(e) for e in self.entries], columns=[f.name for f in fields(PlanEntry)])

    def table(self, *, compact: bool = True) -> str:
        """The plan as text. ``compact`` prints consecutive layers that agree on every field but
        the name and the measured numbers (type, activation, initializer, fans, ...) as one row:
        the layer range and count, and the range of each number (the weight std)."""
        names = [f.name for f in fields(PlanEntry)]
        measured = {n for n in names if any(isinstance(getattr(e, n), float) for e in self.entries)}
        alike = [n for n in names if n != "layer" and n not in measured]
        if compact:
            groups = collapse(self.entries, key=lambda e: tuple(getattr(e, n) for n in alike), max_period=1)
        else:
            groups = [[e] for e in self.entries]
        rows = []
        for group in groups:
            row = []
            for n in names:
                if n == "layer":
                    row.append(span([e.layer for e in group]))
                elif n in measured:
                    row.append(value_range([getattr(e, n) for e in group], "{:.4g}".format))
                else:
                    value = getattr(group[0], n)
                    row.append("-" if value is None else str(value))
            rows.append(row)
        return format_rows([n.replace("_", " ") for n in names], rows)

    def __str__(self) -> str:
        title = f"InitPlan: {len(self.entries)} weight layers, activations found by {self.method}"
        return f"{title}\n{self.table()}"


def _choose(link: Link, init: Any) -> tuple[Any, str]:
    """The initializer for one layer and its display name."""
    if isinstance(init, Mapping):
        init = init.get(link.name, "auto")
    if isinstance(init, str) and init == "auto":
        name = recommended_init(link.activation)
        return inits.get(name), name
    initializer = inits.get(init)
    return initializer, inits.name_of(initializer)


def _reset_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, NORM_TYPES) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)


def _lsuv(
    model: nn.Module, layers: list[tuple[str, nn.Module]], data: Any, tol: float, max_iter: int
) -> None:
    """Layer-sequential unit variance (Mishkin & Matas 2016): orthonormal weights, then scale each
    layer, first to last, until the variance of its output on ``data`` is within ``tol`` of 1."""
    with evaluating(model):
        for _, module in layers:
            inits.apply(inits.Orthogonal(), module)
        captured: list[torch.Tensor] = []
        for _, module in layers:
            handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
            try:
                for _ in range(max_iter):
                    captured.clear()
                    with torch.no_grad():
                        model(*data) if isinstance(data, tuple) else model(data)
                    var = float(captured[0].var())
                    if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                        break
                    with torch.no_grad():
                        module.weight.div_(var**0.5)
            finally:
                handle.remove()


def initialize(
    model: nn.Module,
    *,
    init: str | Mapping[str, Any] | Any = "auto",
    data: Any = None,
    tol: float = 0.1,
    max_iter: int = 10,
    seed: int | None = None,
) -> InitPlan:
    """Initialize every weight layer for the activation that consumes its output.

    ``init="auto"`` applies the textbook's pairing (Glorot before none/tanh/sigmoid/softmax,
    He before the ReLU family, LeCun before SELU; :func:`trainability.recommended_init`); a layer
    that feeds no activation (an output layer) gets Glorot uniform. ``init`` may also be one
    initializer (name, object or callable) for every weight layer, or a dict from layer name to
    initializer (layers it leaves out get ``"auto"``). ``init="lsuv"`` needs ``data=`` (a batch)
    and runs LSUV: orthonormal weights, then each layer rescaled until its output variance on
    the batch is within ``tol`` of 1, at most ``max_iter`` times.

    Biases become 0 and normalization layers weight 1, bias 0. ``seed`` makes the draw
    repeatable without touching the global RNG.
    """
    layers = weight_layers(model)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no weight layers to initialize (Linear, Conv1d/2d/3d, "
            "ConvTranspose1d/2d/3d)"
        )
    if isinstance(init, Mapping):
        known = {n for n, _ in layers}
        unknown = sorted(set(init) - known)
        if unknown:
            raise ValueError(
                f"init names layers the model does not have: {', '.join(unknown)}; "
                f"weight layers: {', '.join(sorted(known))}"
            )
    lsuv = isinstance(init, str) and init.lower() == "lsuv"
    if lsuv and data is None:
        raise ValueError("init='lsuv' needs data=: a batch of inputs to measure each layer's output variance on")
    if lsuv and not (tol > 0 and max_iter >= 1):
        raise ValueError(f"LSUV needs tol > 0 and max_iter >= 1, got tol={tol!r}, max_iter={max_iter!r}")
    links, method = find_consumers(model, data)

    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        names: dict[str, str] = {}
        for name, module in layers:
            if lsuv:
                names[name] = "lsuv"
            else:
                initializer, names[name] = _choose(links[name], init)
                inits.apply(initializer, module)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        _reset_norms(model)
        if lsuv:
            _lsuv(model, layers, data, tol, max_iter)

    entries = []
    for name, module in layers:
        fan_in, fan_out = inits.module_fans(module)
        act = links[name].activation
        entries.append(
            PlanEntry(
                layer=name,
                type=type(module).__name__,
                activation=act.name if act else None,
                initializer=names[name],
                fan_in=fan_in,
                fan_out=fan_out,
                weight_std=float(module.weight.detach().std()),
            )
        )
    return InitPlan(tuple(entries), method)
