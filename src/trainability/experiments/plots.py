"""The compare report's figures, as PNG bytes: learning curves, gradients against depth, time per
epoch, the accuracy of every seed, and the phase diagram where the grid spans one."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from trainability.experiments.analysis import Metric, Ranking
from trainability.experiments.grid import FACTORS
from trainability.reporting import color, png, style
from trainability.reporting.figures import LINESTYLES

Row = dict[str, Any]
#: Learning-curve panels show at most this many configurations each (the best by validation).
MAX_CURVES = 6


def config_label(row: Row, varying: Sequence[str], skip: Sequence[str] = ("activation",)) -> str:
    """The factors that vary in the grid, e.g. ``init he_normal, depth 50``."""
    return ", ".join(f"{f} {row[f]}" for f in varying if f not in skip)


def _config(row: Row) -> tuple[Any, ...]:
    return tuple(row[f] for f in FACTORS)


def _panels(plt: Any, n: int, columns: int = 3, size: tuple[float, float] = (4.2, 3.0), sharey: bool = True) -> tuple[Any, list[Any]]:
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, sharey=sharey,
                             constrained_layout=True)  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def learning_curves(epochs: list[Row], activations: Sequence[str], varying: Sequence[str], metric: Metric,
                    chance: float | None, top: int = MAX_CURVES) -> bytes:  # fmt: skip
    """One panel per activation: the validation score per epoch, mean over seeds with a min-max
    band; the training score dotted. Where an activation has several configurations, each gets
    one colour, the same in every panel, and one legend for all; at most ``top`` per panel (the
    best by final validation score)."""
    val_key, train_key = ("val_accuracy", "accuracy") if metric.higher_is_better else ("val_loss", "loss")
    series: dict[str, dict[tuple, dict[int, dict[int, Row]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    labels: dict[tuple, str] = {}
    for e in epochs:
        key = _config(e)
        series[e["activation"]][key][e["seed_index"]][e["epoch"]] = e
        labels[key] = config_label(e, varying)
    for activation, configs in series.items():
        if len(configs) > top:
            def final(seeds: dict[int, dict[int, Row]]) -> float:
                last = [s[max(s)][val_key] for s in seeds.values() if s and s[max(s)][val_key] is not None]
                score = sum(last) / len(last) if last else -math.inf
                return score if metric.higher_is_better else -score

            best = sorted(configs, key=lambda k: final(configs[k]), reverse=True)[:top]
            series[activation] = {k: configs[k] for k in best}
    others = list(dict.fromkeys(labels[k] for per in series.values() for k in per))
    several = len(others) > 1  # the configurations besides the activation differ
    with style() as plt:
        fig, axes = _panels(plt, len(activations))
        handles: dict[str, Any] = {}
        for index, (ax, activation) in enumerate(zip(axes, activations, strict=True)):
            for key, seeds in series.get(activation, {}).items():
                c = color(f"_{labels[key]}", others.index(labels[key])) if several else color(activation, index)
                steps = sorted({ep for s in seeds.values() for ep in s})
                vals = [[seeds[s][ep][val_key] for s in seeds if ep in seeds[s] and seeds[s][ep][val_key] is not None] for ep in steps]
                trains = [[seeds[s][ep][train_key] for s in seeds if ep in seeds[s] and seeds[s][ep][train_key] is not None] for ep in steps]
                xs = [ep for ep, v in zip(steps, vals, strict=True) if v]
                vals = [v for v in vals if v]
                if not xs:
                    continue
                ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=c, alpha=0.18, linewidth=0)
                (line,) = ax.plot(xs, [sum(v) / len(v) for v in vals], color=c)
                tx = [ep for ep, t in zip(steps, trains, strict=True) if t]
                (dotted,) = ax.plot(tx, [sum(t) / len(t) for t in trains if t], color=c, linestyle=":", linewidth=1.2)
                if several:
                    handles.setdefault(labels[key], line)
                else:
                    handles.setdefault("validation (band: seeds)", line)
                    handles.setdefault("training", dotted)
            if chance is not None and metric.higher_is_better:
                ax.axhline(chance, color="#9aa3b2", linewidth=0.8, linestyle="--")
            ax.set_title(activation, color=color(activation, index))
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            if not metric.higher_is_better:
                ax.set_yscale("log")
        axes[0].set_ylabel("accuracy" if metric.higher_is_better else "loss")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 4))
        return png(fig)


def gradients_vs_depth(layers: list[Row], activations: Sequence[str], varying: Sequence[str], depth: int,
                       epochs: int) -> bytes | None:  # fmt: skip
    """Gradient RMS at each weight layer's output against its position, at initialization and
    after training (the doctor's pass on the same batch); geometric mean over seeds."""
    curves: dict[tuple, dict[str, dict[int, list[float]]]] = defaultdict(lambda: {"init": defaultdict(list), "end": defaultdict(list)})
    meta: dict[tuple, Row] = {}
    for r in layers:
        if r["source"] != "doctor" or r["depth"] != depth or r["grad_rms"] is None or r["grad_rms"] <= 0:
            continue
        when = "init" if r["epoch"] == 0 else "end" if r["epoch"] == epochs else None
        if when is None:
            continue
        key = _config(r)
        curves[key][when][r["position"]].append(math.log10(r["grad_rms"]))
        meta[key] = r
    if not curves:
        return None
    with style() as plt:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, constrained_layout=True)
        styles: dict[str, int] = defaultdict(int)
        for key in sorted(curves, key=lambda k: activations.index(meta[k]["activation"]) if meta[k]["activation"] in activations else 99):
            row = meta[key]
            activation = row["activation"]
            c = color(activation, activations.index(activation) if activation in activations else 0)
            ls = LINESTYLES[styles[activation] % len(LINESTYLES)]
            styles[activation] += 1
            others = config_label(row, varying, skip=("activation", "depth"))
            label = activation + (f" ({others})" if others else "")
            for ax, when in zip(axes, ("init", "end"), strict=True):
                points = sorted(curves[key][when].items())
                if points:
                    ax.plot([p for p, _ in points], [10 ** (sum(v) / len(v)) for _, v in points], color=c, linestyle=ls,
                            label=label)  # fmt: skip
        for ax, title in zip(axes, ("at initialization", f"after {epochs} epochs"), strict=True):
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel("weight layer (1 = input side)")
        axes[0].set_ylabel("gradient RMS at the layer's output")
        if axes[1].get_legend_handles_labels()[0]:
            axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
        return png(fig)


