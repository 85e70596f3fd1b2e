"""trainability: make deep neural networks trainable.

Initialize a whole model for its activations, diagnose unstable gradients layer by layer, and
apply the textbook's fixes. The public API is what this module re-exports.
"""

from trainability import activations, init
from trainability.initialization import InitPlan, PlanEntry, initialize
from trainability.models import mlp
from trainability.table import recommended_init

__version__ = "0.1.0"

__all__ = [
    "InitPlan",
    "PlanEntry",
    "__version__",
    "activations",
    "init",
    "initialize",
    "mlp",
    "recommended_init",
]
