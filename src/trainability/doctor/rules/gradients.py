"""Vanishing and exploding gradients along depth.

The gradient reaching a weight layer's output, per element (RMS), is compared with the top weight
layer's. Under one learning rate a layer learns in proportion to its gradient, so a layer whose
gradient is 100x smaller than the top's (two orders of magnitude) is effectively frozen while the
top trains; 100x larger, it takes steps 100x too big. Past 10^4 the finding is an error.
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
