"""Mean-field theory's verdict on how deep a plain dense stack can be, at its own depth.

The stack's trajectory is predicted layer by layer (:func:`trainability.theory.propagate`) from
what was measured: each layer's weight variance (``sigma_w^2 = fan_in * Var(W)``) and bias second
moment, and the input's second moment as the first layer sees it
(``E[x^2] = (E[h_1^2] - sigma_b,1^2) / sigma_w,1^2``). The finding says what is predicted at this
depth: the signal variance at the last hidden layer, the gradient reaching the first layer
relative to the top (output) layer, as the gradient rules measure it, and the depth at which
that gain passes 100x. It fires when the gain passes 100x within the stack: towards vanishing
for any activation; towards explosion for bounded activations only (sigmoid, tanh, softsign:
the chaotic phase), since an unbounded activation's growing gradient is an explosion that
``exploding_gradients`` reports as measured (SELU with LeCun weights grows about 3.5% a layer).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trainability import adapters
from trainability import init as inits
from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence
from trainability.doctor.rules.gradients import GRADIENT_RATIO
from trainability.graph import Link, is_norm
from trainability.table import recommended_init

#: The measured variances count as the recommended init's within this factor (as init_mismatch).
_AT_RECOMMENDED = 1.5


def _theory_hyperparameters(link: Link) -> dict[str, Any] | None:
    """The activation's hyperparameters as an elementwise function takes them; ``None`` when
    the activation is not elementwise (softmax)."""
    spec = link.activation
    if spec is None or spec.name == "softmax":
        return None
    if spec.name == "prelu":  # one learned slope per channel: their mean
        return {"init": float(link.hyperparameters.get("init", 0.25))}
    return {k: v for k, v in link.hyperparameters.items() if k in spec.defaults}


def _plain_stack(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> tuple[list[Link], Link | None] | None:
    """Hidden layers (each feeding the one activation) and the output layer of a plain stack of
    Linear layers, or ``None`` if the model is not one."""
    if ev.skips or any(is_norm(m) or any(w.role == "conv" for w in adapters.module_weights(n, m)) for n, m in model_modules):
        return None
    links = list(ev.links.values())
    hidden = [link for link in links if link.activation is not None]
    rest = links[len(hidden):]
    if not hidden or links[: len(hidden)] != hidden or len(rest) > 1:
        return None
    if not all(len(ws := link.weights) == 1 and ws[0].role == "dense" and link.name in ev.weight_var for link in links):
        return None
    return hidden, (rest[0] if rest else None)


def beyond_depth_scale(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[Finding]:
    """Mean-field theory's finite-depth prediction for plain dense stacks (see the module)."""
    from trainability import theory

    stack = _plain_stack(ev, model_modules)
    if stack is None:
        return []
    hidden, output = stack
    spec = hidden[0].activation
    hyper = _theory_hyperparameters(hidden[0])
    if spec is None or hyper is None or any(
        link.activation is not spec or _theory_hyperparameters(link) != hyper for link in hidden
    ):
        return []
    first = next((s for s in ev.layers if s.role == "weight" and s.name == hidden[0].name), None)
    if first is None or first.mean is None or first.std is None or not math.isfinite(first.std):
        return []
    fans = [link.fans for link in hidden]
    weights = [ev.weight_var[link.name] * fan_in for link, (fan_in, _) in zip(hidden, fans, strict=True)]
    biases = _bias_second_moments(hidden)
    input_variance = max(first.mean**2 + first.std**2 - biases[0], 0.0) / weights[0]
    out = {} if output is None else {
        "output_weight_variance": ev.weight_var[output.name] * output.fans[0],
        "output_width": output.fans[1],
    }  # fmt: skip
    if min(weights) <= 0 or (out and out["output_weight_variance"] <= 0):
        return []
    p = theory.propagate(spec, weights, biases, input_variance, widths=[fan_out for _, fan_out in fans],
                         ratio=GRADIENT_RATIO, **out, **hyper)  # fmt: skip
    if not p.beyond or (p.direction == "exploding" and not spec.saturating):
        return []
    depth, names = len(hidden), [link.name for link in hidden]
    phase = ("ordered: gradients vanish with depth" if p.direction == "vanishing"
             else "chaotic: gradients explode with depth")  # fmt: skip
    top = "the output layer's" if output is not None else "the last layer's"
    target = recommended_init(spec)
    target_variance = inits.get(target).variance(*fans[-1]) * fans[-1][0]  # type: ignore[attr-defined]
    fix = f"re-initialize with {target} (trainability.initialize(model)), "
    action: dict[str, Any] = {"op": "reinitialize", "layers": names, "init": target, "max_depth": p.trainable_depth,
                              "alternatives": [{"op": "insert_normalization", "norm": "batch"}]}  # fmt: skip
    # at the recommended init as initialize() leaves it: each weight variance within 1.5x, and the
    # biases (which it zeroes) adding under half again to each layer's pre-activation variance
    at_recommended = all(1 / _AT_RECOMMENDED <= w / target_variance <= _AT_RECOMMENDED for w in weights) and all(
        b <= (_AT_RECOMMENDED - 1) * (q - b) for b, q in zip(biases, p.q, strict=True))  # fmt: skip
    if p.direction == "vanishing" and at_recommended:
        fix = f"{spec.name} loses the signal with depth even at {target}'s variance: "
        if spec.saturating:  # tanh/sigmoid at Glorot: the ordered phase's depth scale, the textbook's fix first
            fix += "replace it with relu and he_normal (or selu with lecun_normal), "
            action = {"op": "swap_activation", "layers": names, "activation": "relu", "max_depth": p.trainable_depth,
                      "alternatives": [{"op": "swap_activation", "layers": names, "activation": "selu"},
                                       {"op": "insert_normalization", "norm": "batch"}]}  # fmt: skip
        else:  # He for GELU/SiLU/Mish: no finite fixed point, the signal decays towards 0 (see explain_depth)
            action = {"op": "insert_normalization", "norm": "batch", "max_depth": p.trainable_depth,
                      "at_recommended": True, "alternatives": [{"op": "swap_activation", "layers": names, "activation": "relu"}]}  # fmt: skip
    fix += f"add batch norm after each Linear (mlp(..., batch_norm='before')), or use at most {p.trainable_depth} layers"
    return [Finding(
        "beyond_depth_scale", "warning", names,
        f"{depth} layers exceed the trainable depth {p.trainable_depth} that mean-field theory predicts for "
        f"{spec.name} with the measured weights (sigma_w^2 {_range(weights)}), biases (sigma_b^2 {_range(biases)}) "
        f"and input second moment {input_variance:.3g}: {phase}. Predicted at this depth: signal variance "
        f"{p.signal_variance:.3g} at the last hidden layer ({p.q[0]:.3g} at the first), gradient at the first "
        f"layer {p.first_layer_gain:.3g}x {top}, past {GRADIENT_RATIO:g}x from {p.crossing_depth} layers on",
        fix,
        action,
    )]  # fmt: skip


