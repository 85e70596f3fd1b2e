"""Compact tables: collapsing runs of alike rows, InitPlan and the doctor's per-layer table."""

import pytest
import torch
from torch import nn

from trainability import initialize, mlp
from trainability._text import collapse, span, value_range
from trainability.doctor import diagnose


def test_collapse_groups_runs_and_repeating_patterns_in_order():
    assert collapse([], key=str) == []
    assert collapse(list("aaab"), key=str) == [["a", "a", "a"], ["b"]]
    assert collapse(list("abab" "abc"), key=str) == [["a", "a", "a"], ["b", "b", "b"], ["c"]]
    assert collapse(list("abcd"), key=str) == [["a"], ["b"], ["c"], ["d"]]
    # the pattern covering the most items wins: "ab" x3 over "a" alone
    assert collapse(list("xababab"), key=str) == [["x"], ["a", "a", "a"], ["b", "b", "b"]]
    assert collapse(list("abab"), key=str, max_period=1) == [["a"], ["b"], ["a"], ["b"]]
    items = [(i, "Linear" if i % 2 == 0 else "ReLU") for i in range(9)]
    groups = collapse(items, key=lambda item: item[1])
    assert sorted(item for group in groups for item in group) == items  # nothing lost or repeated
    assert [[i for i, _ in g] for g in groups] == [[0, 2, 4, 6], [1, 3, 5, 7], [8]]


def test_span_and_value_range():
    assert span(["7"]) == "7"
    assert span(["0", "2", "4"]) == "0..4 (3)"
    fmt = "{:.3g}".format
    assert value_range([0.25, 0.1, 0.5], fmt) == "0.1..0.5"
    assert value_range([0.1412, 0.1409], fmt) == "0.141"  # alike once printed
    assert value_range([None, 0.2, None], fmt) == "0.2"
    assert value_range([None, None], fmt) == "-"
    assert value_range([float("nan"), 1.0, 3.0], fmt) == "1..3, nan"
    assert value_range([float("nan")], fmt) == "nan"


def test_hundred_layer_plan_prints_in_at_most_ten_lines():
    plan = initialize(mlp(64, 10, depth=100, width=100, init="default"), seed=0)
    text = str(plan)
    lines = text.splitlines()
    assert len(plan) == 101 and len(lines) <= 10
    assert "2..198 (99)" in text and "he_normal" in text and "glorot_uniform" in text
    stds = [e.weight_std for e in list(plan)[1:-1]]
    row = next(line for line in lines if line.startswith("2..198"))
    assert f"{min(stds):.4g}..{max(stds):.4g}" in row  # the std range of the collapsed layers


def test_plan_rows_split_wherever_a_field_other_than_the_name_and_measurements_changes():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
                          nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # fmt: skip
    plan = initialize(model, seed=0)
    rows = plan.table().splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["0", "2..6", "8", "10"]  # fans change at 8, activation at 2 and 10
    assert "(3)" in rows[1]
    full = plan.table(compact=False).splitlines()[2:]
    assert [r.split()[0] for r in full] == [e.layer for e in plan]


def test_plan_to_dataframe_keeps_every_layer():
    pytest.importorskip("pandas")
    plan = initialize(mlp(64, 10, depth=100, width=100, init="default"), seed=0)
    frame = plan.to_dataframe()
    assert len(frame) == 101
    assert list(frame["layer"]) == [e.layer for e in plan]
    assert list(frame["weight_std"]) == [e.weight_std for e in plan]
    assert set(plan.to_dict()["layers"][0]) == set(frame.columns)


def test_doctor_table_collapses_long_stacks_and_keeps_short_ones():
    torch.manual_seed(0)
    x, y = torch.randn(128, 20), torch.randint(0, 3, (128,))
    report = diagnose(mlp(20, 3, depth=30, width=32, init="default"), x, y)
    table = report.table()
    assert len(report.layers) > 60 and len(table.splitlines()) <= 12
    first = table.splitlines()[2].split()
    assert first[0].startswith("0..") and first[2] == "Linear"  # "0..N (count)" then the type
    # rows split where the findings naming a layer change: flagged layers are never merged with others
    flagged = {name for f in report.findings for name in f.layers}
    for row in table.splitlines()[2:]:
        names = row.split()[0].split("..")
        assert len({n in flagged for n in names}) == 1
    assert len(report.table(compact=False).splitlines()) == len(report.layers) + 2
    short = diagnose(mlp(20, 3, depth=3, width=8), x, y)
    assert len(short.table().splitlines()) == len(short.layers) + 2
