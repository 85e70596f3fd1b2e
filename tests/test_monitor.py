import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainability import Monitor, mlp
from trainability.monitor import MODEL, make_schedule


def run(model, steps, every=5, events=None, lr=0.05, layers=None, writer=None):
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    with Monitor(model, every=every, layers=layers, writer=writer) as monitor:
        for step in range(steps):
            if events and step in events:
                events[step](model)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            new = monitor.step(loss)
            if any(f.kind == "non_finite" for f in new):
                break
            opt.step()
            opt.zero_grad()
    return monitor


def test_schedules():
    assert [s for s in range(25) if make_schedule(10)(s)] == [0, 10, 20]
    assert [s for s in range(40) if make_schedule("log")(s)] == [0, 1, 2, 4, 8, 16, 32]
    assert [s for s in range(5) if make_schedule(lambda s: s == 3)(s)] == [3]
    with pytest.raises(ValueError, match="every must be a positive int, 'log', None"):
        make_schedule(0)


def test_records_on_schedule_as_a_tidy_table():
    model = mlp(20, 3, depth=3, width=32)
    monitor = run(model, 12, every=5)
    assert sorted(set(monitor.records_steps())) == [0, 5, 10]
    df = monitor.history
    assert list(df.columns) == ["step", "layer", "statistic", "value"]
    assert set(df["statistic"]) >= {"mean", "std", "dead_fraction", "grad_norm", "weight_std", "weight_grad_norm",
                                    "grad_weight_ratio"}
    assert len(df[(df.step == 5) & (df.statistic == "weight_grad_norm")]) == 4  # four weight layers


def test_weight_grad_norm_is_exact_at_a_recorded_step():
    model = mlp(20, 3, depth=2, width=16)
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    with Monitor(model, every=1) as monitor:
        F.cross_entropy(model(x), y).backward()
        monitor.step()
        expected = model[2].weight.grad.norm().item()
    row = [r for r in monitor.rows if r[1] == "2" and r[2] == "weight_grad_norm"]
    assert row[0][3] == pytest.approx(expected, rel=1e-5)


def test_exploding_gradients_reported_at_the_right_step_and_layers():
    model = mlp(20, 3, depth=5, width=32)

    def blow_up(m):
        with torch.no_grad():
            m[4].weight.mul_(1000.0)  # the gradient flowing back through layer 4 grows 1000x

    monitor = run(model, 60, every=5, events={42: blow_up}, lr=1e-4)
    exploding = [f for f in monitor.findings if f.kind == "exploding_gradients"]
    assert exploding and exploding[0].step == 45  # the first recorded step after the blow-up
    assert "0" in exploding[0].layers and "2" in exploding[0].layers
    assert "4" not in exploding[0].layers  # its own weight gradient did not change
    assert "step 45" in exploding[0].message and "clip" in exploding[0].fix
    assert all(f.step >= 42 for f in monitor.findings)  # nothing before the blow-up (at step 42)
    spike = [f for f in monitor.findings if f.kind == "loss_spike"]
    assert spike and spike[0].step == 42  # the loss jumped at the blow-up's own step, though it was not recorded
    assert not [f for f in monitor.findings if f.kind == "learning_rate_too_high"]  # the gradient exploded, not the step size


def test_growing_dead_fraction():
    model = mlp(20, 3, depth=4, width=32)

    def kill(m):
        with torch.no_grad():
            m[2].bias.fill_(-50.0)

    monitor = run(model, 30, every=5, events={20: kill}, lr=1e-4)
    dead = [f for f in monitor.findings if f.kind == "dead_units"]
    assert dead and dead[0].step == 20 and dead[0].layers == ["2"]  # the Linear whose ReLU units died


def test_first_nan_layer_named_the_moment_the_loss_is_non_finite():
    model = mlp(20, 3, depth=4, width=32)

    def poison(m):
        with torch.no_grad():
            m[4].bias[0] = float("nan")

    monitor = run(model, 30, every=7, events={13: poison})
    (finding,) = [f for f in monitor.findings if f.kind == "non_finite"]
    assert finding.step == 13 and finding.layers == ["4"]
    assert "loss became nan" in finding.message


