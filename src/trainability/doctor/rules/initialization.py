"""Weight variances against what the consuming activation needs (the textbook's table).

Each weight layer's variance is compared with what the activation it feeds needs (Glorot before
none/tanh/sigmoid/softmax, He before the ReLU family, LeCun before SELU). Layers off by more than
1.5x either way are mismatched; the mismatch matters when, compounded over consecutive layers
that no normalization separates, it scales the signal's variance by more than 100x (its std by
10x). The table governs signal propagation through a stack, so some layers are not judged by it:

- a layer whose output is normalized before any other layer uses it (a run of layers that ends
  in LayerNorm/RMSNorm/BatchNorm/GroupNorm): normalization removes the scale, which is why
  transformers start their projections at std 0.02 (BERT, ViT; Devlin et al. 2019) and GPT-2
  scales its residual projections by 1/sqrt(2 x layers) (Radford et al. 2019);
- a layer inside a residual block (its branch is added to the residual stream): how large a
  branch starts is the architecture's choice, zero or tiny on purpose in Fixup (Zhang et al.
  2019), SkipInit (De & Smith 2020), zero-gamma ResNets (Goyal et al. 2017) and ConvNeXt's layer
  scale 1e-6 (Liu et al. 2022); the residual stream itself is judged by the gradient rules;
- packed attention projections, embeddings and recurrent weights, which feed no activation of
  the table (softmax attention, lookups, gates).

In a network with normalization, the layers after the last normalization (the head) are judged
only for growth: an output layer that starts small gives near-uniform first predictions, which
is the recommended start, while one that starts large makes them confidently wrong. There that is
also measured directly: with a cross-entropy loss, a first loss above ln(C) + ln(10) (the true
class gets on average a tenth of the uniform probability 1/C) names the output layer, since the
normalized features it reads cannot be what is too large; this applies when the last
normalization runs after every residual branch (a final norm or post-norm blocks). (In a plain
stack the features' scale wanders with depth at finite width, so the compounded variances are
judged there instead.)
"""

from __future__ import annotations

import math

from trainability import init as inits
from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence, span
from trainability.graph import Link, is_norm
from trainability.table import recommended_init

MISMATCH_FACTOR = 1.5
COMPOUND_VARIANCE = 1e2
#: A first loss above ln(C) + ln(this) gives the true class 1/this of the uniform probability.
OVERCONFIDENCE = 10.0

def _variance_ratio(ev: Evidence, link: Link) -> tuple[float, str]:
    """Measured weight variance over what the consuming activation needs, and that initializer.
    A module applying a chain of weights (a separable convolution: depthwise, then pointwise) scales
    the signal by the product of its weights' ratios, each against its own need (an ``inner``
    weight feeds the next one, no activation: Glorot's)."""
    name = recommended_init(link.activation)
    ratio = 1.0
    for w in link.weights:
        need = recommended_init(None) if w.inner else name
        ratio *= ev.weight_var[w.name] / inits.get(need).variance(*w.fans)  # type: ignore[union-attr]
    return ratio, name


def _governed(ev: Evidence, name: str) -> bool:
    """Is this weight module's variance governed by the table (see the module docstring)?"""
    link = ev.links.get(name)
    if link is None or link.normalized or name in ev.inside_blocks:
        return False
    weights = link.weights
    chain = all(w.inner for w in weights[:-1])  # one weight, or a separable convolution's two
    return chain and all(w.role in ("dense", "conv") and w.name in ev.weight_var for w in weights)


def init_mismatch(ev: Evidence) -> list[Finding]:
    segments: list[list[tuple[str, float, str]]] = [[]]
    closed: list[bool] = []
    for name, module in ev.order:
        if is_norm(module):
            closed.append(True)
            segments.append([])
        elif _governed(ev, name):
            ratio, target = _variance_ratio(ev, ev.links[name])
            if ratio == 0:  # all-zero weights are zero-initialized on purpose (Fixup, SkipInit), not drawn wrong
                continue
            if not 1 / MISMATCH_FACTOR <= ratio <= MISMATCH_FACTOR:
                segments[-1].append((name, ratio, target))
    closed.append(False)
    normalized_network = any(is_norm(m) for _, m in ev.order)
    findings = []
    for segment, ends_in_norm in zip(segments, closed, strict=True):
        if not segment or ends_in_norm:
            continue
        log_product = sum(math.log(r) for _, r, _ in segment)
        if log_product <= math.log(COMPOUND_VARIANCE) and (normalized_network or -log_product <= math.log(COMPOUND_VARIANCE)):
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
    if not findings and _head_reads_normalized(ev):
        findings += _overconfident_start(ev)
    return findings


def _head_reads_normalized(ev: Evidence) -> bool:
    """Does the last normalization run after every residual branch's last layer (a final norm,
    or post-norm blocks), so that the layers after it read normalized features?"""
    norms = [i for i, (_, m) in enumerate(ev.order) if is_norm(m)]
    in_blocks = [i for i, (n, _) in enumerate(ev.order)
                 if n in ev.links and n in ev.inside_blocks]  # fmt: skip
    return bool(norms) and (not in_blocks or norms[-1] > in_blocks[-1])


def _overconfident_start(ev: Evidence) -> list[Finding]:
    """A cross-entropy loss at initialization far above ln(C): the predictions start confidently
    wrong, so the output side of the network starts too large."""
    if ev.classes is None or ev.classes < 2 or not math.isfinite(ev.loss):
        return []
    chance = math.log(ev.classes)
    if ev.loss <= chance + math.log(OVERCONFIDENCE):
        return []
    heads = [name for name, _ in ev.order if name in ev.links]
    head = heads[-1:] if heads else []
    return [Finding(
        "init_mismatch", "error", head,
        f"the loss at initialization is {ev.loss:.3g}, far above ln({ev.classes}) = {chance:.3g} for uniform "
        "predictions: the model starts confidently wrong, so the output layer (or what feeds it) starts with "
        "weights far too large",
        "re-initialize with the architecture's standard init (trainability.initialize(model)); the output layer "
        "should start small (std 0.02 or glorot_uniform on normalized features, or zero)",
        {"op": "reinitialize", "layers": head, "init": "auto"},
    )]  # fmt: skip
