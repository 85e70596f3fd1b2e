"""The textbook's ranking, "SELU > ELU > leaky ReLU > ReLU > tanh > logistic" (Geron, chapter 11),
measured with ``trainability.compare(preset="textbook")`` at depths 20 and 50.

Each activation with its matched initializer, width 100, SGD lr 1e-3, batch 32, MNIST-1D, 60
epochs, 3 seeds (the preset), at depth 20 and at depth 50. Two activations are ordered only when
Welch's t-test on the per-seed test accuracies gives p < 0.05; otherwise they are a tie (``≈``).
The target: the measured order contradicts none of the 15 pairs the textbook orders (ties allowed);
how many pairs it confirms is reported beside it.

``--results FOLDER`` continues a results folder that already holds the preset's depth-50 runs
(``benchmarks/compare_textbook.py --keep FOLDER`` leaves one; ``run_all.py`` chains the two), so
only the depth-20 cells run: ``compare`` resumes a grid and runs only the cells a new factor
value adds. Without it both depths run (about 15 minutes with 2 workers on this machine).

Run: python benchmarks/reproduce_textbook.py [--results runs/textbook] [--workers 2] [--quick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _checks import Check, context, emit, mean_std, parser, setup, table
from _results import machine, write_section

from trainability import compare
from trainability.experiments.analysis import TEXTBOOK_ORDER


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--results", help="a results folder to continue (it may hold the depth-50 runs already)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    started = setup(args)
    quick = {"depth": [2, 4], "epochs": 1, "seeds": 2} if args.quick else {"depth": [20, 50]}
    workers = 1 if args.quick else args.workers
    with tempfile.TemporaryDirectory(prefix="reproduce-textbook-") as tmp:
        out = Path(args.results) if args.results and not args.quick else Path(tmp) / "textbook"
        results = compare(preset="textbook", out=out, workers=workers, progress=False, **quick)
        rankings = results.rankings()
        runs = results.rows("runs")
    checks, sections = [], []
    for ranking in rankings:
        disagree = [f"{a} > {b}" for a, b, v, _ in ranking.pairs if v == "disagrees"]
        agree = ranking.count("agrees")
        checks.append(Check(
            f"depth {ranking.depth}: measured order", "no textbook pair reversed beyond seed noise",
            f"{ranking.order()}; of {len(ranking.pairs)} pairs {agree} agree, {len(disagree)} reversed, "
            f"{ranking.count('within seed noise')} within seed noise, {ranking.count('untested')} untested",
            not disagree, f"reversed: {', '.join(disagree)}" if disagree else "",
        ))  # fmt: skip
        rows = "\n".join(f"| {e.activation} | {e.config['init']} | {mean_std(e.values)} | {len(e.values)} ({e.failed} failed) |"
                         for e in ranking.entries)  # fmt: skip
        sections.append(f"Depth {ranking.depth}:\n\n| activation | init | test accuracy | finished runs |\n|---|---|---|---|\n{rows}")
    failures = sorted({f"{r['activation']} (depth {r['depth']}): {r['reason']}" for r in runs if r["status"] == "failed"})
    emit("reproduce_textbook", checks)
    body = f"""## The textbook's ranking at depths 20 and 50 (`benchmarks/reproduce_textbook.py`)

`trainability.compare(preset="textbook", depth=[20, 50], workers={args.workers})`: the textbook order
{" > ".join(TEXTBOOK_ORDER)}, each activation with its matched initializer, width 100, SGD lr 1e-3,
batch 32, MNIST-1D, {"60" if not args.quick else "1"} epochs, {"3" if not args.quick else "2"} seeds.
`>`: Welch's t-test p < 0.05 on the per-seed test accuracies; `≈`: within seed noise.

{table(checks)}

{chr(10).join(chr(10) + s for s in sections)}
{(chr(10) + "Failed runs: " + "; ".join(failures) + chr(10)) if failures else ""}
{context(started, machine())}
"""
    write_section("reproduce_textbook", body)


if __name__ == "__main__":
    main()
