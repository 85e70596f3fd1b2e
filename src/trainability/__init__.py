"""trainability: make deep neural networks trainable.

Initialize a whole model for its activations, diagnose unstable gradients layer by layer, and
apply the textbook's fixes. The public API is what this module re-exports.
"""

from trainability import activations, datasets, init
from trainability.batchnorm import fold_batchnorm
from trainability.initialization import InitPlan, PlanEntry, initialize
from trainability.models import mlp
from trainability.monitor import Monitor
from trainability.table import recommended_init
from trainability.training import History, fit

__version__ = "0.1.0"


__all__ = [
    "History",
    "InitPlan",
    "Monitor",
    "PlanEntry",
    "__version__",
    "activations",
    "datasets",
    "fit",
    "fold_batchnorm",
    "init",
    "initialize",
    "mlp",
    "recommended_init",
]
