"""What the monitor adds to a training step, next to full-histogram logging and wandb.watch.

A 50-layer, width-256 ReLU MLP at batch 128, SGD. Variants, each with its own copy of the model,
run round-robin in slices of 10 steps (500 steps each by default) so that the shared machine's
noise hits all alike:

- plain: the bare loop;
- monitor (default schedule: steps 0, 1, 2, 4, 8, 16, then every 25) and monitor (every step), each
  given the optimizer, as ``fit`` and the callbacks give it;
- histograms: every parameter and gradient copied to the host and histogrammed (64 bins) every
  step, which is what TensorBoard histogram logging and ``wandb.watch(log="all", log_freq=1)`` do;
- wandb.watch(log="all", log_freq=1) itself, offline, if wandb is installed.

Reported: each variant's mean step time over all its steps (recorded steps included), and its
ratio to plain. At every step one record in 10 is full and the others light (the loss, the rate,
each weight's gradient norm). Targets: default schedule <= 1.02x, every step <= 1.2x, every step at least 3x
cheaper than full histograms. (benchmarks/monitor_training.py measures the same on a transformer
too.) Run: python benchmarks/monitor_overhead.py [--slices 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _results import machine, write_section

from trainability import Monitor, mlp

STEPS = 10


def make():
    torch.manual_seed(0)
    model = mlp(256, 10, depth=50, width=256, activation="relu")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
    return model, opt, x, y


def block(model, opt, x, y, after_backward: Callable[[torch.Tensor], None]) -> float:
    start = time.perf_counter()
    for _ in range(STEPS):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        after_backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / STEPS


def histograms(model):
    def log(loss):
        float(loss.detach())
        for p in model.parameters():
            np.histogram(p.detach().cpu().numpy(), bins=64)
            np.histogram(p.grad.detach().cpu().numpy(), bins=64)

    return log


def breakdown(steps: int = 100) -> list[tuple[str, float]]:
    """Where the every-step monitor's time goes, per step, from cProfile's cumulative times (the
    profiler inflates Python calls, so the shares matter more than the absolute numbers)."""
    import cProfile
    import pstats

    model, opt, x, y = make()
    monitor = Monitor(model, opt, every=1)
    block(model, opt, x, y, monitor.step)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(steps // STEPS):
        block(model, opt, x, y, monitor.step)
    profile.disable()
    monitor.close()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def cumulative(file: str, function: str) -> float:
        return sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(file) and fn == function) / steps * 1e3

    forward = cumulative("capture.py", "hook")
    backward = cumulative("capture.py", "_on_grad")
    stage = cumulative("capture.py", "stage") + cumulative("core.py", "_stage")
    light = cumulative("capture.py", "stage_weight_grads") + cumulative("capture.py", "weight_grad_rows")
    read = cumulative("distributed.py", "read")
    snapshot = cumulative("updates.py", "snapshot")
    step = cumulative("core.py", "step")
    return [
        ("forward hooks: per-layer sum, norm, alive units (one thread)", forward),
        ("backward hooks: gradient norm at each layer's output", backward),
        ("full records (1 in 10): weight/gradient norms, update samples, the optimizer's state, staged", stage),
        ("light records (9 in 10): each weight's gradient norm (one _foreach_norm) and its row", light),
        ("reading: one transfer of every statistic (distributed.Ledger)", read),
        ("the weight samples kept before the next step", snapshot),
        ("bookkeeping: LayerStats of full records, rows, the rules", step - stage - light - read - snapshot),
    ]


def measure(slices: int) -> tuple[dict[str, float], str]:
    """Mean step time of each variant, in round-robin slices on the current thread count."""
    variants: dict[str, tuple] = {}
    for name in ("plain", "monitor, default schedule", "monitor, every step", "full histograms every step"):
        model, opt, x, y = make()
        if name.startswith("monitor"):
            monitor = Monitor(model, opt, every=1 if "every step" in name else None)
            hook = monitor.step
        elif name.startswith("full"):
            hook = histograms(model)
        else:
            hook = lambda loss: float(loss.detach())  # noqa: E731 - the plain loop reads its loss too
        variants[name] = (model, opt, x, y, hook)
    wandb_note = ""
    try:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        run = wandb.init(mode="offline", dir=tempfile.mkdtemp(), project="trainability-bench")
        model, opt, x, y = make()
        wandb.watch(model, log="all", log_freq=1)
        variants["wandb.watch(log='all', log_freq=1), offline"] = (model, opt, x, y, lambda loss: wandb.log({"loss": float(loss.detach())}))
    except Exception as exc:  # noqa: BLE001 - reported in the results
        run, wandb_note = None, f"wandb.watch was not measured: {type(exc).__name__}: {exc}"
    times: dict[str, list[float]] = {name: [] for name in variants}
    for model, opt, x, y, hook in variants.values():  # warm-up, past the default schedule's doubling start (0, 1, ..., 32)
        for _ in range(6):
            block(model, opt, x, y, hook)
    for _ in range(slices):
        for name, (model, opt, x, y, hook) in variants.items():
            times[name].append(block(model, opt, x, y, hook))
    if run is not None:
        run.finish()
    return {name: statistics.fmean(t) for name, t in times.items()}, wandb_note


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=50, help="rotations of 10 steps per variant")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch intra-op thread counts, each measured in turn (default: 1, and 2 where the machine has 2 cores)")  # fmt: skip
    args = parser.parse_args()
    threads = args.threads or sorted({1, min(2, os.cpu_count() or 1)})
    load = os.getloadavg()[0]
    runs = {}
    for n in threads:
        torch.set_num_threads(n)
        runs[n], wandb_note = measure(args.slices)
    torch.set_num_threads(threads[0])
    names = list(runs[threads[0]])
    header = " | ".join(f"{n} thread{'s' if n > 1 else ''}: step ms | vs plain" for n in threads)
    rows = "\n".join(f"| {name} | " + " | ".join(f"{runs[n][name] * 1e3:.2f} | {runs[n][name] / runs[n]['plain']:.3f}x" for n in threads) + " |"
                     for name in names)  # fmt: skip
    mean = runs[threads[0]]
    plain = mean["plain"]
    every = mean["monitor, every step"]
    hist = mean["full histograms every step"]
    extra = f"{(every - plain) / (hist - plain):.3f}" if hist > plain else "n/a"
    wandb_line = ""
    key = "wandb.watch(log='all', log_freq=1), offline"
    if key in mean:
        w = mean[key]
        wandb_line = f"\nMonitor every step vs wandb.watch every step: {w / every:.2f}x cheaper per step."
    parts = breakdown()
    total = sum(ms for _, ms in parts)
    parts_rows = "\n".join(f"| {name} | {ms:.2f} | {ms / total:.0%} |" for name, ms in parts)
    body = f"""## Monitor overhead (`benchmarks/monitor_overhead.py`)

