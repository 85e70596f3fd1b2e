"""Repair's page and files: the same look as compare's report, built from
:mod:`trainability.reporting` (layout) with figures drawn here from the result's numbers.

``write_report(result, folder)`` writes ``report.html`` (self-contained), ``learning_curves.png``,
``doctor_before.png`` and ``doctor_after.png``, ``snippet.py`` and ``result.json``.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import Any

from trainability.reporting import (
    Section,
    Tile,
    badge,
    bar,
    code_block,
    escape,
    image,
    paragraph,
    png,
    style,
    table,
    write_page,
)

GOOD, BAD, OTHER = "#1f8a5b", "#c0392b", "#9aa3b2"


def _steps(epochs: list[dict[str, Any]]) -> list[int]:
    total, out = 0, []
    for e in epochs:
        total += int(e.get("steps") or 0)
        out.append(total)
    return out


def learning_curves(result: Any) -> bytes:
    """Validation score and training loss against steps: the network as it is, the winner, and
    the other candidates (thin, grey), with the criterion's threshold."""
    classification = result.criterion.classification
    key = "val_accuracy" if classification else "val_loss"
    with style() as plt:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        runs = [(a, OTHER, 1.0, a.candidate.label) for a in result.trained if a is not result.winner]  # type: ignore[union-attr]
        runs.append((result.probe, BAD, 2.2, "the network as it is"))
        if result.winner is not None:
            runs.append((result.winner, GOOD, 2.2, f"repaired: {result.change.label}"))
        for attempt, colour, width, label in runs:
            xs = _steps(attempt.epochs)
            shown = label if colour != OTHER else None
            left.plot(xs, [e.get(key) for e in attempt.epochs], color=colour, lw=width, marker="o", ms=3, label=shown)
            right.plot(xs, [e.get("loss") for e in attempt.epochs], color=colour, lw=width, marker="o", ms=3)
        if any(a is not result.winner for a in result.trained):
            left.plot([], [], color=OTHER, lw=1.0, label="other candidates")
        left.axhline(result.criterion.threshold(), color="#5b6475", ls="--", lw=1, label="the criterion's threshold")
        right.axhline(result.criterion.prior_loss, color="#5b6475", ls=":", lw=1, label="a constant prediction's loss")
        left.set(xlabel="training steps", ylabel="validation accuracy" if classification else "validation MSE",
                 title="validation")  # fmt: skip
        right.set(xlabel="training steps", ylabel="training loss (mean over the round)", title="training loss")
        handles = [h for ax in (left, right) for h in ax.get_legend_handles_labels()[0]]
        labels = [label for ax in (left, right) for label in ax.get_legend_handles_labels()[1]]
        fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.02))
        fig.tight_layout(rect=(0, 0.14, 1, 1))
        return png(fig)


def _doctor_png(report: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="trainability-repair-") as folder:
        path = Path(folder) / "doctor.png"
        report.plot(path)
        return path.read_bytes()


def _verdict_badge(verdict: str | None) -> str:
    if not verdict:
        return badge("-")
    return badge(verdict.replace("_", " "), "good" if verdict == "healthy" else "warn")


def _status_badge(status: str) -> str:
    return badge(status, {"trains": "good", "failed": "bad"}.get(status, "warn"))


def _score(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.3f}"


def _attempts(result: Any) -> Section:
    classification = result.criterion.classification
    rows = []
    everything = [(0, None, result.probe)] + [(i, a.candidate, a) for i, a in enumerate(result.attempts, start=1)]
    for i, candidate, a in everything:
        name = "the network as it is (probe)" if candidate is None else escape(candidate.label)
        if a is result.winner:
            name += " " + badge("winner", "good")
        fraction = a.score if classification and a.score is not None else 0.0
        rows.append([str(i), name, escape(candidate.reason) if candidate else "&ndash;",
                     _status_badge(a.status) + (f" <span class='note'>{escape(a.reason)}</span>" if a.reason else ""),
                     _score(a.score), bar(fraction, GOOD if a.status == "trains" else OTHER) if classification else "",
                     str(a.steps), f"{a.seconds:.1f}", _verdict_badge(a.doctor)])  # fmt: skip
    metric = "val accuracy" if classification else "val MSE"
    body = table(["#", "candidate", "asked for by", "result", metric, "", "steps", "seconds", "doctor at init"], rows,
                 numeric=(0, 4, 6, 7))  # fmt: skip
    notes = []
    if result.untried:
        notes.append(f"{result.untried} later ladder(s) of candidates were not needed: the search stops at the first that "
                     "trains (all=True / --all trains every one for the whole budget and ranks them).")  # fmt: skip
    if result.skipped:
        notes.append("Not applicable to this model: " + "; ".join(escape(s) for s in result.skipped) + ".")
    if result.ran_here:
        notes.append(f"Candidates ran in this process: {escape(result.ran_here)}.")
    body += "".join(paragraph(n, "note") for n in notes)
    return Section("Every candidate considered", body, anchor="candidates",
                   lead="In the order considered. Screened out: the doctor at initialization still found the error the "
                        "candidate was meant to fix, so it was never trained. The others raced from the same initial weights "
                        f"on the same batches with seed {result.seed}: dropped when behind the others on a prefix "
                        f"(successive halving), at most {result.budget_steps} steps each.")  # fmt: skip


