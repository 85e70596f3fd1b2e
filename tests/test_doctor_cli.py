import json

import numpy as np
import pytest

from trainability.cli import main

SICK = "mlp:depth=50,width=100,activation=relu,init=default"


def test_sick_model_exits_1_with_verdicts_first(capsys):
    assert main(["doctor", SICK, "--data", "digits"]) == 1
    out = capsys.readouterr().out
    assert "vanishing_gradients" in out and "init_mismatch" in out
    assert out.index("fix:") < out.index("grad norm")


def test_healthy_model_exits_0(capsys):
    assert main(["doctor", "mlp:depth=10,width=64,activation=relu", "--data", "digits"]) == 0
    assert "HEALTHY" in capsys.readouterr().out


def test_json_is_report_dict(capsys):
    assert main(["doctor", SICK, "--json", "--batch-size", "64"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"findings", "layers"}
    assert {f["kind"] for f in d["findings"]} == {"vanishing_gradients", "init_mismatch", "beyond_depth_scale"}
    assert d["layers"][0]["name"] == "0"


def test_plot_file(tmp_path, capsys):
    path = tmp_path / "d.png"
    main(["doctor", SICK, "--plot", str(path), "--batch-size", "32"])
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_file_model_with_kwargs_and_default_data(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(
        "from trainability import mlp\n"
        "def build(depth=3, init='auto'):\n    return mlp(40, 10, depth=depth, width=32, init=init)\n"
    )
    assert main(["doctor", f"{path}:build(depth=40,init='default')"]) == 1
    out = capsys.readouterr().out
    assert "mnist1d" in out  # 40 inputs: the built-in data that fits
    assert main(["doctor", f"{path}:build"]) == 0


def test_npz_and_csv_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(300, 5)), y=rng.integers(0, 3, 300))
    assert main(["doctor", "mlp:depth=3,width=16", "--data", str(tmp_path / "d.npz")]) == 0
    table = np.column_stack([rng.normal(size=(300, 4)), rng.integers(0, 2, 300)])
    np.savetxt(tmp_path / "d.csv", table, delimiter=",")
    assert main(["doctor", "mlp:depth=3,width=16", "--data", str(tmp_path / "d.csv")]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["doctor", "resnet"], "cannot read model spec 'resnet'"),
        (["doctor", "missing.py:build"], "model file not found: missing.py"),
        (["doctor", "mlp:depth=3", "--data", "nope"], "unknown data 'nope'"),
        (["doctor", "mlp:depth=3", "--data", "/no/such.npz"], "data file not found"),
        (["doctor", "mlp:depth=3,in_features=10", "--data", "digits"], "takes 10 input features but digits has 64"),
        (["doctor", "mlp:depth=3,out_features=4", "--data", "digits"], "outputs 4 scores per sample but the data has classes up to 9"),
        (["doctor", "mlp:depth=3,activation=sinus"], "unknown activation 'sinus'"),
        (["doctor", "mlp:depth=3", "--batch-size", "0"], "--batch-size must be positive"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
