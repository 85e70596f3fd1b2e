"""A learning rate too high or too low, judged from how far the weights move and what the loss does.

The update-to-weight ratio alone does not separate a sick run from a healthy one (a healthy CNN
with SGD and momentum moves its weights more at step 10 than an MLP about to diverge), and a run
whose rate is too high can end with small updates once the optimizer's state and the weights have
grown. So each verdict needs the loss's own evidence, and the ratio names the cause:

- ``learning_rate_too_high`` (error): the loss has risen back by half its starting level or more
  (median over the steps since the previous record, against the best such level so far) at two
  records in a row (at one, once a step has moved some layer by half its weights), or by five
  times its starting level at once (a deep ELU stack measured here
  jumps from 2.5 to 8.2 at step 1 and is back at 0.87 at step 2, then trains: turbulence), or
  turned NaN/Inf, or oscillates (its median step-to-step change over :data:`OSCILLATION_STEPS`
  steps is :data:`SWING` of its starting level or more, without coming down), after updates of at
  least :data:`TARGET_UPDATE` of the weights; or the network's outputs stopped depending on its
  input at two records in a row (the share of the logits' variance that varies across samples
  under :data:`COLLAPSE`: it predicts the same for every sample, all a constant predictor can do),
  after updates of at least :data:`HIGH_UPDATE` of the weights' initial size. Blamed on the rate
  only where some recorded update was that large while the gradient behind it was within
  :data:`GRADIENT_NORMAL` of its first size (else the gradient exploded: clip it). The suggested rate is the one that would have made the typical (median)
  layer's first recorded update :data:`TARGET_UPDATE` of its initial size,
  ``lr * 0.01 / median ratio``, and at least 3x lower than the current one; warm-up where the rate never ramped up and the optimizer is adaptive, clipping
  where the gradient norm grew.
- ``learning_rate_too_low`` (warning): after at least :data:`MIN_STEPS` steps the loss is flat
  and still at 90% or more of its starting level, while no layer moves by more than
  :data:`LOW_UPDATE` of its weights a step; the suggested rate makes the median layer's update
  :data:`TARGET_UPDATE` (at least 3x, at most 1000x higher). Never after a too-high verdict, on collapsed
  outputs, on a loss that ever rose or went NaN, on a run that has made progress (a converged run
  is flat near its floor), or once the schedule has brought the rate under half its peak.

Sources: the update-to-weight ratio's rule of thumb (about 1e-3 a step; Karpathy's "A recipe for
training neural networks"; REFERENCE section 8); Wortsman et al. 2023 for the ways a too-high
rate shows in transformers (logit growth, collapse onto a constant output).
"""

from __future__ import annotations

import math

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import span
from trainability.monitor.rules.evidence import TrainingEvidence

#: The largest healthy per-step update of a typical layer, relative to its weights.
TARGET_UPDATE = 1e-2
#: An update this large relative to a weight's initial size is far above any healthy step.
HIGH_UPDATE = 0.1
#: Under this, no layer is learning at a useful speed.
LOW_UPDATE = 1e-4
#: An update this large relative to a weight (half of it, in one step) is no turbulence of the first steps.
SEVERE_UPDATE = 0.5
#: A loss back up by this fraction of its starting level (or more), at two records in a row (at
#: one, after an update of :data:`SEVERE_UPDATE`), is rising ...
RISE = 0.5
#: ... and by this multiple of it, at once.
STEEP_RISE = 5.0
#: Under this share of input-dependent logit variance the output no longer depends on the input.
COLLAPSE = 0.01
#: A loss that moves this fraction of its starting level from one step to the next (median) oscillates ...
SWING = 0.25
#: ... over this many steps.
OSCILLATION_STEPS = 20
#: At or above this fraction of its starting level the loss has made no progress.
NO_PROGRESS = 0.9
#: The too-low verdict waits for this many steps.
MIN_STEPS = 100
#: A gradient norm within this factor of its first recorded value is not exploding.
GRADIENT_NORMAL = 10.0
#: Suggested rates are at least this much lower, at most this much lower, than the current one.
MIN_FACTOR, MAX_FACTOR = 3.0, 1000.0


def _largest(updates: dict[str, float], count: int = 3) -> list[str]:
    ranked = sorted(((v, n) for n, v in updates.items() if math.isfinite(v)), reverse=True)
    return [n for _, n in ranked[:count]]


