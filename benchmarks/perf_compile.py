"""``fit(compile=True)`` against eager ``fit``, warm-up included, at 1, 5 and 20 epochs.

The textbook's model (100 hidden layers of 100, SELU, LeCun normal), SGD lr 1e-3 momentum 0.9,
batch 32, 4000 random samples (125 steps an epoch). Each run is a fresh process calling
``fit(..., epochs=20)`` once: the time of ``fit(epochs=k)`` is the call's set-up plus its first k
epochs (what a call with ``epochs=k`` does), so the compile warm-up, paid in the first epoch,
counts in full. Runs: eager; compiled with an empty inductor cache (``TORCHINDUCTOR_CACHE_DIR``
a new folder: a first run on a machine); compiled again in a new process with that cache (a
rerun: inductor's on-disk FX-graph and AOT caches are on by default); eager again. Eager is the
mean of its two runs.

Target: ``compile=True`` pays off, i.e. total time below eager's, at the given number of epochs.
Run: python benchmarks/perf_compile.py [--epochs 20] [--threads 1] [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from _checks import Check, context, emit, parser, setup, table


def one_run(compile: bool, epochs: int, depth: int, samples: int) -> None:
    import torch

    from trainability import fit, mlp

    torch.manual_seed(0)
    x, y = torch.randn(samples, 784), torch.randint(0, 10, (samples,))
    model = mlp(784, 10, depth=depth, width=100, activation="selu")
    start = time.perf_counter()
    history = fit(model, (x, y), epochs=epochs, batch_size=32, optimizer="sgd", lr=1e-3, momentum=0.9, seed=0,
                  progress=False, compile=compile)  # fmt: skip
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "epochs": history.metric("seconds")}))


def run(compile: bool, args, cache: str, depth: int, samples: int, epochs: int) -> list[float]:
    """Cumulative seconds of fit(epochs=k) for k = 1..epochs, from a fresh process."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    argv = [sys.executable, __file__, "--run", "compile" if compile else "eager", f"--threads={args.threads}",
            f"--epochs={epochs}", f"--depth={depth}", f"--samples={samples}"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    per_epoch = result["epochs"]
    set_up = result["wall"] - sum(per_epoch)
    return [set_up + sum(per_epoch[: k + 1]) for k in range(len(per_epoch))]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--run", choices=["eager", "compile"], help=__import__("argparse").SUPPRESS)
    p.add_argument("--depth", type=int, default=100, help=__import__("argparse").SUPPRESS)
    p.add_argument("--samples", type=int, default=4000, help=__import__("argparse").SUPPRESS)
    args = p.parse_args()
    if args.run:
        import torch

        torch.set_num_threads(args.threads)
        one_run(args.run == "compile", args.epochs, args.depth, args.samples)
        return
    from _results import machine, write_section

    started = setup(args)
    depth, samples, epochs = (3, 320, 2) if args.quick else (100, 4000, args.epochs)
    marks = [k for k in (1, 5, 20) if k <= epochs] if not args.quick else [1, 2]
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        eager_a = run(False, args, cache, depth, samples, epochs)
        cold = run(True, args, cache, depth, samples, epochs)
        warm = cold if args.quick else run(True, args, cache, depth, samples, epochs)  # a smoke run: once each
        eager_b = eager_a if args.quick else run(False, args, cache, depth, samples, epochs)
    eager = [(a + b) / 2 for a, b in zip(eager_a, eager_b, strict=True)]
    rows, checks = [], []
    for k in marks:
        e, c, w = eager[k - 1], cold[k - 1], warm[k - 1]
        rows.append(f"| {k} | {e:.1f} | {c:.1f} | {w:.1f} | {e / c:.2f}x | {e / w:.2f}x |")
        checks.append(Check(f"compile=True vs eager, {k} epoch{'s' if k > 1 else ''} ({k * samples // 32} steps), empty cache",
                            "faster (> 1.00x)", f"{e / c:.2f}x", e / c > 1))  # fmt: skip
        checks.append(Check("... same, inductor cache warm (a rerun)", "faster (> 1.00x)", f"{e / w:.2f}x", e / w > 1))
    per_epoch_e = (eager[-1] - eager[0]) / max(1, epochs - 1)
    per_epoch_c = (cold[-1] - cold[0]) / max(1, epochs - 1)
    for c in checks:
        if c.passed is False:
            c.note = "the compile warm-up is not yet paid back by the faster steps at this length"
    emit("perf_compile", checks)
    breakeven = (cold[0] - eager[0]) / max(per_epoch_e - per_epoch_c, 1e-9)
    body = f"""## `fit(compile=True)` vs eager, warm-up included (`benchmarks/perf_compile.py`)

The textbook's model ({depth} hidden layers of 100, SELU), SGD lr 1e-3 momentum 0.9, batch 32,
{samples // 32} steps an epoch; seconds for `fit(..., epochs=k)` from a fresh process (set-up
and the compile warm-up included). {args.threads} torch thread(s).

| epochs | eager s | compile=True, empty cache s | compile=True, warm cache s | speedup, empty cache | speedup, warm cache |
|---|---|---|---|---|---|
{chr(10).join(rows)}

After the first epoch, an epoch takes {per_epoch_e:.2f} s eager and {per_epoch_c:.2f} s compiled
({per_epoch_e / max(per_epoch_c, 1e-9):.2f}x); the first compiled epoch costs {cold[0]:.1f} s with an empty
cache and {warm[0]:.1f} s with a warm one (eager: {eager[0]:.1f} s), so compiling pays off after
about {max(breakeven, 0):.0f} epochs on a first run.

{table(checks)}

{context(started, machine())}
"""
    write_section("perf_compile", body)


if __name__ == "__main__":
    main()
