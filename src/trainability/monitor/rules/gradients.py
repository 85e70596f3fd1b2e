"""Gradients and units that go wrong during training, against the run's own history.

- ``exploding_gradients``: the global weight-gradient norm at :data:`EXPLOSION_FACTOR` times its
  median over the (up to :data:`HISTORY_WINDOW`) earlier records (the run's own scale, not a fixed
  bound), naming the layers whose own gradient grew that much. A single layer's gradient growing
  100x is no explosion when the whole does not: a transformer's query and key gradients start
  near 0 (uniform attention passes almost none) and grow by orders of magnitude in healthy runs.
- ``dead_units``: ReLU units that fired at the first record and no longer fire on any sample of
  the batch, a layer's dead fraction grown by :data:`DEAD_GROWTH` or more: named with the step
  where the growth was first seen (between two records) and the learning rate at that time.
"""

from __future__ import annotations

import math
import statistics

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import span
from trainability.doctor.rules.units import DEAD_FRACTION
from trainability.monitor.rules.evidence import Record, TrainingEvidence

#: A layer's weight-gradient norm this many times its median over earlier recordings: explosion.
EXPLOSION_FACTOR = 100.0
#: ... over this many earlier recordings (a running window).
HISTORY_WINDOW = 20
#: A ReLU layer whose dead fraction grew by this much since its first recording: dying units.
DEAD_GROWTH = 0.2


def _global(record: Record) -> float | None:
    total = record.grad_norm
    return total if total is not None and math.isfinite(total) else None


def exploding(ev: TrainingEvidence) -> list[Finding]:
    now = ev.current
    earlier = ev.records[-HISTORY_WINDOW - 1 : -1]
    history = [g for r in earlier if (g := _global(r)) is not None]
    total = _global(now)
    if total is None or len(history) < 3 or not statistics.median(history) > 0:
        return []
    overall = total / statistics.median(history)
    if overall <= EXPLOSION_FACTOR:
        return []
    found = []
    for s in now.layers:
        if s.weight_grad_norm is None or not math.isfinite(s.weight_grad_norm):
            continue
        own = [v.weight_grad_norm for r in earlier for v in r.layers
               if v.name == s.name and v.weight_grad_norm is not None and math.isfinite(v.weight_grad_norm)]  # fmt: skip
        baseline = statistics.median(own) if len(own) >= 3 else 0.0
        if baseline > 0 and s.weight_grad_norm > EXPLOSION_FACTOR * baseline:  # a gradient that was 0 has no scale
            found.append((s.name, s.weight_grad_norm / baseline))
    if not found:
        return []
    worst = max(found, key=lambda p: p[1])
    names = [n for n, _ in found]
    lr = f" at a learning rate of {now.lr:.3g}" if now.lr else ""
    return [Finding(
        "exploding_gradients", "error", names,
        f"gradients start to explode{lr}: the global gradient norm is {overall:.3g}x its median over earlier "
        f"recordings; the weight gradient of {worst[0]} {worst[1]:.3g}x ({len(found)} layers over "
        f"{EXPLOSION_FACTOR:.0f}x: {span(names)})",
        "clip gradients at norm 1.0 (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); fit(..., clip_norm=1.0)) "
        "and lower the learning rate",
        {"op": "clip", "clip_norm": 1.0, "layers": names, "alternatives": [{"op": "lower_learning_rate", "factor": 3.0}]},
    )]  # fmt: skip


def dying(ev: TrainingEvidence) -> list[Finding]:
    now = ev.current
    first = ev.history.first_dead
    grown = [(s.name, first[s.name], s.dead_fraction) for s in now.layers
             if s.dead_fraction is not None and s.dead_fraction - first[s.name] >= DEAD_GROWTH]  # fmt: skip
    if not grown:
        return []
    # layers now mostly dead are the finding; others that grew with them follow from their dead
    # inputs (a layer fed only zeros fires on none of its samples) and are named in the message
    severe = [g for g in grown if g[2] > DEAD_FRACTION]
    also = [g[0] for g in grown if g not in severe] if severe else []
    grown = severe or grown
    names = [n for n, _, _ in grown]
    previous = ev.previous_with("detail")  # the last record that measured the units
    since = f"between steps {previous.step} and {now.step}" if previous is not None else f"by step {now.step}"
    lr = previous.lr if previous is not None and previous.lr is not None else now.lr
    at_lr = f", at a learning rate of {lr:.3g}" if lr else ""
    name, was, is_ = grown[0]
    return [Finding(
        "dead_units", "warning", names,
        f"ReLU units died during training {since}{at_lr}: {name} went from {was:.0%} to {is_:.0%} of its units never "
        f"firing on the batch ({len(grown)} layers grew by {DEAD_GROWTH:.0%} or more: {span(names)}"
        + (f"; downstream, {span(also)} fire less on what is left of their input" if also else "")
        + "); dead units get no gradient and do not come back",
        "lower the learning rate" + (f" (now {lr:.3g}) 3-10x" if lr else " 3-10x") + ", or use leaky_relu "
        "(negative_slope=0.2) or elu, which cannot die",
        {"op": "lower_learning_rate", "factor": 3.0, "layers": names,
         "alternatives": [{"op": "swap_activation", "layers": names, "activation": "leaky_relu",
                           "hyperparameters": {"negative_slope": 0.2}}]},
    )]  # fmt: skip


__all__ = ["DEAD_GROWTH", "EXPLOSION_FACTOR", "HISTORY_WINDOW", "dying", "exploding"]
