"""The grid, the SQLite store, and a grid killed with SIGKILL mid-run that resumes exactly."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainability.experiments import Grid, Store, compare
from trainability.experiments.runner import Outcome

TIMING = {"seconds", "seconds_per_epoch", "started", "finished", "host", "resumed_from", "backend"}


def test_grid_normalizes_names_and_derives_seeds_from_the_configuration():
    grid = Grid.build("moons", activation=["logistic", "ReLU"], init=["xavier_uniform", "auto"], depth=[2], seeds=2, epochs=3)
    assert grid.factors["activation"] == ("sigmoid", "relu")
    assert grid.factors["init"] == ("glorot_uniform", "auto")
    cells = grid.cells()
    assert len(cells) == 8 and len({c.id for c in cells}) == 8 and len({c.seed for c in cells}) == 8
    assert [c.config["seed_index"] for c in cells] == [0] * 4 + [1] * 4  # every configuration before a second seed
    again = Grid.build("moons", activation=["relu", "sigmoid", "tanh"], init=["auto", "glorot_uniform"], depth=2, seeds=3, epochs=3)
    by_config = {json.dumps(c.config, sort_keys=True): (c.id, c.seed) for c in again.cells()}
    for c in cells:  # a cell keeps its id and seed whatever else the grid holds
        assert by_config[json.dumps(c.config, sort_keys=True)] == (c.id, c.seed)
    other_epochs = Grid.build("moons", activation=["relu"], depth=2, seeds=1, epochs=4)
    assert other_epochs.cells()[0].id not in {c.id for c in cells}


def test_grid_extension_rules():
    old = Grid.build("moons", activation=["relu"], depth=[2, 3], seeds=2, epochs=3)
    assert Grid.build("moons", activation=["relu", "tanh"], depth=[2, 3, 4], seeds=3, epochs=3).extends(old) is None
    assert "depth drops 3" in Grid.build("moons", activation=["relu"], depth=[2], seeds=2, epochs=3).extends(old)
    assert "epochs 3 -> 5" in Grid.build("moons", activation=["relu"], depth=[2, 3], seeds=2, epochs=5).extends(old)
    assert "data 'moons' -> 'circles'" in Grid.build("circles", activation=["relu"], depth=[2, 3], seeds=2, epochs=3).extends(old)


@pytest.mark.parametrize(("factor", "value", "message"), [
    ("activation", "swishy", "unknown activation 'swishy'"),
    ("init", "he_normall", "unknown initializer 'he_normall'"),
    ("depth", 0, "depth must be a positive int, got 0"),
    ("batch_norm", "during", "batch_norm must be one of none, before, after"),
    ("optimizer", "adamx", "unknown optimizer 'adamx'"),
    ("lr", -1.0, "lr must be a positive number"),
])  # fmt: skip
def test_grid_refuses_bad_values_naming_them(factor, value, message):
    with pytest.raises(ValueError, match=message):
        Grid.build("moons", **{factor: value})


def _outcome(run_id, accuracy):
    return Outcome(run_id, "finished", epochs=[{"epoch": 1, "loss": 1.0, "accuracy": accuracy, "val_loss": 1.1,
                                                "val_accuracy": accuracy, "seconds": 0.1, "steps": 3}],
                   layers=[{"source": "doctor", "epoch": 0, "layer": "0", "position": 1, "grad_rms": 0.1}],
                   test_loss=1.0, test_accuracy=accuracy, environment={"torch": "x", "threads": 1})  # fmt: skip


def test_store_is_wal_and_saving_a_run_twice_keeps_one_copy(tmp_path):
    grid = Grid.build("moons", activation=["relu", "tanh"], depth=2, seeds=1, epochs=1)
    with Store(tmp_path) as store:
        store.set_grid(grid.to_json(), grid.cells())
        store.set_grid(grid.to_json(), grid.cells())  # idempotent
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        first = grid.cells()[0].id
        store.save(_outcome(first, 0.5))
        store.save(_outcome(first, 0.75))  # a rerun replaces, never duplicates
        assert store.statuses() == {first: "finished", grid.cells()[1].id: "pending"}
        assert [r["accuracy"] for r in store.rows("epochs")] == [0.75]
        assert len(store.rows("layers")) == 1
    with Store(tmp_path, readonly=True) as reader:
        assert Grid.from_json(reader.meta("grid")) == grid
        with pytest.raises(sqlite3.OperationalError):
            reader.db.execute("DELETE FROM runs")


def test_a_failed_save_leaves_nothing_half_written(tmp_path):
    grid = Grid.build("moons", depth=2, seeds=1, epochs=1)
    with Store(tmp_path) as store:
        store.set_grid(grid.to_json(), grid.cells())
        broken = _outcome(grid.cells()[0].id, 0.5)
        broken.epochs.append(dict(broken.epochs[0]))  # a duplicate epoch violates the primary key
        with pytest.raises(sqlite3.IntegrityError):
            store.save(broken)
        assert store.rows("epochs") == [] and store.statuses()[grid.cells()[0].id] == "pending"


def test_not_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no results"):
        Store(tmp_path, readonly=True)
    (tmp_path / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="cannot open .*results.sqlite"):
        Store(tmp_path)


# -- kill and resume -----------------------------------------------------------------------------
GRID = dict(activation=["relu", "tanh"], depth=[2, 3], width=16, epochs=6, seeds=1, batch_size=8, lr=0.01)


def _tables(folder: Path) -> dict[str, list[dict]]:
    with Store(folder, readonly=True) as store:
        runs = [{k: v for k, v in r.items() if k not in TIMING} for r in store.rows("runs")]
        epochs = [{k: v for k, v in r.items() if k != "seconds"} for r in store.rows("epochs")]
        layers = store.rows("layers")
    key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
    return {"runs": sorted(runs, key=key), "epochs": sorted(epochs, key=key), "layers": sorted(layers, key=key)}


def _unfinished_checkpoint(folder: Path) -> bool:
    store = folder / "results.sqlite"
    if not store.is_file():
        return False
    try:
        db = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        finished = {r[0] for r in db.execute("SELECT id FROM runs WHERE status = 'finished'")}
        db.close()
    except sqlite3.Error:
        return False
    return len(finished) >= 1 and any(
        (d / "checkpoint.pt").is_file() and d.name not in finished for d in (folder / "checkpoints").glob("*")
    )


def test_a_grid_killed_mid_run_resumes_to_exactly_the_uninterrupted_rows(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    code = textwrap.dedent(f"""
        import sys
        from trainability.experiments import compare
        compare("digits", out=sys.argv[1], progress=False, **{GRID!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _unfinished_checkpoint(killed):
        assert proc.poll() is None, f"the grid ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no run reached its first checkpoint in time"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    with Store(killed, readonly=True) as store:
        statuses = store.statuses()
    assert "finished" in statuses.values() and set(statuses.values()) - {"finished"}  # killed mid-grid

    resumed = compare("digits", out=killed, progress=False, **GRID)
    reference = compare("digits", out=clean, progress=False, **GRID)
    assert (resumed.runs["status"] == "finished").all()
    assert resumed.runs["resumed_from"].max() >= 1  # one run restarted from its checkpoint, not from scratch
    assert _tables(killed) == _tables(clean)
    assert len(reference.epochs) == 4 * 6
    assert not list((killed / "checkpoints").glob("*/checkpoint.pt"))  # recorded runs leave no checkpoint behind
