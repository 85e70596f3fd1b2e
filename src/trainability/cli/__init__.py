"""The ``trainability`` command: a thin layer that parses, calls the library, and prints.

One module per command, each with ``register(subparsers)``; exit status: 0 success (a healthy
network, for ``doctor``), 1 findings reported, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trainability.cli import demo, doctor, table, theory
from trainability.cli._common import UsageError

COMMANDS = (table, doctor, demo, theory)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainability", description="Make deep neural networks trainable.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"trainability {args.command}: error: {exc}".replace("\n", " "), file=sys.stderr)
        return 2


__all__ = ["UsageError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
