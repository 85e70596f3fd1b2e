"""The ``trainability`` command: a thin layer that parses, calls the library, and prints.

One module per command, each with ``register(subparsers)``; exit status: 0 success (a healthy
network, for ``doctor``; a network that trains, for ``repair``), 1 findings reported (nothing made
it train, for ``repair``), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from trainability.cli import compare, demo, doctor, find_lr, repair, report, table, theory
from trainability.cli._common import UsageError

COMMANDS = (table, doctor, demo, theory, compare, report, repair, find_lr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainability", description="Make deep neural networks trainable.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Only the command's own words reach the terminal: Python warnings raised
    by the libraries underneath (numpy, torch, scikit-learn, ...) are silenced while it runs,
    unless the user asked for them with ``python -W`` or ``PYTHONWARNINGS``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("ignore")
        try:
            return int(args.run(args))
        except (UsageError, ValueError, OSError) as exc:  # OSError: a file that cannot be read or written
            print(f"trainability {args.command}: error: {exc}".replace("\n", " "), file=sys.stderr)
            return 2


__all__ = ["UsageError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
