"""``trainability repair``: the command on built-in and file models, its exit status and files, a
network nothing can make train, and one-line usage errors."""

from __future__ import annotations

import textwrap

import pytest
import torch

import trainability
from trainability.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_repair_command_writes_the_page(tmp_path, capsys):
    out = tmp_path / "repair"
    code = main(["repair", "mlp:depth=12,width=32,activation=relu,init=default", "--data", "digits", "--budget-steps", "100",
                 "--out", str(out), "--workers", "1", "--quiet"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "repaired by: " in printed and "the change, layer by layer" in printed
    assert "# trainability repair: " in printed and "trainability.fit(model, data" in printed
    assert (out / "report.html").is_file() and (out / "snippet.py").read_text() in printed


def test_a_healthy_model_file_exits_0(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent("""
        import trainability

        def build(depth=4):
            return trainability.mlp(8, 4, depth=depth, width=32, activation="relu")
    """))
    assert main(["repair", f"{path}:build(depth=3)", "--data", "blobs", "--quiet", "--json"]) == 0
    assert '"verdict": "healthy"' in capsys.readouterr().out


MUTE = """
import torch
from torch import nn

class Mute(nn.Module):
    # a network whose output never depends on its weights: nothing can make it train
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.body(x) * 0.0

def build():
    torch.manual_seed(0)
    return Mute()
"""


def test_a_network_nothing_repairs(tmp_path, capsys):
    path = tmp_path / "mute.py"
    path.write_text(MUTE)
    assert main(["repair", f"{path}:build", "--data", "blobs", "--budget-steps", "20", "--quiet", "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert "not repaired: no candidate made it train" in printed
    from trainability.models import from_spec

    result = trainability.repair(lambda: from_spec(f"{path}:build"), "blobs", budget_steps=20, workers=1)
    assert result.verdict == "not_repaired" and not result.trains and result.change is None
    assert {a.candidate.kind for a in result.attempts} >= {"clip_gradients", "lower_learning_rate", "change_optimizer"}
    assert all(a.status != "trains" for a in result.attempts)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mlp:depth=4", "--data", "digits", "--budget-steps", "5"], "--budget-steps must be at least 10"),
        (["mlp:depth=4,in_features=10", "--data", "digits"], "cannot take the data's inputs"),
        (["mlp:depth=4", "--data", "nosuchdata"], "unknown data 'nosuchdata'"),
        (["mlp:depth=4", "--data", "digits", "--optimizer", "sgdd"], "unknown optimizer 'sgdd'"),
    ],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    assert main(["repair", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_a_factory_that_raises_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text("def build():\n    raise RuntimeError('weights file missing')\n")
    assert main(["repair", f"{path}:build", "--data", "blobs"]) == 2
    err = capsys.readouterr().err
    assert "weights file missing" in err and err.count("\n") == 1


def test_tensors_as_data():
    from trainability import datasets, mlp

    blobs = datasets.load("blobs")
    x, y = torch.cat([blobs.train.x, blobs.validation.x]), torch.cat([blobs.train.y, blobs.validation.y])
    torch.manual_seed(0)
    result = trainability.repair(mlp(8, 4, depth=3, width=16, activation="relu"), (x, y), workers=1)
    assert result.verdict == "healthy" and result.data == "tensors"


def test_output_paths_that_cannot_be_written_stop_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "results.csv"
    blocker.write_text("x\n")
    cases = [
        (["repair", "mlp:depth=3", "--data", "moons", "--out", str(blocker)], "is a file, not a folder"),
        (["demo", "--plot", str(blocker / "demo.png")], f"cannot be created: {blocker} is a file"),
        (["demo", "--plot", str(tmp_path / "demo.txt")], ".txt is not a format this writes"),
        (["report", str(tmp_path), "--out", str(blocker / "r.html")], f"cannot be created: {blocker} is a file"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err and "Traceback" not in err, (argv, err)
        assert "probe" not in err  # nothing ran


def test_the_demo_picture_path_is_the_file_written(tmp_path, capsys):
    assert main(["demo", "--depth", "2", "--width", "8", "--epochs", "1", "--no-progress", "--plot", str(tmp_path / "demo")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(str(tmp_path / "demo.png"))
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
