"""trainability.compare: the results object, growing a grid, failed runs, bad input, workers, Ray."""

import os
import sqlite3
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import trainability
from trainability.cli import main
from trainability.experiments import Grid, LocalPool, Results, Store

SMALL = dict(activation=["relu", "tanh"], depth=2, width=16, epochs=2, seeds=1, lr=0.05)


def _finished(folder):
    with Store(folder, readonly=True) as store:
        return {r["id"]: r["finished"] for r in store.rows("runs")}


def test_compare_returns_dataframe_views_of_runs_epochs_and_layers(tmp_path):
    results = trainability.compare("moons", out=tmp_path / "a", progress=False, **SMALL)
    runs = results.runs
    assert len(runs) == 2 and set(runs.activation) == {"relu", "tanh"} and (runs.status == "finished").all()
    assert runs.test_accuracy.between(0, 1).all() and (runs.threads == 1).all()
    assert runs.torch_version.iloc[0] == __import__("torch").__version__
    assert runs.doctor_init.notna().all()
    epochs = results.epochs
    assert len(epochs) == 4 and {"activation", "depth", "loss", "val_accuracy", "seconds"} <= set(epochs.columns)
    assert (epochs.seconds > 0).all()
    layers = results.layers
    init = layers[(layers.source == "doctor") & (layers.epoch == 0)]
    assert sorted(init.position.unique()) == [1, 2, 3]  # two hidden layers and the output layer
    assert (init.grad_rms > 0).all()
    per_epoch = layers[layers.source == "monitor"]
    assert sorted(per_epoch.epoch.unique()) == [0, 1]  # one recording per epoch
    board = results.leaderboard()
    assert list(board.index) == [1, 2] and board.test_mean.iloc[0] >= board.test_mean.iloc[1]


def test_same_command_twice_trains_nothing_and_added_values_run_only_new_cells(tmp_path):
    out = tmp_path / "grow"
    trainability.compare("moons", out=out, progress=False, **SMALL)
    first = _finished(out)
    trainability.compare("moons", out=out, progress=False, **SMALL)
    assert _finished(out) == first  # nothing ran again
    grown = trainability.compare("moons", out=out, progress=False, **{**SMALL, "depth": [2, 3], "seeds": 2})
    after = _finished(out)
    assert {k: after[k] for k in first} == first  # the old runs untouched
    assert len(after) == 2 * 2 * 2 and all(v is not None for v in after.values())
    assert grown.grid.factors["depth"] == (2, 3) and grown.grid.seeds == 2


def test_a_run_whose_loss_turns_nan_is_recorded_as_failed_and_the_grid_goes_on(tmp_path):
    results = trainability.compare("moons", out=tmp_path / "nan", activation="relu", lr=[0.05, 1e12], depth=3, width=16,
                                   epochs=2, seeds=1, progress=False)  # fmt: skip
    runs = results.runs.set_index("lr")
    assert runs.loc[0.05, "status"] == "finished"
    assert runs.loc[1e12, "status"] == "failed"
    reason = runs.loc[1e12, "reason"]
    assert reason.startswith("stopped at epoch 1: ") and ("nan" in reason.lower() or "inf" in reason.lower())
    assert runs.loc[1e12, "doctor_init"] == "healthy"  # what the failed run measured before it failed is kept


def _store_bytes(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("results.sqlite")}


@pytest.fixture()
def existing(tmp_path):
    out = tmp_path / "existing"
    trainability.compare("moons", out=out, progress=False, **SMALL)
    with sqlite3.connect(out / "results.sqlite") as db:  # fold the WAL in, so the bytes on disk are the results
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return out


@pytest.mark.parametrize(("change", "message"), [
    ({"activation": ["relu", "swishy"]}, r"unknown activation 'swishy'"),
    ({"init": ["auto", "he_normall"]}, r"unknown initializer 'he_normall'"),
    ({"epochs": 3}, r"holds another grid \(epochs 2 -> 3\); add values to its factors to extend it, use another --out, or --force-new"),
    ({"activation": ["elu"]}, r"holds another grid \(activation drops relu, tanh\)"),
    ({"data": "circles"}, r"holds another grid \(data 'moons' -> 'circles'\)"),
])  # fmt: skip
def test_bad_input_fails_before_any_run_and_leaves_results_intact(existing, change, message):
    before = _store_bytes(existing)
    args = {**SMALL, **change}
    with pytest.raises(ValueError, match=message):
        trainability.compare(args.pop("data", "moons"), out=existing, progress=False, **args)
    assert _store_bytes(existing) == before
    assert not list((existing / "checkpoints").glob("*/checkpoint.pt"))


