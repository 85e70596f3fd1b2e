"""Vanishing and exploding gradients along depth.

What is compared is what carries the signal. In a network of residual blocks (BERT, GPT-2, ViT,
ConvNeXt, ResNet, a user's ``x + f(x)`` blocks) that is the residual stream: the gradient reaching
the stream entering each block, against the stream leaving the last block. Layers inside a branch
are not compared (a ConvNeXt branch scaled by a 1e-6 layer scale gets a 1e-6 gradient on purpose,
and an attention key projection is not comparable with a classifier head). Where the stream
changes shape (a CNN's stages: more channels, fewer pixels) the step is a learned projection whose
gradient scale depends on the widths and the init's fan mode, not on depth: the gains along depth
are chained across same-shape neighbours only. In a plain stack it is each weight layer's output,
against the top weight layer's (embeddings, lookups rather than layers, are left out).

The gradient is measured per sample and unit, summed over the positions that share the unit's
weights (sequence steps, pixels): what a weight-shared unit learns from, so that pooling over a
sequence or an image does not read as vanishing (in a plain MLP this is the per-element RMS).

Under one learning rate a layer learns in proportion to its gradient, so a layer whose gradient
is 100x smaller than the top's (two orders of magnitude) is effectively frozen while the top
trains; 100x larger, it takes steps 100x too big. Past 10^4 the finding is an error.
"""

from __future__ import annotations

import math

from trainability.doctor.records import Finding, LayerStats
from trainability.doctor.rules.evidence import Evidence, span
from trainability.graph import is_norm
from trainability.table import recommended_init

GRADIENT_RATIO = 1e2
SEVERE_GRADIENT_RATIO = 1e4

def _weights(ev: Evidence) -> list[LayerStats]:
    return [s for s in ev.layers if s.role == "weight"]


def _main_fix(named: list[tuple[str, float, str | None]]) -> str:
    inits_needed = sorted({recommended_init(p[2]) for p in named if p[2]})
    return inits_needed[0] if len(inits_needed) == 1 else "the recommended initializer"


def _chained(blocks: list, values: list[float]) -> list[float]:
    """Levels relative to the last block, chaining ratios only between same-shape neighbours."""
    levels = [values[-1]]
    for i in range(len(blocks) - 2, -1, -1):
        same = blocks[i].shape == blocks[i + 1].shape
        levels.append(levels[-1] * (values[i] / values[i + 1] if same else 1.0))
    return levels[::-1]


def _points(ev: Evidence) -> tuple[list[tuple[str, float, str | None]], bool]:
    """(name, gradient RMS, activation) along depth, and whether they are residual blocks."""
    if len(ev.blocks) >= 2:
        blocks = [b for b in ev.blocks if b.unit_grad_rms is not None and math.isfinite(b.unit_grad_rms) and b.unit_grad_rms > 0]
        if not blocks:
            return [], True
        levels = _chained(blocks, [b.unit_grad_rms for b in blocks])  # type: ignore[misc]
        return [(b.name, level, None) for b, level in zip(blocks, levels, strict=True)], True
    rows = [s for s in _weights(ev)
            if s.unit_grad_rms is not None and math.isfinite(s.unit_grad_rms) and s.weight_role != "embedding"]  # fmt: skip
    return [(s.name, s.unit_grad_rms, s.activation) for s in rows], False  # type: ignore[misc]


def stream_growth(ev: Evidence) -> list[Finding]:
    """The residual stream's signal growing along depth: each unnormalized branch adds its own
    variance to the stream, so its std grows block after block (and with it the gradient the
    stream passes back; Zhang et al. 2019). Over 10x in std (100x in variance) along same-shape
    blocks is reported with exploding gradients, over 100x as an error. Blocks with a
    normalization inside are left to the gradient check: a post-norm stream is renormalized at
    every block, and a pre-norm stream's growth is the architecture's."""
    blocks = [b for b in ev.blocks if math.isfinite(b.std) and b.std > 0]
    if len(blocks) < 2 or any(is_norm(m) and n in ev.inside_blocks for n, m in ev.order):
        return []
    levels = _chained(blocks, [math.hypot(b.mean, b.std) for b in blocks])
    growth = levels[-1] / min(levels)
    if growth <= math.sqrt(GRADIENT_RATIO):
        return []
    first = blocks[levels.index(min(levels))]
    names = [b.name for b in blocks[levels.index(min(levels)) :]]
    return [Finding(
        "exploding_gradients", "error" if growth > GRADIENT_RATIO else "warning", names,
        f"the residual stream's signal grows {growth:.3g}x in RMS from {first.name} to {blocks[-1].name} "
        f"({len(names)} blocks): each branch adds its own variance to the stream, and the stream's gradient "
        "grows with it going back",
        "normalize each block (LayerNorm/BatchNorm in the branch), or scale each residual branch down or "
        "zero-initialize its last layer (Fixup, SkipInit; trainability.initialize(model) does this)",
        {"op": "scale_residual_branches", "layers": names, "alternatives": [{"op": "insert_normalization", "norm": "layer"}]},
    )]  # fmt: skip


def gradient_flow(ev: Evidence) -> list[Finding]:
    found = _gradient_flow(ev)
    if not any(f.kind == "exploding_gradients" for f in found):
        found += stream_growth(ev)
    return found


def _gradient_flow(ev: Evidence) -> list[Finding]:
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
            also = [{"op": "scale_residual_branches", "layers": names}, {"op": "lower_learning_rate", "factor": 0.1}]
        elif any(p[2] in ("sigmoid", "tanh", "softsign") for p in vanishing):
            fix = ("replace sigmoid/tanh with relu and he_normal (or selu with lecun_normal and AlphaDropout), "
                   "or add batch norm after each Linear (mlp(..., batch_norm='before'))")  # fmt: skip
            also = [{"op": "swap_activation", "layers": names, "activation": "relu"},
                    {"op": "swap_activation", "layers": names, "activation": "selu"},
                    {"op": "insert_normalization", "norm": "batch"}]  # fmt: skip
        else:
            fix = (f"re-initialize layers {span(names)} with {init} "
                   "(trainability.initialize(model)), or add batch norm after each Linear "
                   "(mlp(..., batch_norm='before'))")  # fmt: skip
            also = [{"op": "insert_normalization", "norm": "batch"}]
        findings.append(Finding(
            "vanishing_gradients", "error" if worst < 1 / SEVERE_GRADIENT_RATIO else "warning", names,
            f"the gradient reaching {where} {len(vanishing)} of {len(points)} {unit} is over "
            f"{GRADIENT_RATIO:.0f}x smaller than at the top {top[0]} (smallest ratio {worst:.2e}, "
            f"at {min(ratios, key=lambda p: p[1])[0][0]}; x{per_layer:.3g} per {unit[:-1]} going down): "
            "these layers barely learn",
            fix, {"op": "reinitialize", "layers": names, "init": "auto" if residual else init, "alternatives": also},
        ))  # fmt: skip
    exploding = [p for p, r in ratios if r > GRADIENT_RATIO]
    if exploding:
        worst = max(r for _, r in ratios)
        names = [p[0] for p in exploding]
        if residual:
            fix = ("scale each residual branch down or zero-initialize its last layer (Fixup, SkipInit; "
                   "trainability.initialize(model) does this), or normalize each block (LayerNorm/BatchNorm), "
                   "and clip gradients at norm 1.0")  # fmt: skip
            action = {"op": "scale_residual_branches", "layers": names, "clip_norm": 1.0,
                      "alternatives": [{"op": "insert_normalization", "norm": "layer"}]}  # fmt: skip
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
