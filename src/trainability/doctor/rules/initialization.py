"""Weight variances against what the consuming activation needs (the textbook's table).

Each weight layer's variance is compared with what the activation it feeds needs. Layers off by
more than 1.5x either way are mismatched; the mismatch matters when, compounded over the
consecutive layers between normalization layers, it scales the signal's variance by more than
100x (its std by 10x).
"""

from __future__ import annotations

import math

from trainability import init as inits
from trainability.doctor.report import Finding
from trainability.doctor.rules.evidence import Evidence, span
from trainability.graph import NORM_TYPES, Link
from trainability.table import recommended_init

MISMATCH_FACTOR = 1.5
COMPOUND_VARIANCE = 1e2

def _variance_ratio(link: Link, variance: float) -> tuple[float, str]:
    """Measured weight variance over what the consuming activation needs, and that initializer."""
    name = recommended_init(link.activation)
    target = inits.get(name).variance(*inits.module_fans(link.module))  # type: ignore[union-attr]
    return variance / target, name


def init_mismatch(ev: Evidence) -> list[Finding]:
    segments: list[list[tuple[str, float, str]]] = [[]]
    for name, module in ev.order:
        if isinstance(module, NORM_TYPES):
            segments.append([])
        elif name in ev.links and name in ev.weight_var and not ev.links[name].normalized:
            ratio, target = _variance_ratio(ev.links[name], ev.weight_var[name])
            if not 1 / MISMATCH_FACTOR <= ratio <= MISMATCH_FACTOR:
                segments[-1].append((name, ratio, target))
    findings = []
    for segment in segments:
        if not segment:
            continue
        log_product = sum(math.log(r) for _, r, _ in segment)
        if abs(log_product) <= math.log(COMPOUND_VARIANCE):
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
    return findings
