"""Loss spikes: a step whose loss jumps far above its recent level.

For each step, its loss against the steps before it (up to :data:`WINDOW`, at least
:data:`MIN_HISTORY`): a robust z-score ``(loss - median) / (1.4826 MAD)`` of at least
:data:`SPIKE_Z` (ZClip uses 2.5 on an EMA of the gradient norm to clip, OLMo 2 counts 7 sigma as a
spike; a robust 6 keeps healthy batch-to-batch noise out). A plain z-score fires on healthy runs
once the loss nears zero (tiny absolute wobbles are many sigmas), so the jump must also be
large in the loss's own terms: at least doubling its recent level and the highest loss of the
window (a healthy run's batch losses have a heavy upper tail: a new high a little above the
last ones is noise, measured on a deep ELU MLP on circles, batch 32), and undoing at least
:data:`PROGRESS_UNDONE` of the progress made since the start (a converged MLP whose batch loss of
0.007 jumps to 0.3 on a batch of hard samples, measured here, undoes a tenth of it: batch noise). Spikes closer than :data:`EPISODE` steps are one episode.

With the spike, the finding says whether the gradient spiked at the same step, from the global
gradient norm when the loop handed it to ``step(loss, grad_norm=...)``, and from each layer's
weight gradient when the step was recorded: the first layer (in backward order: nearest the
output) whose gradient is 10x its median over earlier records. Loss spikes follow steps where a
gradient meets a stale second-moment estimate (StableAdamW, Wortsman, Dettmers et al. 2023):
clip the update or lower beta2; PaLM skipped the batches around a spike and restarted.
"""

from __future__ import annotations

import math
import statistics

from trainability.doctor.records import Finding
from trainability.monitor.losses import robust_scale
from trainability.monitor.rules.evidence import Record, TrainingEvidence

WINDOW = 50
MIN_HISTORY = 10
SPIKE_Z = 6.0
PROGRESS_UNDONE = 0.2
EPISODE = 100
#: A layer whose weight gradient is this many times its median over earlier records spiked.
GRADIENT_SPIKE = 10.0


def find_spikes(ev: TrainingEvidence, after: int) -> list[tuple[int, float, float, float]]:
    """``(step, loss, recent median, z)`` of every spike after step ``after``, up to now."""
    losses = ev.losses
    start = losses.initial()
    if start is None or losses.start is None:
        return []
    found = []
    values = losses.values
    for i in range(max(after + 1 - losses.start, MIN_HISTORY), len(values)):
        value = values[i]
        if not math.isfinite(value):
            continue
        window = [v for v in values[max(0, i - WINDOW) : i] if math.isfinite(v)]
        if len(window) < MIN_HISTORY or value < 2 * max(window):  # the cheap test first: most steps stop here
            continue
        median, scale = robust_scale(window)
        jump = value - median
        if median <= 0 or jump < PROGRESS_UNDONE * (start - median):  # twice the window's highest is twice its median too
            continue
        z = jump / scale if scale > 0 else math.inf
        if z >= SPIKE_Z:
            found.append((losses.step_of(i), value, median, z))
    return found


def _gradient_at(ev: TrainingEvidence, step: int) -> tuple[str, list[str]]:
    """What the gradient did at the spike's step."""
    losses = ev.losses
    parts = []
    index = step - (losses.start or 0)
    norms = losses.grad_norms
    if 0 <= index < len(norms) and math.isfinite(norms[index]):
        window = [v for v in norms[max(0, index - WINDOW) : index] if math.isfinite(v)]
        if window:
            ratio = norms[index] / max(statistics.median(window), 1e-30)
            parts.append(f"the gradient norm was {norms[index]:.3g}, {ratio:.3g}x its recent median")
    record: Record | None = next((r for r in ev.records if r.step == step), None)
    spiked: list[str] = []
    if record is not None:
        earlier = [r for r in ev.records if r.step < step]
        for s in reversed(record.layers):  # backward order: nearest the output first
            if s.weight_grad_norm is None or not math.isfinite(s.weight_grad_norm):
                continue
            history = [v.weight_grad_norm for r in earlier for v in r.layers
                       if v.name == s.name and v.weight_grad_norm is not None and math.isfinite(v.weight_grad_norm)]  # fmt: skip
            if history and s.weight_grad_norm > GRADIENT_SPIKE * max(statistics.median(history), 1e-30):
                spiked.append(s.name)
        if spiked:
            parts.append(f"the gradient spiked too, first in {spiked[0]} (nearest the output; {len(spiked)} layers over "
                         f"{GRADIENT_SPIKE:g}x their median)")  # fmt: skip
        else:
            parts.append("no layer's gradient was 10x its usual size at that step")
    elif not parts:
        parts.append("the step was not recorded, so its gradients are unknown; the monitor records the next steps "
                     "densely to catch a recurrence")  # fmt: skip
    return "; ".join(parts), spiked


def loss_spike(ev: TrainingEvidence, after: int, spikes: list[tuple[int, float, float, float]] | None = None) -> list[Finding]:
    """The first spike after step ``after`` (``spikes``: :func:`find_spikes`'s, where already found)."""
    spikes = find_spikes(ev, after) if spikes is None else spikes
    if not spikes:
        return []
    step, value, median, z = spikes[0]
    gradient, spiked = _gradient_at(ev, step)
    more = f" ({len(spikes)} spiking steps since)" if len(spikes) > 1 else ""
    lr = next((r.lr for r in reversed(ev.records) if r.step <= step and r.lr is not None), None)
    fix = ("skip or inspect the batch of that step (PaLM skipped the batches around a spike), clip gradients at norm 1.0"
           + (", and for Adam lower beta2 to 0.95 or clip the update (StableAdamW)" if ev.optimizer is not None and ev.optimizer.adaptive else "")
           + (f"; if spikes recur, lower the learning rate (now {lr:.3g})" if lr else "; if spikes recur, lower the learning rate"))  # fmt: skip
    return [Finding(
        "loss_spike", "warning", spiked,
        f"the loss spiked at step {step} to {value:.4g}, {value / median:.3g}x its recent median {median:.4g} "
        f"(robust z = {z:.3g}){more}; {gradient}",
        fix, {"op": "clip", "clip_norm": 1.0, "step": step,
              "alternatives": [{"op": "lower_learning_rate", "factor": 3.0}]},
    )]  # fmt: skip


__all__ = ["EPISODE", "GRADIENT_SPIKE", "MIN_HISTORY", "PROGRESS_UNDONE", "SPIKE_Z", "WINDOW", "find_spikes", "loss_spike"]
