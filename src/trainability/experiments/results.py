"""A results folder, read back: pandas views of runs, epochs and layers; the leaderboard; the page.

>>> results = Results("runs/textbook")  # doctest: +SKIP
>>> results.runs.groupby("activation").test_accuracy.mean()  # doctest: +SKIP
>>> results.report()  # writes runs/textbook/report.html  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainability.experiments import analysis
from trainability.experiments.grid import FACTORS, Grid


def _frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ValueError("the results' tables need pandas: pip install 'trainability[report]' (or use .rows(...))") from exc
    return pd.DataFrame(rows, columns=columns)


class Results:
    """What ``compare`` wrote to ``folder``. ``runs``, ``epochs`` and ``layers`` are pandas
    DataFrames; epochs and layers carry their run's configuration columns."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from trainability.experiments.store import Store

        self.folder = Path(folder)
        with Store(self.folder, readonly=True) as store:
            grid = store.meta("grid")
            self._rows = {t: store.rows(t) for t in ("runs", "epochs", "layers")}
        if grid is None:
            raise ValueError(f"{self.folder / 'results.sqlite'} holds no grid: it was not written by trainability compare")
        self.grid = Grid.from_json(grid)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """A table as a list of dicts (no pandas needed): ``runs``, ``epochs`` or ``layers``."""
        if table not in self._rows:
            raise ValueError(f"unknown table {table!r}; tables: {', '.join(self._rows)}")
        return self._rows[table]

    def _joined(self, table: str) -> list[dict[str, Any]]:
        config = {r["id"]: {k: r[k] for k in (*FACTORS, "seed_index", "status")} for r in self._rows["runs"]}
        return [{**config[row["run_id"]], **row} for row in self._rows[table] if row["run_id"] in config]

    @property
    def runs(self) -> Any:
        """One row per run: configuration, status and reason, final metrics, timings, versions."""
        return _frame(self._rows["runs"])

    @property
    def epochs(self) -> Any:
        """One row per run and epoch: loss, accuracy, val_loss, val_accuracy, seconds."""
        return _frame(self._joined("epochs"))

    @property
    def layers(self) -> Any:
        """One row per run, recording and weight layer: ``source`` ``doctor`` (epoch 0 = at
        initialization, last epoch = after training) or ``monitor`` (the first step of each
        epoch), ``position`` (1 = first layer), ``grad_rms``, ``weight_grad_rms``, ..."""
        return _frame(self._joined("layers"))

    def leaderboard(self) -> Any:
        """Per configuration: mean and std over seeds of the test and validation scores, time per
        epoch and the doctor's verdict at initialization, best first."""
        return _frame(analysis.leaderboard(self._rows["runs"])).set_index("rank")

    def rankings(self) -> list[analysis.Ranking]:
        """Per depth, the activations in measured order, with the textbook's pairs judged."""
        return analysis.rankings(self._rows["runs"])

    def report(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the HTML page (default ``folder/report.html``) and return its path."""
        from trainability.experiments.report import write_report

        return write_report(self, Path(path) if path is not None else self.folder / "report.html")

    def summary(self) -> str:
        """The leaderboard as aligned text, as ``trainability report`` prints it."""
        from trainability.experiments.report import leaderboard_text

        return leaderboard_text(self)

    def __repr__(self) -> str:
        statuses: dict[str, int] = {}
        for r in self._rows["runs"]:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        return f"Results({str(self.folder)!r}: {len(self._rows['runs'])} runs, " + ", ".join(f"{n} {s}" for s, n in statuses.items()) + ")"
