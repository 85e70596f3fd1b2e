"""``fit`` against the loop a PyTorch user writes by hand, on the textbook's model.

100 hidden layers of 100 SELU units (LeCun normal), SGD lr 1e-3 with momentum 0.9, batch 32,
4000 random samples shaped like Fashion-MNIST (784 features, 10 classes): 125 steps an epoch.
Variants, each with its own copy of the same model, take turns one epoch at a time, each round
starting one variant later (so the shared machine's noise and any order effect hit all alike); the first round is a warm-up and is dropped; medians of the rest.

- loop: ``DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)``, forward, cross-entropy,
  ``zero_grad``, ``backward``, ``step``, ``loss.item()``, with ``torch.optim.SGD`` as constructed
  by default (its per-tensor for-loop on CPU);
- loop, fused SGD: the same with ``torch.optim.SGD(..., fused=True)``;
- fit: ``fit(model, (x, y), epochs=1, optimizer=..., monitor=...)`` with its defaults (the
  monitor on, recording every 100 steps); ``optimizer="sgd"`` builds a fused SGD where the
  parameters allow it; the optimizer and the monitor are built once and passed in each epoch, so
  that momentum and the monitor's schedule carry on as in one long ``fit`` call;
- fit, monitor=False.

Target: ``fit`` at least 0.97x the loop's throughput (time per epoch of the loop / of fit).
Run: python benchmarks/perf_fit_loop.py [--rounds 6] [--threads 1] [--quick]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _checks import Check, context, emit, parser, setup, table
from _results import machine, write_section
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainability import Monitor, fit, mlp
from trainability.training import make_optimizer


def textbook_model(depth: int) -> nn.Module:
    torch.manual_seed(0)
    return mlp(784, 10, depth=depth, width=100, activation="selu")


def loop_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               batch_size: int = 32) -> float:
    """One epoch of the loop as users write it; returns its seconds."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    start, total = time.perf_counter(), 0.0
    model.train()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return time.perf_counter() - start


def variants(depth: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[int], float]]:
    """name -> run one epoch (given its index) and return its seconds."""
    out: dict[str, Callable[[int], float]] = {}
    m_loop = textbook_model(depth)
    sgd = torch.optim.SGD(m_loop.parameters(), lr=1e-3, momentum=0.9)
    out["loop (torch.optim.SGD default)"] = lambda e: loop_epoch(m_loop, sgd, x, y)
    m_fused = textbook_model(depth)
    fused = torch.optim.SGD(m_fused.parameters(), lr=1e-3, momentum=0.9, fused=True)
    out["loop, fused SGD"] = lambda e: loop_epoch(m_fused, fused, x, y)
    for name, monitored in (("fit (defaults)", True), ("fit, monitor=False", False)):
        model = textbook_model(depth)
        opt = make_optimizer("sgd", model, lr=1e-3, momentum=0.9)  # what optimizer="sgd" builds inside fit
        # one Monitor across the one-epoch calls: its default schedule (every 100 steps) runs as in one long fit
        monitor: Monitor | bool = Monitor(model) if monitored else False

        def one(e: int, model: nn.Module = model, opt: torch.optim.Optimizer = opt, monitor: Monitor | bool = monitor) -> float:
            history = fit(model, (x, y), epochs=1, batch_size=32, optimizer=opt, seed=e, monitor=monitor, progress=False)
            return history.epochs[0]["seconds"]

        out[name] = one
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=6, help="epochs per variant, the first one a warm-up")
    args = p.parse_args()
    started = setup(args)
    depth, rounds, samples = (10, 2, 640) if args.quick else (100, args.rounds, 4000)
    torch.manual_seed(0)
    x, y = torch.randn(samples, 784), torch.randint(0, 10, (samples,))
    runs = variants(depth, x, y)
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for r in range(rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:  # each round starts one variant later
            times[name].append(runs[name](r))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    med = {n: statistics.median(t[1:]) for n, t in times.items()}
    loop, fused = med["loop (torch.optim.SGD default)"], med["loop, fused SGD"]
    rows = "\n".join(f"| {n} | {med[n]:.3f} | {min(t[1:]):.3f}-{max(t[1:]):.3f} | {loop / med[n]:.3f}x |" for n, t in times.items())
    checks = [
        Check("fit (defaults) vs the hand-written loop: throughput", ">= 0.97x", f"{loop / med['fit (defaults)']:.3f}x",
              loop / med["fit (defaults)"] >= 0.97),
        Check("... like for like (both with fused SGD)", ">= 0.97x", f"{fused / med['fit (defaults)']:.3f}x",
              fused / med["fit (defaults)"] >= 0.97),
    ]  # fmt: skip
    if not checks[1].passed:
        checks[1].note = (f"with the monitor off, fit runs at {fused / med['fit, monitor=False']:.3f}x the fused loop: the "
                          "monitor's recorded steps (one in 100) cost the rest, with fit's per-step accuracy count")  # fmt: skip
    emit("perf_fit_loop", checks)
    body = f"""## `fit` vs a hand-written loop (`benchmarks/perf_fit_loop.py`)

The textbook's model ({depth} hidden layers of 100, SELU, LeCun normal), SGD lr 1e-3 momentum 0.9,
batch 32, {samples // 32} steps an epoch on random 784-feature data; variants take turns one epoch
at a time, {rounds - 1} timed epochs each after a warm-up round; seconds per epoch, medians
(throughput ratio: the plain loop's time over the variant's). {args.threads} torch thread(s).

| variant | s / epoch (median) | range | throughput vs the loop |
|---|---|---|---|
{rows}

{table(checks)}

`fit(optimizer="sgd")` builds `torch.optim.SGD(..., fused=True)` where the parameters allow it
(one kernel updates all 202 tensors, where the default for-loop issues a few ops per tensor);
a loop written with torch's default SGD pays for those ops every step.

{context(started, machine())}
"""
    write_section("perf_fit_loop", body)


if __name__ == "__main__":
    main()
