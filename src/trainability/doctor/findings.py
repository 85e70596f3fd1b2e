"""The doctor's rules: evidence from one pass in, findings with fixes out.

Every threshold is relative, and explained in docs/DOCTOR.md:

- vanishing / exploding: the gradient reaching a weight layer's output, per element (RMS), is
  compared with the top weight layer's. Under one learning rate a layer learns in proportion to
  its gradient, so a layer whose gradient is 100x smaller than the top's (two orders of
  magnitude) is effectively frozen while the top trains; 100x larger, it takes steps 100x too
  big. Past 10^4 the finding is an error.
- init_mismatch: each weight layer's variance is compared with what the activation it feeds
  needs (the textbook's table). Layers off by more than 1.5x either way are mismatched; the
  mismatch matters when, compounded over the consecutive layers between normalization layers,
  it scales the signal's variance by more than 100x (its std by 10x).
- dead_units: a ReLU unit never positive over the batch gets no gradient. In a healthy
  He-initialized stack the samples grow correlated with depth, so units whose mean input is
  negative can be off for the whole batch: up to about half of a layer (measured: 13-19% at depth
  10, 39-42% at depth 30, up to 57% at depth 100, width 100, batch 256). Only those units can be
  off that way, so more than two thirds dead is a finding, 90% an error.
- saturated_units: more than 10% of a sigmoid/tanh/softsign layer's outputs where the
  derivative is under 1% of its maximum (50%: an error). A standardized pre-activation puts
  under 0.3% there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from trainability import init as inits
from trainability.doctor.report import Finding, LayerStats
from trainability.graph import NORM_TYPES, Link
from trainability.table import recommended_init

GRADIENT_RATIO = 1e2
SEVERE_GRADIENT_RATIO = 1e4
MISMATCH_FACTOR = 1.5
COMPOUND_VARIANCE = 1e2
DEAD_FRACTION = 2 / 3
SEVERE_DEAD_FRACTION = 0.9
SATURATED_FRACTION = 0.10
SEVERE_FRACTION = 0.5
LECUN_TOLERANCE = 1.33


@dataclass
class Evidence:
    """What one pass measured, as the rules need it."""

    layers: list[LayerStats]
    weight_var: dict[str, float]
    order: list[tuple[str, nn.Module]]
    links: dict[str, Link]
    numel: dict[str, int]
    grad_finite: dict[str, bool]
    inputs_of: dict[str, list[str]]
    loss: float
    batch_size: int
    input_finite: bool = True
    input_mean_rms: float | None = None
    input_log_std_rms: float | None = None
    skips: list[str] = field(default_factory=list)


def span(names: list[str]) -> str:
    """A short display of layer names: all of them, or the first three, ..., the last."""
    if len(names) <= 5:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {names[-1]} ({len(names)} layers)"


def _weights(ev: Evidence) -> list[LayerStats]:
    return [s for s in ev.layers if s.role == "weight"]


def _main_fix(named: list[LayerStats]) -> str:
    inits_needed = sorted({recommended_init(s.activation) for s in named if s.activation})
    return inits_needed[0] if len(inits_needed) == 1 else "the recommended initializer"


def gradient_flow(ev: Evidence) -> list[Finding]:
    weights = [s for s in _weights(ev) if s.grad_rms is not None and math.isfinite(s.grad_rms)]
    if len(weights) < 2 or weights[-1].grad_rms == 0:
        return []
    top = weights[-1]
    ratios = [(s, s.grad_rms / top.grad_rms) for s in weights[:-1]]
    findings = []
    vanishing = [s for s, r in ratios if r < 1 / GRADIENT_RATIO]
    if vanishing:
        worst = min(r for _, r in ratios)
        steps = len(weights) - 1
        per_layer = (weights[0].grad_rms / top.grad_rms) ** (1 / steps) if weights[0].grad_rms > 0 else 0.0
        saturating = [s for s in vanishing if s.activation in ("sigmoid", "tanh", "softsign")]
        init = _main_fix(vanishing)
        fix = (f"re-initialize layers {span([s.name for s in vanishing])} with {init} "
               "(trainability.initialize(model)), or add batch norm after each Linear "
               "(mlp(..., batch_norm='before'))")  # fmt: skip
        if saturating:
            fix = ("replace sigmoid/tanh with relu and he_normal (or selu with lecun_normal and AlphaDropout), "
                   "or add batch norm after each Linear (mlp(..., batch_norm='before'))")  # fmt: skip
        findings.append(Finding(
            "vanishing_gradients", "error" if worst < 1 / SEVERE_GRADIENT_RATIO else "warning",
            [s.name for s in vanishing],
            f"the gradient reaching {len(vanishing)} of {len(weights)} weight layers is over "
            f"{GRADIENT_RATIO:.0f}x smaller than at the top layer {top.name} (smallest ratio {worst:.2e}, "
            f"at layer {min(ratios, key=lambda p: p[1])[0].name}; x{per_layer:.3g} per layer going down): "
            "these layers barely learn",
            fix, {"op": "reinitialize", "layers": [s.name for s in vanishing], "init": init},
        ))  # fmt: skip
    exploding = [s for s, r in ratios if r > GRADIENT_RATIO]
    if exploding:
        worst = max(r for _, r in ratios)
        init = _main_fix(exploding)
        findings.append(Finding(
            "exploding_gradients", "error" if worst > SEVERE_GRADIENT_RATIO else "warning",
            [s.name for s in exploding],
            f"the gradient reaching {len(exploding)} of {len(weights)} weight layers is over "
            f"{GRADIENT_RATIO:.0f}x larger than at the top layer {top.name} (largest ratio {worst:.2e}, "
            f"at layer {max(ratios, key=lambda p: p[1])[0].name}): one learning rate cannot suit both",
            f"re-initialize layers {span([s.name for s in exploding])} with {init} (trainability.initialize(model)) "
            "and clip gradients at norm 1.0 (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))",
            {"op": "reinitialize", "layers": [s.name for s in exploding], "init": init, "clip_norm": 1.0},
        ))  # fmt: skip
    return findings


def _variance_ratio(link: Link, variance: float) -> tuple[float, str]:
    """Measured weight variance over what the consuming activation needs, and that initializer."""
    name = recommended_init(link.activation)
    target = inits.get(name).variance(*inits.module_fans(link.module))  # type: ignore[union-attr]
    return variance / target, name


def init_mismatch(ev: Evidence) -> list[Finding]:
    segments: list[list[tuple[str, float, str]]] = [[]]
    for name, module in ev.order:
        if isinstance(module, NORM_TYPES):
            segments.append([])
        elif name in ev.links and name in ev.weight_var and not ev.links[name].normalized:
            ratio, target = _variance_ratio(ev.links[name], ev.weight_var[name])
            if not 1 / MISMATCH_FACTOR <= ratio <= MISMATCH_FACTOR:
                segments[-1].append((name, ratio, target))
    findings = []
    for segment in segments:
        if not segment:
            continue
        log_product = sum(math.log(r) for _, r, _ in segment)
        if abs(log_product) <= math.log(COMPOUND_VARIANCE):
            continue
        names = [n for n, _, _ in segment]
        targets = sorted({t for _, _, t in segment})
        median = sorted(r for _, r, _ in segment)[len(segment) // 2]
        direction = "shrinks" if log_product < 0 else "grows"
        findings.append(Finding(
            "init_mismatch", "error", names,
            f"{len(names)} weight layers have a variance {median:.3g}x (median) what their activation "
            f"needs ({', '.join(targets)}); compounded, the signal's variance {direction} by "
            f"10^{abs(log_product) / math.log(10):.1f}x across them",
            f"re-initialize layers {span(names)} with {' / '.join(targets)} (trainability.initialize(model))",
            {"op": "reinitialize", "layers": names, "init": targets[0] if len(targets) == 1 else "auto"},
        ))  # fmt: skip
    return findings


def unit_health(ev: Evidence) -> list[Finding]:
    findings = []
    chance = 0.5 ** min(ev.batch_size, 60)
    dead = [s for s in ev.layers if s.dead_fraction is not None and s.dead_fraction > DEAD_FRACTION + chance]
    if dead:
        worst = max(s.dead_fraction for s in dead)  # type: ignore[type-var]
        findings.append(Finding(
            "dead_units", "error" if worst >= SEVERE_DEAD_FRACTION else "warning", [s.name for s in dead],
            f"{len(dead)} layers have ReLU units that never fire over the batch of {ev.batch_size} "
            f"(up to {worst:.0%} of a layer's units): they get no gradient and stop learning",
            "use leaky_relu (negative_slope=0.2) or elu, re-initialize with he_normal and zero biases "
            "(trainability.initialize(model)), and lower the learning rate",
            {"op": "swap_activation", "layers": [s.name for s in dead], "activation": "leaky_relu",
             "hyperparameters": {"negative_slope": 0.2}},
        ))  # fmt: skip
    saturated = [s for s in ev.layers if s.saturated_fraction is not None and s.saturated_fraction > SATURATED_FRACTION]
    if saturated:
        worst = max(s.saturated_fraction for s in saturated)  # type: ignore[type-var]
        findings.append(Finding(
            "saturated_units", "error" if worst >= SEVERE_FRACTION else "warning", [s.name for s in saturated],
            f"{len(saturated)} saturating layers ({', '.join(sorted({s.type for s in saturated}))}) have up to "
            f"{worst:.0%} of their outputs where the derivative is under 1% of its maximum",
            "re-initialize with glorot_uniform (trainability.initialize(model)), or use relu with he_normal "
            "(selu with lecun_normal), or add batch norm before the activation",
            {"op": "reinitialize", "layers": [s.name for s in saturated], "init": "glorot_uniform"},
        ))  # fmt: skip
    return findings


def non_finite(ev: Evidence) -> list[Finding]:
    fix = ("find what overflows there (exp, log, division) and guard it; re-initialize with the "
           "recommended initializer (trainability.initialize(model)), lower the learning rate and "
           "clip gradients at norm 1.0")  # fmt: skip
    if not ev.input_finite:
        first = next((s.name for s in ev.layers if s.non_finite == "forward"), None)
        return [Finding("non_finite", "error", [first] if first else [],
                        "the input batch itself already holds NaN/Inf" + (f"; it first shows at {first}" if first else ""),
                        "clean or impute the input data: torch.nan_to_num, or drop the bad rows",
                        {"op": "clean_input"})]  # fmt: skip
    forward = [s for s in ev.layers if s.non_finite == "forward"]
    if forward:
        first = forward[0]
        return [Finding("non_finite", "error", [first.name],
                        f"the forward output of {first.name} ({first.type}) is the first to hold NaN/Inf; "
                        "the input batch was finite", fix, {"op": "inspect", "layers": [first.name]})]  # fmt: skip
    if not math.isfinite(ev.loss):
        return [Finding("non_finite", "error", [], f"the loss is {ev.loss} while every layer's output is finite",
                        "check the loss function and the targets (e.g. log of 0, class indices out of range)",
                        {"op": "inspect_loss"})]  # fmt: skip
    bad = [name for name, ok in ev.grad_finite.items() if not ok]
    if not bad:
        weight_bad = [s.name for s in ev.layers if s.non_finite == "weight_grad"]
        if weight_bad:
            return [Finding("non_finite", "error", weight_bad[-1:],
                            f"the weight gradient of {weight_bad[-1]} holds NaN/Inf while the gradient at its output is finite",
                            fix, {"op": "inspect", "layers": weight_bad[-1:]})]  # fmt: skip
        return []
    # The module whose backward turned a finite gradient into NaN/Inf: its output's gradient is
    # finite, the gradient reaching one of its inputs is not. Latest in execution = first in backward.
    culprit = None
    for name, _ in reversed(ev.order):
        if ev.grad_finite.get(name, True) and any(not ev.grad_finite.get(p, True) for p in ev.inputs_of.get(name, [])):
            culprit = name
            break
    if culprit is None:  # producers unknown (inputs wrapped by another hook): the next module run
        names = [n for n, _ in ev.order]
        last_bad = max(names.index(n) for n in bad)
        culprit = next((n for n in names[last_bad + 1 :] if ev.grad_finite.get(n, False)), bad[-1])
    return [Finding("non_finite", "error", [culprit],
                    f"the backward pass of {culprit} is the first to produce NaN/Inf gradients "
                    f"(reaching {span(bad)}); the forward pass was finite", fix,
                    {"op": "inspect", "layers": [culprit]})]  # fmt: skip


def _selu_conditions(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[tuple[str, list[str], str, str]]:
    """(condition, layers, message, fix) for each of SELU's self-normalization conditions that fails."""
    failed = []
    noise = 3.0 / math.sqrt(max(ev.batch_size, 1))
    if ev.input_mean_rms is not None and (
        ev.input_mean_rms > 0.25 + noise or ev.input_log_std_rms > math.log(1.25) + noise  # type: ignore[operator]
    ):
        failed.append(("unstandardized input", [],
                       f"the input is not standardized: per-feature means have RMS {ev.input_mean_rms:.3g} "
                       f"and per-feature stds are off 1 by a factor of {math.exp(ev.input_log_std_rms):.3g} (RMS)",  # type: ignore[arg-type]
                       "standardize the inputs to mean 0 and std 1 (sklearn StandardScaler, or (x - mean) / std)"))  # fmt: skip
    off = []
    for link in ev.links.values():
        if link.activation is not None and link.activation.name == "selu" and link.name in ev.weight_var:
            ratio = ev.weight_var[link.name] * inits.module_fans(link.module)[0]
            tolerance = LECUN_TOLERANCE * (1 + 3 * math.sqrt(2 / link.module.weight.numel()))
            if not 1 / tolerance <= ratio <= tolerance:
                off.append((link.name, ratio))
    if off:
        failed.append(("non-LeCun weights", [n for n, _ in off],
                       f"{len(off)} layers feeding SELU have weight variance {sorted(r for _, r in off)[len(off) // 2]:.3g} / fan_in "
                       "(median), not the 1 / fan_in of LeCun normal",
                       "re-initialize them with lecun_normal (trainability.initialize(model))"))  # fmt: skip
    if ev.skips:
        failed.append(("skip connections", ev.skips,
                       f"the network is not a plain sequential stack: skip connections at {span(ev.skips)}",
                       "use elu (he_normal) in networks with skip connections, or remove the skips"))  # fmt: skip
    dropout = [n for n, m in model_modules if isinstance(m, nn.modules.dropout._DropoutNd)
               and not isinstance(m, (nn.AlphaDropout, nn.FeatureAlphaDropout))]  # fmt: skip
    if dropout:
        failed.append(("ordinary dropout", dropout, f"ordinary dropout at {span(dropout)} breaks self-normalization",
                       "use AlphaDropout (trainability.activations.AlphaDropout) instead of Dropout"))  # fmt: skip
    conv = [n for n, m in model_modules if isinstance(m, (nn.modules.conv._ConvNd,))]
    if conv:
        failed.append(("non-dense layers", conv,
                       f"self-normalization is only guaranteed for dense layers; {span(conv)} are convolutions",
                       "expect weaker normalization with convolutions: use batch norm, or elu with he_normal"))  # fmt: skip
    return failed


def self_normalization(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[Finding]:
    if not any(s.activation == "selu" or s.type == "SELU" for s in ev.layers):
        return []
    return [
        Finding("self_normalization_broken", "warning", layers,
                f"SELU is present but self-normalization fails ({condition}): {message}", fix,
                {"op": "self_normalize", "condition": condition, "layers": layers})  # fmt: skip
        for condition, layers, message, fix in _selu_conditions(ev, model_modules)
    ]


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