def test_bad_data_files_fail_before_any_run(tmp_path):
    np.savez(tmp_path / "short.npz", x=np.zeros((20, 2)), y=np.zeros(19))
    with pytest.raises(ValueError, match=r"short\.npz: x has 20 samples but y has 19"):
        trainability.compare(tmp_path / "short.npz", out=tmp_path / "o1", progress=False, **SMALL)
    (tmp_path / "words.csv").write_text("1,2,0\n3,x,1\n" * 5)
    with pytest.raises(ValueError, match=r"words\.csv line 2, column 2: 'x' is not a number"):
        trainability.compare(tmp_path / "words.csv", out=tmp_path / "o2", progress=False, **SMALL)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_a_folder_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"cannot write to the results folder .*file/runs: Not a directory"):
        trainability.compare("moons", out=tmp_path / "file" / "runs", progress=False, **SMALL)
    with pytest.raises(ValueError, match=r"cannot use .*file as a results folder: it is a file"):
        trainability.compare("moons", out=tmp_path / "file", progress=False, **SMALL)


def test_force_new_moves_the_old_results_aside(existing):
    trainability.compare("moons", out=existing, progress=False, force_new=True, **{**SMALL, "epochs": 1})
    (old,) = existing.glob("superseded-*/results.sqlite")
    assert Grid.from_json(Store(old.parent, readonly=True).meta("grid")).epochs == 2
    assert Results(existing).grid.epochs == 1


def test_too_many_local_workers_and_unknown_backends_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"workers on \d+ CPU cores: runs would slow each other down"):
        trainability.compare("moons", out=tmp_path / "w", workers=(os.cpu_count() or 1) + 1, progress=False, **SMALL)
    with pytest.raises(ValueError, match="unknown backend 'spark'; valid: local, ray"):
        trainability.compare("moons", out=tmp_path / "w", backend="spark", progress=False, **SMALL)


def test_the_cli_is_the_api(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["compare", "--data", "moons", "--activation", "relu,tanh", "--depth", "2", "--width", "16", "--epochs", "2",
                 "--seeds", "1", "--lr", "0.05", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and f"trainability report {out}" in printed
    api = trainability.compare("moons", out=tmp_path / "api", progress=False, **SMALL)
    cli = Results(out)
    assert cli.runs.set_index("id").test_accuracy.to_dict() == api.runs.set_index("id").test_accuracy.to_dict()
    assert main(["compare", "--data", "moons", "--activation", "relu,bogus", "--out", str(out)]) == 2
    assert "unknown activation 'bogus'" in capsys.readouterr().err


def test_local_workers_and_ray_give_the_same_numbers_as_one_process(tmp_path):
    pytest.importorskip("ray")
    grid = dict(activation=["relu", "tanh", "selu"], depth=2, width=16, epochs=2, seeds=1, lr=0.05)
    here = trainability.compare("moons", out=tmp_path / "here", progress=False, **grid)
    pool = trainability.compare("moons", out=tmp_path / "pool", workers=2, progress=False, **grid)
    ray = trainability.compare("moons", out=tmp_path / "ray", workers=2, backend="ray", progress=False, **grid)
    columns = ["test_accuracy", "test_loss", "val_loss", "loss"]
    expected = here.runs.set_index("id")[columns].sort_index()
    assert pool.runs.set_index("id")[columns].sort_index().equals(expected)
    assert ray.runs.set_index("id")[columns].sort_index().equals(expected)
    assert set(pool.runs.backend) == {"local x2"} and set(ray.runs.backend) == {"ray x2"}
    assert (pool.runs.threads == 1).all() and (ray.runs.threads == 1).all()


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install 'trainability\[ray\]'"):
        trainability.compare("moons", out=tmp_path / "r", backend="ray", progress=False, **SMALL)


def _die_once(task, progress):
    """Kills its worker process the first time it sees a task, then returns the task's name."""
    marker = Path(task)
    if not marker.exists():
        marker.write_text("died here")
        os._exit(3)
    return marker.name


def test_a_worker_that_dies_is_replaced_and_its_task_retried(tmp_path):
    got = {}
    LocalPool(2).map(_die_once, [str(tmp_path / "a"), str(tmp_path / "b")], lambda task, result: got.__setitem__(task, result))
    assert got == {str(tmp_path / "a"): "a", str(tmp_path / "b"): "b"}


def test_compare_called_from_an_unguarded_script_in_a_worker_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__name__="__mp_main__"))
    with pytest.raises(RuntimeError, match="under if __name__ == '__main__':"):
        trainability.compare("moons", out=tmp_path / "x", progress=False, **SMALL)


def test_an_unreachable_ray_address_is_one_line_and_fast(tmp_path, capsys):
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    code = main(["compare", "--data", "moons", "--activation", "relu", "--depth", "2", "--seeds", "1", "--epochs", "1",
                 "--backend", "ray", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "r"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err and err.count("\n") == 0
    assert time.perf_counter() - start < 30
