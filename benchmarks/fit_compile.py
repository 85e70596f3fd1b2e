"""``fit(..., compile=True)`` against eager on the textbook's 100-layer MLP.

100 hidden layers of 100 SELU units (LeCun normal), SGD with momentum, batch 32, 125 steps per
epoch on random data shaped like Fashion-MNIST (784 features, 10 classes). Reports the first
epoch (with torch.compile's warm-up) and the median of the following epochs.
Run: python benchmarks/fit_compile.py [--epochs 4] [--quick]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _results import machine, write_section

from trainability import fit, mlp


def run(compile: bool, epochs: int, depth: int = 100, samples: int = 4000) -> list[float]:
    torch.manual_seed(0)
    x, y = torch.randn(samples, 784), torch.randint(0, 10, (samples,))
    model = mlp(784, 10, depth=depth, width=100, activation="selu")
    history = fit(model, (x, y), epochs=epochs, batch_size=32, optimizer="sgd", lr=1e-3, momentum=0.9,
                  monitor=False, progress=False, seed=0, compile=compile)  # fmt: skip
    return [e["seconds"] for e in history.epochs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="3 layers, 2 epochs of 10 steps: a smoke run")
    args = parser.parse_args()
    size = {"depth": 3, "samples": 320} if args.quick else {}
    if args.quick:
        args.epochs = 2
    eager = run(False, args.epochs, **size)
    compiled = run(True, args.epochs, **size)
    e, c = statistics.median(eager[1:]), statistics.median(compiled[1:])
    body = f"""## torch.compile in fit (`benchmarks/fit_compile.py`)

The textbook's 100-layer, width-100 SELU MLP, SGD with momentum, batch 32, 125 steps per epoch;
median of epochs 2-{args.epochs}. Machine: {machine()}.

| mode | first epoch s | later epochs s (median) |
|---|---|---|
| eager | {eager[0]:.2f} | {e:.2f} |
| compile=True | {compiled[0]:.2f} | {c:.2f} |
| **speedup after warm-up** | | **{e / c:.2f}x** |

The work is about 200 MFLOP a step, so per-op overhead dominates on this CPU; the compile
warm-up is paid once per process.
"""
    write_section("fit_compile", body)
    print(body)


if __name__ == "__main__":
    main()
