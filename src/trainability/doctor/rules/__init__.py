"""The doctor's rules: evidence from one pass in, findings with fixes out.

One module per concern; every threshold is relative or derived, and explained in the module that
applies it and in docs/DOCTOR.md.
"""

from trainability.doctor.rules.attention import attention_saturation
from trainability.doctor.rules.depth import beyond_depth_scale, explain_depth
from trainability.doctor.rules.evidence import (
    Evidence,
    InputStats,
    input_moments,
    input_stats,
    input_stats_of,
    span,
)
from trainability.doctor.rules.gradients import GRADIENT_RATIO, SEVERE_GRADIENT_RATIO, gradient_flow
from trainability.doctor.rules.initialization import (
    COMPOUND_VARIANCE,
    MISMATCH_FACTOR,
    init_mismatch,
)
from trainability.doctor.rules.non_finite import non_finite
from trainability.doctor.rules.selu import LECUN_TOLERANCE, self_normalization
from trainability.doctor.rules.time import gradient_through_time
from trainability.doctor.rules.units import (
    DEAD_FRACTION,
    SATURATED_FRACTION,
    SEVERE_DEAD_FRACTION,
    SEVERE_FRACTION,
    unit_health,
)

__all__ = [
    "COMPOUND_VARIANCE", "DEAD_FRACTION", "GRADIENT_RATIO", "LECUN_TOLERANCE", "MISMATCH_FACTOR",
    "SATURATED_FRACTION", "SEVERE_DEAD_FRACTION", "SEVERE_FRACTION", "SEVERE_GRADIENT_RATIO", "Evidence", "InputStats",
    "attention_saturation", "beyond_depth_scale", "explain_depth", "gradient_flow", "gradient_through_time", "init_mismatch", "input_moments", "input_stats", "input_stats_of", "non_finite", "self_normalization", "span", "unit_health",
]  # fmt: skip
