"""MNIST and Fashion-MNIST from IDX files in a local folder, downloaded with SHA-256 verification.

The folder is ``data_dir``, else ``$TRAINABILITY_DATA``, else ``~/.cache/trainability/data``;
each set lives in its own subfolder (``mnist/``, ``fashion_mnist/``) as the four files
``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``
and ``t10k-labels-idx1-ubyte[.gz]``, gzipped or not. Missing files are downloaded from the
mirrors below when the machine is online; a download whose SHA-256 differs from the published
one is discarded.

The IDX format (LeCun et al.): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each dimension as a
big-endian uint32, then the values, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import sys
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainability.datasets.builtin import cache_dir

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class Source:
    """Where a data set's IDX files come from, and their published SHA-256 (of the .gz files)."""

    mirrors: tuple[str, ...]
    sha256: dict[str, str]


FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SOURCES: dict[str, Source] = {
    "mnist": Source(
        ("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        dict(zip(FILES, ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"), strict=True)),
    ),
    "fashion_mnist": Source(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        dict(zip(FILES, ("08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
                         "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
                         "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
                         "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"), strict=True)),
    ),
}  # fmt: skip


def _raw_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path} is a corrupt or truncated gzip file ({exc}); delete it and fetch it again") from exc
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian numpy array.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> _ = p.write_bytes(bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + bytes([7, 0, 9]))
    >>> read_idx(p).tolist()
    [7, 0, 9]
    """
    path = Path(path)
    raw = _raw_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file: it does not start with two zero bytes and a type code")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header is cut off after {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        problem = "truncated" if got < expected else "longer than its header says"
        raise ValueError(f"{path} is {problem}: {got} bytes of data, the header ({' x '.join(map(str, dims))} "
                         f"{dtype.name}) says {expected}; delete it and fetch it again")  # fmt: skip
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: str | os.PathLike[str], sha256: str, *, timeout: float = 30.0) -> Path:
    """Fetch ``url`` (http, https or file) to ``destination``, keeping it only if its SHA-256 is
    ``sha256``; a mismatch raises ``ValueError`` and leaves nothing behind."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f"{destination.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:  # noqa: S310 - verified below
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256.lower():
            raise ValueError(f"{url}: SHA-256 {digest.hexdigest()} does not match the published {sha256}; "
                             "the download was discarded")  # fmt: skip
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def data_folder(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("TRAINABILITY_DATA")
    return Path(env) if env else cache_dir() / "data"


def _locate(folder: Path, name: str, file: str, source: Source, allow_download: bool) -> Path:
    for candidate in (folder / file, folder / file.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    reasons = []
    if allow_download:
        for mirror in source.mirrors:
            print(f"trainability: downloading {mirror}{file}", file=sys.stderr)
            try:
                return download(mirror + file, folder / file, source.sha256[file])
            except (OSError, ValueError) as exc:  # URLError is an OSError
                reasons.append(f"{mirror}: {getattr(exc, 'reason', exc)}")
    how = f"the download failed ({'; '.join(reasons)})" if reasons else "downloads are off"
    raise ValueError(f"{name}: {file} is not in {folder} and {how}; put the four IDX files there "
                     f"(from {source.mirrors[0]}) or point data_dir= / --data-dir / TRAINABILITY_DATA at their folder")  # fmt: skip


def load_idx_set(name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) of ``mnist`` or ``fashion_mnist``."""
    source = SOURCES[name]
    folder = data_folder(data_dir) / name
    paths = [_locate(folder, name, f, source, download) for f in FILES]
    arrays = [read_idx(p) for p in paths]
    for images, labels in ((0, 1), (2, 3)):
        if arrays[images].ndim != 3 or arrays[labels].ndim != 1 or len(arrays[images]) != len(arrays[labels]):
            raise ValueError(f"{paths[images]} ({arrays[images].shape}) and {paths[labels]} ({arrays[labels].shape}) "
                             "do not fit: expected N images of H x W pixels and N labels")  # fmt: skip
    return tuple(arrays)
