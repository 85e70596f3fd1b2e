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

from trainability import adapters, schemes
from trainability import init as inits
from trainability._text import collapse, format_rows, span, value_range
from trainability.batches import Batch
from trainability.graph import (
    Method,
    evaluating,
    find_consumers,
    hooked_modules,
    is_norm,
    residual_blocks,
)


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
    scheme: str = "textbook"  # which family's scheme chose it (trainability.schemes)


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


def _explicit(init: Any) -> tuple[Any, str]:
    """An initializer the caller named (a Keras initializer object too), and its display name."""
    initializer = inits.get(adapters.keras_initializer(init))
    return initializer, inits.name_of(initializer)


def _fill(weight: adapters.Weight, initializer: Any, factor: float = 1.0) -> None:
    """Draw ``weight`` with ``initializer``, one gate block at a time, with the weight's fans."""
    with torch.no_grad():
        for block in weight.blocks():
            if isinstance(initializer, inits.Initializer):
                initializer(block, fans=weight.fans)
            else:
                initializer(block)
            if factor != 1.0:
                block.mul_(factor)


def _zero_biases(module: nn.Module) -> None:
    with torch.no_grad():
        for p in adapters.biases(module):
            p.zero_()


def _forget_gate_bias(module: nn.Module, value: float = 1.0) -> None:
    """Set the LSTM forget-gate bias: in PyTorch's ``bias_ih`` (``bias_hh``'s stays 0, so their
    sum is ``value``), in a Keras LSTM's one bias (as its ``unit_forget_bias=True`` does)."""
    with torch.no_grad():
        for view in adapters.forget_gate_bias(module):
            view.fill_(value)


