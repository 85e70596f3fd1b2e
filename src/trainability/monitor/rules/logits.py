"""Output logit divergence: every output logit drifting far to one side of 0.

The softmax does not change when every logit shifts together, so nothing in the cross-entropy
holds that common offset: without weight decay it can drift far from 0 late in training (the
logits "diverge and become very negative"), and the loss then degrades (Wortsman et al. 2023;
PaLM's z-loss ``1e-4 * log^2 Z``, ``log Z = logsumexp_c z_c``, holds the log-partition near 0,
as does weight decay). A logit of size ``M`` is rounded to ``M * eps`` of its dtype (bfloat16:
``M / 256``), so a drifting offset costs precision in every logit the loss is computed from.

The offset is read off two numbers of the output, averaged over samples and positions: ``log Z``
and the mean logit over classes. A confident healthy network has a large ``log Z`` (its top logit)
while its mean logit is near or below 0 (measured here: an MLP that memorized digits, log Z 28,
mean logit -9); an offset moves both the same way. So the finding needs both beyond
:data:`LOGZ_WARNING` on the same side of 0, at two records in a row and no nearer 0 at the second
(a drift, not one odd batch); beyond :data:`LOGZ_ERROR`, or where a logit that size is rounded by
more than :data:`ROUNDING_ERROR` nats in the output's dtype, it is an error. At initialization
``log Z`` is about ``ln C`` (C classes) and the mean logit about 0.
"""

from __future__ import annotations

from trainability.doctor.records import Finding
from trainability.monitor.rules.evidence import Record, TrainingEvidence

LOGZ_WARNING = 30.0
LOGZ_ERROR = 1000.0
#: Nats of rounding in a logit of the log-partition's size, in the output's dtype.
ROUNDING_ERROR = 0.1


def _offset(record: Record) -> float | None:
    """The common offset of the logits, where log Z and the mean logit agree on it: the one of
    them nearer 0, else ``None``."""
    z, m = record.log_z, record.mean_logit
    if z is None or m is None or (z > 0) != (m > 0):
        return None
    return z if abs(z) < abs(m) else m


def output_divergence(ev: TrainingEvidence, dtype_eps: float | None = None) -> list[Finding]:
    now = ev.current
    offset = _offset(now)
    if offset is None or abs(offset) <= LOGZ_WARNING:
        return []
    previous = next((r for r in reversed(ev.records[:-1]) if r.log_z is not None), None)
    before = _offset(previous) if previous is not None else None
    if before is None or abs(before) <= LOGZ_WARNING or abs(offset) < abs(before):
        return []  # one record only, or coming back
    first = next((r for r in ev.records if r.log_z is not None), now)
    rounding = abs(now.log_z) * dtype_eps if dtype_eps and now.log_z is not None else None
    severe = abs(offset) > LOGZ_ERROR or (rounding is not None and rounding > ROUNDING_ERROR)
    decay = ""
    if ev.optimizer is not None:
        wd = [g.get("weight_decay", 0.0) for g in ev.optimizer.hyperparameters()]
        decay = " (no weight decay)" if wd and not any(wd) else f" (weight decay {max(wd):g})" if wd else ""
    rounding_text = f"; a logit that size is rounded by about {rounding:.2g} nats in the output's dtype" if rounding else ""
    return [Finding(
        "output_logit_divergence", "error" if severe else "warning", [],
        f"the output logits have drifted together to {'+' if offset > 0 else ''}{offset:.4g} (log Z {now.log_z:.4g}, "
        f"mean logit {now.mean_logit:.4g}; log Z was {first.log_z:.3g} at step {first.step}){decay}: the cross-entropy "
        f"does not hold their common offset, and far from 0 the loss degrades{rounding_text} (Wortsman et al. 2023)",
        "add a z-loss to the loss, 1e-4 * logsumexp(logits, -1).pow(2).mean() (PaLM), and weight decay "
        "(AdamW(..., weight_decay=0.1))",
        {"op": "z_loss", "coefficient": 1e-4, "alternatives": [{"op": "weight_decay", "weight_decay": 0.1}]},
    )]  # fmt: skip


__all__ = ["LOGZ_ERROR", "LOGZ_WARNING", "ROUNDING_ERROR", "output_divergence"]