def test_layers_filter_writer_plot_and_cleanup(tmp_path):
    class Writer:
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, value, step))

    model = mlp(20, 3, depth=3, width=16)
    writer = Writer()
    monitor = run(model, 11, every=5, layers=["2", "3"], writer=writer)
    assert {r[1] for r in monitor.rows} == {"2", "3", MODEL}  # the model's own rows: loss, learning rate, output
    assert {c[0] for c in writer.calls} >= {"trainability/2/weight_grad_norm", "trainability/3/dead_fraction"}
    assert {c[2] for c in writer.calls} == {0, 5, 10}
    path = monitor.plot(tmp_path / "m.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_bad_arguments():
    model = mlp(20, 3, depth=1, width=4)
    with pytest.raises(ValueError, match="layers not in the model: nope; leaf modules: 0, 1, 2"):
        Monitor(model, layers=["nope"])
    with pytest.raises(ValueError, match="writer must have add_scalar"):
        Monitor(model, writer=object())
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        Monitor("model")


def test_eval_forward_does_not_consume_a_recording():
    model = mlp(20, 3, depth=2, width=8)
    with Monitor(model, every=1) as monitor:
        model.eval()
        with torch.no_grad():
            model(torch.randn(4, 20))
        model.train()
        F.cross_entropy(model(torch.randn(4, 20)), torch.randint(0, 3, (4,))).backward()
        monitor.step()
    assert set(monitor.records_steps()) == {0} and any(r[2] == "grad_norm" for r in monitor.rows)
    assert isinstance(model[0], nn.Linear)


@pytest.mark.parametrize("inplace", [False, True])
def test_monitor_statistics_equal_the_doctors(inplace):
    # the monitor reduces in batches (deferred; at once where ReLU(inplace=True) overwrites the
    # output) and reads dead units off the pre-activation; the doctor reduces per layer in
    # float64 on the activation itself: they must agree
    from trainability.doctor import diagnose

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(inplace=inplace), nn.Linear(32, 32), nn.ReLU(inplace=inplace),
                          nn.Linear(32, 3))  # fmt: skip
    with torch.no_grad():
        model[2].bias.fill_(-0.5)  # some dead units
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    report = diagnose(model, x, y)
    doctor = {s.name: s for s in report.layers}
    with Monitor(model, every=1) as monitor:
        F.cross_entropy(model(x), y).backward()
        monitor.step()
    got = {(r[1], r[2]): r[3] for r in monitor.rows}
    for layer in ("0", "2", "4"):
        for stat in ("weight_grad_norm", "weight_std", "grad_norm", "std", "mean"):
            assert got[(layer, stat)] == pytest.approx(getattr(doctor[layer], stat), rel=1e-4, abs=1e-6), (layer, stat)
    assert got[("2", "dead_fraction")] == pytest.approx(doctor["3"].dead_fraction)
    assert doctor["3"].dead_fraction > 0
def test_monitor_survives_gradients_that_were_exactly_zero():
    # a saturated sigmoid stack: its early layers' weight gradients underflow to exactly 0
    torch.manual_seed(0)
    model = mlp(20, 3, depth=50, width=32, activation="sigmoid", init="default")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 50.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # the weights barely move
    with Monitor(model, every=1) as monitor:
        for _ in range(6):
            loss = nn.functional.cross_entropy(model(torch.randn(16, 20)), torch.randint(0, 3, (16,)))
            loss.backward()
            monitor.step(loss)
            opt.step()
            opt.zero_grad()
    assert monitor.steps_done == 6
    zero = [name for step, name, stat, value in monitor.rows if stat == "weight_grad_norm" and value == 0.0]
    assert zero  # the case in point: earlier gradients of exactly 0 (they once divided by zero here)
