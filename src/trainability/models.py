"""The textbook's deep MLP, and models named on the command line.

>>> model = mlp(64, 10, depth=2, width=16, activation="selu", dropout=0.1)
>>> [type(m).__name__ for m in model]
['Linear', 'SELU', 'AlphaDropout', 'Linear', 'SELU', 'AlphaDropout', 'Linear']
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Literal

from torch import nn

from trainability import activations
from trainability.initialization import initialize

BatchNorm = Literal["before", "after"] | None


def mlp(
    in_features: int,
    out_features: int,
    *,
    depth: int,
    width: int,
    activation: str | nn.Module = "relu",
    init: Any = "auto",
    batch_norm: BatchNorm = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear output layer.

    Each hidden layer is Linear, activation, then dropout when ``dropout > 0`` (AlphaDropout for
    SELU, which ordinary dropout would de-normalize). ``batch_norm="before"`` puts BatchNorm1d
    between a bias-free Linear and the activation, as the textbook recommends; ``"after"`` puts it
    after the activation. ``activation`` is a registered name or a module instance (copied per
    layer). ``init`` goes to :func:`trainability.initialize`; ``init="default"`` keeps PyTorch's
    default initialization.
    """
    for name, value in (("in_features", in_features), ("out_features", out_features),
                        ("depth", depth), ("width", width)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if batch_norm not in (None, "before", "after"):
        raise ValueError(f"batch_norm must be None, 'before' or 'after', got {batch_norm!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    spec = activations.get(activation)

    def act() -> nn.Module:
        return copy.deepcopy(activation) if isinstance(activation, nn.Module) else spec.module()

    layers: list[nn.Module] = []
    fan_in = in_features
    for _ in range(depth):
        layers.append(nn.Linear(fan_in, width, bias=batch_norm != "before"))
        if batch_norm == "before":
            layers.append(nn.BatchNorm1d(width))
        layers.append(act())
        if batch_norm == "after":
            layers.append(nn.BatchNorm1d(width))
        if dropout > 0:
            layers.append(activations.AlphaDropout(dropout) if spec.self_normalizing else nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, out_features))
    model = nn.Sequential(*layers)
    if not (isinstance(init, str) and init == "default"):
        initialize(model, init=init)
    return model


BUILTINS = {"mlp": mlp}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as relu


def parse_kwargs(text: str) -> dict[str, Any]:
    """``"depth=50,activation=relu"`` -> ``{"depth": 50, "activation": "relu"}``."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"expected key=value, got {part!r}")
        out[key.strip()] = _literal(value.strip())
    return out


def from_spec(spec: str, *, in_features: int | None = None, out_features: int | None = None) -> nn.Module:
    """Build a model from a command-line spec.

    ``mlp:depth=100,width=100,activation=relu,init=default`` builds :func:`mlp` (``in_features``
    and ``out_features`` default to the data's); ``path/to/file.py:factory`` or
    ``file.py:factory(depth=50)`` calls a function in a file that returns an ``nn.Module``.
    """
    head, sep, rest = spec.partition(":")
    if head in BUILTINS:
        kwargs = parse_kwargs(rest)
        kwargs.setdefault("in_features", in_features)
        kwargs.setdefault("out_features", out_features)
        for key in ("depth", "width"):
            kwargs.setdefault(key, {"depth": 10, "width": 100}[key])
        missing = [k for k in ("in_features", "out_features") if kwargs[k] is None]
        if missing:
            raise ValueError(f"{head} needs {' and '.join(missing)}: add them to the spec, e.g. {head}:in_features=64,out_features=10")
        in_f, out_f = kwargs.pop("in_features"), kwargs.pop("out_features")
        try:
            return BUILTINS[head](in_f, out_f, **kwargs)
        except TypeError as exc:
            raise ValueError(f"bad arguments in {spec!r}: {exc}") from exc
    match = re.fullmatch(r"(?P<path>.+?\.py):(?P<fn>[A-Za-z_]\w*)(?:\((?P<args>.*)\))?", spec)
    if not sep or match is None:
        raise ValueError(
            f"cannot read model spec {spec!r}: expected path/to/file.py:factory, "
            f"file.py:factory(depth=50) or a built-in ({', '.join(BUILTINS)}), e.g. mlp:depth=50,activation=relu"
        )
    path = Path(match["path"])
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    user = _user_module(path)
    factory = getattr(user, match["fn"], None)
    if not callable(factory):
        raise ValueError(f"{path} has no function {match['fn']!r}")
    try:
        model = factory(**parse_kwargs(match["args"] or ""))
    except TypeError as exc:
        raise ValueError(f"calling {match['fn']}: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"{match['fn']}() in {path} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"{match['fn']} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _user_module(path: Path, *, fresh: bool = True) -> Any:
    """Import a user's model file (afresh, or the copy already imported when ``fresh=False``); a
    failing import is a ``ValueError`` naming the file."""
    module_name = f"_trainability_user_{abs(hash(path.resolve()))}"
    if not fresh and module_name in sys.modules:
        return sys.modules[module_name]
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise ValueError(f"cannot import {path} as a Python module")
    user = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = user
    try:
        loader.loader.exec_module(user)
    except Exception as exc:
        del sys.modules[module_name]
        raise ValueError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return user


def spec_example_batch(spec: str) -> Any:
    """What ``example_batch()`` in a model spec's file returns (a tensor, a tuple, a dict of
    keyword arguments, or an ``[inputs, targets]`` pair), or ``None`` when the file defines none
    (or the spec is a built-in)."""
    match = re.fullmatch(r"(?P<path>.+?\.py):(?P<fn>[A-Za-z_]\w*)(?:\((?P<args>.*)\))?", spec)
    if match is None or not Path(match["path"]).is_file():
        return None
    make = getattr(_user_module(Path(match["path"]), fresh=False), "example_batch", None)
    if make is None:
        return None
    if not callable(make):
        raise ValueError(f"{match['path']}: example_batch must be a function returning the model's inputs")
    try:
        return make()
    except Exception as exc:
        raise ValueError(f"{match['path']}: example_batch() failed: {type(exc).__name__}: {exc}") from exc
