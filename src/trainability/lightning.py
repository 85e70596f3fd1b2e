"""Deprecated: the Lightning callback moved to :mod:`trainability.integrations.lightning`."""

import warnings

from trainability.integrations.lightning import TrainabilityCallback

warnings.warn(
    "trainability.lightning moved to trainability.integrations.lightning; import TrainabilityCallback from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["TrainabilityCallback"]
