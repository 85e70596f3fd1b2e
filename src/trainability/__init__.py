"""trainability: make deep neural networks trainable.

Initialize a whole model for its activations, diagnose unstable gradients layer by layer, and
apply the textbook's fixes. The public API is what this module re-exports.
"""

from trainability import activations, datasets, init
from trainability._version import __version__
from trainability.batchnorm import fold_batchnorm
from trainability.doctor import Finding, Report, diagnose
from trainability.initialization import InitPlan, PlanEntry, initialize
from trainability.lr_finder import find_lr
from trainability.models import mlp
from trainability.monitor import Monitor
from trainability.table import recommended_init
from trainability.training import History, fit


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: compare and repair load their parts on first use
    if name == "compare":
        from trainability.experiments import compare

        return compare
    if name == "repair":
        from trainability.repair import repair

        globals()["repair"] = repair  # the function, not the package its import bound here
        return repair
    raise AttributeError(f"module 'trainability' has no attribute {name!r}")


__all__ = [
    "Finding",
    "History",
    "InitPlan",
    "Monitor",
    "PlanEntry",
    "Report",
    "__version__",
    "activations",
    "compare",
    "datasets",
    "diagnose",
    "find_lr",
    "fit",
    "fold_batchnorm",
    "init",
    "initialize",
    "mlp",
    "recommended_init",
    "repair",
]
