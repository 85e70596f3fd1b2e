"""The compare report: its sections, self-contained, and what headless Chromium makes of it."""

import re

import pytest

import trainability
from trainability.cli import main
from trainability.experiments import analysis
from trainability.reporting import Section, Tile, write_page
from trainability.reporting.browser import check_page, find_chromium


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "runs"
    return trainability.compare("digits", out=out, activation=["selu", "relu", "tanh", "sigmoid"], depth=[2, 3], width=16,
                                epochs=2, seeds=2, lr=0.05, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def page(results):
    return results.report()


def test_the_page_has_every_section_and_embeds_everything(page):
    html = page.read_text()
    for title in ("Leaderboard", "Ranking against the textbook", "Learning curves", "Gradients against depth",
                  "Time per epoch", "The doctor at initialization", "About these runs"):  # fmt: skip
        assert f"<h2>{title}</h2>" in html
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    assert len(sources) >= 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("<h3>Depth") == 2  # a ranking per depth


def test_the_report_command_writes_the_page_and_prints_the_leaderboard(results, capsys, tmp_path):
    target = tmp_path / "page.html"
    assert main(["report", str(results.folder), "--out", str(target)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "doctor at init" in printed and f"report written to {target}" in printed
    assert re.search(r"depth 3: measured \w+", printed)
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no results" in capsys.readouterr().err


def test_ranking_orders_only_what_seed_noise_allows():
    def run(activation, value, seed):
        return {"activation": activation, "init": "auto", "depth": 5, "width": 8, "batch_norm": "none", "optimizer": "sgd",
                "lr": 0.1, "batch_size": 32, "seed_index": seed, "status": "finished", "test_accuracy": value,
                "val_accuracy": value, "test_loss": 1.0, "val_loss": 1.0}  # fmt: skip

    runs = ([run("selu", v, i) for i, v in enumerate((0.80, 0.81, 0.82))]
            + [run("relu", v, i) for i, v in enumerate((0.60, 0.61, 0.62))]
            + [run("elu", v, i) for i, v in enumerate((0.55, 0.65, 0.60))])  # fmt: skip
    (ranking,) = analysis.rankings(runs)
    assert [e.activation for e in ranking.entries] == ["selu", "relu", "elu"]
    assert [s for s, _ in ranking.steps] == [">", "≈"]  # relu vs elu: 0.61 vs 0.60 within noise
    verdicts = {(a, b): v for a, b, v, _ in ranking.pairs}
    assert verdicts == {("selu", "elu"): "agrees", ("selu", "relu"): "agrees", ("elu", "relu"): "within seed noise"}
    flipped = [run("selu", v, i) for i, v in enumerate((0.5, 0.51, 0.52))] + [run("relu", v, i) for i, v in enumerate((0.7, 0.71, 0.72))]
    assert analysis.rankings(flipped)[0].pairs[0][2] == "disagrees"


def test_welch_p_matches_scipy_and_takes_identical_seeds_without_warning():
    stats = pytest.importorskip("scipy.stats")
    a, b = [0.61, 0.64, 0.58, 0.60], [0.55, 0.57, 0.59]
    assert analysis.welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    stuck = [0.089000001549] * 3  # a sigmoid stack at chance, every seed alike (scipy warns here)
    assert analysis.welch_p([0.40, 0.38, 0.42], stuck) < 0.01


def test_a_page_of_sections_is_one_self_contained_file(tmp_path):
    path = write_page(tmp_path / "p.html", "A <title>", [Section("One", "<p>body</p>", lead="why")], tiles=[Tile("runs", "3")])
    html = path.read_text()
    assert "<title>A &lt;title&gt;</title>" in html and 'href="#s0"' in html and "<p>body</p>" in html
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (CI installs Debian's chromium)")
def test_the_page_loads_in_headless_chromium_with_every_image_decoded_and_no_error(page):
    seen = check_page(page)
    assert seen.title.startswith("Which configuration trains best?")
    assert seen.sections >= 7
    assert len(seen.images) >= 5
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in seen.images), seen.images
    assert seen.errors == [] and seen.console == []
    assert seen.ok


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (CI installs Debian's chromium)")
def test_the_browser_check_catches_a_broken_image(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head><title>t</title></head><body>'
                      '<img src="data:image/png;base64,iVBORw0KGgoAAAAN" alt="cut"></body></html>')  # fmt: skip
    seen = check_page(broken)
    assert not seen.ok and seen.images[0]["width"] == 0 and any("cannot load IMG" in e for e in seen.errors)
