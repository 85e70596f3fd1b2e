"""NumPy arrays wherever a batch of tensors is taken (PyTorch models here; Keras in
tests/test_keras.py): each result is checked against the same call with tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainability import diagnose, initialize, mlp
from trainability.batches import Batch, as_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


def same_report(a, b) -> None:
    assert [(f.kind, f.severity, f.layers) for f in a.findings] == [(f.kind, f.severity, f.layers) for f in b.findings]
    assert a.loss == pytest.approx(b.loss, rel=1e-6)
    for x, y in zip(a.layers, b.layers, strict=True):
        assert x.name == y.name and (x.std, x.grad_norm) == pytest.approx((y.std, y.grad_norm), rel=1e-5)


@pytest.mark.parametrize("depth, width, labels", [(3, 16, np.int64), (30, 64, np.int32)])
def test_a_pytorch_mlp_on_numpy_arrays_gets_the_report_of_tensors(depth, width, labels):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 20)), rng.integers(0, 4, 128).astype(labels)  # float64 features, as numpy makes them
    model = mlp(20, 4, depth=depth, width=width, activation="relu", init="default")
    report = diagnose(model, x, y)
    same_report(report, diagnose(model, torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)))
    assert ("vanishing_gradients" in {f.kind for f in report.findings}) == (depth == 30)  # 1/6 of He's variance a layer


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(6, 8), nn.Linear(3, 8), nn.Linear(16, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(a).relu(), self.b(b).relu()], 1))


def test_several_inputs_as_a_list_or_tuple_of_arrays_and_a_dict_of_them():
    rng = np.random.default_rng(1)
    a, b, y = rng.normal(size=(64, 6)), rng.normal(size=(64, 3)), rng.integers(0, 2, 64)
    model = TwoInputs()
    reference = diagnose(model, (torch.tensor(a).float(), torch.tensor(b).float()), torch.tensor(y))
    same_report(diagnose(model, [a, b], y), reference)
    same_report(diagnose(model, (a, b), y), reference)
    same_report(diagnose(model, {"a": a, "b": b}, y), reference)
    same_report(diagnose(model, [a, b]), diagnose(model, (torch.tensor(a).float(), torch.tensor(b).float())))


def test_initialize_takes_a_numpy_batch():
    x = np.random.default_rng(2).normal(size=(256, 10))
    model = mlp(10, 2, depth=6, width=32, activation="tanh", init="default")
    plan = initialize(model, init="lsuv", data=x)
    with torch.no_grad():
        h = model[0](torch.tensor(x, dtype=torch.float32))  # the first layer's output, after LSUV
    assert plan[0].initializer == "lsuv" and float(h.var()) == pytest.approx(1.0, abs=0.1)


def test_arrays_are_converted_as_keras_fit_would_and_junk_is_named():
    assert as_tensor(np.zeros((2, 3))).dtype == torch.get_default_dtype()
    assert as_tensor(np.arange(4, dtype=np.uint8)).dtype == torch.int64
    assert as_tensor(np.array([True, False])).dtype == torch.bool
    batch = Batch.of([np.zeros((4, 2)), np.ones((4, 3))])  # arrays: inputs, never a DataLoader's (inputs, targets)
    assert len(batch.args) == 2 and batch.targets is None
    pair = Batch.of([torch.zeros(4, 2), torch.zeros(4)])  # tensors: a DataLoader batch
    assert len(pair.args) == 1 and pair.targets is not None
    with pytest.raises(ValueError, match=r"inputs is a NumPy array of dtype <U1, .*astype\('float32'\)"):
        Batch.of(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="targets must be a tensor or a NumPy array, got str"):
        Batch.of(np.zeros((2, 3)), "labels")
    with pytest.raises(ValueError, match="inputs must be a tensor or NumPy array, .* got a list holding list"):
        Batch.of([[1.0], [2.0], [3.0]])
