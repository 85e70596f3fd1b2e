"""What every command shares."""

from __future__ import annotations


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""
