"""How long one diagnosis takes next to one plain training step.

A 100-layer, width-100 ReLU MLP at batch 256; the plain step is forward, cross-entropy,
backward and zero_grad. The two are timed alternately, one repetition each in turn, so that
the shared machine's noise hits both alike; the medians and their ratio go to docs/RESULTS.md.
Target: diagnose at most 3x the plain step.

Run: python benchmarks/doctor_latency.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _results import machine, write_section

from trainability import mlp
from trainability.doctor import diagnose


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = mlp(100, 10, depth=100, width=100, activation="relu")
    x, y = torch.randn(256, 100), torch.randint(0, 10, (256,))

    def step() -> None:
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    def doctor() -> None:
        diagnose(model, x, y)

    for _ in range(5):  # warm-up
        step()
        doctor()
    times: dict[str, list[float]] = {"step": [], "doctor": []}
    for _ in range(args.repeats):
        for name, fn in (("step", step), ("doctor", doctor)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    step_ms = statistics.median(times["step"]) * 1e3
    doctor_ms = statistics.median(times["doctor"]) * 1e3
    ratio = doctor_ms / step_ms
    body = f"""## Doctor latency (`benchmarks/doctor_latency.py`)

100-layer, width-100 ReLU MLP, batch 256, {args.repeats} alternating repetitions, medians.
Machine: {machine()}.

| what | median ms |
|---|---|
| plain step (forward + cross-entropy + backward + zero_grad) | {step_ms:.2f} |
| `diagnose(model, x, y)` | {doctor_ms:.2f} |
| **ratio** (target <= 3x) | **{ratio:.2f}x** |
"""
    write_section("doctor_latency", body)
    print(body)


if __name__ == "__main__":
    main()
