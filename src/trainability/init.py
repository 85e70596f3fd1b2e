"""Weight initializers by their usual (Keras) names, on PyTorch weight layouts.

One parametric core, :class:`VarianceScaling`, draws weights with variance ``scale / n`` where
``n`` is the layer's fan-in, fan-out or their average; the Glorot, He and LeCun presets are thin
wrappers that fix its three arguments (Glorot & Bengio 2010, He et al. 2015, LeCun et al. 1998):

================  =====  =======  ================
name              scale  mode     distribution
================  =====  =======  ================
glorot_uniform    1      fan_avg  uniform
glorot_normal     1      fan_avg  truncated_normal
he_uniform        2      fan_in   uniform
he_normal         2      fan_in   truncated_normal
lecun_uniform     1      fan_in   uniform
lecun_normal      1      fan_in   truncated_normal
================  =====  =======  ================

An initializer called on a tensor fills it in place, without autograd, and returns it:

>>> import torch
>>> w = torch.empty(256, 512)
>>> _ = get("he_normal")(w)
>>> round(w.var().item() * 512, 1)
2.0

PyTorch stores a Linear weight as ``(out, in)`` and a ConvNd weight as ``(out, in/groups,
*kernel)``; transposed convolutions store ``(in, out/groups, *kernel)``. :func:`compute_fans`
handles all three; :func:`module_fans` reads the layout off a module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

Mode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["truncated_normal", "untruncated_normal", "uniform", "normal"]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")

#: Standard deviation of a standard normal truncated to [-2, 2]; truncated draws are divided by
#: it so that their standard deviation is the one asked for (as Keras does).
TRUNCATED_STD = 0.87962566103423978

TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *TRANSPOSED_TYPES)


def compute_fans(
    shape: torch.Tensor | torch.Size | tuple[int, ...], *, transposed: bool = False, groups: int = 1
) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` for a PyTorch weight of this shape.

    ``fan_in = shape[1] * receptive`` and ``fan_out = shape[0] / groups * receptive`` for Linear and
    ConvNd weights, ``receptive = prod(shape[2:])``. With ``transposed=True`` (ConvTransposeNd,
    stored ``(in, out/groups, *kernel)``) the roles of the first two dimensions swap. ``groups``
    divides the fan of the dimension that holds all channels, so that each fan counts the
    connections one unit really has.
    """
    shape = tuple(shape.shape) if isinstance(shape, torch.Tensor) else tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"fan-based initializers need a weight with at least 2 dimensions, got shape "
            f"{shape}; initialize biases and 1-d parameters with zeros, ones or constant"
        )
    receptive = math.prod(shape[2:])
    if transposed:  # (in, out/groups, *kernel)
        return shape[0] * receptive // groups, shape[1] * receptive
    return shape[1] * receptive, shape[0] * receptive // groups


def module_fans(module: nn.Module) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Linear, ConvNd or ConvTransposeNd module's weight."""
    if not isinstance(module, WEIGHT_LAYER_TYPES):
        raise ValueError(
            f"module_fans needs a Linear, ConvNd or ConvTransposeNd module, got {type(module).__name__}"
        )
    return compute_fans(
        module.weight.shape,
        transposed=isinstance(module, TRANSPOSED_TYPES),
        groups=getattr(module, "groups", 1),
    )


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(seed)


def _fill(tensor: torch.Tensor, seed: int | None, draw: Callable[[torch.Tensor, Any], None]) -> torch.Tensor:
    """Fill ``tensor`` in place with ``draw(buffer, generator)``; a seed draws on the CPU."""
    with torch.no_grad():
        if seed is None:
            draw(tensor, None)
        else:
            buffer = torch.empty(tensor.shape, dtype=torch.float32)
            draw(buffer, _generator(seed))
            tensor.copy_(buffer)
    return tensor


