"""Attention logits that grow until training diverges.

The largest pre-softmax logit ``q.k / sqrt(d_head)`` of each attention layer, tracked over
training. Wortsman et al. (2023, "Small-scale proxies for large-scale Transformer training
instabilities") found that the norms of queries and keys grow (not their alignment), that every
run whose largest logit passed 1e4 diverged, and that forcing the largest logit to about 1e3
already degraded the loss: over :data:`WARNING_LOGIT` a warning, over :data:`ERROR_LOGIT` an error.
Healthy transformers stay orders of magnitude lower (measured here: under 20 for small BERT- and
GPT-2-style models trained at sensible rates, with and without warm-up). Cures: layer norm on the
queries and keys of each head (qk-layernorm, which let a 1.2B model train at lr 0.3), a lower
learning rate, a longer warm-up.
"""

from __future__ import annotations

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import span
from trainability.monitor.rules.evidence import TrainingEvidence

WARNING_LOGIT = 1e3
ERROR_LOGIT = 1e4


def logit_growth(ev: TrainingEvidence) -> list[Finding]:
    now = ev.current
    flagged = {n: v for n, v in now.attention.items() if v > WARNING_LOGIT}
    if not flagged:
        return []
    names = sorted(flagged, key=flagged.get, reverse=True)  # type: ignore[arg-type]
    worst = flagged[names[0]]
    first = next((r for r in ev.records if names[0] in r.attention), None)
    grown = f", up from {first.attention[names[0]]:.3g} at step {first.step}" if first is not None and first is not now else ""
    lr = now.lr
    lower = f"lower the learning rate (now {lr:.3g}) 3-10x" if lr else "lower the learning rate 3-10x"
    return [Finding(
        "attention_logit_growth", "error" if worst > ERROR_LOGIT else "warning", names,
        f"the largest attention logit (q.k / sqrt(d)) of {names[0]} is {worst:.3g}{grown} ({len(names)} attention "
        f"layers over {WARNING_LOGIT:g}: {span(names)}); past 1e3 the loss degrades and every run past 1e4 "
        "diverged (Wortsman et al. 2023)",
        f"normalize queries and keys (qk-layernorm: LayerNorm over each head's q and k before the dot product), "
        f"{lower}, and warm the rate up over more steps",
        {"op": "qk_layernorm", "layers": names,
         "alternatives": [{"op": "lower_learning_rate", "factor": 10.0}, {"op": "warmup", "steps": 1000}]},
    )]  # fmt: skip


__all__ = ["ERROR_LOGIT", "WARNING_LOGIT", "logit_growth"]
