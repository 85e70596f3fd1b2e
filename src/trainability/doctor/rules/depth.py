"""Mean-field theory's verdict on how deep a plain dense stack can be."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainability import init as inits
from trainability.doctor.report import Finding
from trainability.doctor.rules.evidence import Evidence
from trainability.graph import NORM_TYPES
from trainability.table import recommended_init


def beyond_depth_scale(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[Finding]:
    """Mean-field theory's verdict for plain dense stacks: deeper than 6 xi_c does not train.

    Applies to stacks of Linear layers with one activation, no normalization and no skips;
    sigma_w^2 and sigma_b^2 are the measured means over the hidden layers. The chaotic side is
    judged for bounded activations only (for ReLU it is an explosion, reported as such).
    """
    from trainability import theory

    if ev.skips or any(isinstance(m, (NORM_TYPES, nn.modules.conv._ConvNd)) for _, m in model_modules):
        return []
    hidden = [link for link in ev.links.values() if link.activation is not None]
    specs = {link.activation.name for link in hidden}  # type: ignore[union-attr]
    if len(specs) != 1 or not all(link.name in ev.weight_var for link in hidden):
        return []
    spec = hidden[0].activation
    depth = len(hidden)
    weight_variance = sum(ev.weight_var[link.name] * inits.module_fans(link.module)[0] for link in hidden) / len(hidden)
    biases = [link.module.bias.detach().float() for link in hidden if link.module.bias is not None]
    bias_variance = float(torch.stack([b.var(correction=0) for b in biases]).mean()) if biases else 0.0
    hyper = hidden[0].hyperparameters if spec.name in ("leaky_relu", "elu") else {}  # type: ignore[union-attr]
    chi1 = theory.chi(spec, weight_variance, bias_variance, **hyper)  # type: ignore[arg-type]
    if not math.isfinite(chi1) or (chi1 > 1 and not spec.saturating):  # type: ignore[union-attr]
        return []
    xi = theory.depth_scale(spec, weight_variance, bias_variance, **hyper)  # type: ignore[arg-type]
    limit = theory.TRAINABLE_DEPTH_MULTIPLE * xi
    if depth <= limit:
        return []
    phase = "ordered (signals and gradients die out)" if chi1 < 1 else "chaotic (inputs decorrelate, gradients explode)"
    target = recommended_init(spec)
    return [Finding(
        "beyond_depth_scale", "warning", [link.name for link in hidden],
        f"{depth} layers exceed the trainable depth {limit:.1f} (6 xi_c) that mean-field theory predicts for "
        f"{spec.name} with sigma_w^2 = {weight_variance:.3g}, sigma_b^2 = {bias_variance:.3g}: chi_1 = {chi1:.3g}, "  # type: ignore[union-attr]
        f"{phase}, xi_c = {xi:.3g} layers",
        f"re-initialize with {target} (trainability.initialize(model)) to move to the edge of chaos "
        f"(trainability.theory.critical_weight_variance), or use fewer than {max(int(limit), 1)} layers",
        {"op": "reinitialize", "layers": [link.name for link in hidden], "init": target, "max_depth": limit},
    )]  # fmt: skip
