import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainability.cli import main

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


#: Examples that need an optional extra, by the module they import (found, never imported here).
EXTRAS = {"keras_textbook.py": "keras"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    if path.name in EXTRAS and importlib.util.find_spec(EXTRAS[path.name]) is None:
        pytest.skip(f"{EXTRAS[path.name]} is not installed")
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_table_command(capsys):
    assert main(["table"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["initialization", "activation"]
    assert "Glorot" in lines[2] and "1 / fan_avg" in lines[2] and "tanh" in lines[2]
    assert "He" in lines[3] and "2 / fan_in" in lines[3] and "leaky_relu" in lines[3]
    assert "LeCun" in lines[4] and "1 / fan_in" in lines[4] and "selu" in lines[4]


def test_table_json(capsys):
    assert main(["table", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["initialization"] for r in rows] == ["Glorot", "He", "LeCun"]
    assert rows[2]["activations"] == ["selu"] and rows[2]["variance"] == "1 / fan_in"
