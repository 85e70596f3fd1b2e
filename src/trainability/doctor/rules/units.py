"""Dead ReLU units and saturated sigmoid/tanh units.

- dead_units: a ReLU unit never positive over the batch gets no gradient. In a healthy
  He-initialized stack the samples grow correlated with depth, so units whose mean input is
  negative can be off for the whole batch: up to about half of a layer (measured: 13-19% at depth
  10, 39-42% at depth 30, up to 57% at depth 100, width 100, batch 256). Only those units can be
  off that way, so more than two thirds dead is a finding, 90% an error.
- saturated_units: more than 10% of a sigmoid/tanh/softsign layer's outputs where the
  derivative is under 1% of its maximum (50%: an error). A standardized pre-activation puts
  under 0.3% there. A capped activation (ReLU6, Hardtanh, Hardsigmoid, Keras' ``ReLU(max_value=)``)
  is flat beyond its cap, where its derivative is exactly 0: units at the cap are saturated, by the
  same fractions. There the pre-activations are too large (weights, biases or inputs), and the
  fix is the activation's own initializer with zero biases, not a swap to Glorot.
"""

from __future__ import annotations

from trainability import graph
from trainability.activations import ActivationSpec
from trainability.doctor.records import Finding, LayerStats
from trainability.doctor.rules.evidence import Evidence, span

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
    capped = [s for s in saturated if (spec := _activation(ev, s)) is not None and spec.cap is not None]
    smooth = [s for s in saturated if s not in capped]
    if smooth:
        worst = max(s.saturated_fraction for s in smooth)  # type: ignore[type-var]
        findings.append(Finding(
            "saturated_units", "error" if worst >= SEVERE_FRACTION else "warning", [s.name for s in smooth],
            f"{len(smooth)} saturating layers ({', '.join(sorted({s.type for s in smooth}))}) have up to "
            f"{worst:.0%} of their outputs where the derivative is under 1% of its maximum",
            "re-initialize with glorot_uniform (trainability.initialize(model)), or use relu with he_normal "
            "(selu with lecun_normal), or add batch norm before the activation",
            {"op": "reinitialize", "layers": [s.name for s in smooth], "init": "glorot_uniform",
             "alternatives": [{"op": "swap_activation", "layers": [s.name for s in smooth], "activation": "relu"},
                              {"op": "swap_activation", "layers": [s.name for s in smooth], "activation": "selu"},
                              {"op": "insert_normalization", "norm": "batch"}]},
        ))  # fmt: skip
    if capped:
        worst = max(s.saturated_fraction for s in capped)  # type: ignore[type-var]
        names = [s.name for s in capped]
        inits = sorted({spec.recommended_init for s in capped if (spec := _activation(ev, s)) is not None})
        kinds = sorted({spec.name for s in capped if (spec := _activation(ev, s)) is not None})
        findings.append(Finding(
            "saturated_units", "error" if worst >= SEVERE_FRACTION else "warning", names,
            f"{len(capped)} capped layers ({', '.join(kinds)}) have up to {worst:.0%} of their outputs at the cap, "
            f"where the derivative is 0 and no gradient passes: the pre-activations reaching {span(names)} are too large",
            f"re-initialize with {' / '.join(inits)} and zero biases (trainability.initialize(model)), standardize the "
            "inputs, or add batch norm before the activation; or use relu without a cap",
            {"op": "reinitialize", "layers": names, "init": inits[0] if len(inits) == 1 else "auto",
             "alternatives": [{"op": "insert_normalization", "norm": "batch"},
                              {"op": "swap_activation", "layers": names, "activation": "relu"}]},
        ))  # fmt: skip
    return findings


def _activation(ev: Evidence, row: LayerStats) -> ActivationSpec | None:
    """The activation a row's saturated fraction was read for: the activation module itself, or
    (read off a pre-activation, as the monitor does) the one its weight layer feeds."""
    link = ev.links.get(row.name)
    if link is not None and row.role == "weight":
        return link.activation
    module = dict(ev.order).get(row.name)
    return graph.activation_of(module) if module is not None else None
