"""Dead ReLU units and saturated sigmoid/tanh units.

- dead_units: a ReLU unit never positive over the batch gets no gradient. In a healthy
  He-initialized stack the samples grow correlated with depth, so units whose mean input is
  negative can be off for the whole batch: up to about half of a layer (measured: 13-19% at depth
  10, 39-42% at depth 30, up to 57% at depth 100, width 100, batch 256). Only those units can be
  off that way, so more than two thirds dead is a finding, 90% an error.
- saturated_units: more than 10% of a sigmoid/tanh/softsign layer's outputs where the
  derivative is under 1% of its maximum (50%: an error). A standardized pre-activation puts
  under 0.3% there.
"""

from __future__ import annotations

from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence

DEAD_FRACTION = 2 / 3
SEVERE_DEAD_FRACTION = 0.9
SATURATED_FRACTION = 0.10
SEVERE_FRACTION = 0.5

def unit_health(ev: Evidence) -> list[Finding]:
    findings = []
    chance = 0.5 ** min(ev.batch_size, 60)
    dead = [s for s in ev.layers if s.dead_fraction is not None and s.dead_fraction > DEAD_FRACTION + chance]
    if dead:
        worst = max(s.dead_fraction for s in dead)  # type: ignore[type-var]
        findings.append(Finding(
            "dead_units", "error" if worst >= SEVERE_DEAD_FRACTION else "warning", [s.name for s in dead],
            f"{len(dead)} layers have ReLU units that never fire over the batch of {ev.batch_size} "
            f"(up to {worst:.0%} of a layer's units): they get no gradient and stop learning",
            "use leaky_relu (negative_slope=0.2) or elu, re-initialize with he_normal and zero biases "
            "(trainability.initialize(model)), and lower the learning rate",
            {"op": "swap_activation", "layers": [s.name for s in dead], "activation": "leaky_relu",
             "hyperparameters": {"negative_slope": 0.2},
             "alternatives": [{"op": "swap_activation", "layers": [s.name for s in dead], "activation": "elu"},
                              {"op": "reinitialize", "layers": [s.name for s in dead], "init": "he_normal"},
                              {"op": "lower_learning_rate", "factor": 0.1}]},
        ))  # fmt: skip
    saturated = [s for s in ev.layers if s.saturated_fraction is not None and s.saturated_fraction > SATURATED_FRACTION]
    if saturated:
        worst = max(s.saturated_fraction for s in saturated)  # type: ignore[type-var]
        findings.append(Finding(
            "saturated_units", "error" if worst >= SEVERE_FRACTION else "warning", [s.name for s in saturated],
            f"{len(saturated)} saturating layers ({', '.join(sorted({s.type for s in saturated}))}) have up to "
            f"{worst:.0%} of their outputs where the derivative is under 1% of its maximum",
            "re-initialize with glorot_uniform (trainability.initialize(model)), or use relu with he_normal "
            "(selu with lecun_normal), or add batch norm before the activation",
            {"op": "reinitialize", "layers": [s.name for s in saturated], "init": "glorot_uniform",
             "alternatives": [{"op": "swap_activation", "layers": [s.name for s in saturated], "activation": "relu"},
                              {"op": "swap_activation", "layers": [s.name for s in saturated], "activation": "selu"},
                              {"op": "insert_normalization", "norm": "batch"}]},
        ))  # fmt: skip
    return findings
