"""The activation family, one :class:`ActivationSpec` each, with what initialization it needs.

>>> spec = get("selu")
>>> spec.recommended_init, spec.self_normalizing
('lecun_normal', True)
>>> get(torch.nn.LeakyReLU(0.2)).name
'leaky_relu'
>>> round(get("leaky_relu").gain(negative_slope=0.2), 4)
1.3868

Gains follow ``torch.nn.init.calculate_gain`` wherever it defines one (identity, sigmoid, tanh,
relu, leaky_relu, selu; softmax is treated as linear). Elsewhere the rule is the second moment
under a standard normal input, ``gain = 1 / sqrt(E[phi(z)^2])``, z ~ N(0, 1), computed by
Gauss-Hermite quadrature; it gives sqrt(2) for ReLU and sqrt(2 / (1 + a^2)) for leaky ReLU, so
the two rules agree where both apply. ``spec.gain_rule`` says which rule a spec uses. SELU's
torch gain, 3/4, is an empirical choice that gives up self-normalization; SELU networks need
LeCun normal weights (variance 1/fan_in), which :func:`trainability.initialize` applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from trainability import _quadrature

#: Dropout for self-normalizing (SELU) networks: dropped units are set to
#: ``-scale * alpha = -1.7580993408473766``, then an affine map restores mean 0 and variance 1.
AlphaDropout = nn.AlphaDropout

Recommended = Literal["glorot_uniform", "he_normal", "lecun_normal"]


def _relative_derivative_sigmoid(y: torch.Tensor) -> torch.Tensor:
    return 4.0 * y * (1.0 - y)


def _relative_derivative_tanh(y: torch.Tensor) -> torch.Tensor:
    return 1.0 - y * y


def _relative_derivative_softsign(y: torch.Tensor) -> torch.Tensor:
    return (1.0 - y.abs()) ** 2


def _leaky_gain(slope: float) -> float:
    return math.sqrt(2.0 / (1.0 + slope**2))


@dataclass(frozen=True)
class ActivationSpec:
    """One activation: how to build it, how it propagates signal, and how to initialize for it.

    ``relative_derivative`` maps the activation's *output* to ``phi'(x) / max phi'`` for the
    saturating functions; the doctor calls a unit saturated where this is under 1%.
    """

    name: str
    module_type: type[nn.Module]
    recommended_init: Recommended
    aliases: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    saturating: bool = False
    self_normalizing: bool = False
    can_die: bool = False
    gain_rule: Literal["torch", "second_moment"] = "second_moment"
    functions: tuple[Callable[..., Any], ...] = ()
    methods: tuple[str, ...] = ()
    relative_derivative: Callable[[torch.Tensor], torch.Tensor] | None = None
    torch_gain: Callable[[dict[str, Any]], float] | None = None
    description: str = ""

    def module(self, **hyperparameters: Any) -> nn.Module:
        """A fresh torch module, e.g. ``get("leaky_relu").module(negative_slope=0.2)``."""
        unknown = set(hyperparameters) - set(self.defaults)
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"{self.name} takes no hyperparameter {', '.join(sorted(unknown))}; valid: {valid}"
            )
        return self.module_type(**{**self.defaults, **hyperparameters})

    def function(self, **hyperparameters: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """The elementwise function in float64, deterministic (RReLU at its eval slope)."""
        return self.module(**hyperparameters).double().eval()

    def gain(self, **hyperparameters: Any) -> float:
        """The gain that keeps a layer's output second moment; see the module docstring."""
        hp = {**self.defaults, **hyperparameters}
        if self.torch_gain is not None:
            return self.torch_gain(hp)
        phi = self.function(**hyperparameters)
        with torch.no_grad():
            return 1.0 / math.sqrt(_quadrature.expect(lambda z: phi(z) ** 2))

    def saturation_bound(self, threshold: float = 0.01) -> float | None:
        """The input magnitude beyond which ``relative_derivative`` falls under ``threshold``
        (sigmoid 5.99, tanh 2.99, softsign 9 at 1%), found by bisection; ``None`` if the
        activation does not saturate."""
        return _saturation_bound(self.name, threshold) if self.relative_derivative is not None else None

    def hyperparameters_of(self, module: nn.Module) -> dict[str, Any]:
        """Read this activation's hyperparameters off a module instance."""
        if isinstance(module, nn.PReLU):
            return {"num_parameters": module.num_parameters, "init": float(module.weight.detach().mean())}
        return {k: getattr(module, k) for k in self.defaults if hasattr(module, k)}


@lru_cache(maxsize=32)
def _saturation_bound(name: str, threshold: float) -> float:
    spec = REGISTRY[name]
    phi, relative = spec.function(), spec.relative_derivative
    lo, hi = 0.0, 1e3
    with torch.no_grad():
        for _ in range(100):
            mid = (lo + hi) / 2
            if float(relative(phi(torch.tensor(mid, dtype=torch.float64)))) < threshold:  # type: ignore[misc]
                hi = mid
            else:
                lo = mid
    return hi


def _spec(**kwargs: Any) -> ActivationSpec:
    return ActivationSpec(**kwargs)