50-layer, width-256 ReLU MLP, batch 128, SGD; {args.slices} round-robin slices of {STEPS} steps per
variant ({args.slices * STEPS} steps each), on each thread count in turn; mean step time, recorded steps
included. Machine: {machine()}; 1-minute load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end
(the machine is shared). Target: the every-step monitor at most 1.2x the plain step; the default
schedule at most 1.02x.

| variant | {header} |
|---|{"---|---|" * len(threads)}
{rows}

On {threads[0]} thread{"s" if threads[0] > 1 else ""}: added time of the every-step monitor as a share of the added time of full histograms: {extra}
(its overhead is {1 / float(extra) if extra != "n/a" else float("nan"):.1f}x smaller; per step it is {hist / every:.2f}x
cheaper).{wandb_line}
{wandb_note}

Recording every step, one record in 10 is in full detail (per-layer hooks, update-to-weight
ratios, the optimizer's state) and the nine between are light: the loss, the rate and each
weight's gradient norm, what a spike changes (docs/MONITOR.md, "Every step").

Where the every-step monitor's time goes (cProfile, 100 steps; ms per step as profiled):

| part | ms per step | share |
|---|---|---|
{parts_rows}

Statistics run on one intra-op thread: they are small reductions right after large
multithreaded matrix products, and handing each to a second thread cost more than computing it
(sum, norm and amax of one 128 x 256 output: 8 us on one thread; on two, 2 ms when the other core was busy).
"""
    write_section("monitor_overhead", body)
    print(body)


if __name__ == "__main__":
    main()