def explain_depth(found: list[Finding], depth: list[Finding]) -> list[Finding]:
    """Add the theory's depth findings to the measured ones.

    ``beyond_depth_scale`` says the depth exceeds the trainable depth the theory predicts for the
    stack's activation and weight variances. For an unbounded activation already at its
    recommended initializer's variance (He for GELU, SiLU, Mish) there is no finite fixed point to
    have a depth scale of: the signal decays towards 0 layer by layer, and no re-initialization
    in the table helps. There the finite-depth prediction is folded into the measured
    ``vanishing_gradients`` finding instead, whose fix it replaces (re-initializing with the
    initializer the layers already have would change nothing).
    """
    found = list(found)
    for d in depth:
        at = next((i for i, f in enumerate(found) if f.kind == "vanishing_gradients"), None)
        if not d.action.get("at_recommended") or at is None:
            found.append(d)
            continue
        measured = found[at]
        action = {k: v for k, v in d.action.items() if k != "at_recommended"}
        found[at] = replace(measured, message=f"{measured.message}. {d.message}", fix=d.fix, action=action)
    return found


def _bias_second_moments(hidden: list[Link]) -> list[float]:
    """``E[b^2]`` per layer (0 without a bias), in one stacked op when the widths agree."""
    biases = [link.weights[0].bias for link in hidden]
    if all(b is not None for b in biases) and len({b.numel() for b in biases}) == 1:  # type: ignore[union-attr]
        with torch.no_grad():
            return torch.stack([b.detach() for b in biases]).double().pow(2).mean(1).tolist()  # type: ignore[union-attr]
    return [0.0 if b is None else float(b.detach().double().pow(2).mean()) for b in biases]


def _range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    mean = sum(values) / len(values)
    return f"{mean:.3g}" if hi - lo <= 0.05 * max(abs(mean), 1e-12) else f"{lo:.3g} to {hi:.3g}, mean {mean:.3g}"