class Initializer:
    """Base class: ``init(tensor)`` fills ``tensor`` in place and returns it."""

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)

    @property
    def name(self) -> str:
        return _snake(type(self).__name__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


def _check_seed(seed: int | None) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")


class VarianceScaling(Initializer):
    """Draw weights with variance ``scale / n``, ``n = max(1, fan_in | fan_out | fan_avg)``.

    ``truncated_normal`` (also spelled ``normal``) draws N(0, s) cut at +-2s with
    ``s = sqrt(scale / n) / 0.87962566103423978``, so the result's std is ``sqrt(scale / n)``;
    ``untruncated_normal`` draws N(0, sqrt(scale / n)); ``uniform`` draws U(-l, l) with
    ``l = sqrt(3 * scale / n)``.

    >>> init = VarianceScaling(scale=2.0, mode="fan_avg", distribution="uniform")
    >>> w = init(torch.empty(100, 300))
    >>> bool(w.abs().max() <= (3 * 2.0 / 200) ** 0.5)
    True
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: Mode = "fan_in",
        distribution: Distribution = "truncated_normal",
        seed: int | None = None,
    ) -> None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {distribution!r}; valid distributions: {', '.join(DISTRIBUTIONS)}"
            )
        _check_seed(seed)
        self.scale = float(scale)
        self.mode = mode
        self.distribution: Distribution = "truncated_normal" if distribution == "normal" else distribution
        self.seed = seed

    def variance(self, fan_in: int, fan_out: int) -> float:
        """The target variance ``scale / n`` for these fans."""
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return self.scale / max(1.0, n)

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        std = math.sqrt(self.variance(*(fans or compute_fans(tensor.shape))))
        if self.distribution == "uniform":
            limit = math.sqrt(3.0) * std
            return _fill(tensor, self.seed, lambda t, g: t.uniform_(-limit, limit, generator=g))
        if self.distribution == "untruncated_normal":
            return _fill(tensor, self.seed, lambda t, g: t.normal_(0.0, std, generator=g))
        s = std / TRUNCATED_STD
        return _fill(
            tensor, self.seed, lambda t, g: nn.init.trunc_normal_(t, 0.0, s, -2 * s, 2 * s, generator=g)
        )

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _Preset(VarianceScaling):
    """A VarianceScaling with its three arguments fixed; only the seed is free."""

    _args: tuple[float, Mode, Distribution]

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(*self._args, seed=seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    """Glorot (Xavier) uniform: variance 1 / fan_avg. Keras' default for Dense and Conv."""

    _args = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """Glorot (Xavier) normal: variance 1 / fan_avg, truncated at two standard deviations."""

    _args = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """He (Kaiming) uniform: variance 2 / fan_in, for ReLU and its variants."""

    _args = (2.0, "fan_in", "uniform")


class HeNormal(_Preset):
    """He (Kaiming) normal: variance 2 / fan_in, truncated at two standard deviations."""

    _args = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """LeCun uniform: variance 1 / fan_in."""

    _args = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """LeCun normal: variance 1 / fan_in, truncated; what SELU needs to self-normalize."""

    _args = (1.0, "fan_in", "truncated_normal")


class PytorchDefault(_Preset):
    """PyTorch's own default for Linear/Conv: ``kaiming_uniform_(w, a=sqrt(5))``.

    That is U(+-1/sqrt(fan_in)), variance 1 / (3 fan_in): neither He nor Glorot.
    """

    _args = (1.0 / 3.0, "fan_in", "uniform")


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014), on the weight flattened to
    ``(shape[0], prod(shape[1:]))``."""

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
            raise ValueError(f"gain must be a positive number, got {gain!r}")
        _check_seed(seed)
        self.gain = float(gain)
        self.seed = seed

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        if tensor.dim() < 2:
            raise ValueError(f"orthogonal needs a weight with at least 2 dimensions, got shape {tuple(tensor.shape)}")

        def draw(t: torch.Tensor, g: torch.Generator | None) -> None:
            rows, cols = t.shape[0], t.numel() // t.shape[0]
            flat = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float32)
            q, r = torch.linalg.qr(flat.to(t.device))
            q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
            if rows < cols:
                q = q.T
            t.copy_(q.reshape(t.shape) * self.gain)

        return _fill(tensor, self.seed, draw)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": self.seed}


class Constant(Initializer):
    """Fill with ``value``."""

    def __init__(self, value: float = 0.0) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"value must be a number, got {value!r}")
        self.value = float(value)

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        with torch.no_grad():
            return tensor.fill_(self.value)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class Zeros(Constant):
    """Fill with 0."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def get_config(self) -> dict[str, Any]:
        return {}


