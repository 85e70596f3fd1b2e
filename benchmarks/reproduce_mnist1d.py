"""MNIST-1D's baselines (Greydanus 2020), trained with ``trainability.fit``.

The paper's three models, as in its ``notebooks/models.py``: logistic regression (one Linear),
the MLP (40 -> 100 -> 100 -> 10, ReLU, the second hidden layer residual) and the small CNN (three
Conv1d layers of 25 channels, stride 2, then a Linear), with PyTorch's default initialization;
the paper's training: Adam, lr 1e-2, batch 100, 6000 steps (150 epochs of the 4000 training
samples), test accuracy on the 1000 test samples at the end. Then the "shuffled" variant: the 40
positions permuted with one fixed permutation, the same for every sample, train and test. A
convolution relies on neighbouring positions, so the CNN drops; an MLP is blind to the order of
its inputs, so it does not. Published (test %): logistic 32 ± 1, MLP 68 ± 2, CNN 94 ± 2; shuffled:
MLP 68, CNN 56.

Run: python benchmarks/reproduce_mnist1d.py [--seeds 5] [--quick]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from _checks import Check, context, emit, mean_std, parser, setup, table
from _results import machine, write_section
from torch import nn

from trainability import datasets, fit
from trainability.experiments.analysis import welch_p


class Residual(nn.Module):
    """``x + f(x)``: the paper's MLP adds its second hidden layer to the first."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def logistic() -> nn.Module:
    return nn.Linear(40, 10)


def paper_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(40, 100), nn.ReLU(), Residual(nn.Sequential(nn.Linear(100, 100), nn.ReLU())),
                         nn.Linear(100, 10))  # fmt: skip


def paper_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),   # 40 -> 19 positions
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),  # 19 -> 10
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),  # 10 -> 5
        nn.Flatten(), nn.Linear(125, 10),
    )  # fmt: skip


MODELS = {"logistic regression": logistic, "MLP": paper_mlp, "CNN": paper_cnn}
PUBLISHED = {"logistic regression": (32, 1), "MLP": (68, 2), "CNN": (94, 2)}  # test %, mean ± spread over runs
SHUFFLED = {"MLP": 68, "CNN": 56}


def accuracy(make: Callable[[], nn.Module], train: tuple, test: tuple, seed: int, steps: int) -> float:
    torch.manual_seed(seed)
    model = make()
    epochs = max(1, steps * 100 // len(train[0]))
    history = fit(model, train, val_data=test, epochs=epochs, batch_size=100, optimizer="adam", lr=1e-2,
                  seed=seed, progress=False)  # fmt: skip
    return history.metric("val_accuracy")[-1] * 100


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    started = setup(args)
    steps, seeds = (200, 2) if args.quick else (6000, args.seeds)
    data = datasets.load("mnist1d", standardize=False)  # the paper trains on the raw signals
    x = torch.cat([data.train.x, data.validation.x])    # its 4000 training samples
    y = torch.cat([data.train.y, data.validation.y])
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))  # one fixed permutation
    variants = {"original": ((x, y), (data.test.x, data.test.y)),
                "shuffled": ((x[:, order], y), (data.test.x[:, order], data.test.y))}  # fmt: skip
    acc: dict[tuple[str, str], list[float]] = {}
    for variant, (train, test) in variants.items():
        for name, make in MODELS.items():
            if variant == "shuffled" and name == "logistic regression":
                continue  # a permutation of the inputs changes nothing for a linear model
            acc[name, variant] = [accuracy(make, train, test, seed, steps) for seed in range(seeds)]
            print(f"{variant:9} {name:20} {mean_std(acc[name, variant], 1)}", flush=True)

    checks = []
    for name, (target, spread) in PUBLISHED.items():
        mean = statistics.fmean(acc[name, "original"])
        checks.append(Check(f"{name}, test accuracy %", f"{target} ± {spread} (pass: within 2 x {spread})",
                            mean_std(acc[name, "original"], 1), abs(mean - target) <= 2 * spread))  # fmt: skip
    drop = {n: statistics.fmean(acc[n, "original"]) - statistics.fmean(acc[n, "shuffled"]) for n in SHUFFLED}
    p_mlp = welch_p(acc["MLP", "original"], acc["MLP", "shuffled"])
    checks.append(Check("shuffled: CNN test accuracy %", f"drops, to about {SHUFFLED['CNN']} (pass: falls >= 10 points)",
                        f"{mean_std(acc['CNN', 'shuffled'], 1)} (drop {drop['CNN']:.1f})", drop["CNN"] >= 10))  # fmt: skip
    checks.append(Check("shuffled: MLP test accuracy %", f"unchanged, {SHUFFLED['MLP']} (pass: no significant drop, Welch p >= 0.05, or under 2 points)",
                        f"{mean_std(acc['MLP', 'shuffled'], 1)} (drop {drop['MLP']:.1f}, p = {p_mlp if p_mlp is None else round(p_mlp, 3)})",
                        drop["MLP"] < 2 or (p_mlp is not None and p_mlp >= 0.05)))  # fmt: skip
    emit("reproduce_mnist1d", checks)
    body = f"""## MNIST-1D baselines (`benchmarks/reproduce_mnist1d.py`)

Greydanus 2020: the paper's logistic regression, MLP (40-100-100-10, ReLU, residual second layer)
and CNN (3 x Conv1d of 25 channels, stride 2), PyTorch's default init, `fit(..., optimizer="adam",
lr=1e-2, batch_size=100)` for {steps} steps on the 4000 training samples, test accuracy on the 1000
test samples after the last step; {seeds} seeds (mean ± std). Shuffled: the 40 positions permuted
by one fixed permutation (train and test alike).

{table(checks)}

{context(started, machine())}
"""
    write_section("reproduce_mnist1d", body)


if __name__ == "__main__":
    main()
