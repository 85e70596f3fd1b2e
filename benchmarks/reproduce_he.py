"""He et al. 2015, "Delving deep into rectifiers": a 30-layer ReLU network initialized with
Glorot (Xavier) stalls; the same network with He initialization trains.

``mlp(40, 10, depth=30, width=100, activation="relu", init=...)`` with ``glorot_uniform`` (variance
1 / fan_avg: each ReLU layer halves the signal's second moment, so 30 layers shrink it ~2^30) and
``he_normal`` (variance 2 / fan_in, the paper's), trained with ``fit`` on MNIST-1D, SGD lr 1e-2,
momentum 0.9, batch 32, for a fixed number of steps; the training loss of the last epoch
against the loss of a uniform guess, ln 10.

Run: python benchmarks/reproduce_he.py [--seeds 5] [--quick]
"""

from __future__ import annotations

import math
import statistics

import torch
from _checks import Check, context, emit, mean_std, parser, setup, table
from _results import machine, write_section

from trainability import datasets, fit, mlp

INITS = {"Glorot (glorot_uniform)": "glorot_uniform", "He (he_normal)": "he_normal"}
CHANCE = math.log(10)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    started = setup(args)
    seeds, depth, epochs = (2, 30, 1) if args.quick else (args.seeds, 30, 10)
    data = datasets.load("mnist1d")
    steps = epochs * math.ceil(data.train.samples / 32)
    losses: dict[str, list[list[float]]] = {}
    for name, init in INITS.items():
        losses[name] = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = mlp(data.in_features, data.n_outputs, depth=depth, width=100, activation="relu", init=init)
            history = fit(model, data.train, epochs=epochs, batch_size=32, optimizer="sgd", lr=1e-2, momentum=0.9,
                          seed=seed, progress=False)  # fmt: skip
            losses[name].append(history.metric("loss"))
        print(f"{name}: last-epoch training loss {mean_std([run[-1] for run in losses[name]])}", flush=True)
    glorot = [run[-1] for run in losses["Glorot (glorot_uniform)"]]
    he = [run[-1] for run in losses["He (he_normal)"]]
    checks = [
        Check(f"30-layer ReLU, Glorot init: training loss after {steps} steps", f"stalls (pass: above 0.95 ln 10 = {0.95 * CHANCE:.3f})",
              mean_std(glorot), all(v > 0.95 * CHANCE for v in glorot)),
        Check(f"30-layer ReLU, He init: training loss after {steps} steps", f"trains (pass: below 0.75 ln 10 = {0.75 * CHANCE:.3f})",
              mean_std(he), all(v < 0.75 * CHANCE for v in he)),
    ]  # fmt: skip
    emit("reproduce_he", checks)
    curve = "\n".join(f"| {e + 1} | " + " | ".join(f"{statistics.fmean(run[e] for run in losses[n]):.3f}" for n in INITS) + " |"
                      for e in range(epochs))  # fmt: skip
    body = f"""## He et al. 2015 (`benchmarks/reproduce_he.py`)

`mlp(40, 10, depth={depth}, width=100, activation="relu", init=...)` on MNIST-1D (3200 training samples),
`fit(..., optimizer="sgd", lr=1e-2, momentum=0.9, batch_size=32)` for {epochs} epochs ({steps} steps),
{seeds} seeds; ln 10 = {CHANCE:.3f} is the loss of a uniform guess over the 10 classes.

{table(checks)}

Mean training loss per epoch:

| epoch | {" | ".join(INITS)} |
|---|---|---|
{curve}

{context(started, machine())}
"""
    write_section("reproduce_he", body)


if __name__ == "__main__":
    main()
