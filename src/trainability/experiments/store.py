"""The results store: ``runs/NAME/results.sqlite``, standard-library SQLite in WAL mode.

Tables: ``meta`` (the grid, the schema version), ``runs`` (one row per cell: its
configuration, status, reason, final metrics, timings, versions, thread count), ``epochs``
(per run and epoch: losses, accuracies, wall time) and ``layers`` (per run, epoch and weight
layer: gradient RMS and friends, from the doctor or the monitor).

Only the coordinating process writes, and each run's records go in one transaction: a run is
either wholly in the store or not at all, so a killed coordinator loses at most the runs in
flight (which resume from their checkpoints). Writes that read first start with
``BEGIN IMMEDIATE`` (a deferred transaction could fail with "database is locked" on upgrade).
WAL mode does not work on network file systems: keep ``runs/`` on a local disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainability.experiments.grid import FACTORS, Cell

FILE = "results.sqlite"
SCHEMA_VERSION = 1
EPOCH_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "steps")
LAYER_COLUMNS = ("source", "epoch", "layer", "position", "grad_rms", "weight_grad_rms", "weight_std", "dead_fraction",
                 "saturated_fraction")  # fmt: skip
RUN_RESULT_COLUMNS = ("status", "reason", "test_loss", "test_accuracy", "val_loss", "val_accuracy", "loss", "accuracy",
                      "epochs_done", "seconds", "seconds_per_epoch", "resumed_from", "doctor_init", "doctor_end",
                      "findings_init", "trainability_version", "torch_version", "threads", "host", "backend",
                      "started", "finished")  # fmt: skip

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    activation TEXT, init TEXT, depth INTEGER, width INTEGER, batch_norm TEXT, optimizer TEXT, lr REAL,
    batch_size INTEGER, seed_index INTEGER, seed INTEGER,
    status TEXT NOT NULL DEFAULT 'pending', reason TEXT,
    test_loss REAL, test_accuracy REAL, val_loss REAL, val_accuracy REAL, loss REAL, accuracy REAL,
    epochs_done INTEGER, seconds REAL, seconds_per_epoch REAL, resumed_from INTEGER,
    doctor_init TEXT, doctor_end TEXT, findings_init TEXT,
    trainability_version TEXT, torch_version TEXT, threads INTEGER, host TEXT, backend TEXT,
    started REAL, finished REAL
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id), {", ".join(f"{c} {'INTEGER' if c in ('epoch', 'steps') else 'REAL'}" for c in EPOCH_COLUMNS)},
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS layers (
    run_id TEXT NOT NULL REFERENCES runs(id), source TEXT NOT NULL, epoch INTEGER NOT NULL, layer TEXT NOT NULL,
    position INTEGER, grad_rms REAL, weight_grad_rms REAL, weight_std REAL, dead_fraction REAL, saturated_fraction REAL,
    PRIMARY KEY (run_id, source, epoch, layer)
);
"""


class Store:
    """One results folder's database. ``Store(folder)`` opens (and creates) it for writing;
    ``Store(folder, readonly=True)`` never writes and fails if there is no store."""

    def __init__(self, folder: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILE
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.is_file():
                    raise ValueError(f"{self.folder} holds no results ({FILE} is missing): run trainability compare --out {self.folder} first")
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                if self.meta("schema") is None:
                    with self.transaction():
                        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self.db.row_factory = sqlite3.Row
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a corrupt file fails here
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"cannot open {self.path}: {exc}; move it away to start afresh") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- the grid ----------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no meta table: not our database
            return None
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def set_grid(self, grid_json: str, cells: Iterable[Cell]) -> None:
        """Record the grid and add a pending row for every cell not yet in the store."""
        with self.transaction() as db:
            db.execute("INSERT INTO meta VALUES ('grid', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (grid_json,))
            db.executemany(
                f"INSERT OR IGNORE INTO runs (id, {', '.join(FACTORS)}, seed_index, seed) VALUES (?, {', '.join('?' * len(FACTORS))}, ?, ?)",
                [(c.id, *(c.config[f] for f in FACTORS), c.config["seed_index"], c.seed) for c in cells],
            )  # fmt: skip

    def statuses(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self.db.execute("SELECT id, status FROM runs")}

    def mark_running(self, run_id: str, backend: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET status = 'running', backend = ?, started = coalesce(started, ?) WHERE id = ?",
                       (backend, time.time(), run_id))  # fmt: skip

    # -- results -----------------------------------------------------------------------------------
    def save(self, outcome: Any, backend: str | None = None) -> None:
        """Write one run's records (an :class:`~trainability.experiments.runner.Outcome`) at once."""
        epochs = outcome.epochs
        last = epochs[-1] if epochs else {}
        env = outcome.environment
        seconds = [e["seconds"] for e in epochs if e.get("seconds") is not None]
        values = {
            "status": outcome.status, "reason": outcome.reason, "test_loss": outcome.test_loss,
            "test_accuracy": outcome.test_accuracy, "val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy"),
            "loss": last.get("loss"), "accuracy": last.get("accuracy"), "epochs_done": len(epochs), "seconds": outcome.seconds,
            "seconds_per_epoch": sorted(seconds)[len(seconds) // 2] if seconds else None, "resumed_from": outcome.resumed_from,
            "doctor_init": outcome.doctor.get("init", {}).get("verdict"), "doctor_end": outcome.doctor.get("end", {}).get("verdict"),
            "findings_init": json.dumps(outcome.doctor.get("init", {}).get("findings", [])),
            "trainability_version": env.get("trainability"), "torch_version": env.get("torch"), "threads": env.get("threads"),
            "host": env.get("host"), "backend": backend, "finished": time.time(),
        }  # fmt: skip
        with self.transaction() as db:
            db.execute("DELETE FROM epochs WHERE run_id = ?", (outcome.id,))
            db.execute("DELETE FROM layers WHERE run_id = ?", (outcome.id,))
            db.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?", (*values.values(), outcome.id))
            db.executemany(f"INSERT INTO epochs VALUES (?, {', '.join('?' * len(EPOCH_COLUMNS))})",
                           [(outcome.id, *(e.get(c) for c in EPOCH_COLUMNS)) for e in epochs])  # fmt: skip
            db.executemany(f"INSERT INTO layers VALUES (?, {', '.join('?' * len(LAYER_COLUMNS))})",
                           [(outcome.id, *(r.get(c) for c in LAYER_COLUMNS)) for r in outcome.layers])  # fmt: skip

    def save_lost(self, run_id: str, reason: str, backend: str | None = None) -> None:
        """A run the executor lost (its worker kept dying): back to pending, with the reason, so
        the next call runs it again."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET status = 'pending', reason = ?, backend = ? WHERE id = ?", (reason, backend, run_id))

    # -- reading -----------------------------------------------------------------------------------
    def rows(self, table: str) -> list[dict[str, Any]]:
        if table not in ("runs", "epochs", "layers"):
            raise ValueError(f"unknown table {table!r}; tables: runs, epochs, layers")
        return [dict(r) for r in self.db.execute(f"SELECT * FROM {table} ORDER BY rowid")]
