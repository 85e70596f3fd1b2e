"""The activation family, one :class:`ActivationSpec` each, with what initialization it needs.

>>> spec = get("selu")
>>> spec.recommended_init, spec.self_normalizing
('lecun_normal', True)
>>> get(torch.nn.LeakyReLU(0.2)).name
'leaky_relu'
>>> round(get("leaky_relu").gain(negative_slope=0.2), 4)
1.3868

Capped activations (``nn.ReLU6``, ``nn.Hardtanh``, ``nn.Hardsigmoid``, Keras' ``ReLU(max_value=...)``)
are flat beyond their cap: a unit there passes no gradient, exactly like a saturated tanh, so
they are saturating; ``spec.cap(**hp)`` gives the pre-activation interval outside which the
derivative is 0, and :meth:`ActivationSpec.saturated` counts the units there. Below its cap ReLU6
is ReLU (He's initializer, gain sqrt(2) for any cap far above the unit scale), and Hardtanh with
a cap on each side of 0 is the identity near 0, as tanh (Glorot's).

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


class CappedReLU(nn.Hardtanh):
    """ReLU capped at ``max_val``: ``min(max(0, x), max_val)``, ``nn.ReLU6`` for 6 (MobileNet's),
    Keras' ``ReLU(max_value=...)`` for any cap.

    >>> CappedReLU(6.0)(torch.tensor([-1.0, 3.0, 9.0]))
    tensor([0., 3., 6.])
    """

    def __init__(self, max_val: float = 6.0, inplace: bool = False) -> None:
        if not max_val > 0:
            raise ValueError(f"a capped ReLU needs max_val > 0, got {max_val!r}")
        super().__init__(0.0, max_val, inplace)


def _is_capped_relu(obj: Any) -> bool:
    """``nn.ReLU6`` (the class or an instance) or a Hardtanh whose lower cap is 0."""
    if isinstance(obj, type):
        return issubclass(obj, (nn.ReLU6, CappedReLU))
    return isinstance(obj, nn.Hardtanh) and float(obj.min_val) == 0.0 and float(obj.max_val) > 0.0


@dataclass(frozen=True)
class ActivationSpec:
    """One activation: how to build it, how it propagates signal, and how to initialize for it.

    ``relative_derivative`` maps the activation's *output* to ``phi'(x) / max phi'`` for the
    smoothly saturating functions; the doctor calls a unit saturated where this is under 1%.
    ``cap`` maps the hyperparameters to the pre-activation interval ``(lo, hi)`` outside which a
    capped activation is flat (``None`` for a side without a cap; ReLU6's 0 is its ReLU side,
    whose units the doctor counts as dead, not saturated). ``matches`` replaces the type test of
    :func:`find` where the type alone does not decide (a ``Hardtanh`` capped at 0 is a ReLU6).
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
    cap: Callable[[dict[str, Any]], tuple[float | None, float | None]] | None = None
    matches: Callable[[Any], bool] | None = None

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

    def saturates(self) -> bool:
        """Does the doctor count saturated units for this activation (a smooth saturation or a cap)?"""
        return self.relative_derivative is not None or self.cap is not None

    def saturated(self, x: torch.Tensor, *, pre_activation: bool = False, threshold: float = 0.01,
                  **hyperparameters: Any) -> torch.Tensor | None:  # fmt: skip
        """Where units of ``x`` (the activation's output, or with ``pre_activation`` its input) are
        saturated: beyond a cap (the derivative is 0 there), or where ``relative_derivative`` is
        under ``threshold``; ``None`` for an activation that does not saturate.

        >>> get("relu6").saturated(torch.tensor([0.0, 3.0, 6.0])).tolist()
        [False, False, True]
        """
        if self.cap is not None:
            hp = {**self.defaults, **hyperparameters}
            lo, hi = self.cap(hp) if pre_activation else _output_caps(self.name, tuple(sorted(hp.items())))
            flat = torch.zeros_like(x, dtype=torch.bool)
            if lo is not None:
                flat |= x <= lo
            if hi is not None:
                flat |= x >= hi
            return flat
        if self.relative_derivative is None:
            return None
        if pre_activation:
            return x.abs() > self.saturation_bound(threshold)  # type: ignore[operator]
        return self.relative_derivative(x) < threshold

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


@lru_cache(maxsize=32)
def _output_caps(name: str, hyperparameters: tuple[tuple[str, Any], ...]) -> tuple[float | None, float | None]:
    """A capped activation's output values at its caps (6 for ReLU6, 0 and 1 for Hardsigmoid)."""
    spec = REGISTRY[name]
    phi = spec.function(**dict(hyperparameters))
    with torch.no_grad():
        return tuple(None if b is None else float(phi(torch.tensor(b, dtype=torch.float64)))  # type: ignore[return-value]
                     for b in spec.cap(dict(hyperparameters)))  # type: ignore[misc]  # fmt: skip


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
    _spec(name="relu6", module_type=CappedReLU, recommended_init="he_normal", aliases=("capped_relu",),
          defaults={"max_val": 6.0}, saturating=True, can_die=True, functions=(F.relu6,), matches=_is_capped_relu,
          cap=lambda hp: (None, hp["max_val"]),
          description="min(max(0, x), max_val): ReLU capped (6 by default; Keras ReLU(max_value=...)); flat at the cap"),
    _spec(name="hardtanh", module_type=nn.Hardtanh, recommended_init="glorot_uniform", aliases=("hard_tanh",),
          defaults={"min_val": -1.0, "max_val": 1.0}, saturating=True, functions=(F.hardtanh,),
          cap=lambda hp: (hp["min_val"], hp["max_val"]),
          description="x clipped to [min_val, max_val]: piecewise-linear tanh; flat beyond either cap"),
    _spec(name="hardsigmoid", module_type=nn.Hardsigmoid, recommended_init="glorot_uniform", aliases=("hard_sigmoid",),
          saturating=True, functions=(F.hardsigmoid,), cap=lambda hp: (-3.0, 3.0),
          description="relu6(x + 3) / 6: piecewise-linear sigmoid; flat beyond +-3"),
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
            if spec.matches(obj) if spec.matches is not None else issubclass(module_type, spec.module_type):
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