def _change(result: Any) -> Section:
    if result.change is None:
        return Section("The change", paragraph(escape(f"No change: {result.headline()}.")), anchor="change")
    rows = [[escape(r[0]), escape(r[1]), f"<code>{escape(r[2])}</code>", r[3], escape(r[4]), r[5]] for r in result.diff_rows()]
    body = table(["layer", "change", "before", "weight std", "after", "weight std"], rows, numeric=(3, 5))
    body += "<h3>Apply it to your model</h3>" + code_block(result.snippet)
    return Section("The change, layer by layer", body, anchor="change",
                   lead=f"{escape(result.change.label)}. Asked for by: {escape(result.change.reason)}.")


def _doctor(result: Any) -> Section:
    blocks = []
    for title, report in (("before", result.before), ("after", result.after)):
        if report is None:
            blocks.append(f"<div><h3>{title}</h3>{paragraph(escape(f'The doctor could not diagnose the repaired model: {result.after_error}'), 'note')}</div>")
            continue
        items = "".join(f"<li>{badge(f.severity, 'bad' if f.severity == 'error' else 'warn')} <b>{escape(f.kind)}</b>: "
                        f"{escape(f.message)}</li>" for f in report.findings) or f"<li>{badge('healthy', 'good')}</li>"  # fmt: skip
        blocks.append(f"<div><h3>{title}</h3>{image(_doctor_png(report), f'doctor {title}')}<ul class='order'>{items}</ul></div>")
    return Section("The doctor before and after", f"<div class='columns'>{''.join(blocks)}</div>", anchor="doctor",
                   lead="trainability.diagnose at initialization on 256 training samples: activation std and gradient "
                        "against depth, dead and saturated units; flagged layers circled.")  # fmt: skip


def _about(result: Any) -> Section:
    import torch

    from trainability._version import __version__

    model = result.original

    def said(settings: dict[str, Any]) -> str:
        extra = [f"{k} {settings[k]:g}" for k in ("clip_norm", "warmup", "eps", "z_loss") if settings.get(k) is not None]
        return (f"{settings['optimizer']}, lr {settings['lr'] if settings['lr'] is not None else 'default'}, momentum "
                f"{settings['momentum']:g}, batch {settings['batch_size']}" + "".join(f", {e}" for e in extra))

    rows = [
        ["data", escape(result.data)],
        ["model", escape(f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")],
        ["training (asked)", escape(f"{said(result.original_settings)}; {result.budget_steps} steps per run, evaluated every "
                                    f"{max(result.budget_steps // 10, 1)}")],
        ["training (to use)", escape(said(result.settings))],
        ["criterion", escape(result.criterion.describe())],
        ["cost", escape(f"{result.steps} training steps in all ({result.steps / result.budget_steps:.2f} budgets; "
                        f"{result.extra_steps} of them range tests), {result.seconds:.1f} s wall-clock, {result.workers} worker(s)")],
        ["software", escape(f"trainability {__version__}, torch {torch.__version__}, Python {platform.python_version()}")],
        ["machine", escape(f"{platform.node()} ({platform.machine()})")],
    ]  # fmt: skip
    return Section("About this repair", table(["", ""], rows), anchor="about",
                   lead="The same call with the same seed gives the same runs.")


def write_report(result: Any, folder: Path) -> Path:
    """Write the page and its files into ``folder``; return the page."""
    folder.mkdir(parents=True, exist_ok=True)
    curves = learning_curves(result)
    (folder / "learning_curves.png").write_bytes(curves)
    (folder / "doctor_before.png").write_bytes(_doctor_png(result.before))
    if result.after is not None:
        (folder / "doctor_after.png").write_bytes(_doctor_png(result.after))
    (folder / "snippet.py").write_text(result.snippet, encoding="utf-8")
    (folder / "result.json").write_text(result.to_json(), encoding="utf-8")
    before, after = result.probe.score, result.winner.score if result.winner else None
    tone = {"repaired": "good", "healthy": "good", "trains_as_is": "warn", "not_repaired": "bad"}[result.verdict]
    tiles = [
        Tile("verdict", badge(result.verdict.replace("_", " "), tone), escape(result.change.label) if result.change else ""),
        Tile("validation score", f"{_score(before)} &rarr; {_score(after)}" if after is not None else _score(before),
             "the network as it is &rarr; repaired, same budget"),
        Tile("candidates trained", str(len(result.trained)), f"{len(result.screened_out)} screened out by the doctor"
             + (f"; {result.untried} ladders not needed" if result.untried else "")),
        Tile("cost", f"{result.steps / result.budget_steps:.2f} runs", f"{result.steps} steps, {result.seconds:.1f} s"),
    ]  # fmt: skip
    sections = [
        _change(result),
        Section("Learning curves", image(curves, "learning curves before and after"), anchor="curves",
                lead="Validation score and training loss every tenth of the budget: the network as it is (red), the "
                     "winning change (green), the other candidates (grey); dashed: the criterion's threshold."),
        _attempts(result),
        _doctor(result),
        _about(result),
    ]  # fmt: skip
    subtitle = escape(f"{type(result.original).__name__} on {result.data}: {result.headline()}")
    return write_page(folder / "report.html", f"Repair: {type(result.original).__name__} on {result.data}", sections,
                      subtitle=subtitle, tiles=tiles)  # fmt: skip
