"""ELU (Clevert, Unterthiner, Hochreiter 2015): in an 8 x 128 MLP, the median of the units'
average activations sits nearer zero with ELU than with ReLU and leaky ReLU, and the training
loss falls at least as fast (the paper's figure 1, on MNIST; here MNIST-1D).

``mlp(40, 10, depth=8, width=128, activation=...)`` with He normal weights for all three (the
paper's, and ``init="auto"``'s pairing), trained with ``fit``: plain SGD lr 1e-2, batch 64 (the
paper's). After every epoch the script reads each hidden unit's average activation over the
training inputs; its median over all units of all layers is the curve. ``fit`` is called one
epoch at a time with the same optimizer instance, so momentum-free SGD carries on unchanged.
Plot: docs/elu_activations.png.

Run: python benchmarks/reproduce_elu.py [--seeds 5] [--epochs 20] [--quick]
"""

from __future__ import annotations

import statistics

import torch
from _checks import Check, context, emit, mean_std, parser, setup, table
from _results import DOCS, machine, write_section
from torch import nn

from trainability import activations, datasets, fit, mlp
from trainability.experiments.analysis import welch_p

ACTIVATIONS = ("elu", "relu", "leaky_relu")


def median_activation(model: nn.Sequential, x: torch.Tensor) -> float:
    """Median over all hidden units of each unit's average activation on ``x``."""
    units, h = [], x
    with torch.no_grad():
        for module in model[:-1]:
            h = module(h)
            if not isinstance(module, nn.Linear):
                units.append(h.mean(0))
    return float(torch.cat(units).median())


def run(activation: str, data: datasets.Splits, seed: int, epochs: int) -> tuple[list[float], list[float]]:
    """(median activation at init and after each epoch, training loss of each epoch)."""
    torch.manual_seed(seed)
    model = mlp(data.in_features, data.n_outputs, depth=8, width=128, activation=activation, init="he_normal")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    medians, losses = [median_activation(model, data.train.x)], []
    for epoch in range(epochs):
        history = fit(model, data.train, epochs=1, optimizer=optimizer, batch_size=64, seed=seed * 1000 + epoch,
                      progress=False)  # fmt: skip
        losses.append(history.metric("loss")[0])
        medians.append(median_activation(model, data.train.x))
    return medians, losses


def plot(curves: dict[str, list[tuple[list[float], list[float]]]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, runs) in enumerate(curves.items()):
        for j, (medians, losses) in enumerate(runs):
            label = name if j == 0 else None
            ax[0].plot(range(len(medians)), medians, color=f"C{i}", alpha=0.6, label=label)
            ax[1].plot(range(1, len(losses) + 1), losses, color=f"C{i}", alpha=0.6, label=label)
    ax[0].axhline(0, color="k", lw=0.6)
    ax[0].set(xlabel="epoch", ylabel="median of units' average activation", title="8 x 128 MLP, He init")
    ax[1].set(xlabel="epoch", ylabel="training loss", yscale="log", title="SGD lr 1e-2, batch 64 (one line per seed)")
    for a in ax:
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    started = setup(args)
    seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)
    data = datasets.load("mnist1d")
    curves = {a: [run(a, data, s, epochs) for s in range(seeds)] for a in ACTIVATIONS}
    plot(curves, DOCS / "elu_activations.png")
    # per seed: |median activation| averaged over the epochs of training, and the training loss
    # averaged over the epochs (the area under the curve: lower means it fell faster)
    nearness = {a: [statistics.fmean(abs(m) for m in medians[1:]) for medians, _ in curves[a]] for a in ACTIVATIONS}
    area = {a: [statistics.fmean(losses) for _, losses in curves[a]] for a in ACTIVATIONS}
    checks = []
    for other in ACTIVATIONS[1:]:
        p_near = welch_p(nearness["elu"], nearness[other])
        closer = statistics.fmean(nearness["elu"]) < statistics.fmean(nearness[other]) and p_near is not None and p_near < 0.05
        checks.append(Check(f"|median unit activation| during training, ELU vs {activations.get(other).name}",
                            "ELU nearer zero (pass: smaller, Welch p < 0.05)",
                            f"{mean_std(nearness['elu'])} vs {mean_std(nearness[other])}", closer))  # fmt: skip
    for other in ACTIVATIONS[1:]:
        p_area = welch_p(area["elu"], area[other])
        slower = statistics.fmean(area["elu"]) > statistics.fmean(area[other]) and p_area is not None and p_area < 0.05
        checks.append(Check(f"mean training loss over the {epochs} epochs, ELU vs {other}",
                            "ELU falls at least as fast (pass: not higher beyond seed noise, Welch p < 0.05)",
                            f"{mean_std(area['elu'])} vs {mean_std(area[other])}", not slower))  # fmt: skip
    emit("reproduce_elu", checks)
    final = "\n".join(f"| {a} | {mean_std([m[-1] for m, _ in curves[a]])} | {mean_std([losses[-1] for _, losses in curves[a]])} |" for a in ACTIVATIONS)
    body = f"""## ELU (`benchmarks/reproduce_elu.py`)

Clevert et al. 2015, figure 1: `mlp(40, 10, depth=8, width=128, activation=..., init="he_normal")` on
MNIST-1D (3200 training samples), `fit(..., optimizer=torch.optim.SGD(model.parameters(), lr=1e-2),
batch_size=64)`, {epochs} epochs, {seeds} seeds; the median over all hidden units of each unit's
average activation on the training inputs, after every epoch. Leaky ReLU with the registry's
negative slope, {activations.get("leaky_relu").defaults["negative_slope"]}.

{table(checks)}

After the last epoch:

| activation | median unit activation | training loss (last epoch) |
|---|---|---|
{final}

![ELU: median activation and training loss](elu_activations.png)

{context(started, machine())}
"""
    write_section("reproduce_elu", body)


if __name__ == "__main__":
    main()
