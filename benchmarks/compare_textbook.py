"""`trainability compare --preset textbook --workers 2`: its wall time, leaderboard and report.

Runs the command exactly as a user would (a fresh results folder), times it, writes the report,
takes a screenshot of the page with headless Chromium into docs/compare_report.png, and writes
the `compare_textbook` section of docs/RESULTS.md. The target: under 15 minutes on this 2-core
machine. Usage: python benchmarks/compare_textbook.py [--keep runs/textbook] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import RESULTS, machine, write_section

from trainability.experiments import Results, analysis
from trainability.experiments.grid import PRESETS
from trainability.reporting.browser import screenshot

DOCS = RESULTS.parent
SHOT = DOCS / "compare_report.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", help="copy the results folder here afterwards (default: discard)")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 seeds, depth 3: a smoke run (figures not meaningful)")
    parser.add_argument("--from", dest="source", nargs=4, metavar=("FOLDER", "WALL_S", "LOAD_BEFORE", "LOAD_AFTER"),
                        help="re-render the page, screenshot and section from a kept folder and its measured figures")  # fmt: skip
    args = parser.parse_args()
    if args.source:
        folder, wall, before, after = args.source
        document(Path(folder), float(wall), float(before), float(after))
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="compare-textbook-") as tmp:
        out = Path(tmp) / "textbook"
        command = [str(Path(sys.executable).with_name("trainability")), "compare", "--preset", "textbook", "--workers", "2",
                   "--out", str(out), "--quiet"]  # fmt: skip
        if args.quick:
            command += ["--epochs", "1", "--seeds", "2", "--depth", "3"]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)
        document(out, wall, load_before, load_after)


def document(out: Path, wall: float, load_before: float, load_after: float) -> None:
    results = Results(out)
    page = results.report()
    screenshot(page, SHOT, width=1280, height=2600)
    runs = results.rows("runs")
    board = analysis.leaderboard(runs)
    (ranking,) = analysis.rankings(runs)
    preset = PRESETS["textbook"]

    def pm(mean: float, std: float) -> str:
        return "-" if mean != mean else f"{mean:.3f} ± {std:.3f}"

    rows, failures = [], []
    for r in board:
        spe = "-" if r["seconds_per_epoch"] != r["seconds_per_epoch"] else f"{r['seconds_per_epoch']:.2f}"
        rows.append(f"| {r['rank']} | {r['activation']} | {pm(r['test_mean'], r['test_std'])} | {pm(r['val_mean'], r['val_std'])} | "
                    f"{spe} | {r['doctor_init']} | {r['finished']}/{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "") + " |")  # fmt: skip
        if r["failure"]:
            failures.append(f"- {r['activation']}: {r['failure']}")
    pairs = ", ".join(f"{a} > {b}: {v}" for a, b, v, _ in ranking.pairs if v != "within seed noise")
    body = f"""
## The textbook's question, measured (`benchmarks/compare_textbook.py`)

`trainability compare --preset textbook --workers 2`: {", ".join(preset["activation"])}, each with its
matched initializer (`init=auto`), a {preset["depth"][0]}-layer width-{preset["width"][0]} MLP, SGD lr
{preset["lr"][0]:g} batch {preset["batch_size"][0]}, MNIST-1D (3200 train / 800 validation / 1000 test),
{preset["seeds"]} seeds, {preset["epochs"]} epochs (100 steps each: 6000 steps, the MNIST-1D paper's
training length). **Wall time {wall / 60:.1f} min** for {len(runs)} runs with 2 worker processes (target:
under 15 min), one torch thread each. Load average before/after: {load_before:.1f}/{load_after:.1f} (other work shared the
machine). Machine: {machine()}.

| # | activation | test accuracy | validation accuracy | s / epoch | doctor at init | runs |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{(chr(10) + "Failed runs (first reason per configuration):" + chr(10) + chr(10).join(failures) + chr(10)) if failures else ""}
Measured order at depth {ranking.depth}: {ranking.order()} (`>`: Welch's t-test p < {analysis.ALPHA} over
the seeds, `≈`: within seed noise). Of the {len(ranking.pairs)} pairs the textbook orders, the
measurement agrees on {ranking.count("agrees")}, disagrees on {ranking.count("disagrees")}, and
{ranking.count("within seed noise")} are within seed noise{f" ({pairs})" if pairs else ""}.

The report's top ([full page](compare_report.png) is what `trainability report runs/textbook` writes):

![compare report](compare_report.png)
"""
    write_section("compare_textbook", body)
    print(body)


if __name__ == "__main__":
    main()
