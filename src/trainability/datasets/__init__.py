"""Data for experiments: built-in sets, user files and MNIST-style IDX folders, one ``load()``.

``load(name_or_path)`` returns :class:`Splits` with ``train``, ``validation`` and ``test``
splits (each an ``(x, y)`` tuple of tensors), features standardized with the training split's
statistics only:

- built in, no network (:mod:`trainability.datasets.builtin`): ``digits``, ``circles``,
  ``moons``, ``blobs`` (scikit-learn) and ``mnist1d`` (4000 train / 1000 test);
- ``mnist`` and ``fashion_mnist`` from IDX files in a local folder, downloaded with SHA-256
  verification when the machine is online (:mod:`trainability.datasets.idx`);
- a ``.npz`` file (arrays ``x`` and ``y``) or a ``.csv`` file (last column the target, or
  ``target=``) (:mod:`trainability.datasets.files`).

Splits the source lacks are cut at random (stratified by class, seeded by ``seed``): a test
split of ``test`` (default 20%), then a validation split of ``validation`` out of the rest
(default 20%; 5000 samples for MNIST and Fashion-MNIST, as in Geron's chapter 11).

>>> from trainability import datasets
>>> digits = datasets.load("digits")
>>> digits.in_features, digits.n_outputs, digits.train.samples + digits.validation.samples + digits.test.samples
(64, 10, 1797)
"""

from __future__ import annotations

import os
from pathlib import Path

from trainability.datasets.builtin import BUILTIN
from trainability.datasets.splits import Split, Splits, make_splits

#: name -> default validation size (fraction or count) for sets read from IDX folders
IDX_SETS: dict[str, int] = {"mnist": 5000, "fashion_mnist": 5000}


def names() -> list[str]:
    """Every data set ``load`` knows by name."""
    return [*BUILTIN, *IDX_SETS]


def _arrays(name: str, seed: int, target: str | int | None, data_dir: str | os.PathLike[str] | None,
            download: bool) -> tuple[str, dict, float | int]:  # fmt: skip
    """(display name, arrays for make_splits, default validation size)."""
    if target is not None and (name in BUILTIN or name in IDX_SETS):
        raise ValueError(f"target= applies to .csv files; the built-in {name!r} has its own targets")
    if name in BUILTIN:
        from trainability.datasets.builtin import builtin

        x, y, x_test, y_test = builtin(name, seed)
        return name, {"x": x, "y": y, "x_test": x_test, "y_test": y_test}, 0.2
    if name in IDX_SETS:
        from trainability.datasets.idx import load_idx_set

        x, y, x_test, y_test = load_idx_set(name, data_dir, download=download)
        return name, {"x": x, "y": y, "x_test": x_test, "y_test": y_test}, IDX_SETS[name]
    path = Path(name)
    if path.suffix.lower() not in (".npz", ".csv"):
        if path.exists() or os.sep in name:
            raise ValueError(f"unsupported data file {path}: use .npz (arrays x, y) or .csv (last column the target)")
        raise ValueError(f"unknown data {name!r}; built-in: {', '.join(names())}, or a .npz or .csv file")
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    if path.suffix.lower() == ".npz":
        from trainability.datasets.files import read_npz

        if target is not None:
            raise ValueError(f"target= applies to .csv files; {path} holds arrays x and y")
        return path.stem, dict(read_npz(path)), 0.2
    from trainability.datasets.files import read_csv

    x, y, classes = read_csv(path, target)
    return path.stem, {"x": x, "y": y, "classes": classes}, 0.2


def load(
    name_or_path: str | os.PathLike[str],
    *,
    standardize: bool = True,
    seed: int = 0,
    validation: float | int | None = None,
    test: float | int = 0.2,
    target: str | int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Splits:
    """Load a data set by name or path as train, validation and test :class:`Splits`.

    ``validation`` and ``test`` are fractions (0-1) or sample counts for the splits the source
    does not give. ``target`` picks a ``.csv`` file's target column (header name or index).
    ``data_dir`` is the folder holding ``mnist/`` and ``fashion_mnist/`` (default
    ``$TRAINABILITY_DATA``); ``download=False`` never touches the network. ``seed`` draws the
    splits and the scikit-learn generators' samples.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    name = os.fspath(name_or_path)
    display, arrays, default_validation = _arrays(name, seed, target, data_dir, download)
    classes = arrays.pop("classes", None)
    return make_splits(display, arrays.pop("x"), arrays.pop("y"), **{k: v for k, v in arrays.items() if v is not None},
                       test=test, validation=default_validation if validation is None else validation, seed=seed,
                       standardize=standardize, classes=classes, source=name)  # fmt: skip


__all__ = ["Split", "Splits", "load", "names"]
