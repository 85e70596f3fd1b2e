"""Built-in data sets, generated or shipped (nothing downloads), and user files.

``load("digits")`` (scikit-learn's 8x8 digits, 64 features), ``load("mnist1d")`` (MNIST-1D,
generated locally by the ``mnist1d`` package, 40 features, cached under
``~/.cache/trainability``), ``load("circles")`` and ``load("blobs")``; or a path to a ``.npz``
file (arrays ``x`` and ``y``, optionally ``x_test`` and ``y_test``) or a ``.csv`` file (last column
the target). Features are standardized with the training split's mean and std.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BUILTIN = ("digits", "mnist1d", "circles", "blobs")


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


def _need(package: str, what: str) -> None:
    raise ValueError(f"{what} needs the {package} package: pip install 'trainability[data]'")


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _cache_dir() -> Path:
    return Path(os.environ.get("TRAINABILITY_CACHE", Path.home() / ".cache" / "trainability"))


def _mnist1d() -> tuple[np.ndarray, ...]:
    cache = _cache_dir() / "mnist1d.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return f["x"], f["y"], f["x_test"], f["y_test"]
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        _need("mnist1d", "mnist1d")
    d = make_dataset(get_dataset_args())
    arrays = d["x"], d["y"], d["x_test"], d["y_test"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
    tmp.replace(cache)  # atomic: a killed run leaves no half-written cache
    return arrays


def _builtin(name: str) -> tuple[np.ndarray, ...]:
    if name == "mnist1d":
        return _mnist1d()
    try:
        from sklearn import datasets
    except ImportError:
        _need("scikit-learn", name)
    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
    elif name == "circles":
        x, y = datasets.make_circles(n_samples=2000, noise=0.1, factor=0.5, random_state=0)
    else:
        x, y = datasets.make_blobs(n_samples=2000, centers=4, n_features=8, random_state=0)
    return _split(x, y)


def _from_file(path: Path) -> tuple[np.ndarray, ...]:
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as f:
            if "x" not in f or "y" not in f:
                raise ValueError(f"{path} must hold arrays 'x' and 'y'; it holds {', '.join(f.files) or 'nothing'}")
            if "x_test" in f and "y_test" in f:
                return f["x"], f["y"], f["x_test"], f["y_test"]
            return _split(f["x"], f["y"])
    if path.suffix == ".csv":
        try:
            table = np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError:
            table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)  # a header row
        if table.shape[1] < 2:
            raise ValueError(f"{path} needs at least two columns: features, then the target")
        return _split(table[:, :-1], table[:, -1])
    raise ValueError(f"unsupported data file {path}: use .npz (arrays x, y) or .csv (last column the target)")


def _is_classes(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer):
        return True
    return bool(y.ndim == 1 and np.all(np.isfinite(y)) and np.all(y == np.round(y)) and y.min() >= 0
                and len(np.unique(y)) <= 100)  # fmt: skip


def _targets(y: np.ndarray, classes: bool) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y).astype(np.int64 if classes else np.float32))


def load(name_or_path: str | os.PathLike[str], *, standardize: bool = True) -> Data:
    """Load a built-in data set by name, or a ``.npz``/``.csv`` file."""
    name = str(name_or_path)
    if name in BUILTIN:
        x, y, x_test, y_test = _builtin(name)
    elif name.endswith((".npz", ".csv")) or os.sep in name:
        x, y, x_test, y_test = _from_file(Path(name))
    else:
        raise ValueError(f"unknown data {name!r}; built-in: {', '.join(BUILTIN)}, or a .npz or .csv file")
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    x_test = np.asarray(x_test, dtype=np.float32).reshape(len(x_test), -1)
    if len(x) == 0:
        raise ValueError(f"{name} holds no samples")
    if standardize:
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0  # constant features (digits' corner pixels) stay at 0
        x, x_test = (x - mean) / std, (x_test - mean) / std
    classes = _is_classes(np.asarray(y))
    return Data(Path(name).stem if name not in BUILTIN else name, torch.as_tensor(x), _targets(y, classes),
                torch.as_tensor(x_test), _targets(y_test, classes))  # fmt: skip
