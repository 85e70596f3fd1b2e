"""Where NaN/Inf first appears: the input, a forward output, the loss, or a backward pass."""

from __future__ import annotations

import math

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence, span


def non_finite(ev: Evidence) -> list[Finding]:
    fix = ("find what overflows there (exp, log, division) and guard it; re-initialize with the "
           "recommended initializer (trainability.initialize(model)), lower the learning rate and "
           "clip gradients at norm 1.0")  # fmt: skip
    also = [{"op": "reinitialize", "init": "auto"}, {"op": "clip", "clip_norm": 1.0},
            {"op": "lower_learning_rate", "factor": 0.1}]  # fmt: skip
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
                        "the input batch was finite", fix, {"op": "inspect", "layers": [first.name], "alternatives": also})]  # fmt: skip
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
                            fix, {"op": "inspect", "layers": weight_bad[-1:], "alternatives": also})]  # fmt: skip
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
                    {"op": "inspect", "layers": [culprit], "alternatives": also})]  # fmt: skip
