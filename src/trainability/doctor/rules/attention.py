"""Attention logits too large: softmax saturates and attention collapses onto one token.

With query and key of RMS ``q`` and ``k`` per element, the scaled logits ``q.k / sqrt(d)`` have a
standard deviation of about ``q * k`` (each of the ``d`` products has variance ``q^2 k^2``). A
softmax whose logits spread beyond about +-5 is near one-hot: it passes almost no gradient and
training becomes unstable (attention entropy collapse, Zhai et al. 2023; DeepDiagnosis' bound
for saturated pre-activations is |x| >= 5). The fraction of logits beyond +-5 under a normal
with that standard deviation is judged like saturated units: over 10% a warning, over 50% an
error. The transformers' standard init (std 0.02) gives logits of std about 0.01 on LayerNorm
outputs; BERT with ``initializer_range=1.0`` gives about 30.
"""

from __future__ import annotations

import math

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence, span
from trainability.doctor.rules.units import SATURATED_FRACTION, SEVERE_FRACTION

#: |logit| beyond this: the softmax is saturated there.
LOGIT_BOUND = 5.0


def attention_saturation(ev: Evidence) -> list[Finding]:
    flagged = []
    for name, std, projections in ev.attention:
        fraction = math.erfc(LOGIT_BOUND / (std * math.sqrt(2))) if std > 0 else 0.0
        if fraction > SATURATED_FRACTION:
            flagged.append((name, std, fraction, projections))
    if not flagged:
        return []
    worst = max(flagged, key=lambda f: f[2])
    names = [n for n, _, _, _ in flagged]
    layers = [p for *_, projections in flagged for p in projections]
    return [Finding(
        "saturated_units", "error" if worst[2] >= SEVERE_FRACTION else "warning", layers,
        f"attention softmax saturates in {len(flagged)} attention layers ({span(names)}): the logits of "
        f"{worst[0]} have a standard deviation of about {worst[1]:.3g} (query RMS x key RMS), so about "
        f"{worst[2]:.0%} of them lie beyond +-{LOGIT_BOUND:g}, where attention is near one-hot and passes "
        "almost no gradient (attention entropy collapse)",
        f"re-initialize the query/key projections {span(layers)} with the architecture's standard init "
        "(std 0.02; trainability.initialize(model)), keep the 1/sqrt(head_dim) scaling, or normalize queries "
        "and keys (QK-LayerNorm)",
        {"op": "reinitialize", "layers": layers, "init": "auto"},
    )]  # fmt: skip
