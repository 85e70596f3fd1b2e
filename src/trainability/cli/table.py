"""``trainability table``: the Glorot / He / LeCun table."""

from __future__ import annotations

import argparse
import json

from trainability import table


def run(args: argparse.Namespace) -> int:
    print(json.dumps(table.rows(), indent=2) if args.json else table.format_table())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="the Glorot / He / LeCun initialization table")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(run=run)
