"""What every command shares."""

from __future__ import annotations

import os
from pathlib import Path


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


#: Picture formats matplotlib writes without extra packages.
PICTURES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def writable(path: str | os.PathLike[str], option: str, *, folder: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """Check before any work that ``path`` can be written (a folder, or a file with one of
    ``suffixes``; a file without one gets the first), so a long run never ends in a traceback.
    Returns the path to write."""
    p = Path(path).expanduser()
    if folder and p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: give a folder to write into")
    if not folder:
        if p.is_dir():
            raise UsageError(f"{option} {path} is a folder: give a file name, e.g. {p / ('out' + suffixes[0] if suffixes else 'out')}")
        if suffixes and not p.suffix:
            p = p.with_suffix(suffixes[0])
        elif suffixes and p.suffix.lower() not in suffixes:
            raise UsageError(f"{option} {path}: {p.suffix} is not a format this writes; use one of {', '.join(suffixes)}")
    ancestor = p if folder else p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path} cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK):
        raise UsageError(f"{option} {path} cannot be written: no permission to write in {ancestor}")
    if folder:  # made now: whatever else stands in the way shows before the work, not after
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{option} {path} cannot be created: {exc.strerror or exc}") from exc
    return p