def time_per_epoch(runs: list[Row], activations: Sequence[str]) -> bytes | None:
    """Median seconds per epoch of each run, mean over runs per activation and depth, with the
    ratio to ReLU (or to the fastest) written on each bar."""
    times: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["status"] == "finished" and r["seconds_per_epoch"]:
            times[r["depth"]][r["activation"]].append(r["seconds_per_epoch"])
    depths = sorted(times)
    if not depths:
        return None
    with style() as plt:
        fig, axes = _panels(plt, len(depths), columns=3, size=(5.0, 0.45 * len(activations) + 1.3), sharey=False)
        for ax, depth in zip(axes, depths, strict=True):
            present = [a for a in activations if times[depth].get(a)]
            means = [sum(times[depth][a]) / len(times[depth][a]) for a in present]
            errs = [(_sd(times[depth][a])) for a in present]
            base = means[present.index("relu")] if "relu" in present else min(means)
            ys = list(range(len(present)))[::-1]
            ax.barh(ys, means, xerr=errs, color=[color(a, activations.index(a)) for a in present], height=0.6,
                    error_kw={"elinewidth": 0.8, "ecolor": "#5b6475"})  # fmt: skip
            ax.set_yticks(ys, present)
            for y, m, e in zip(ys, means, errs, strict=True):
                ax.text(m + e + max(means) * 0.02, y, f"{m:.2f} s  ({m / base:.2f}x {'relu' if 'relu' in present else 'fastest'})",
                        va="center", fontsize=8, color="#1d2433")  # fmt: skip
            ax.set_xlim(0, max(means) * 1.45)
            ax.set_xlabel("seconds per epoch")
            ax.grid(axis="y", visible=False)
            if len(depths) > 1:
                ax.set_title(f"depth {depth}")
        return png(fig)


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def seed_scores(ranking: Ranking, activations: Sequence[str], metric: Metric) -> bytes:
    """Every seed's test score as a dot, the mean as a diamond with +-1 std, best at the top."""
    entries = [e for e in ranking.entries if e.values]
    with style() as plt:
        fig, ax = plt.subplots(figsize=(6.2, 0.42 * len(entries) + 1.0), constrained_layout=True)
        ys = list(range(len(entries)))[::-1]
        for y, e in zip(ys, entries, strict=True):
            c = color(e.activation, activations.index(e.activation) if e.activation in activations else 0)
            ax.scatter(e.values, [y] * len(e.values), color=c, alpha=0.55, s=28, zorder=3)
            std = e.std if e.std == e.std else 0.0
            ax.errorbar([e.mean], [y], xerr=[std], fmt="D", color=c, markersize=7, capsize=3, zorder=4)
        ax.set_yticks(ys, [e.activation for e in entries])
        ax.set_xlabel(metric.label)
        ax.grid(axis="y", visible=False)
        ax.set_title(f"depth {ranking.depth}: each dot a seed")
        return png(fig)


def phase(runs: list[Row], activation: str, fixed: Row, steps: int, data: str, chance: float | None) -> bytes | None:
    """The phase diagram (:func:`trainability.theory.phase.plot_phase`) from the grid's own runs:
    test accuracy over (sigma_w^2, depth) for one activation without normalization, the other
    factors at the values in ``fixed``, where the grid has at least three weight variances
    (initializers) and three depths with every cell filled. Biases start at 0: sigma_b^2 = 0."""
    import os
    import tempfile
    from pathlib import Path

    from trainability import theory
    from trainability.table import recommended_init
    from trainability.theory.phase import Phase, plot_phase

    cells: dict[tuple[float, int], list[float]] = defaultdict(list)
    for r in runs:
        if r["activation"] != activation or r["batch_norm"] != "none" or r["status"] != "finished":
            continue
        if any(r[k] != v for k, v in fixed.items()):
            continue
        width = r["width"]
        name = {"auto": recommended_init(activation), "default": "pytorch_default"}.get(r["init"], r["init"])
        try:
            variance = round(theory.weight_variance_of(name, width), 6)
        except ValueError:
            continue
        if r["test_accuracy"] is not None:
            cells[(variance, r["depth"])].append(r["test_accuracy"])
    variances = sorted({v for v, _ in cells})
    depths = sorted({d for _, d in cells})
    if len(variances) < 3 or len(depths) < 3 or any((v, d) not in cells for v in variances for d in depths):
        return None
    accuracy = [[sum(cells[(v, d)]) / len(cells[(v, d)]) for d in depths] for v in variances]
    xi = [theory.depth_scale(activation, v, 0.0) for v in variances]
    diagram = Phase(activation, data, variances, depths, accuracy, xi, 0.0, steps, chance or 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_phase(diagram, Path(tmp) / "phase.png")
        data_bytes = Path(path).read_bytes()
        os.remove(path)
    return data_bytes