def chrono_bias_(module: nn.Module, steps: int, *, generator: torch.Generator | None = None) -> None:
    """Chrono initialization (Tallec & Ollivier, "Can recurrent neural networks warp time?", ICLR
    2018) of an ``nn.LSTM`` or ``nn.GRU``, in place, for dependencies up to ``steps`` time steps.

    LSTM: the forget-gate bias ``b_f ~ log U(1, steps - 1)`` and the input-gate bias ``b_i =
    -b_f``, so unit ``j`` forgets on a time scale ``u_j`` drawn uniformly up to the sequence's
    length (a forget-gate bias of 1 keeps a memory for about 1.4 steps: ``sigmoid(1)^t`` halves
    every 2.2 steps). GRU: the same draw for the update gate ``z`` (PyTorch's ``h' = (1 - z) n +
    z h``: ``z`` keeps the memory, as the LSTM's forget gate). The draw goes into ``bias_ih`` (one
    per layer and direction, in parameter order); the matching ``bias_hh`` blocks become 0.

    >>> import torch
    >>> lstm = torch.nn.LSTM(3, 8)
    >>> chrono_bias_(lstm, 60, generator=torch.Generator().manual_seed(0))
    >>> bool((lstm.bias_ih_l0[8:16] >= 0).all() and (lstm.bias_ih_l0[8:16] <= 4.08).all())
    True
    """
    if not isinstance(module, (nn.LSTM, nn.GRU)):
        raise ValueError(f"chrono initialization applies to nn.LSTM and nn.GRU, not {type(module).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3:
        raise ValueError(f"steps must be an int of at least 3 (the longest dependency, in time steps), got {steps!r}")
    gates = 4 if isinstance(module, nn.LSTM) else 3
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.startswith(("bias_ih", "bias_hh")):
                continue
            h = p.shape[0] // gates
            if name.startswith("bias_hh"):
                p[h : 2 * h] = 0.0
                if gates == 4:
                    p[:h] = 0.0
                continue
            keep = torch.empty(h).uniform_(1.0, steps - 1.0, generator=generator).log_()
            p[h : 2 * h] = keep
            if gates == 4:
                p[:h] = -keep


def _reset_norms(model: nn.Module, zero: list[str]) -> None:
    for name, module in adapters.named_modules(model):
        weight, bias = adapters.norm_affine(module) if is_norm(module) else (None, None)
        if weight is not None:
            with torch.no_grad():
                weight.fill_(0.0 if name in zero else 1.0)
                if bias is not None:
                    bias.zero_()


def _lsuv(model: nn.Module, weights: list[adapters.Weight], batch: Batch, tol: float, max_iter: int) -> None:
    """Layer-sequential unit variance (Mishkin & Matas 2016): orthonormal weights, then scale each
    layer, first to last, until the variance of its output on ``data`` is within ``tol`` of 1."""
    outputs = {n: m for n, m, _ in hooked_modules(model)}  # a Keras layer's pre-activation, if fused
    with evaluating(model):
        for w in weights:
            _fill(w, inits.Orthogonal())
        captured: list[torch.Tensor] = []
        for w in weights:
            handle = outputs.get(w.module_name, w.module).register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
            try:
                for _ in range(max_iter):
                    captured.clear()
                    with torch.no_grad():
                        batch(model)
                    var = float(captured[0].var())
                    if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                        break
                    with torch.no_grad():
                        w.tensor.div_(var**0.5)
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
    """Initialize every weight of the model for the architecture and the activation that follows.

    ``init="auto"`` picks a documented scheme per architecture family
    (:mod:`trainability.schemes`): the textbook's pairing for plain stacks (Glorot before
    none/tanh/sigmoid/softmax, He before the ReLU family, LeCun before SELU;
    :func:`trainability.recommended_init`); for residual networks with LayerNorm the transformer
    init N(0, 0.02) with GPT-2's 1/sqrt(branches) on pre-norm branch outputs; for residual
    networks with BatchNorm the table plus zero-gamma; for residual networks without
    normalization Fixup; for recurrent layers orthogonal hidden-hidden weights and an LSTM
    forget-gate bias of 1. Residual blocks are found on one forward pass (on ``data`` if given,
    else on a batch shaped for the model). The plan names the scheme per weight.

    ``init`` may also be one initializer (name, object or callable) for every weight, or a dict
    from module or weight name to initializer (others get ``"auto"``). ``init="lsuv"`` needs
    ``data=`` and runs LSUV on the Linear/Conv layers: orthonormal weights, then each layer
    rescaled until its output variance on the batch is within ``tol`` of 1, at most ``max_iter``
    times (other weights get ``"auto"``). ``data`` is a batch as :func:`trainability.diagnose`
    takes it: a tensor, a tuple, or a dict of keyword arguments.

    Biases become 0 (but the LSTM forget gate's, under ``auto``) and normalization layers
    weight 1, bias 0. ``seed`` makes the draw repeatable without touching the global RNG.

    A Keras 3 model (PyTorch backend) is initialized through its own variables, by its layers'
    Keras names; ``init`` may also be a Keras initializer object (``VarianceScaling(...)``). A
    Keras model that has never run is built on ``data``.
    """
    if data is not None:
        batch = Batch.of(data)
        adapters.build(model, batch.args, batch.kwargs)
    found = adapters.weight_modules(model)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no weight layers to initialize (Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, Embedding, "
            "MultiheadAttention, RNN/LSTM/GRU, x @ W layers)"
        )
    all_weights = [w for _, _, ws in found for w in ws]
    if isinstance(init, Mapping):
        known = {n for n, _, _ in found} | {w.name for w in all_weights}
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
    explicit = None if isinstance(init, Mapping) or (isinstance(init, str) and init.lower() in ("auto", "lsuv")) else _explicit(init)
    batch = Batch.of(data) if data is not None else None
    links, method = find_consumers(model, batch)
    blocks, _ = residual_blocks(model, batch)
    structure = schemes.analyse(blocks)

    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        chosen: dict[str, tuple[str, str]] = {}
        lsuv_weights = []
        for name, module, weights in found:
            for w in weights:
                given = init.get(w.name, init.get(name, "auto")) if isinstance(init, Mapping) else None
                if explicit is not None or (given is not None and given != "auto"):
                    initializer, display = explicit if explicit is not None else _explicit(given)
                    _fill(w, initializer)
                    chosen[w.name] = (display, "given")
                    continue
                choice = schemes.choose(w, links.get(name), structure)
                _fill(w, choice.initializer, choice.factor)
                chosen[w.name] = (choice.name, choice.scheme)
                if lsuv and len(weights) == 1 and w.role in ("dense", "conv"):
                    lsuv_weights.append(w)
                    chosen[w.name] = ("lsuv", "lsuv")
            _zero_biases(module)
            if explicit is None:
                _forget_gate_bias(module)
        zero = structure.zero_gamma if explicit is None else []
        _reset_norms(model, zero)
        if lsuv:
            _lsuv(model, lsuv_weights, batch, tol, max_iter)  # type: ignore[arg-type]

    entries = []
    for name, module, weights in found:
        act = links[name].activation if name in links and len(weights) == 1 else None
        for w in weights:
            display, scheme = chosen[w.name]
            if w.role == "recurrent_input" and explicit is None and adapters.forget_gate_bias(module):
                scheme = "recurrent, forget bias 1"
            entries.append(PlanEntry(
                layer=w.name, type=type(module).__name__, activation=act.name if act else None, initializer=display,
                fan_in=w.fans[0], fan_out=w.fans[1], weight_std=float(w.tensor.detach().float().std()), scheme=scheme,
            ))  # fmt: skip
    modules = dict(model.named_modules())
    for name in zero:
        entries.append(PlanEntry(layer=name, type=type(modules[name]).__name__, activation=None, initializer="zeros",
                                 fan_in=0, fan_out=0, weight_std=0.0, scheme="zero_gamma"))  # fmt: skip
    return InitPlan(tuple(entries), method)
