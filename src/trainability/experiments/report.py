"""The compare report: a page a person would rather look at than read numbers, and the
leaderboard as terminal text. Numbers come from :mod:`~trainability.experiments.analysis`,
figures from :mod:`~trainability.experiments.plots`, the page from :mod:`trainability.reporting`."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

from trainability._text import format_rows
from trainability.experiments import analysis, plots
from trainability.experiments.grid import FACTORS
from trainability.reporting import (
    Section,
    Tile,
    badge,
    bar,
    chip,
    color,
    escape,
    image,
    paragraph,
    table,
    write_page,
)

TEXTBOOK_QUOTE = ("&ldquo;So, which activation function should you use for the hidden layers of your deep neural "
                  "networks? Although your mileage will vary, in general SELU &gt; ELU &gt; leaky ReLU (and its "
                  "variants) &gt; ReLU &gt; tanh &gt; logistic.&rdquo; (G&eacute;ron, chapter 11)")  # fmt: skip


def _pm(mean: float, std: float, digits: int = 3) -> str:
    if mean != mean:
        return "&ndash;"
    return f"{mean:.{digits}f}" + (f" &plusmn; {std:.{digits}f}" if std == std else "")


def _pm_text(mean: float, std: float) -> str:
    if mean != mean:
        return "-"
    return f"{mean:.3f}" + (f" +- {std:.3f}" if std == std else "")


def _varying(results: Any) -> list[str]:
    return [f for f in FACTORS if len(results.grid.factors[f]) > 1]


def _fixed(results: Any) -> str:
    g = results.grid.factors
    names = {"depth": "depth", "width": "width", "batch_norm": "batch norm", "optimizer": "", "lr": "lr", "batch_size": "batch",
             "init": "init", "activation": "activation"}  # fmt: skip
    parts = [f"{names[f]} {g[f][0]}".strip() for f in FACTORS if len(g[f]) == 1]
    return ", ".join(parts)


def _verdict_badge(verdict: str | None) -> str:
    if verdict is None:
        return badge("not run")
    if verdict == "healthy":
        return badge("healthy", "good")
    severe = any(k in verdict for k in ("vanishing", "exploding", "non_finite", "dead"))
    return badge(verdict.replace("_", " "), "bad" if severe else "warn")


def _activations(results: Any) -> list[str]:
    present = list(results.grid.factors["activation"])
    return [a for a in analysis.TEXTBOOK_ORDER if a in present] + [a for a in present if a not in analysis.TEXTBOOK_ORDER]


def _chip(activation: str, activations: list[str]) -> str:
    return chip(color(activation, activations.index(activation) if activation in activations else 0), activation)


def _data_meta(results: Any) -> dict[str, Any]:
    from trainability.experiments.store import Store

    with Store(results.folder, readonly=True) as store:
        text = store.meta("data")
    return json.loads(text) if text else {}


# -- sections ----------------------------------------------------------------------------------
def _leaderboard(results: Any, rows: list[dict[str, Any]], metric: analysis.Metric, activations: list[str]) -> Section:
    varying = [f for f in _varying(results) if f != "activation"]
    scores = [r["test_mean"] for r in rows if r["test_mean"] == r["test_mean"]]
    top = max(scores, default=1.0) or 1.0
    body = []
    for r in rows:
        config = [escape(", ".join(f"{f} {r[f]}" for f in varying))] if varying else []
        fraction = (r["test_mean"] / top) if metric.higher_is_better else (min(scores) / r["test_mean"] if r["test_mean"] else 0)
        runs = f"{r['finished']}/{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        body.append([str(r["rank"]), _chip(r["activation"], activations), *config, _pm(r["test_mean"], r["test_std"]),
                     bar(fraction, color(r["activation"], activations.index(r["activation"]) if r["activation"] in activations else 0)),
                     _pm(r["val_mean"], r["val_std"]),
                     f"{r['seconds_per_epoch']:.2f}" if r["seconds_per_epoch"] == r["seconds_per_epoch"] else "&ndash;",
                     _verdict_badge(r["doctor_init"]), runs])  # fmt: skip
    columns = ["#", "activation", *(["configuration"] if varying else []), metric.label, "",
               metric.label.replace("test", "validation"), "s / epoch", "doctor at init", "runs"]  # fmt: skip
    shift = 1 if varying else 0
    failures = [r for r in rows if r["failure"]]
    note = "".join(paragraph(f"{_chip(r['activation'], activations)} {escape(', '.join(f'{f} {r[f]}' for f in varying))}: "
                             f"{escape(r['failure'])}", "note") for r in failures[:6])  # fmt: skip
    return Section("Leaderboard", table(columns, body, numeric=(0, 2 + shift, 4 + shift, 5 + shift)) + note,
                   lead=f"Mean &plusmn; standard deviation over seeds, best first. Fixed for every run: {escape(_fixed(results))}.",
                   anchor="leaderboard")  # fmt: skip


def _ranking(results: Any, rankings: list[analysis.Ranking], metric: analysis.Metric, activations: list[str]) -> Section:
    blocks = [paragraph(TEXTBOOK_QUOTE, "note")]
    for ranking in rankings:
        textbook = [a for a in analysis.TEXTBOOK_ORDER if any(e.activation == a and e.values for e in ranking.entries)]
        left = "".join(f"<li>{_chip(a, activations)}</li>" + ('<li class="rel">&gt;</li>' if i < len(textbook) - 1 else "")
                       for i, a in enumerate(textbook))  # fmt: skip
        right = []
        for i, e in enumerate(ranking.entries):
            score = _pm(e.mean, e.std) if e.values else "no finished run"
            right.append(f"<li>{_chip(e.activation, activations)} <span class='note'>{score}</span></li>")
            if i < len(ranking.steps):
                symbol, p = ranking.steps[i]
                words = {">": "&gt; (beyond seed noise", "≈": "&asymp; (within seed noise", "?": "? (one seed: untested"}[symbol]
                right.append(f"<li class='rel'>{words}{f', p = {p:.2g}' if p is not None else ''})</li>")
        agree, disagree, noise = ranking.count("agrees"), ranking.count("disagrees"), ranking.count("within seed noise")
        pairs, untested = len(ranking.pairs), ranking.count("untested")
        lines = []
        for verdict, tone in (("disagrees", "bad"), ("agrees", "good")):
            chosen = [f"{a} &gt; {b}" for a, b, v, _ in ranking.pairs if v == verdict]
            if chosen:
                lines.append(f"{badge(verdict, tone)} " + ", ".join(chosen if verdict == "agrees" else
                             [f"{b} &gt; {a}" for a, b, v, _ in ranking.pairs if v == verdict]))  # fmt: skip
        summary = (f"Of the {pairs} pairs the textbook orders, the measurement agrees on {agree}, disagrees on {disagree}, "
                   f"and {noise} are within seed noise" + (f"; {untested} untested (one seed gives no noise estimate)." if untested else ".")
                   if pairs else "No two of the textbook's activations were measured here.")  # fmt: skip
        dots = image(plots.seed_scores(ranking, activations, metric), f"{metric.label} per seed at depth {ranking.depth}")
        blocks.append(
            f"<h3>Depth {ranking.depth}</h3><div class='columns'><div><p class='note'>textbook</p><ul class='order'>{left}</ul></div>"
            f"<div><p class='note'>measured ({metric.label}, best configuration per activation)</p><ul class='order'>{''.join(right)}</ul></div>"
            f"<div>{dots}</div></div>" + paragraph(summary) + "".join(paragraph(line, "note") for line in lines)
        )  # fmt: skip
    method = (f"How ties are decided: Welch's t-test (two-sided, unequal variances) on the per-seed {metric.label}; "
              f"a difference counts when p &lt; {analysis.ALPHA}. Each activation enters with the configuration that had "
              "the best mean validation score. With few seeds only large gaps pass: more seeds narrow the ties.")  # fmt: skip
    return Section("Ranking against the textbook", "".join(blocks) + paragraph(method, "note"), anchor="ranking",
                   lead="The textbook's order next to the measured one; no claim of an order the seeds do not support.")


def _figure_section(title: str, png: bytes | None, alt: str, lead: str, anchor: str, extra: str = "") -> Section | None:
    if png is None:
        return None
    return Section(title, image(png, alt) + extra, lead=lead, anchor=anchor)


def _time_sentence(runs: list[dict[str, Any]]) -> str:
    per: dict[str, list[float]] = {}
    for r in runs:
        if r["status"] == "finished" and r["seconds_per_epoch"]:
            per.setdefault(r["activation"], []).append(r["seconds_per_epoch"])
    if "relu" not in per:
        return ""
    relu = sum(per["relu"]) / len(per["relu"])
    parts = [f"{a} {sum(per[a]) / len(per[a]) / relu:.2f}x" for a in ("elu", "selu") if a in per]
    if not parts:
        return ""
    return paragraph(f"Measured against ReLU's time per epoch: {', '.join(parts)} (all depths pooled). "
                     "Each run used one thread; runs that shared the machine with others are noisier.", "note")  # fmt: skip


def _doctor(results: Any, runs: list[dict[str, Any]], activations: list[str]) -> Section:
    varying = [f for f in _varying(results) if f != "activation"]
    seen: dict[tuple, dict[str, Any]] = {}
    for r in sorted(runs, key=lambda r: r["seed_index"]):
        seen.setdefault(tuple(r[f] for f in FACTORS), r)
    body = []
    healthy = [r for r in seen.values() if r["doctor_init"] == "healthy"]
    for r in seen.values():
        if r["doctor_init"] == "healthy" and len(seen) > 8:
            continue  # many configurations: list the ones with findings, count the healthy
        findings = json.loads(r["findings_init"]) if r["findings_init"] else []
        first = findings[0] if findings else None
        config = [escape(", ".join(f"{f} {r[f]}" for f in varying))] if varying else []
        body.append([_chip(r["activation"], activations), *config, _verdict_badge(r["doctor_init"]),
                     escape(first["message"]) if first else "&ndash;", escape(first["fix"]) if first else "&ndash;"])  # fmt: skip
    columns = ["activation", *(["configuration"] if varying else []), "verdict", "first finding", "fix"]
    listed = table(columns, body) if body else ""
    if len(body) < len(seen):
        listed += paragraph(f"{len(healthy)} of {len(seen)} configurations are healthy at initialization"
                            + ("; the others are listed above." if body else "."), "note")  # fmt: skip
    return Section("The doctor at initialization", listed,
                   lead="trainability.doctor.diagnose on 256 training samples before the first step (seed 0 of each configuration).",
                   anchor="doctor")  # fmt: skip


def _about(results: Any, runs: list[dict[str, Any]], data: dict[str, Any]) -> Section:
    g = results.grid
    versions = sorted({(r["trainability_version"], r["torch_version"], r["threads"], r["backend"]) for r in runs if r["torch_version"]})
    seconds = sum(r["seconds"] or 0 for r in runs)
    rows = [
        ["data", escape(f"{g.data}" + (f" ({data['in_features']} features, {data['n_outputs']} classes; train {data['train']}, "
                                      f"validation {data['validation']}, test {data['test']})" if data else ""))],
        ["grid", escape(g.describe())],
        ["epochs", str(g.epochs)],
        ["compute", f"{seconds / 60:.1f} CPU-thread minutes over {len(runs)} runs"],
        ["software", escape("; ".join(f"trainability {v[0]}, torch {v[1]}, {v[2]} thread(s), {v[3]}" for v in versions))],
        ["machine", escape(f"{platform.node()} ({platform.machine()}), report written with Python {platform.python_version()}")],
        ["store", f"<code>{escape(str(results.folder / 'results.sqlite'))}</code>: tables runs, epochs, layers"],
    ]  # fmt: skip
    return Section("About these runs", table(["", ""], rows), anchor="about",
                   lead="Every run is seeded from its configuration: the same command gives the same numbers.")


def write_report(results: Any, path: Path) -> Path:
    """Build every section from the results folder and write the page."""
    runs = results.rows("runs")
    if not runs:
        raise ValueError(f"{results.folder} holds no runs yet")
    metric = analysis.metric_for(runs)
    activations = _activations(results)
    rows = analysis.leaderboard(runs)
    rankings = analysis.rankings(runs)
    data = _data_meta(results)
    chance = 1.0 / data["n_outputs"] if data.get("classification") and data.get("n_outputs") else None
    varying = _varying(results)
    epochs = results.grid.epochs
    sections = [_leaderboard(results, rows, metric, activations), _ranking(results, rankings, metric, activations)]
    curves = plots.learning_curves(results._joined("epochs"), activations, varying, metric, chance)
    per_activation = len(rows) // max(len(activations), 1)
    cut = f" Each panel shows the {plots.MAX_CURVES} best configurations by validation score." if per_activation > plots.MAX_CURVES else ""
    sections.append(Section("Learning curves", image(curves, "learning curves per activation"), anchor="curves",
                            lead="Validation score per epoch (solid: mean over seeds, band: lowest to highest seed); "
                                 "training score dotted" + ("; dashed line: chance." if chance else ".") + cut))  # fmt: skip
    layers = results._joined("layers")
    grads = "".join(image(png, f"gradient RMS against depth, depth {d}") for d in results.grid.factors["depth"]
                    if (png := plots.gradients_vs_depth(layers, activations, varying, d, epochs)) is not None)  # fmt: skip
    if grads:
        sections.append(Section("Gradients against depth", grads, anchor="gradients",
                                lead="The picture of vanishing and exploding gradients: each weight layer's output-gradient "
                                     "RMS at initialization and after training (the doctor's pass on the same 256 samples, "
                                     "geometric mean over seeds). Flat is healthy; a slope is a gradient shrinking or "
                                     "growing layer by layer."))  # fmt: skip
    timing = _figure_section("Time per epoch", plots.time_per_epoch(runs, activations), "seconds per epoch per activation",
                             "The textbook: ELU and SELU are slower to compute than ReLU. Median seconds per epoch of each "
                             "run, mean over runs (error bar: std).", "time", _time_sentence(runs))  # fmt: skip
    if timing:
        sections.append(timing)
    phase_images = []
    for activation in activations:
        fixed = {f: results.grid.factors[f][0] for f in ("optimizer", "lr", "batch_size")}
        steps = epochs * math.ceil(data.get("train", 0) / fixed["batch_size"]) if data.get("train") else epochs
        png = plots.phase(runs, activation, fixed, steps, results.grid.data, chance)
        if png is not None:
            phase_images.append(f"<div>{image(png, f'phase diagram, {activation}')}</div>")
    if phase_images:
        sections.append(Section("Phase diagram", f"<div class='gallery'>{''.join(phase_images)}</div>", anchor="phase",
                                lead="Test accuracy over the initializers' weight variance sigma_w^2 and depth, with "
                                     "mean-field theory's depth scale xi_c (trainability.theory) overlaid: networks train "
                                     "below about 6 xi_c."))  # fmt: skip
    sections += [_doctor(results, runs, activations), _about(results, runs, data)]

    finished = [r for r in runs if r["status"] == "finished"]
    failed = sum(r["status"] == "failed" for r in runs)
    best = rows[0]
    tiles = [
        Tile("best", _chip(best["activation"], activations), f"{metric.label} {_pm(best['test_mean'], best['test_std'])}"),
        Tile("runs", f"{len(finished)}/{len(runs)}", f"finished; {failed} failed" if failed else "finished"),
    ]  # fmt: skip
    if rankings and rankings[-1].pairs:
        r = rankings[-1]
        tiles.append(Tile(f"textbook order, depth {r.depth}", f"{r.count('agrees')} agree",
                          f"{r.count('disagrees')} disagree, {r.count('within seed noise')} within seed noise of {len(r.pairs)} pairs"))  # fmt: skip
    tiles.append(Tile("seeds x epochs", f"{results.grid.seeds} x {epochs}", escape(str(results.grid.data))))
    title = f"Which configuration trains best? {results.folder.name}"
    subtitle = escape(f"{Path(results.grid.data).name}: " + _fixed(results) + f"; {epochs} epochs, {results.grid.seeds} seeds")
    return write_page(path, title, [s for s in sections if s is not None], subtitle=subtitle, tiles=tiles)


def leaderboard_text(results: Any) -> str:
    runs = results.rows("runs")
    if not runs:
        return f"{results.folder}: no runs yet"
    metric = analysis.metric_for(runs)
    varying = [f for f in _varying(results) if f != "activation"]
    header = ["#", "activation", *varying, metric.label, metric.label.replace("test", "val"), "s/epoch", "doctor at init", "runs"]
    rows = []
    for r in analysis.leaderboard(runs):
        spe = f"{r['seconds_per_epoch']:.2f}" if r["seconds_per_epoch"] == r["seconds_per_epoch"] else "-"
        rows.append([str(r["rank"]), r["activation"], *(str(r[f]) for f in varying), _pm_text(r["test_mean"], r["test_std"]),
                     _pm_text(r["val_mean"], r["val_std"]), spe, r["doctor_init"] or "-",
                     f"{r['finished']}/{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")])  # fmt: skip
    lines = [format_rows(header, rows)]
    for ranking in analysis.rankings(runs):
        if ranking.pairs:
            untested = ranking.count("untested")
            lines.append(f"\ndepth {ranking.depth}: measured {ranking.order()}; textbook pairs: {ranking.count('agrees')} agree, "
                         f"{ranking.count('disagrees')} disagree, {ranking.count('within seed noise')} within seed noise"
                         + (f", {untested} untested (one seed)" if untested else ""))  # fmt: skip
    return "\n".join(lines)