_SPECS = (
    _spec(name="identity", module_type=nn.Identity, recommended_init="glorot_uniform", aliases=("linear", "none"),
          gain_rule="torch", torch_gain=lambda hp: 1.0, description="no activation"),
    _spec(name="sigmoid", module_type=nn.Sigmoid, recommended_init="glorot_uniform", aliases=("logistic",),
          saturating=True, gain_rule="torch", torch_gain=lambda hp: 1.0,
          functions=(torch.sigmoid, F.sigmoid), methods=("sigmoid", "sigmoid_"),
          relative_derivative=_relative_derivative_sigmoid, description="logistic sigmoid; saturates at 0 and 1"),
    _spec(name="tanh", module_type=nn.Tanh, recommended_init="glorot_uniform", saturating=True,
          gain_rule="torch", torch_gain=lambda hp: 5.0 / 3.0, functions=(torch.tanh, F.tanh),
          methods=("tanh", "tanh_"), relative_derivative=_relative_derivative_tanh,
          description="hyperbolic tangent; saturates at -1 and 1"),
    _spec(name="softmax", module_type=nn.Softmax, recommended_init="glorot_uniform", defaults={"dim": -1},
          saturating=True, gain_rule="torch", torch_gain=lambda hp: 1.0,
          functions=(F.softmax, torch.softmax), methods=("softmax",),
          description="normalized exponential over `dim`; an output activation"),
    _spec(name="softsign", module_type=nn.Softsign, recommended_init="glorot_uniform", saturating=True,
          functions=(F.softsign,), relative_derivative=_relative_derivative_softsign,
          description="x / (1 + |x|); saturates polynomially"),
    _spec(name="relu", module_type=nn.ReLU, recommended_init="he_normal", can_die=True,
          gain_rule="torch", torch_gain=lambda hp: math.sqrt(2.0), functions=(F.relu, torch.relu, F.relu_, torch.relu_),
          methods=("relu", "relu_"), description="max(0, x); units can die"),
    _spec(name="leaky_relu", module_type=nn.LeakyReLU, recommended_init="he_normal", defaults={"negative_slope": 0.01},
          gain_rule="torch", torch_gain=lambda hp: _leaky_gain(hp["negative_slope"]), functions=(F.leaky_relu,),
          description="slope `negative_slope` below 0 (0.01 typical, 0.2 often better)"),
    _spec(name="rrelu", module_type=nn.RReLU, recommended_init="he_normal", defaults={"lower": 1 / 8, "upper": 1 / 3},
          torch_gain=lambda hp: _leaky_gain((hp["lower"] + hp["upper"]) / 2), functions=(F.rrelu,),
          description="randomized leaky ReLU: slope ~ U(lower, upper) in training, their mean in eval"),
    _spec(name="prelu", module_type=nn.PReLU, recommended_init="he_normal", defaults={"num_parameters": 1, "init": 0.25},
          torch_gain=lambda hp: _leaky_gain(hp["init"]), functions=(F.prelu,),
          description="parametric leaky ReLU: the slope is learned"),
    _spec(name="elu", module_type=nn.ELU, recommended_init="he_normal", defaults={"alpha": 1.0}, functions=(F.elu,),
          description="alpha * (exp(x) - 1) below 0; smooth at 0 when alpha = 1"),
    _spec(name="selu", module_type=nn.SELU, recommended_init="lecun_normal", self_normalizing=True,
          gain_rule="torch", torch_gain=lambda hp: 0.75, functions=(F.selu, torch.selu),
          description="scaled ELU; self-normalizes in dense sequential stacks with LeCun normal weights"),
    _spec(name="gelu", module_type=nn.GELU, recommended_init="he_normal", defaults={"approximate": "none"},
          functions=(F.gelu,), description="x * Phi(x)"),
    _spec(name="silu", module_type=nn.SiLU, recommended_init="he_normal", aliases=("swish",), functions=(F.silu,),
          description="x * sigmoid(x)"),
    _spec(name="mish", module_type=nn.Mish, recommended_init="he_normal", functions=(F.mish,),
          description="x * tanh(softplus(x))"),
)  # fmt: skip

#: Every activation by name; aliases map to the same spec.
REGISTRY: dict[str, ActivationSpec] = {spec.name: spec for spec in _SPECS}
ALIASES: dict[str, str] = {alias: spec.name for spec in _SPECS for alias in spec.aliases}


def names() -> list[str]:
    """All registered activation names (aliases excluded), in the registry's order."""
    return list(REGISTRY)


def _normalized(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


_BY_NORMALIZED = {_normalized(n): REGISTRY[ALIASES.get(n, n)] for n in (*REGISTRY, *ALIASES)}


def find(obj: Any) -> ActivationSpec | None:
    """The spec for a name, module instance or class, or function; ``None`` when unknown."""
    if isinstance(obj, ActivationSpec):
        return obj
    if isinstance(obj, str):
        return _BY_NORMALIZED.get(_normalized(obj))
    module_type = obj if isinstance(obj, type) else type(obj) if isinstance(obj, nn.Module) else None
    if module_type is not None:
        for spec in _SPECS:
            if issubclass(module_type, spec.module_type):
                return spec
        return None
    for spec in _SPECS:
        if any(obj is f for f in spec.functions):
            return spec
    return None


def find_method(method_name: str) -> ActivationSpec | None:
    """The spec for a tensor method name such as ``"relu"`` (``x.relu()``)."""
    return next((s for s in _SPECS if method_name in s.methods), None)


def get(identifier: str | nn.Module | type | ActivationSpec | Callable[..., Any]) -> ActivationSpec:
    """Find the spec for a name (any case, aliases too), a torch activation module or class, or a
    torch function such as ``torch.relu``; raise ``ValueError`` naming the valid names otherwise."""
    spec = find(identifier)
    if spec is None:
        shown = identifier if isinstance(identifier, str) else type(identifier).__name__
        raise ValueError(
            f"unknown activation {shown!r}; valid names: {', '.join(names())} "
            f"(aliases: {', '.join(sorted(ALIASES))})"
        )
    return spec
