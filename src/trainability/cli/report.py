"""``trainability report``: the HTML page of a results folder, and its leaderboard in the terminal."""

from __future__ import annotations

import argparse

from trainability.cli._common import writable


def run(args: argparse.Namespace) -> int:
    from trainability.experiments import Results

    out = writable(args.out, "--out", suffixes=(".html", ".htm")) if args.out else None
    results = Results(args.folder)
    path = results.report(out)
    print(results.summary())
    print(f"\nreport written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write runs/NAME/report.html from a compare folder and print its leaderboard")
    p.add_argument("folder", help="the folder trainability compare wrote (it holds results.sqlite)")
    p.add_argument("--out", help="where to write the page (default FOLDER/report.html)")
    p.set_defaults(run=run)
