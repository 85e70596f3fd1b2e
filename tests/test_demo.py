"""``trainability demo`` end to end on a reduced budget: the story's claims hold, the picture is
written, and nothing but the demo's own words reaches the terminal."""

import re
import sys
import warnings

import numpy as np
import pytest
import torch

from trainability import datasets
from trainability.cli import main
from trainability.demo import DemoSettings, run_demo

pytest.importorskip("sklearn")
REDUCED = DemoSettings(depth=20, width=64, epochs=10)  # a few seconds; the full demo is 30 x 100, 40 epochs


@pytest.fixture(scope="module")
def story():
    lines: list[str] = []
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    result = run_demo(datasets.load("digits"), REDUCED, progress=False, echo=lines.append)  # on one thread
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads  # both left alone
    return result, "\n".join(lines)


def test_default_init_stays_at_chance_and_the_fixed_network_learns(story):
    result, _ = story
    assert 0.05 < result.chance < 0.15  # ten balanced classes
    assert result.default.accuracy <= result.chance + 0.05
    assert result.fixed.accuracy >= 0.6
    assert len(result.default.history.epochs) == len(result.fixed.history.epochs) == REDUCED.epochs


def test_the_doctor_sees_the_problem_before_training_and_not_after_initialize(story):
    result, _ = story
    kinds = {f.kind for f in result.default.report.findings}
    assert "vanishing_gradients" in kinds
    assert result.fixed.report.healthy
    assert {e.initializer for e in result.plan} == {"he_normal", "glorot_uniform"}
    weights = [s.grad_rms for s in result.default.report.layers if s.role == "weight"]
    assert weights[0] < 1e-6 * weights[-1]  # the gradient dies on its way down


def test_the_other_cures_train_at_the_same_depth(story):
    result, _ = story
    assert result.selu.label.startswith("SELU") and result.selu.accuracy >= 0.6
    assert result.batch_norm.label.startswith("batch norm") and result.batch_norm.accuracy >= 0.6


def test_the_story_says_what_was_chosen_and_why_and_gives_verdicts_first(story):
    result, text = story
    words = " ".join(text.split())
    assert "your choice of depth, width" in words and "your choice of epochs" in words  # not the defaults
    assert "the optimizer of the textbook's deep-network examples" in words  # lr, momentum, batch: defaults
    sick, fixed = text.split("after trainability.initialize(model)")
    assert sick.index("vanishing_gradients") < sick.index("why:")
    assert fixed.index("InitPlan") < fixed.index("HEALTHY")
    assert len(str(result.plan).splitlines()) <= 6  # 21 weight layers, three rows
    reported = dict(re.findall(r"^(\S.*?)\s+validation accuracy (\d\.\d+)", text, re.M))
    assert set(reported) >= {"PyTorch default init", "after initialize()", "SELU + LeCun normal"}
    assert float(reported["PyTorch default init"]) == pytest.approx(result.default.accuracy, abs=5e-4)
    assert float(reported["after initialize()"]) == pytest.approx(result.fixed.accuracy, abs=5e-4)


def test_the_picture_is_written_and_decodes(story, tmp_path):
    import matplotlib.image

    result, _ = story
    path = result.plot(tmp_path / "sub" / "demo.png")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_settings_are_checked():
    with pytest.raises(ValueError, match="depth must be an int >= 2, got 1"):
        DemoSettings(depth=1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        DemoSettings(lr=0.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        DemoSettings(momentum=1.0)
    with pytest.raises(ValueError, match="threads must be a positive int or None, got 0"):
        run_demo(None, threads=0)


def test_cli_ends_with_the_pictures_path(capsys, tmp_path):
    path = tmp_path / "picture.png"
    assert main(["demo", "--depth", "3", "--width", "8", "--epochs", "2", "--plot", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.rstrip().endswith(str(path)) and path.stat().st_size > 0
    assert "2/2 epochs" in err and "val_accuracy" in err  # one progress bar per network
    assert "Warning" not in out + err
    assert main(["demo", "--depth", "3", "--width", "8", "--epochs", "1", "--plot", str(path), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_bad_arguments(capsys):
    assert main(["demo", "--depth", "1"]) == 2
    assert capsys.readouterr().err.strip() == "trainability demo: error: depth must be an int >= 2, got 1"


def test_library_warnings_do_not_reach_the_terminal(capsys, monkeypatch):
    def noisy(args):
        np.mean(np.array([]))  # numpy's RuntimeWarning: Mean of empty slice
        warnings.warn("a library's deprecation", FutureWarning, stacklevel=1)
        print("our words")
        return 0

    monkeypatch.setattr("trainability.cli.table.run", noisy)
    before = list(warnings.filters)
    assert main(["table"]) == 0  # pytest turns warnings into errors: any that escaped would raise
    assert capsys.readouterr() == ("our words\n", "")
    assert warnings.filters == before  # the silence ends with the command
    monkeypatch.setattr(sys, "warnoptions", ["default"])  # python -W: the user asked to see them
    with pytest.raises(RuntimeWarning, match="Mean of empty slice"):
        main(["table"])


def test_a_diverging_run_is_reported_not_crashed(tmp_path):
    lines: list[str] = []
    result = run_demo(datasets.load("digits"), DemoSettings(depth=3, width=8, epochs=2, lr=1e6), progress=False,
                      echo=lines.append)  # fmt: skip
    runs = (result.default, result.fixed, result.selu, result.batch_norm)
    stopped = [run for run in runs if run.history.stopped]
    assert stopped and all(run.history.stopped == "non_finite" for run in stopped)
    assert all(np.isnan(run.accuracy) for run in stopped if not run.history.epochs)
    assert "the loss became NaN or Inf; try a lower learning rate" in "\n".join(lines)
    assert result.plot(tmp_path / "nan.png").stat().st_size > 0
