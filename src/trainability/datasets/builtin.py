"""Built-in data sets, generated or shipped with a package: nothing downloads.

=========  ==========================================================================  ========
name       what                                                                        features
=========  ==========================================================================  ========
digits     scikit-learn's 8x8 handwritten digits, 1797 samples, 10 classes             64
circles    ``make_circles(n_samples=2000, noise=0.1, factor=0.5, random_state=seed)``  2
moons      ``make_moons(n_samples=2000, noise=0.2, random_state=seed)``                 2
blobs      ``make_blobs(n_samples=2000, centers=4, n_features=8, random_state=seed)``   8
mnist1d    MNIST-1D (Greydanus 2020), the ``mnist1d`` package's generator with its      40
           default arguments: 4000 training and 1000 test samples, 10 classes
=========  ==========================================================================  ========

The scikit-learn sets get a 20% test split; MNIST-1D keeps its own. MNIST-1D is generated once
and cached under ``$TRAINABILITY_CACHE`` (default ``~/.cache/trainability``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: name -> (features, classes, one line)
BUILTIN: dict[str, tuple[int, int, str]] = {
    "digits": (64, 10, "scikit-learn's 8x8 handwritten digits (1797 samples)"),
    "circles": (2, 2, "two noisy concentric circles (2000 samples)"),
    "moons": (2, 2, "two interleaving half moons (2000 samples)"),
    "blobs": (8, 4, "four Gaussian blobs in 8 dimensions (2000 samples)"),
    "mnist1d": (40, 10, "MNIST-1D (4000 train, 1000 test)"),
}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def need(package: str, what: str, extra: str = "data") -> ValueError:
    return ValueError(f"{what} needs the {package} package: pip install 'trainability[{extra}]'")


def cache_dir() -> Path:
    return Path(os.environ.get("TRAINABILITY_CACHE", Path.home() / ".cache" / "trainability"))


def _mnist1d() -> Arrays:
    cache = cache_dir() / "mnist1d.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return f["x"], f["y"], f["x_test"], f["y_test"]
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise need("mnist1d", "mnist1d") from exc
    d = make_dataset(get_dataset_args())
    arrays = d["x"], d["y"], d["x_test"], d["y_test"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"mnist1d.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
    tmp.replace(cache)  # atomic: a killed run (or a parallel worker) leaves no half-written cache
    return arrays


def builtin(name: str, seed: int = 0) -> Arrays:
    """(x, y, x_test, y_test) of a built-in set; the test arrays are None where it has no split."""
    if name == "mnist1d":
        return _mnist1d()
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise need("scikit-learn", name) from exc
    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
    elif name == "circles":
        x, y = datasets.make_circles(n_samples=2000, noise=0.1, factor=0.5, random_state=seed)
    elif name == "moons":
        x, y = datasets.make_moons(n_samples=2000, noise=0.2, random_state=seed)
    elif name == "blobs":
        x, y = datasets.make_blobs(n_samples=2000, centers=4, n_features=8, random_state=seed)
    else:
        raise ValueError(f"unknown built-in data set {name!r}; built-in: {', '.join(BUILTIN)}")
    return x, y, None, None
