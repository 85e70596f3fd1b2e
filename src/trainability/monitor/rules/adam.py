"""Adam's epsilon swallowing the update.

An adaptive step is ``lr * m_hat / (sqrt(v_hat) + eps)``. Where ``eps`` is as large as
``sqrt(v_hat)`` or larger the step is at least halved, and far below it collapses to
``lr * g / eps``: the optimizer stops being adaptive and the layer all but stops learning. The
gradient RMS shrinks as models grow and as training goes on, so a fixed ``eps`` can come to
dominate (Wortsman et al. 2023: eps 1e-6 diverged at scale where 1e-15 trained; OLMo 2 lowered
1e-5 to 1e-8). Raising ``eps`` never helps.

A layer is flagged when ``eps >= sqrt(v_hat)`` for more than half of its entries that ever had a
gradient (entries with ``v = 0``, such as the unused rows of a token-type embedding, are left
out: they have nothing to scale). The fix names a lower ``eps``: a hundredth of the smallest
geometric-mean ``sqrt(v_hat)`` among the flagged layers, or ``eps / 100``, whichever is lower.
"""

from __future__ import annotations

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import span
from trainability.monitor.rules.evidence import TrainingEvidence

#: A layer is dominated when eps >= sqrt(v_hat) for more than this share of its active entries.
DOMINATED = 0.5


def epsilon(ev: TrainingEvidence) -> list[Finding]:
    now = ev.current
    optimizer = ev.optimizer
    if optimizer is None or not now.eps:
        return []
    eps = optimizer.eps()
    if not eps:
        return []
    flagged = [(name, share, scale) for name, (share, scale) in now.eps.items() if share > DOMINATED]
    if not flagged:
        return []
    names = [n for n, _, _ in flagged]
    worst = max(flagged, key=lambda f: f[1])
    smallest = min(scale for _, _, scale in flagged if scale > 0) if any(s > 0 for _, _, s in flagged) else eps
    suggestion = min(eps / 100, smallest / 100)
    suggestion = float(f"{suggestion:.0e}")
    severity = "error" if len(flagged) * 2 >= len(now.eps) else "warning"
    return [Finding(
        "adam_epsilon_dominates", severity, names,
        f"{optimizer.name}'s eps = {eps:.3g} is at least sqrt(v_hat), its running gradient RMS, for "
        f"{worst[1]:.0%} of the entries of {worst[0]} ({len(flagged)} of {len(now.eps)} layers over half; "
        f"typical sqrt(v_hat) there {worst[2]:.3g}): the update collapses to lr * g / eps and those layers "
        f"barely learn ({span(names)})",
        f"lower eps to {suggestion:.0e} (optimizer(..., eps={suggestion:.0e})); never raise it (Wortsman et al. 2023)",
        {"op": "set_adam_eps", "eps": suggestion, "layers": names},
    )]  # fmt: skip


__all__ = ["DOMINATED", "epsilon"]
