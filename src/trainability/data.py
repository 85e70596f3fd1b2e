"""Deprecated: the loader moved to :mod:`trainability.datasets`; this module adapts it.

``trainability.data.load(name)`` returned one train/test split (:class:`Data`). It now calls
:func:`trainability.datasets.load` and joins that function's train and validation splits into
``x``/``y``, so code written against it keeps working. New code should use
``trainability.datasets.load``, which also keeps a validation split apart.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from trainability import datasets

BUILTIN = datasets.BUILTIN


@dataclass(frozen=True)
class Data:
    """A classification or regression set, split into train and test tensors."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def in_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def classification(self) -> bool:
        return not self.y.is_floating_point()

    @property
    def n_outputs(self) -> int:
        """Number of classes, or of regression targets."""
        if self.classification:
            return int(max(self.y.max(), self.y_test.max() if len(self.y_test) else 0)) + 1
        return 1 if self.y.dim() == 1 else int(self.y.shape[1])


def load(name_or_path: str | os.PathLike[str], *, standardize: bool = True, seed: int = 0) -> Data:
    """Deprecated alias of :func:`trainability.datasets.load`, as one train and one test split."""
    warnings.warn(
        "trainability.data.load is deprecated: use trainability.datasets.load, which returns "
        "train, validation and test splits",
        DeprecationWarning,
        stacklevel=2,
    )
    splits = datasets.load(name_or_path, standardize=standardize, seed=seed)
    x = torch.cat([splits.train.x, splits.validation.x])
    y = torch.cat([splits.train.y, splits.validation.y])
    return Data(splits.name, x, y, splits.test.x, splits.test.y)


__all__ = ["BUILTIN", "Data", "load"]