class Ones(Constant):
    """Fill with 1."""

    def __init__(self) -> None:
        super().__init__(1.0)

    def get_config(self) -> dict[str, Any]:
        return {}


def _check_stddev(stddev: float) -> None:
    if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or not stddev > 0:
        raise ValueError(f"stddev must be a positive number, got {stddev!r}")


class RandomNormal(Initializer):
    """N(mean, stddev), Keras' defaults (0, 0.05)."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        _check_stddev(stddev)
        _check_seed(seed)
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        return _fill(tensor, self.seed, lambda t, g: t.normal_(self.mean, self.stddev, generator=g))

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    """N(mean, stddev) with draws beyond two stddevs redrawn (Keras: no std correction)."""

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        lo, hi = self.mean - 2 * self.stddev, self.mean + 2 * self.stddev
        return _fill(
            tensor, self.seed, lambda t, g: nn.init.trunc_normal_(t, self.mean, self.stddev, lo, hi, generator=g)
        )


class RandomUniform(Initializer):
    """U(minval, maxval), Keras' defaults (-0.05, 0.05)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        if not minval < maxval:
            raise ValueError(f"minval must be below maxval, got minval={minval!r}, maxval={maxval!r}")
        _check_seed(seed)
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed

    def __call__(self, tensor: torch.Tensor, *, fans: tuple[int, int] | None = None) -> torch.Tensor:
        return _fill(tensor, self.seed, lambda t, g: t.uniform_(self.minval, self.maxval, generator=g))

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_CLASSES: tuple[type[Initializer], ...] = (
    VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal,
    PytorchDefault, Orthogonal, Constant, Zeros, Ones, RandomNormal, RandomUniform, TruncatedNormal,
)  # fmt: skip

#: Every initializer by its snake_case name, with the PyTorch spellings as aliases.
REGISTRY: dict[str, type[Initializer]] = {_snake(cls.__name__): cls for cls in _CLASSES}
ALIASES: dict[str, str] = {
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
    "default": "pytorch_default",
    "normal": "random_normal",
    "uniform": "random_uniform",
}


def names() -> list[str]:
    """All registered initializer names (aliases excluded)."""
    return sorted(REGISTRY)


def _lookup(name: str) -> type[Initializer]:
    key = name.strip()
    key = _snake(key) if any(c.isupper() for c in key) else key.lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ValueError(
            f"unknown initializer {name!r}; valid names: {', '.join(names())} "
            f"(aliases: {', '.join(sorted(ALIASES))})"
        )
    return REGISTRY[key]


InitializerLike = str | dict | Initializer | Callable[..., Any]


def get(identifier: InitializerLike) -> Initializer | Callable[..., Any]:
    """Resolve a name (snake_case or CamelCase), an initializer, a config dict or a callable.

    Config dicts are ``{"class_name": "HeNormal", "config": {"seed": 1}}`` (what
    :func:`serialize` writes). Callables, e.g. ``torch.nn.init.orthogonal_``, pass through.

    >>> get("HeNormal")
    HeNormal(seed=None)
    >>> get({"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_avg"}}).mode
    'fan_avg'
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(
                f"Could not interpret initializer config {identifier!r}: expected "
                "{'class_name': NAME, 'config': {...}}"
            )
        return _lookup(identifier["class_name"]).from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret initializer identifier: {identifier!r}; pass a name such as "
        f"'he_normal', an Initializer, a config dict or a callable"
    )


def serialize(initializer: Initializer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``, the inverse of :func:`get` on a dict."""
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def name_of(initializer: Initializer | Callable[..., Any]) -> str:
    """A short display name: the registry name, or the callable's ``__name__``."""
    if isinstance(initializer, Initializer):
        try:
            default = type(initializer)().get_config()
        except TypeError:  # no defaults for every argument
            default = None
        return initializer.name if initializer.get_config() == default else repr(initializer)
    return getattr(initializer, "__name__", repr(initializer))


def apply(initializer: Initializer | Callable[..., Any], module: nn.Module) -> torch.Tensor:
    """Initialize a weight layer's weight with the fans of its real layout (transposed, grouped)."""
    if isinstance(initializer, Initializer):
        return initializer(module.weight, fans=module_fans(module))
    with torch.no_grad():
        result = initializer(module.weight)
    return result if isinstance(result, torch.Tensor) else module.weight
