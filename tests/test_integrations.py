"""The Monitor where people train: the Hugging Face Trainer (one process, and two on gloo),
Lightning's DDP strategy on two CPU processes, and a model prepared by Accelerate. Each run
trains a model whose state is known without the Monitor (tests/integration_runs.py): a healthy
one must stay silent, a broken one must surface its findings in the framework's own logs, in what
a ``report_to`` integration receives, and on stdout exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import integration_runs  # noqa: E402
from integration_runs import STEPS  # noqa: E402

from trainability.integrations._shared import PREFIX  # noqa: E402

ROOT = Path(__file__).parent.parent
FINDING = f"{PREFIX}finding/"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps one process-wide state; each run here starts its own."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def launch(run: str, out: Path, *args: str, ranks: int | None) -> tuple[list[str], list[dict[str, Any]]]:
    """``python tests/integration_runs.py run out args`` once per rank, as torchrun starts them
    (gloo on localhost, one thread each), or once with ``ranks=None`` for a framework that starts
    its other ranks itself; returns each process's stdout and what each rank wrote."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    env |= {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    command = [sys.executable, str(ROOT / "tests" / "integration_runs.py"), run, str(out), *args]
    ranked = [{"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(ranks), "LOCAL_WORLD_SIZE": str(ranks)}
              for r in range(ranks)] if ranks else [{}]  # fmt: skip
    procs = [subprocess.Popen(command, env=env | extra, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for extra in ranked]  # fmt: skip
    outputs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=150)
            assert p.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for p in procs:
            p.kill()
    written = sorted(out.glob(f"{run}.*.json"), key=lambda p: int(p.suffixes[0][1:]))
    return outputs, [json.loads(p.read_text()) for p in written]


def printed(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[trainability]")]


def entries_with_findings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if any(k.startswith(FINDING) for k in e)]


def finding_count(logs: list[dict[str, Any]]) -> float:
    return sum(v for e in logs for k, v in e.items() if k.startswith(FINDING))


def losses(run: dict[str, Any]) -> list[float]:
    return [e["loss"] for e in run["log_history"] if "loss" in e]


def assert_reported_once(run: dict[str, Any], stdout: str) -> None:
    """Every finding is in the Trainer's log history, in the entry of the step the Monitor raised
    it at (its own step or later: a loss spike is judged after the steps that follow it), in what
    the report_to integration received, and printed once."""
    findings, history = run["findings"], run["log_history"]
    assert findings
    assert finding_count(history) == finding_count(run["received"]) == len(findings)
    for f in findings:
        (entry,) = [e for e in history if f in e.get(f"{PREFIX}findings", [])]
        assert entry[f"{FINDING}{f['kind']}"] >= 1 and entry["step"] >= f["step"] + 1
        assert stdout.count(f"[trainability] {f['kind']} ({f['severity']}): {f['message']}\n") == 1
    assert len(printed(stdout)) == len(findings)
    for got in entries_with_findings(run["received"]):  # what report_to got is what the history holds
        ours = {k: v for k, v in got.items() if k.startswith(PREFIX)}
        assert any(ours.items() <= e.items() for e in history)


# -- Hugging Face Trainer --------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers/accelerate on torch 2.13
def test_trainer_run_with_too_high_a_learning_rate_surfaces_findings_once(tmp_path, capsys):
    run = integration_runs.hf_run(tmp_path, broken=True)
    stdout = capsys.readouterr().out
    loss = losses(run)
    assert max(loss[1:]) > 3 * loss[0]  # independent label: the loss climbs instead of falling
    assert "learning_rate_too_high" in {f["kind"] for f in run["findings"]}
    assert run["optimizer"] == "AdamW"  # the Trainer's AcceleratedOptimizer, unwrapped
    assert_reported_once(run, stdout)
    assert run["recorded"] == list(range(STEPS))
    recorded = [e for e in run["log_history"] if f"{PREFIX}grad_norm" in e]
    assert [e["step"] for e in recorded] == list(range(1, STEPS + 1))  # each recorded step logged at its step


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_trainer_run_of_a_healthy_bert_is_silent_but_logs_its_figures(tmp_path, capsys):
    run = integration_runs.hf_run(tmp_path, broken=False, every=4)
    stdout = capsys.readouterr().out
    loss = losses(run)
    assert max(loss) < 1.2 * loss[0]
    assert run["findings"] == [] and printed(stdout) == []
    assert entries_with_findings(run["log_history"]) == entries_with_findings(run["received"]) == []
    assert run["recorded"] == [0, 3, 7, 11, 15]  # the steps after which global_step is a multiple of 4
    figures = [e for e in run["log_history"] if f"{PREFIX}grad_norm" in e]
    assert [e["step"] for e in figures] == [1, 4, 8, 12, 16]  # the first step, then with the Trainer's own logs
    received = [e for e in run["received"] if f"{PREFIX}grad_norm" in e]  # the route to report_to works when healthy too
    assert [e[f"{PREFIX}grad_norm"] for e in received] == [e[f"{PREFIX}grad_norm"] for e in figures]


def test_trainer_run_on_two_processes_with_gloo(tmp_path):
    stdouts, runs = launch("hf", tmp_path, "broken", ranks=2)
    assert [r["world_size"] for r in runs] == [2, 2] and {r["wrapper"] for r in runs} == {"DistributedDataParallel"}
    assert_reported_once(runs[0], stdouts[0])
    assert "learning_rate_too_high" in {f["kind"] for f in runs[0]["findings"]}
    # the Monitor got DDP's wrapper: statistics combined across ranks, judged on rank 0 alone
    assert runs[1]["findings"] == [] and printed(stdouts[1]) == [] and runs[1]["received"] == []
    assert not any(k.startswith(PREFIX) for e in runs[1]["log_history"] for k in e)
    # both ranks logged the same steps (a log gathers the loss from every rank: no rank waited alone)
    assert [e["step"] for e in runs[0]["log_history"]] == [e["step"] for e in runs[1]["log_history"]]


def test_callback_checks_its_schedule_and_says_when_it_cannot_reach_report_to():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from trainability import mlp
    from trainability.integrations.huggingface import TrainabilityCallback

    with pytest.raises(ValueError, match="every must be a positive int"):
        TrainabilityCallback(every=0)
    callback = TrainabilityCallback(every=1)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="needs the Trainer's model"):
        callback.on_train_begin(args, TrainerState(), TrainerControl())
    with pytest.warns(RuntimeWarning, match="reach trainer.state.log_history but not the report_to integrations"):
        callback.on_train_begin(args, TrainerState(), TrainerControl(), model=mlp(4, 2, depth=2, width=8))
    callback.on_train_end(args, TrainerState(), TrainerControl())