def suggested_rate(ev: TrainingEvidence, lr: float) -> float:
    """A lower rate from the measurements: the rate that would have made the median layer's first
    recorded update :data:`TARGET_UPDATE` of its initial size (updates scale with the rate; the
    first is taken before the weights have grown or blown up), within ``[lr / 1000, lr / 3]``."""
    for record in ev.records:
        values = sorted(v for v in record.updates_initial.values() if math.isfinite(v))
        median = values[len(values) // 2] if values else None
        if median and record.lr:
            rate = record.lr * TARGET_UPDATE / median
            break
    else:
        rate = lr / 10
    return float(min(max(rate, lr / MAX_FACTOR), lr / MIN_FACTOR))


def _round(rate: float) -> str:
    """A rate as people write one: one significant digit."""
    return f"{rate:.1g}"


def _warmup_applies(ev: TrainingEvidence) -> bool:
    """No warm-up happened (the rate never rose since the first record) and the optimizer is adaptive."""
    rates = [r.lr for r in ev.records if r.lr is not None]
    ramped = any(b > a * 1.01 for a, b in zip(rates, rates[1:], strict=False))
    return not ramped and ev.optimizer is not None and ev.optimizer.adaptive


def _gradient_grew(ev: TrainingEvidence) -> float | None:
    """How many times the global gradient norm grew from the first record to this one."""
    first, now = ev.records[0].grad_norm, ev.current.grad_norm
    if first and now is not None and first > 0:
        return now / first
    return None


def rate_to_blame(ev: TrainingEvidence) -> bool:
    """Whether some recorded update was large while the gradient that made it was of its usual
    size: then the step size, not an exploding gradient, moved the weights too far. The gradient
    of the step an update came from is the previous record's when that was the step before, else
    this record's (one step later)."""
    first = ev.records[0].grad_norm
    by_step = {r.step: r for r in ev.records}
    for record in ev.records:
        if (record.max_update() or 0.0) < TARGET_UPDATE:
            continue
        source = by_step.get(record.step - 1, record)
        norm = source.grad_norm
        if first is None or norm is None or not math.isfinite(norm) or norm <= GRADIENT_NORMAL * first:
            return True
    return False


def _rising(ev: TrainingEvidence, level: float | None, best: float | None, start: float) -> bool:
    """The loss back up by :data:`RISE` of its starting level at this record and at the one
    before (a start that jumps and comes straight back is the first steps' turbulence, not a rate
    too high), or at this record alone after some step moved a layer by :data:`SEVERE_UPDATE` of
    its weights (measured: a 20-layer ELU stack whose start swings 2.5, 8.2, 0.9 and then trains
    moves its layers by at most 9% a step; a GPT-2 at AdamW lr 0.1 by 100% at its first step),
    or by :data:`STEEP_RISE` of it at once."""
    if level is None or best is None:
        return False
    rise = level - best
    if rise >= STEEP_RISE * abs(start):
        return True
    if rise < RISE * abs(start):
        return False
    if ev.history.max_update >= SEVERE_UPDATE:  # a step moved some layer by half its size: nothing to wait out
        return True
    if len(ev.levels) < 2:
        return False
    before, earlier = ev.levels[-2], ev.best_level(before=2)
    return before is not None and earlier is not None and before - earlier >= RISE * abs(start)


def _collapsed(ev: TrainingEvidence) -> bool:
    """The output's input dependence under :data:`COLLAPSE` at this record and at the one before
    that measured it."""
    now, before = ev.current, ev.previous_with("input_dependence")
    return before is not None and all(v is not None and v < COLLAPSE for v in (now.input_dependence, before.input_dependence))


def _oscillating(ev: TrainingEvidence) -> tuple[float, int] | None:
    """``(median step-to-step change, steps)`` of the loss over the last :data:`OSCILLATION_STEPS`
    steps when that change is at least :data:`SWING` of the starting level and the loss did not
    come down over them at all (the median of their second half no lower than of their first);
    else ``None``. Step-to-step changes see through a trend: a falling loss moves a little each
    step, an oscillating one a lot; a turbulent start that is coming down is no verdict."""
    losses = ev.losses
    start = losses.initial()
    window = losses.finite(ev.current.step - OSCILLATION_STEPS + 1, ev.current.step)
    if start is None or len(window) < OSCILLATION_STEPS // 2:
        return None
    steps = sorted(abs(b - a) for a, b in zip(window, window[1:], strict=False))
    median = steps[len(steps) // 2]
    half = len(window) // 2
    first, second = sorted(window[:half]), sorted(window[half:])
    came_down = second[len(second) // 2] < first[len(first) // 2]
    if median < SWING * abs(start) or came_down:
        return None
    return median, len(window)


def too_high(ev: TrainingEvidence) -> list[Finding]:
    now = ev.current
    start = ev.losses.initial()
    if start is None or not now.updates:
        return []
    first_bad = ev.losses.first_non_finite
    level, best = ev.level(), ev.best_level()
    ratio_now = now.max_update() or 0.0
    reason = None
    if first_bad is not None and first_bad <= now.step and ratio_now >= TARGET_UPDATE:
        reason = f"the loss became NaN/Inf at step {first_bad}"
    elif _rising(ev, level, best, start) and ratio_now >= TARGET_UPDATE:
        reason = (f"the loss rose to {level:.4g} (median since the last record) from a best of {best:.4g}, "
                  f"having started at {start:.4g}")  # fmt: skip
    elif _collapsed(ev) and level is not None and ev.history.max_update_initial >= HIGH_UPDATE:
        reason = (f"the outputs no longer depend on the input at two records in a row (only {now.input_dependence:.2%} "
                  f"of the logits' variance varies across samples): the network predicts the same for every sample, "
                  f"as a constant predictor does, at a loss of {level:.4g} (it started at {start:.4g})")  # fmt: skip
    elif (swing := _oscillating(ev)) is not None and ratio_now >= TARGET_UPDATE:
        reason = (f"the loss oscillates: over the last {swing[1]} steps it moved {swing[0]:.3g} a step (median), "
                  f"{swing[0] / abs(start):.0%} of its starting level, without coming down")  # fmt: skip
    if reason is None or not rate_to_blame(ev):
        return []
    lr = now.lr
    names = _largest(now.updates)
    largest = now.updates[names[0]]
    initial = now.updates_initial.get(names[0])
    sizes = f"{largest:.3g} of its weights" + (f" ({initial:.3g} of their initial size)" if initial is not None else "")
    fix_parts = []
    action: dict = {"op": "lower_learning_rate", "layers": names}
    if lr:
        rate = suggested_rate(ev, lr)
        fix_parts.append(f"lower the learning rate from {lr:.3g} to about {_round(rate)} (where the median "
                         f"layer would move {TARGET_UPDATE:g} of its initial size a step), or pick one with "
                         "trainability.find_lr")  # fmt: skip
        action.update(lr=float(_round(rate)), factor=lr / float(_round(rate)))
    else:
        fix_parts.append(f"lower the learning rate until the largest update is about {TARGET_UPDATE:g} of the weights "
                         "(trainability.find_lr picks one)")  # fmt: skip
        action.update(factor=max(MIN_FACTOR, largest / TARGET_UPDATE))
    alternatives = []
    if _warmup_applies(ev):
        fix_parts.append("warm the rate up linearly over the first few hundred steps")
        alternatives.append({"op": "warmup", "steps": 500})
    grew = _gradient_grew(ev)
    if grew is not None and grew >= 10:
        fix_parts.append(f"clip gradients at norm 1.0 (the gradient norm grew {grew:.3g}x)")
        alternatives.append({"op": "clip", "clip_norm": 1.0})
    if alternatives:
        action["alternatives"] = alternatives
    rate_text = f"at a learning rate of {lr:.3g}, " if lr else ""
    return [Finding(
        "learning_rate_too_high", "error", names,
        f"{reason}, {rate_text}with updates far above the healthy size: {names[0]} moved {sizes} in one step "
        f"(healthy steps move about 1e-3, at most {TARGET_UPDATE:g}); largest updates in {span(names)}",
        "; ".join(fix_parts), action,
    )]  # fmt: skip


def too_low(ev: TrainingEvidence) -> list[Finding]:
    now = ev.current
    losses = ev.losses
    start = losses.initial()
    if start is None or losses.start is None or now.step - losses.start < MIN_STEPS or not now.updates:
        return []
    if ev.reported & {"learning_rate_too_high", "adam_epsilon_dominates", "non_finite", "loss_spike"}:
        return []
    if losses.first_non_finite is not None:
        return []
    lowest = ev.history.min_input_dependence
    if lowest is not None and lowest < COLLAPSE:
        return []
    peak = ev.max_lr()
    if now.lr is not None and peak is not None and now.lr < 0.5 * peak:
        return []  # the schedule decayed the rate on purpose
    span_steps = max((now.step - losses.start) // 5, 10)
    recent = losses.level(now.step - span_steps + 1, now.step)
    before = losses.level(now.step - 2 * span_steps + 1, now.step - span_steps)
    best = ev.best_level()
    if recent is None or before is None or best is None:
        return []
    if best - recent > 0.5 * abs(start) or (losses.highest() or start) > start * (1 + RISE):
        return []  # it rose at some point: not a slow run
    flat = abs(before - recent) < 0.01 * abs(start)
    if not (flat and recent >= NO_PROGRESS * start):
        return []
    largest = now.max_update() or 0.0
    if largest >= LOW_UPDATE:
        return []
    names = _largest(now.updates)
    lr = now.lr
    median = now.median_update() or largest
    factor = min(MAX_FACTOR, max(MIN_FACTOR, TARGET_UPDATE / max(median, 1e-12)))
    rate = f"to about {_round(lr * factor)} " if lr else ""
    action = {"op": "raise_learning_rate", "factor": factor, **({"lr": float(_round(lr * factor))} if lr else {})}
    return [Finding(
        "learning_rate_too_low", "warning", names,
        f"after {now.step - losses.start} steps the loss is flat at {recent:.4g}, {recent / start:.0%} of where it started, "
        f"while no layer moves more than {largest:.2g} of its weights a step (largest in {names[0]}; the median layer "
        f"{median:.2g}; healthy steps move about 1e-3)" + (f" at a learning rate of {lr:.3g}" if lr else ""),
        f"raise the learning rate {rate}(where the median layer would move {TARGET_UPDATE:g} of its weights a step; "
        "updates grow with the rate), or pick one with trainability.find_lr",
        action,
    )]  # fmt: skip


__all__ = ["COLLAPSE", "HIGH_UPDATE", "LOW_UPDATE", "MIN_STEPS", "NO_PROGRESS", "RISE", "TARGET_UPDATE",
           "suggested_rate", "too_high", "too_low"]  # fmt: skip
