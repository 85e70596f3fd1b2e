"""Train, validation and test splits, and standardization with training statistics only.

>>> import numpy as np
>>> x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.array([0, 1] * 5)
>>> splits = make_splits("toy", x, y, test=0.2, validation=0.25, seed=0)
>>> splits.train.samples, splits.validation.samples, splits.test.samples
(6, 2, 2)
>>> bool(abs(float(splits.train.x.mean())) < 1e-6)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


class Split(NamedTuple):
    """Inputs and targets of one split; a tuple, so ``fit(model, splits.train)`` works."""

    x: torch.Tensor
    y: torch.Tensor

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Splits:
    """A data set split into ``train``, ``validation`` and ``test``.

    Features are float32, flattened to ``(samples, features)``, and (with ``standardize=True``)
    standardized with the training split's per-feature mean and std (``feature_mean``,
    ``feature_std``; apply the same to new inputs). Targets are int64 class indices for
    classification and float32 values for regression; ``classes`` names the classes when the
    file gave names.
    """

    name: str
    train: Split
    validation: Split
    test: Split
    classes: tuple[str, ...] | None = None
    feature_mean: torch.Tensor | None = None
    feature_std: torch.Tensor | None = None

    @property
    def in_features(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def classification(self) -> bool:
        return not self.train.y.is_floating_point()

    @property
    def n_outputs(self) -> int:
        """Number of classes, or of regression targets."""
        if self.classification:
            if self.classes is not None:
                return len(self.classes)
            return int(max(int(s.y.max()) for s in (self.train, self.validation, self.test) if s.samples)) + 1
        return 1 if self.train.y.dim() == 1 else int(self.train.y.shape[1])

    def __repr__(self) -> str:
        kind = f"{self.n_outputs} classes" if self.classification else "regression"
        return (f"Splits({self.name!r}: {self.in_features} features, {kind}; train {self.train.samples}, "
                f"validation {self.validation.samples}, test {self.test.samples})")  # fmt: skip


def is_classes(y: np.ndarray, *, allow_negative: bool = False) -> bool:
    """Integer targets, or whole non-negative floats with at most 100 distinct values (negative
    ones too with ``allow_negative``, labels such as -1/+1 to be mapped to 0..k-1)."""
    if np.issubdtype(y.dtype, np.integer):
        return True
    return bool(y.ndim == 1 and len(y) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
                and (allow_negative or y.min() >= 0) and len(np.unique(y)) <= 100)  # fmt: skip


def _sizes(n: int, fraction_or_count: float | int, what: str) -> int:
    if isinstance(fraction_or_count, bool) or not isinstance(fraction_or_count, (int, float)):
        raise ValueError(f"{what} must be a fraction in (0, 1) or a sample count, got {fraction_or_count!r}")
    if isinstance(fraction_or_count, int) and fraction_or_count >= 1:
        count = fraction_or_count
    elif 0 < fraction_or_count < 1:
        count = int(round(n * fraction_or_count))
    else:
        raise ValueError(f"{what} must be a fraction in (0, 1) or a sample count >= 1, got {fraction_or_count!r}")
    if not 1 <= count < n:
        raise ValueError(f"{what}={fraction_or_count!r} leaves no samples on one side of the split ({n} samples)")
    return count


def split_indices(y: np.ndarray, size: float | int, seed: int, *, what: str = "the split") -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices; stratified by class for classification targets."""
    n = len(y)
    count = _sizes(n, size, what)
    rng = np.random.default_rng(seed)
    if is_classes(np.asarray(y)) and np.asarray(y).ndim == 1:
        held: list[int] = []
        labels, inverse = np.unique(y, return_inverse=True)
        # each class gives its share, rounded; the remainder goes to the largest classes
        members = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(labels))]
        quotas = [len(m) * count / n for m in members]
        take = [int(q) for q in quotas]
        for k in sorted(range(len(members)), key=lambda k: quotas[k] - take[k], reverse=True)[: count - sum(take)]:
            take[k] += 1
        for m, t in zip(members, take, strict=True):
            held.extend(m[:t].tolist())
        out = np.array(sorted(held), dtype=np.int64)
    else:
        out = np.sort(rng.permutation(n)[:count])
    mask = np.ones(n, dtype=bool)
    mask[out] = False
    return np.flatnonzero(mask), out


def targets(y: np.ndarray, classes: bool) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y).astype(np.int64 if classes else np.float32))


def make_splits(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    test: float | int = 0.2,
    validation: float | int = 0.2,
    seed: int = 0,
    standardize: bool = True,
    classes: tuple[str, ...] | None = None,
    source: str | None = None,
) -> Splits:
    """Split what is not given (test first, then validation out of the rest), standardize with the
    training split's statistics, and return tensors. Errors name ``source`` (a file's path; by
    default ``name``)."""
    x = np.asarray(x)
    y = np.asarray(y)
    label = source or name
    if len(x) == 0:
        raise ValueError(f"{label} holds no samples")
    given = [t for t in (y, y_test, y_val) if t is not None]
    for t in given:
        if np.issubdtype(np.asarray(t).dtype, np.number):
            bad = int((~np.isfinite(np.asarray(t, dtype=np.float64))).sum())
            if bad:
                raise ValueError(f"{label}: {bad} target(s) are NaN or infinite; drop or impute those samples first")
    if classes is None:
        every = np.concatenate([np.ravel(t) for t in given])
        if is_classes(every, allow_negative=True) and every.min() < 0:
            # labels such as -1/+1: mapped to 0..k-1 in sorted order, as scikit-learn's LabelEncoder does
            values = np.unique(every)
            classes = tuple(f"{v:g}" for v in values)
            y, y_test, y_val = (None if t is None else np.searchsorted(values, np.asarray(t)) for t in (y, y_test, y_val))
    try:
        return _make_splits(name, x, y, x_test, y_test, x_val, y_val, test, validation, seed, standardize, classes)
    except ValueError as exc:
        if label in str(exc):
            raise
        raise ValueError(f"{label}: {exc}") from exc


def _make_splits(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None,
                 x_val: np.ndarray | None, y_val: np.ndarray | None, test: float | int, validation: float | int,
                 seed: int, standardize: bool, classes: tuple[str, ...] | None) -> Splits:  # fmt: skip
    if x_test is None:
        keep, held = split_indices(y, test, seed, what="test")
        x, y, x_test, y_test = x[keep], y[keep], x[held], y[held]
    if x_val is None:
        keep, held = split_indices(y, validation, seed + 1, what="validation")
        x, y, x_val, y_val = x[keep], y[keep], x[held], y[held]
    arrays = [np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in (x, x_val, x_test)]
    if not all(a.shape[1] == arrays[0].shape[1] for a in arrays):
        raise ValueError(f"the splits have different numbers of features: {[a.shape[1] for a in arrays]}")
    mean = std = None
    if standardize:
        mean, std = arrays[0].mean(axis=0), arrays[0].std(axis=0)
        std[std == 0] = 1.0  # constant features (digits' corner pixels) stay at 0
        arrays = [(a - mean) / std for a in arrays]
    is_cls = is_classes(np.concatenate([np.ravel(y), np.ravel(y_val), np.ravel(y_test)])) if classes is None else True
    ys = [targets(t, is_cls) for t in (y, y_val, y_test)]
    train, val, tst = (Split(torch.as_tensor(a), t) for a, t in zip(arrays, ys, strict=True))
    return Splits(name, train, val, tst, classes,
                  None if mean is None else torch.as_tensor(mean), None if std is None else torch.as_tensor(std))  # fmt: skip
