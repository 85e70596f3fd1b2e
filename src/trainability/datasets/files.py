"""User data files: ``.npz`` (arrays ``x`` and ``y``) and ``.csv`` (numbers, one sample a row).

A ``.npz`` file may also hold ``x_test``/``y_test`` and ``x_val``/``y_val``; splits it lacks
are cut from ``x``. A ``.csv`` file may start with a header row; its target is the last column
unless ``target=`` names another (a header name or a column index). A target column of words
(``setosa``, ``versicolor``) becomes class indices in sorted order. Every problem is one
``ValueError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_arrays(path: Path, arrays: Arrays) -> Arrays:
    for prefix in ("", "_test", "_val"):
        x, y = arrays.get(f"x{prefix}"), arrays.get(f"y{prefix}")
        if (x is None) != (y is None):
            given, missing = (f"x{prefix}", f"y{prefix}") if y is None else (f"y{prefix}", f"x{prefix}")
            raise ValueError(f"{path} holds {given} without {missing}: give both or neither")
        if x is None:
            continue
        if x.ndim == 0 or y.ndim == 0:  # type: ignore[union-attr]
            raise ValueError(f"{path}: x{prefix} and y{prefix} must be arrays with one sample per row")
        if len(x) != len(y):  # type: ignore[arg-type]
            raise ValueError(f"{path}: x{prefix} has {len(x)} samples but y{prefix} has {len(y)}; they must match")  # type: ignore[arg-type]
        for name, a in ((f"x{prefix}", x), (f"y{prefix}", y)):
            if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
                raise ValueError(f"{path}: {name} holds {a.dtype} values; it must be numeric")
            if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
                raise ValueError(f"{path}: {name} holds NaN or infinite values; clean or impute them first")
    return arrays


def read_npz(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: not a valid .npz file ({type(exc).__name__}: {exc})") from exc
    arrays = {("x_val" if k == "x_validation" else "y_val" if k == "y_validation" else k): v for k, v in arrays.items()}
    if "x" not in arrays or "y" not in arrays:
        raise ValueError(f"{path} must hold arrays 'x' and 'y'; it holds {', '.join(sorted(arrays)) or 'nothing'}")
    return _check_arrays(path, arrays)


def _column(header: list[str] | None, ncols: int, target: str | int | None, path: Path) -> int:
    if target is None:
        return ncols - 1
    if isinstance(target, str) and header is not None and target in header:
        return header.index(target)
    if isinstance(target, int) or (isinstance(target, str) and target.lstrip("-").isdigit()):
        index = int(target)
        if -ncols <= index < ncols:
            return index % ncols
    names = f"columns {', '.join(header)}" if header else f"{ncols} columns and no header row"
    raise ValueError(f"{path} has no target column {target!r}; it has {names}")


def read_csv(path: Path, target: str | int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """(features, target, class names or None)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read {path}: not a UTF-8 text CSV file") from exc
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty: expected rows of numbers, features then the target")
    first = next(csv.reader([lines[0][1]]))
    header = [c.strip() for c in first] if not all(_is_number(c) for c in first) else None
    body = lines[1:] if header is not None else lines
    if not body:
        raise ValueError(f"{path} holds only a header row and no samples")
    rows = list(csv.reader([line for _, line in body]))
    ncols = len(header) if header is not None else len(rows[0])
    for (number, _), row in zip(body, rows, strict=True):
        if len(row) != ncols:
            raise ValueError(f"{path} line {number} has {len(row)} columns, expected {ncols}")
    if ncols < 2:
        raise ValueError(f"{path} needs at least two columns: features, then the target")
    col = _column(header, ncols, target, path)
    features = [j for j in range(ncols) if j != col]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on odd input before raising
            table = np.loadtxt(io.StringIO("\n".join(line for _, line in body)), delimiter=",", ndmin=2, dtype=np.float64)
        x, y, classes = table[:, features], table[:, col], None
    except ValueError:
        x, y, classes = _slow_parse(path, body, rows, header, features, col)
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{path} line {body[row][0]}: a feature is NaN or infinite; clean or impute it first")
    return x, y, classes


def _slow_parse(path: Path, body: list[tuple[int, str]], rows: list[list[str]], header: list[str] | None,
                features: list[int], col: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:  # fmt: skip
    """Find the offending cell for the error message; accept a target column of class names."""
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    for i, ((number, _), row) in enumerate(zip(body, rows, strict=True)):
        for k, j in enumerate(features):
            try:
                x[i, k] = float(row[j])
            except ValueError:
                name = f"column {header[j]!r}" if header else f"column {j + 1}"
                raise ValueError(f"{path} line {number}, {name}: {row[j].strip()!r} is not a number; every feature "
                                 "must be numeric (encode categories as numbers first)") from None  # fmt: skip
    labels = [row[col].strip() for row in rows]
    if all(_is_number(v) for v in labels):
        return x, np.array([float(v) for v in labels]), None
    classes = tuple(sorted(set(labels)))
    index = {c: k for k, c in enumerate(classes)}
    return x, np.array([index[v] for v in labels], dtype=np.int64), classes
