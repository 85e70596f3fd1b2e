"""How much of the machine's matmul peak ``fit`` reaches on a wide MLP.

The peak: GFLOP/s of one large single matmul (4096 x 4096 by 4096 x 4096, float32, best of
several), measured in the same run on the same threads. The MLP: ``mlp(2048, 10, depth=4,
width=2048, activation="relu")`` at batch 256, where almost all the work is in large matmuls:
each step does 2 * batch * sum(in * out) FLOPs forward, as many for the weight gradients, and
as many again for the input gradients of every layer but the first. ``fit`` and the hand-written
loop (``benchmarks/perf_fit_loop.py``'s, with torch's default SGD) take turns one epoch at a time
on the same model, alternating which goes first.

Target: ``fit``'s fraction of the peak at least 0.97x the hand-written loop's (the same bar as
``perf_fit_loop.py``: the loop is the best a PyTorch user writes).
Run: python benchmarks/perf_peak.py [--rounds 7] [--threads 1] [--quick]
"""

from __future__ import annotations

import statistics
import time

import torch
from _checks import Check, context, emit, parser, setup, table
from _results import machine, write_section
from perf_fit_loop import loop_epoch

from trainability import Monitor, fit, mlp
from trainability.training import make_optimizer


def matmul_peak(n: int, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` n x n by n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def step_flops(model: torch.nn.Module, batch: int) -> float:
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    macs = [m.in_features * m.out_features for m in linears]
    return 2 * batch * (2 * sum(macs) + sum(macs[1:]))  # forward, weight gradients, input gradients past layer 1


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=7, help="epochs per variant, the first one a warm-up")
    args = p.parse_args()
    started = setup(args)
    width, n, steps, rounds = (256, 512, 2, 2) if args.quick else (2048, 4096, 20, args.rounds)
    batch = 256
    torch.manual_seed(0)
    x, y = torch.randn(batch * steps, width), torch.randint(0, 10, (batch * steps,))
    torch.manual_seed(0)
    # one model that both train in turn (each with its own optimizer): with a model each, which
    # instance's tensors landed where in memory moved an epoch by up to 2% either way
    model = mlp(width, 10, depth=4, width=width, activation="relu")
    flops = step_flops(model, batch) * steps
    opt_fit = make_optimizer("sgd", model, lr=1e-3, momentum=0.9)
    opt_loop = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    monitored = {"steps": 0}  # fit's monitor on its default schedule across the one-epoch calls, as in one long fit

    def fit_epoch(e: int) -> float:
        monitor = Monitor(model)  # attached for fit's epochs only: its hooks stay off the loop's
        monitor.steps_done = monitored["steps"]
        try:
            history = fit(model, (x, y), epochs=1, batch_size=batch, optimizer=opt_fit, seed=e, monitor=monitor, progress=False)
        finally:
            monitored["steps"] = monitor.steps_done
            monitor.close()
        return history.epochs[0]["seconds"]

    runs = {"fit (defaults)": fit_epoch, "hand-written loop": lambda e: loop_epoch(model, opt_loop, x, y, batch)}
    peaks, times = [matmul_peak(n)], {k: [] for k in runs}
    order = list(runs)
    for r in range(rounds):
        for name in order[r % 2:] + order[: r % 2]:  # alternate which runs first (right after the peak's matmuls)
            times[name].append(runs[name](r))
        peaks.append(matmul_peak(n))
        print(f"round {r + 1}/{rounds}: peak {peaks[-1]:.1f} GFLOP/s, " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    peak = statistics.median(peaks)
    rate = {k: flops / statistics.median(v[1:]) / 1e9 for k, v in times.items()}
    share = {k: r / peak for k, r in rate.items()}
    ratio = share["fit (defaults)"] / share["hand-written loop"]
    checks = [
        Check("fit: fraction of the matmul peak (width 2048, batch 256)", "reported (see the next row for the bar)",
              f"{share['fit (defaults)']:.2f} ({rate['fit (defaults)']:.1f} of {peak:.1f} GFLOP/s)", None),
        Check("... relative to the hand-written loop's fraction", ">= 0.97x",
              f"{ratio:.3f}x (loop: {share['hand-written loop']:.2f})", ratio >= 0.97),
    ]  # fmt: skip
    emit("perf_peak", checks)
    body = f"""## Share of the matmul peak (`benchmarks/perf_peak.py`)

Peak: the best of 5 single {n} x {n} matmuls (float32), {peak:.1f} GFLOP/s (median over {len(peaks)}
measurements spread through the run: {min(peaks):.1f}-{max(peaks):.1f}). `mlp({width}, 10, depth=4,
width={width}, activation="relu")`, batch {batch}, SGD momentum 0.9, {steps} steps an epoch
({flops / steps / 1e9:.1f} GFLOP a step); `fit` and a hand-written loop take turns one epoch at a time on the same
model, each with its own optimizer (alternating which goes first),
medians of {rounds - 1} epochs after a warm-up. {args.threads} torch thread(s).

{table(checks)}

{context(started, machine())}
"""
    write_section("perf_peak", body)


if __name__ == "__main__":
    main()
