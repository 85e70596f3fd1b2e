"""The Monitor and the doctor under DDP and FSDP2: two CPU ranks on gloo.

DDP's statistics equal one process's on the concatenated batch; FSDP2's per-layer gradient norms
equal ``grad.full_tensor().norm()``; only rank 0 reports and writes; a layer that runs on one
rank only does not hang the run; ``diagnose`` returns the same report on every rank.
"""

from __future__ import annotations

import math
import socket

import distributed_cases as cases
import pytest
import torch
import torch.nn.functional as F

from trainability import Monitor, diagnose

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(name: str, tmp_path, world: int = 2) -> list[dict]:  # noqa: ANN001
    torch.multiprocessing.spawn(cases.entry, args=(name, _free_port(), world, str(tmp_path)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"{rank}.pt", weights_only=False) for rank in range(world)]


def _table(rows) -> dict:  # noqa: ANN001
    return {(step, layer, stat): value for step, layer, stat, value in rows}


def test_ddp_statistics_equal_one_process_on_the_whole_batch(tmp_path):
    rank0, rank1 = run_ranks("ddp_monitor", tmp_path)
    # one process, the concatenated batch: the reference
    model = cases.mlp()
    reference = _table(cases.train(model, model, 0, 1).rows)
    got = _table(rank0["rows"])
    assert set(got) == set(reference)
    for key, value in reference.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    stats = {stat for _, _, stat, _ in rank0["rows"]}
    assert {"mean", "std", "dead_fraction", "grad_norm", "weight_grad_norm", "update_ratio", "loss"} <= stats
    # units dead on one rank's half but alive on the other's count as alive, as on the whole batch
    x, _ = cases.batches(0)
    model = cases.mlp()
    with torch.no_grad():
        pre = model[2](model[1](model[0](x)))
    dead = [float((h.amax(0) <= 0).float().mean()) for h in (pre, *pre.chunk(2))]
    assert dead[0] < max(dead[1:]) and got[(0, "2", "dead_fraction")] == pytest.approx(dead[0])
    # rank 1 computes, joins the collective, and never reports or writes
    assert rank1["rows"] == [] and rank1["findings"] == [] and rank1["writes"] == 0 and rank0["writes"] > 0


def test_fsdp2_gradient_norms_equal_the_full_tensors(tmp_path):
    rank0, rank1 = run_ranks("fsdp_monitor", tmp_path)
    assert sorted([rank0["shards"][0], rank1["shards"][0]]) == [0, 7]  # the head's one row: an empty shard
    got = _table(rank0["rows"])
    for step, reference in enumerate(rank0["reference"]):
        for key, value in reference.items():
            layer, stat = key.split(":")
            assert got[(step, layer, stat)] == pytest.approx(value, rel=1e-5), (step, key)
    assert any(stat == "update_ratio" and layer == "4" and value > 0 for (_, layer, stat), value in got.items())
    assert rank1["rows"] == []


def test_a_layer_that_runs_on_one_rank_does_not_hang_the_run(tmp_path):
    rank0, rank1 = run_ranks("skipped_layer", tmp_path)  # a hang would end in the 30 s process-group timeout
    assert rank0["steps"] == rank1["steps"] == cases.STEPS
    assert any(layer == "extra" and stat == "weight_grad_norm" for _, layer, stat, _ in rank0["rows"])


def test_diagnose_under_ddp_is_the_same_on_every_rank_and_equals_one_process(tmp_path):
    rank0, rank1 = run_ranks("ddp_diagnose", tmp_path)
    assert rank0["report"] == rank1["report"] and rank0["loss"] == pytest.approx(rank1["loss"], rel=1e-12)
    x, y = cases.batches(0)
    single = diagnose(cases.mlp(), x, y)
    assert rank0["loss"] == pytest.approx(single.loss, rel=1e-5)
    for got, want in zip(rank0["layers"], [vars(s) for s in single.layers], strict=True):
        for key, value in want.items():
            if isinstance(value, float) and math.isfinite(value):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), (want["name"], key)


def test_diagnose_under_fsdp2_is_the_same_on_every_rank(tmp_path):
    rank0, rank1 = run_ranks("fsdp_diagnose", tmp_path)
    assert rank0["report"] == rank1["report"]
    x, y = cases.batches(0)
    single = diagnose(cases.mlp(), x, y)
    assert [s["name"] for s in rank0["layers"]] == [s.name for s in single.layers]
    for got, want in zip(rank0["layers"], single.layers, strict=True):
        for key in ("mean", "std", "grad_rms", "weight_std", "weight_grad_norm", "dead_fraction"):
            value = getattr(want, key)
            if value is not None:
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), (want.name, key)


def test_a_monitor_without_a_process_group_is_unchanged():
    model = cases.mlp()
    monitor = Monitor(model, every=1)
    F.cross_entropy(model(torch.randn(8, 20)), torch.randint(0, 3, (8,))).backward()
    monitor.step()
    monitor.close()
    assert monitor._world == 1 and monitor.rows


def test_the_torchrun_example_reports_once_on_rank_0():
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "torchrun_monitor.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", f"--master_port={_free_port()}",
               str(example), "--steps", "30", "--lr", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert sum("learning_rate_too_high" in line for line in lines) == 1  # once, on rank 0
    assert all(not line.startswith("[rank 1]") for line in lines)
    assert "DDP on 2 process(es)" in result.stdout
