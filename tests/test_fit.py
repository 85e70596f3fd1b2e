import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainability import Monitor, fit, mlp
from trainability.datasets import load


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_learns_digits_with_validation(digits):
    torch.manual_seed(0)
    model = mlp(64, 10, depth=3, width=64)
    history = fit(model, (digits.train.x, digits.train.y), val_data=(digits.validation.x, digits.validation.y), epochs=5,
                  optimizer="adam", progress=False, seed=0)  # fmt: skip
    assert len(history.epochs) == 5
    assert history.metric("val_accuracy")[-1] > 0.9
    assert history.metric("loss")[-1] < history.metric("loss")[0]
    assert all(e["seconds"] > 0 and e["steps"] == -(-digits.train.samples // 32) for e in history.epochs)
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_numpy_arrays_train_exactly_as_tensors(digits):
    x, y = digits.train.x[:256], digits.train.y[:256]
    runs = []
    for data in ((x, y), (x.numpy().astype("float64"), y.numpy().astype("int32"))):  # as Keras users hold them
        torch.manual_seed(0)
        runs.append(fit(mlp(64, 10, depth=2, width=32), data, epochs=2, progress=False, seed=0).metric("loss"))
    assert runs[0] == pytest.approx(runs[1], rel=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "nadam"])
def test_optimizers_by_name(name, digits):
    model = mlp(64, 10, depth=2, width=32)
    history = fit(model, (digits.train.x[:256], digits.train.y[:256]), epochs=1, optimizer=name, progress=False, seed=0)
    assert history.epochs[0]["loss"] > 0


def test_dataset_dataloader_and_optimizer_instance(digits):
    model = mlp(64, 10, depth=2, width=32)
    ds = TensorDataset(digits.train.x[:256], digits.train.y[:256])
    assert len(fit(model, ds, epochs=1, batch_size=64, progress=False).epochs[0]) >= 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    history = fit(model, DataLoader(ds, batch_size=128), val_data=ds, epochs=1, optimizer=opt, progress=False)
    assert history.epochs[0]["steps"] == 2 and "val_accuracy" in history.epochs[0]


class Recorder(torch.optim.SGD):
    def __init__(self, params):
        super().__init__(params, lr=0.01)
        self.norms, self.maxima = [], []

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        self.maxima.append(max(g.abs().max().item() for g in grads))
        return super().step(closure)


def test_clipping_by_norm_and_by_value(digits):
    data = (digits.train.x[:256] * 50, digits.train.y[:256])
    model = mlp(64, 10, depth=2, width=32)
    opt = Recorder(model.parameters())
    fit(model, data, epochs=1, optimizer=opt, clip_norm=0.5, progress=False)
    assert max(opt.norms) <= 0.5 + 1e-4
    opt = Recorder(model.parameters())
    fit(model, data, epochs=1, optimizer=opt, clip_value=0.01, progress=False)
    assert max(opt.maxima) <= 0.01 + 1e-7


class NanAfter(nn.Module):
    def __init__(self, calls):
        super().__init__()
        self.calls, self.count = calls, 0

    def forward(self, x):
        self.count += 1
        return x * float("nan") if self.count > self.calls else x


@pytest.mark.parametrize("monitor", [True, False])
def test_stops_on_non_finite_loss_with_the_doctors_explanation(monitor, digits):
    model = mlp(64, 10, depth=3, width=32)
    model.insert(4, NanAfter(calls=10))
    history = fit(model, (digits.train.x[:512], digits.train.y[:512]), epochs=3, monitor=monitor, progress=False)
    assert history.stopped == "non_finite"
    (finding,) = [f for f in history.findings if f.kind == "non_finite"]
    assert finding.layers == ["4"] and "NanAfter" in finding.message
    assert len(history.epochs) == 0  # stopped inside the first epoch (45 steps)


def test_deterministic_for_a_seed(digits):
    def train():
        torch.manual_seed(3)
        model = mlp(64, 10, depth=3, width=32, dropout=0.2)
        fit(model, (digits.train.x, digits.train.y), epochs=2, seed=11, progress=False)
        return model.state_dict()

    a, b = train(), train()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_monitor_findings_land_in_history(digits):
    model = mlp(64, 10, depth=3, width=32)
    monitor = Monitor(model, every=1)
    history = fit(model, (digits.train.x[:256], digits.train.y[:256]), epochs=1, monitor=monitor, progress=False)
    assert history.findings == monitor.findings
    assert sorted(set(monitor.records_steps())) == list(range(8))


SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from trainability import fit, mlp
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(2000, 20)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = mlp(20, 2, depth=4, width=64, dropout=0.1)
    fit(model, (x, y), epochs=int(sys.argv[2]), batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9,
        seed=1, checkpoint_dir=sys.argv[1] or None, progress=False)
    torch.save(model.state_dict(), sys.argv[3])
    """
)


def test_resume_after_sigkill_gives_identical_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    epochs = "25"
    subprocess.run([sys.executable, str(script), "", epochs, str(tmp_path / "a.pt")], check=True, env=env, timeout=300)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), epochs, str(tmp_path / "b.pt")], env=env)
    deadline = time.time() + 120
    while not (ckpt / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "b.pt").exists()
    done = torch.load(ckpt / "checkpoint.pt", weights_only=False)["epoch"]
    assert 1 <= done < 25
    subprocess.run([sys.executable, str(script), str(ckpt), epochs, str(tmp_path / "b.pt")], check=True, env=env, timeout=300)
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(ckpt / "checkpoint.pt", weights_only=False)["epoch"] == 25


def test_resume_of_a_finished_run_trains_nothing(tmp_path, digits):
    data = (digits.train.x[:128], digits.train.y[:128])
    model = mlp(64, 10, depth=2, width=16)
    fit(model, data, epochs=2, checkpoint_dir=tmp_path, progress=False, seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, data, epochs=2, checkpoint_dir=tmp_path, progress=False, seed=0)
    assert len(history.epochs) == 2 and all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_checkpoint_of_another_model_is_refused_and_untouched(tmp_path, digits):
    fit(mlp(64, 10, depth=2, width=16), (digits.train.x[:128], digits.train.y[:128]), epochs=1, checkpoint_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="holds a checkpoint of another model or optimizer .* left untouched"):
        fit(mlp(64, 10, depth=3, width=16), (digits.train.x[:128], digits.train.y[:128]), epochs=1, checkpoint_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; valid names: sgd, adam, adamw, rmsprop, nadam"),
        ({"lr": -0.1}, "the learning rate must be a positive number, got -0.1"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum and nesterov apply to sgd and rmsprop, not adam"),
        ({"epochs": 0}, "epochs must be a positive int, got 0"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"clip_norm": -1.0}, "clip_norm must be positive"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"train_data": (torch.empty(0, 64), torch.empty(0, dtype=torch.long))}, "train_data is empty"),
        ({"train_data": (torch.randn(10, 64), torch.zeros(9, dtype=torch.long))}, "train_data has 10 inputs but 9 targets"),
        ({"train_data": (torch.randn(10, 32), torch.zeros(10, dtype=torch.long))}, "the model and the data do not fit: inputs of shape (32,)"),
        ({"train_data": (torch.randn(10, 64), torch.full((10,), 12))}, "targets hold classes 12..12 but the model outputs 10 scores"),
        ({"train_data": [1, 2, 3]}, "train_data must be an (inputs, targets) tuple of tensors"),
    ],
)
def test_bad_input(kwargs, message):
    args = {"train_data": (torch.randn(10, 64), torch.zeros(10, dtype=torch.long)), "epochs": 1, "progress": False, **kwargs}
    with pytest.raises(ValueError) as excinfo:
        fit(mlp(64, 10, depth=1, width=8), **args)
    assert message in str(excinfo.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports on torch 2.13
def test_compile_trains_through_torch_compile():
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), (torch.randn(256) > 0).long()
    model = mlp(8, 2, depth=2, width=16)
    before = model[0].weight.detach().clone()
    history = fit(model, (x, y), epochs=2, progress=False, seed=0, compile=True)
    assert len(history.epochs) == 2 and all(e["loss"] > 0 for e in history.epochs)
    assert not torch.equal(before, model[0].weight)  # the compiled module shares the parameters


def test_in_memory_batches_are_the_data_loaders_own_in_the_same_order():
    # fit reads a batch of a tensor data set with one indexing op per tensor; the batches, their
    # order and the global random state are those of DataLoader(shuffle=True, generator=...)
    from trainability.training import _loader

    data = TensorDataset(torch.randn(103, 5), torch.randint(0, 3, (103,)))
    for shuffle in (True, False):
        torch.manual_seed(5)
        ours = list(_loader(data, 10, shuffle, torch.Generator().manual_seed(3)))
        after_ours = torch.rand(1)
        torch.manual_seed(5)
        theirs = list(DataLoader(data, batch_size=10, shuffle=shuffle, generator=torch.Generator().manual_seed(3)))
        assert len(ours) == len(theirs) == 11 and len(ours[-1][0]) == 3
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ours, theirs, strict=True))
        assert torch.equal(after_ours, torch.rand(1))
