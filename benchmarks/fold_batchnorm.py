"""Inference speed of a BatchNorm network before and after ``fold_batchnorm``.

A 50-layer, width-256 MLP with batch norm before each ReLU, eval mode, batch 128; forward passes
timed alternately, medians of 200. Also checks the outputs agree within 1e-5.
Run: python benchmarks/fold_batchnorm.py [--quick]   (--quick: 20 passes, a smoke run)
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from _results import machine, write_section
from torch import nn

from trainability import fold_batchnorm, mlp


def main() -> None:
    torch.manual_seed(0)
    model = mlp(256, 10, depth=50, width=256, batch_norm="before")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(128, 256)
    with torch.no_grad():
        error = (folded(x) - model(x)).abs().max().item()
        times: dict[str, list[float]] = {"with BatchNorm": [], "folded": []}
        for _ in range(10):
            model(x), folded(x)
        for _ in range(20 if "--quick" in sys.argv[1:] else 200):
            for name, net in (("with BatchNorm", model), ("folded", folded)):
                start = time.perf_counter()
                net(x)
                times[name].append(time.perf_counter() - start)
    a, b = (statistics.median(times[k]) * 1e3 for k in times)
    body = f"""## BatchNorm folding (`benchmarks/fold_batchnorm.py`)

50-layer, width-256 MLP (Linear without bias, BatchNorm1d, ReLU), eval mode, batch 128; 200
alternating forward passes, medians. Machine: {machine()}.

| model | forward ms |
|---|---|
| with BatchNorm | {a:.3f} |
| folded | {b:.3f} |
| **speedup** | **{a / b:.2f}x** |

Largest output difference: {error:.2e} (bound 1e-5).
"""
    write_section("fold_batchnorm", body)
    print(body)


if __name__ == "__main__":
    main()
