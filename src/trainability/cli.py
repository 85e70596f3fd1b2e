"""The ``trainability`` command: a thin layer that parses, calls the library, and prints.

Exit status: 0 success (a healthy network, for ``doctor``), 1 findings reported, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trainability import table


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def _table(args: argparse.Namespace) -> int:
    print(json.dumps(table.rows(), indent=2) if args.json else table.format_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainability", description="Make deep neural networks trainable."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("table", help="the Glorot / He / LeCun initialization table")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(run=_table)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"trainability {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
