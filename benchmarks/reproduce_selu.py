"""SELU (Klambauer et al. 2017) as the textbook shows it (Geron, chapter 11).

1. Self-normalization: standardized inputs (500 x 100, N(0, 1)) through 1000 dense SELU layers
   of 100 with LeCun normal weights (``mlp(..., activation="selu")``: ``init="auto"`` picks
   LeCun normal) keep the mean near 0 and the standard deviation near 1 at every depth, as the
   textbook prints them every 100th layer; ReLU + He and tanh + Glorot go through the same stack
   for contrast.
2. The textbook's deep comparison, SELU + LeCun against ReLU + He and tanh + Glorot, 100 hidden
   layers of 100, SGD lr 1e-3, batch 32: ``trainability.compare`` on MNIST-1D (the textbook used
   Fashion-MNIST for 5 epochs, about 8600 steps: SELU 0.80-0.82 validation accuracy, ReLU + He
   0.71-0.74); here 60 epochs of 100 steps, the length of the textbook preset (and of the
   MNIST-1D paper's training). The target is the order: SELU above ReLU + He beyond seed noise
   (Welch's t-test, p < 0.05).

Run: python benchmarks/reproduce_selu.py [--epochs 60] [--workers 2] [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch
from _checks import Check, context, emit, mean_std, parser, setup, table
from _results import machine, write_section

from trainability import compare, mlp

STACKS = {"selu + LeCun normal": "selu", "relu + He normal": "relu", "tanh + Glorot uniform": "tanh"}


def propagate(activation: str, depth: int, seed: int) -> list[tuple[int, float, float]]:
    """(layer, mean of the units' means, mean of the units' stds) at every 100th layer."""
    torch.manual_seed(seed)
    model = mlp(100, 100, depth=depth, width=100, activation=activation)  # init="auto": the textbook's pairing
    z, rows, layer = torch.randn(500, 100), [], 0
    with torch.no_grad():
        for module in model[:-1]:
            z = module(z)
            if not isinstance(module, torch.nn.Linear):
                layer += 1
                if layer % 100 == 0 or layer == 1:
                    rows.append((layer, float(z.mean(0).mean()), float(z.std(0).mean())))
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    started = setup(args)
    depth, net_depth, epochs, seeds = (200, 5, 1, 2) if args.quick else (1000, 100, args.epochs, args.seeds)

    paths = {name: [propagate(act, depth, s) for s in range(seeds)] for name, act in STACKS.items()}
    selu = [row for run in paths["selu + LeCun normal"] for row in run]
    worst_mean = max(abs(m) for _, m, _ in selu)
    stds = [s for _, _, s in selu]
    header = " | ".join(f"layer {layer}" for layer, _, _ in paths["selu + LeCun normal"][0])
    lines = []
    for name, runs in paths.items():
        cells = []
        for i in range(len(runs[0])):
            mean = statistics.fmean(run[i][1] for run in runs)
            std = statistics.fmean(run[i][2] for run in runs)
            cells.append(f"{mean:.2f} / {std:.2g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    with tempfile.TemporaryDirectory(prefix="reproduce-selu-") as tmp:
        results = compare("mnist1d", activation=list(STACKS.values()), init="auto", depth=net_depth, width=100,
                          optimizer="sgd", lr=1e-3, batch_size=32, epochs=epochs, seeds=seeds,
                          out=Path(tmp) / "selu", workers=1 if args.quick else args.workers, progress=False)  # fmt: skip
        (ranking,) = results.rankings()
        board = results.leaderboard()
    acc = {e.activation: e.values for e in ranking.entries}
    verdict = next(v for a, b, v, _ in ranking.pairs if (a, b) == ("selu", "relu"))
    p_value = next(pv for a, b, _, pv in ranking.pairs if (a, b) == ("selu", "relu"))
    checks = [
        Check("1000 SELU layers (LeCun normal): mean at every 100th layer", "about 0 (pass: |mean| <= 0.1 everywhere)",
              f"largest |mean| {worst_mean:.3f}", worst_mean <= 0.1),
        Check("... standard deviation at every 100th layer", "about 1 (pass: within 0.75-1.25 everywhere)",
              f"{min(stds):.2f} to {max(stds):.2f}", all(0.75 <= s <= 1.25 for s in stds)),
        Check(f"{net_depth} layers, SGD lr 1e-3: test accuracy, SELU + LeCun vs ReLU + He",
              "SELU higher (textbook, Fashion-MNIST: 0.80-0.82 vs 0.71-0.74; pass: Welch p < 0.05)",
              f"{mean_std(acc.get('selu', []))} vs {mean_std(acc.get('relu', []))} (p = {'-' if p_value is None else f'{p_value:.3g}'}: {verdict})",
              verdict == "agrees"),
    ]  # fmt: skip
    if not checks[-1].passed and acc.get("selu"):
        checks[-1].note = (f"not reproduced on MNIST-1D at depth {net_depth}: measured order {ranking.order()}, SELU's "
                           f"seeds {min(acc['selu']):.3f} to {max(acc['selu']):.3f}; the textbook's gap was measured on "
                           "Fashion-MNIST; the textbook ranking below measures depths 20 and 50")  # fmt: skip
    emit("reproduce_selu", checks)
    board_rows = "\n".join(f"| {a} | {mean_std(acc[a])} | {board.loc[board['activation'] == a, 'seconds_per_epoch'].iloc[0]:.2f} |"
                           for a in acc if acc[a])  # fmt: skip
    body = f"""## SELU (`benchmarks/reproduce_selu.py`)

Self-normalization: `mlp(100, 100, depth={depth}, width=100, activation=...)` (`init="auto"`: LeCun
normal for SELU, He normal for ReLU, Glorot uniform for tanh), 500 standardized inputs, {seeds} seeds;
each cell is the mean of the units' means / the mean of the units' standard deviations.

| stack | {header} |
|---|{"---|" * len(paths["selu + LeCun normal"][0])}
{chr(10).join(lines)}

Training: `trainability.compare("mnist1d", activation=["selu", "relu", "tanh"], init="auto",
depth={net_depth}, width=100, optimizer="sgd", lr=1e-3, batch_size=32, epochs={epochs}, seeds={seeds},
workers={args.workers})` ({epochs * 100} steps of batch 32 on 3200 training samples), measured order
{ranking.order()} (`>`: Welch p < 0.05, `≈`: within seed noise).

| activation | test accuracy | s / epoch |
|---|---|---|
{board_rows}

{table(checks)}

{context(started, machine())}
"""
    write_section("reproduce_selu", body)


if __name__ == "__main__":
    main()
