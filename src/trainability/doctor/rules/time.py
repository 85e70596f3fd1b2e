"""Gradients through time: can a recurrent network learn long dependencies?

Back-propagation through time multiplies the gradient by the recurrent Jacobian at every step
(Bengio et al. 1994; Pascanu, Mikolov & Bengio 2013): for a tanh RNN a largest singular value of
W_hh below 1 suffices for it to vanish, above 1 is needed for it to explode. The capture records
the gradient reaching each time step of a recurrent layer's input (or each call's output for a
cell run in a loop). The earliest step's gradient over the last step's, ``r``, is judged on the
same scale as depth: below 1/100 the earliest steps barely influence learning
(``vanishing_through_time``), above 100 they dominate it (``exploding_through_time``); past
10^4 either way it is an error. A model trained at every step or pooling over time gets gradient
at every step directly, so its ``r`` stays near 1; a classifier that reads only the last state
shows the decay. For a bidirectional layer the smallest step over the largest is judged instead
(its middle is the farthest from both ends).
"""

from __future__ import annotations

import math

from trainability import adapters
from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence, span
from trainability.doctor.rules.gradients import GRADIENT_RATIO, SEVERE_GRADIENT_RATIO

#: Fewer steps than this say nothing about dependencies through time.
MIN_STEPS = 4


def _ratio(norms: list[float], bidirectional: bool) -> float:
    finite = [g for g in norms if math.isfinite(g)]
    if len(finite) != len(norms) or max(finite) == 0:
        return 1.0
    if bidirectional:
        return min(finite) / max(finite)
    return norms[0] / norms[-1] if norms[-1] > 0 else math.inf


def _base(kind: str) -> str:
    """``LSTM`` for ``LSTM`` and for ``Bidirectional(LSTM)``."""
    return kind.removeprefix("Bidirectional(").removesuffix(")")


def _forget_bias(module: object) -> float:
    """The mean forget-gate bias of an LSTM, both of PyTorch's biases counted (``nan`` when the
    module is not an LSTM)."""
    if module is None or not (inputs := adapters.forget_gate_bias(module)):  # type: ignore[arg-type]
        return math.nan

    def mean(views: list) -> float:
        return sum(float(v.detach().float().sum()) for v in views) / sum(v.numel() for v in views)

    hidden = adapters.forget_gate_bias(module, hidden=True)  # type: ignore[arg-type]
    return mean(inputs) + (mean(hidden) if hidden else 0.0)


def gradient_through_time(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    modules = dict(ev.order)
    vanishing, exploding = [], []
    for t in ev.time:
        if len(t.grad_norms) < MIN_STEPS:
            continue
        bidirectional = t.bidirectional or bool(getattr(modules.get(t.name), "bidirectional", False))
        r = _ratio(t.grad_norms, bidirectional)
        per_step = r ** (1 / (len(t.grad_norms) - 1)) if 0 < r < math.inf else r
        if r < 1 / GRADIENT_RATIO:
            vanishing.append((t, r, per_step))
        elif r > GRADIENT_RATIO and not bidirectional:
            exploding.append((t, r, per_step))
    if vanishing:
        worst = min(vanishing, key=lambda v: v[1])
        names = [t.name for t, _, _ in vanishing]
        plain = [t.name for t, _, _ in vanishing if _base(t.type) in ("RNN", "RNNCell", "SimpleRNN", "SimpleRNNCell")]
        lstm = [t.name for t, _, _ in vanishing if _base(t.type) in ("LSTM", "LSTMCell")]
        biased = [t.name for t, _, _ in vanishing if t.name in lstm
                  and _forget_bias(modules.get((t.parts or (t.name,))[0])) >= 0.5]  # already about 1  # fmt: skip
        fix = []
        if plain:
            fix.append(f"use an LSTM or GRU layer instead of the plain RNN {span(plain)}")
        if set(lstm) - set(biased):
            fix.append("set the LSTM forget-gate bias to 1 (Gers et al. 2000; trainability.initialize(model) does)")
        if biased:
            fix.append(f"the forget-gate bias of {span(biased)} is already about 1: for dependencies this long, "
                       "initialize it larger (chrono initialization, Tallec & Ollivier 2018: log U(1, steps - 1)), "
                       "or let the head read every step (pooling or attention over time)")  # fmt: skip
        fix.append("orthogonal hidden-hidden weights (trainability.initialize(model)), layer norm in the cell, "
                   "or shorter sequences (truncated back-propagation through time)")  # fmt: skip
        findings.append(Finding(
            "vanishing_through_time", "error" if worst[1] < 1 / SEVERE_GRADIENT_RATIO else "warning", names,
            f"the gradient reaching the earliest time step of {worst[0].name} ({worst[0].type}) is {worst[1]:.2e} "
            f"of the last step's over {len(worst[0].grad_norms)} steps (x{worst[2]:.3g} per step going back): "
            "the network cannot learn dependencies that span the sequence",
            "; ".join(fix),
            {"op": "recurrent_init", "layers": names, "hidden": "orthogonal", "forget_bias": 1.0,
             "replace_rnn": plain, "per_step": worst[2]},
        ))  # fmt: skip
    if exploding:
        worst = max(exploding, key=lambda v: v[1])
        names = [t.name for t, _, _ in exploding]
        findings.append(Finding(
            "exploding_through_time", "error" if worst[1] > SEVERE_GRADIENT_RATIO else "warning", names,
            f"the gradient reaching the earliest time step of {worst[0].name} ({worst[0].type}) is {worst[1]:.2e} "
            f"times the last step's over {len(worst[0].grad_norms)} steps (x{worst[2]:.3g} per step going back): "
            "updates from long sequences are dominated by their start and training diverges",
            "clip gradients at norm 1.0 (fit(..., clip_norm=1.0)); use orthogonal hidden-hidden weights "
            "(trainability.initialize(model)) or scale them so their largest singular value is at most 1; "
            "lower the learning rate, or use shorter sequences (truncated back-propagation through time)",
            {"op": "recurrent_init", "layers": names, "hidden": "orthogonal", "clip_norm": 1.0, "per_step": worst[2]},
        ))  # fmt: skip
    return findings