# -- Lightning ---------------------------------------------------------------------------------------
def test_lightning_ddp_on_two_cpu_processes(tmp_path):
    """Lightning's "ddp" launches rank 1 itself by running the script again: one launch here."""
    stdouts, runs = launch("lightning", tmp_path, "2", ranks=None)
    with open(tmp_path / "lightning" / "version_0" / "metrics.csv") as f:
        import csv

        logged = [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]
    (stdout,) = stdouts
    rank0, rank1 = runs
    assert rank0["world_size"] == rank1["world_size"] == 2
    kinds = [f["kind"] for f in rank0["findings"]]
    assert "exploding_gradients" in kinds and min(f["step"] for f in rank0["findings"]) >= 22  # blown up at batch 22
    assert rank1["findings"] == []  # combined across ranks, judged on rank 0
    assert len(printed(stdout)) == len(kinds)  # both ranks write to this stdout: rank 0 alone printed
    for f in rank0["findings"]:
        assert stdout.count(f"[trainability] {f['kind']} ({f['severity']}): {f['message']}\n") == 1
        assert any(e.get(f"{FINDING}{f['kind']}") and e["step"] >= f["step"] for e in logged)
    assert finding_count(logged) == len(kinds)
    assert sorted(e["step"] for e in logged if f"{PREFIX}grad_norm" in e) == rank0["recorded"]  # each recorded step logged
    assert set(range(0, 40, 5)) <= set(rank0["recorded"])


# -- Accelerate --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_model_prepared_by_accelerate_in_bf16_is_monitored(tmp_path):
    run = integration_runs.accelerate_run(tmp_path, broken=False, mixed_precision="bf16")
    assert run["forward_replaced"] and run["wrapper"] == "BertForSequenceClassification"
    assert run["optimizer"] == ["AcceleratedOptimizer", "AdamW"]
    assert "bert.encoder.layer.1.output.dense" in run["layers"]
    assert run["findings"] == []


def test_model_prepared_by_accelerate_on_two_processes_is_unwrapped_and_monitored(tmp_path):
    _, (rank0, rank1) = launch("accelerate", tmp_path, "broken", ranks=2)
    assert {rank0["wrapper"], rank1["wrapper"]} == {"DistributedDataParallel"} and rank0["world_size"] == 2
    assert "bert.encoder.layer.1.output.dense" in rank0["layers"]  # the model's own names, not DDP's module.*
    assert not any(layer.startswith("module.") for layer in rank0["layers"])
    assert "learning_rate_too_high" in {f["kind"] for f in rank0["findings"]}
    assert rank1["layers"] == [] and rank1["findings"] == []  # rank 0 reads the combined statistics and judges


def test_a_ddp_wrapped_transformer_is_diagnosed_and_monitored_by_its_own_names(tmp_path):
    """Its residual blocks are named as in the model (not DDP's ``module.``), where the doctor
    looks them up (one rank: what the wrapper changes, not what the ranks share)."""
    import torch
    import torch.distributed as dist
    from architectures import HEALTHY, bert

    from trainability import Monitor, diagnose

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = torch.nn.parallel.DistributedDataParallel(bert(layers=2))
        batch = HEALTHY["bert"][1]()
        report = diagnose(model, batch)
        assert [b.name for b in report.blocks][:2] == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
        assert report.findings == []
        with Monitor(model, every=1) as monitor:
            model(**batch).loss.backward()
            assert monitor.step() == []
        assert "bert.encoder.layer.1.output.dense" in {layer for _, layer, *_ in monitor.rows}
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_training_again_after_a_run_that_raised_leaves_one_monitor_on_the_model(tmp_path):
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from trainability.integrations.huggingface import TrainabilityCallback

    class Interrupt(TrainerCallback):
        armed = True

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.armed and state.global_step == 2:
                self.armed = False
                raise KeyboardInterrupt

    transformers.logging.set_verbosity_error()
    model = integration_runs.bert(layers=1)
    hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    before = hooks()
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=4, report_to="none",
                             use_cpu=True, disable_tqdm=True, save_strategy="no", logging_steps=2)  # fmt: skip
    callback = TrainabilityCallback(every=1, verbose=False)
    trainer = Trainer(model=model, args=args, train_dataset=integration_runs.Tokens(64), callbacks=[callback, Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    trainer.train()
    assert callback.monitor.steps_done == 4 and hooks() == before
