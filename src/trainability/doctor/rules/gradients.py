"""Vanishing and exploding gradients along depth.

What is compared is what carries the signal. In a network of residual blocks (BERT, GPT-2, ViT,
ConvNeXt, ResNet, a user's ``x + f(x)`` blocks) that is the residual stream: the gradient reaching
each block's output, per element (RMS), against the last block's. Layers inside a branch are not
compared (a ConvNeXt branch scaled by a 1e-6 layer scale gets a 1e-6 gradient on purpose, and an
attention key projection is not comparable with a classifier head). In a plain stack it is each
weight layer's output, against the top weight layer's (embeddings, lookups rather than layers,
are left out).

Under one learning rate a layer learns in proportion to its gradient, so a layer whose gradient
is 100x smaller than the top's (two orders of magnitude) is effectively frozen while the top
trains; 100x larger, it takes steps 100x too big. Past 10^4 the finding is an error.
"""

from __future__ import annotations

import math

from trainability.doctor.report import Finding, LayerStats
from trainability.doctor.rules.evidence import Evidence, span
from trainability.table import recommended_init

GRADIENT_RATIO = 1e2
SEVERE_GRADIENT_RATIO = 1e4

def _weights(ev: Evidence) -> list[LayerStats]:
    return [s for s in ev.layers if s.role == "weight"]


def _main_fix(named: list[tuple[str, float, str | None]]) -> str:
    inits_needed = sorted({recommended_init(p[2]) for p in named if p[2]})
    return inits_needed[0] if len(inits_needed) == 1 else "the recommended initializer"


def _points(ev: Evidence) -> tuple[list[tuple[str, float, str | None]], bool]:
    """(name, gradient RMS, activation) along depth, and whether they are residual blocks."""
    if len(ev.blocks) >= 2:
        blocks = [b for b in ev.blocks if b.unit_grad_rms is not None and math.isfinite(b.unit_grad_rms)]
        return [(b.name, b.unit_grad_rms, None) for b in blocks], True  # type: ignore[misc]
    rows = [s for s in _weights(ev)
            if s.unit_grad_rms is not None and math.isfinite(s.unit_grad_rms) and s.weight_role != "embedding"]  # fmt: skip
    return [(s.name, s.unit_grad_rms, s.activation) for s in rows], False  # type: ignore[misc]


def gradient_flow(ev: Evidence) -> list[Finding]:
    points, residual = _points(ev)
    if len(points) < 2 or points[-1][1] == 0:
        return []
    top = points[-1]
    ratios = [(p, p[1] / top[1]) for p in points[:-1]]
    where = "the residual stream after" if residual else "the output of"
    unit = "blocks" if residual else "weight layers"
    findings = []
    vanishing = [p for p, r in ratios if r < 1 / GRADIENT_RATIO]
    if vanishing:
        worst = min(r for _, r in ratios)
        steps = len(points) - 1
        per_layer = (points[0][1] / top[1]) ** (1 / steps) if points[0][1] > 0 else 0.0
        names = [p[0] for p in vanishing]
        init = _main_fix(vanishing)
        if residual:
            fix = ("re-initialize with the architecture's standard init (trainability.initialize(model)); check that "
                   "every residual branch ends in a normalization or is scaled down, and warm the learning rate up")  # fmt: skip
        elif any(p[2] in ("sigmoid", "tanh", "softsign") for p in vanishing):
            fix = ("replace sigmoid/tanh with relu and he_normal (or selu with lecun_normal and AlphaDropout), "
                   "or add batch norm after each Linear (mlp(..., batch_norm='before'))")  # fmt: skip
        else:
            fix = (f"re-initialize layers {span(names)} with {init} "
                   "(trainability.initialize(model)), or add batch norm after each Linear "
                   "(mlp(..., batch_norm='before'))")  # fmt: skip
        findings.append(Finding(
            "vanishing_gradients", "error" if worst < 1 / SEVERE_GRADIENT_RATIO else "warning", names,
            f"the gradient reaching {where} {len(vanishing)} of {len(points)} {unit} is over "
            f"{GRADIENT_RATIO:.0f}x smaller than at the top {top[0]} (smallest ratio {worst:.2e}, "
            f"at {min(ratios, key=lambda p: p[1])[0][0]}; x{per_layer:.3g} per {unit[:-1]} going down): "
            "these layers barely learn",
            fix, {"op": "reinitialize", "layers": names, "init": "auto" if residual else init},
        ))  # fmt: skip
    exploding = [p for p, r in ratios if r > GRADIENT_RATIO]
    if exploding:
        worst = max(r for _, r in ratios)
        names = [p[0] for p in exploding]
        if residual:
            fix = ("scale each residual branch down or zero-initialize its last layer (Fixup, SkipInit; "
                   "trainability.initialize(model) does this), or normalize each block (LayerNorm/BatchNorm), "
                   "and clip gradients at norm 1.0")  # fmt: skip
            action = {"op": "scale_residual_branches", "layers": names, "clip_norm": 1.0}
        else:
            init = _main_fix(exploding)
            fix = (f"re-initialize layers {span(names)} with {init} (trainability.initialize(model)) "
                   "and clip gradients at norm 1.0 (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))")
            action = {"op": "reinitialize", "layers": names, "init": init, "clip_norm": 1.0}
        findings.append(Finding(
            "exploding_gradients", "error" if worst > SEVERE_GRADIENT_RATIO else "warning", names,
            f"the gradient reaching {where} {len(exploding)} of {len(points)} {unit} is over "
            f"{GRADIENT_RATIO:.0f}x larger than at the top {top[0]} (largest ratio {worst:.2e}, "
            f"at {max(ratios, key=lambda p: p[1])[0][0]}): one learning rate cannot suit both",
            fix, action,
        ))  # fmt: skip
    return findings
