"""beyond_depth_scale: the finite-depth mean-field prediction on the stack's measured variances."""

import re

import pytest
import torch
from torch import nn

from trainability import mlp, theory
from trainability.doctor import diagnose

X = torch.randn(128, 100)
Y = torch.randint(0, 10, (128,))


pytestmark = pytest.mark.usefixtures("one_thread")


def beyond(model, x=X):
    return diagnose(model, x, Y[: len(x)]).by_kind("beyond_depth_scale")


def normal01(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)
    return model


def kaiming(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# He-initialized stacks of the ReLU family: the depth limit is never blamed on the init
@pytest.mark.parametrize("activation", ["elu", "leaky_relu", "gelu", "mish", "silu"])
def test_no_finding_on_he_initialized_stacks(activation):
    for depth in (10, 20, 30, 50):
        torch.manual_seed(depth)
        assert not beyond(mlp(100, 10, depth=depth, width=100, activation=activation)), (activation, depth)
        assert not beyond(kaiming(mlp(100, 10, depth=depth, width=100, activation=activation, init="default")))


def test_a_measured_vanishing_gradient_at_the_recommended_init_carries_the_theorys_explanation():
    # SiLU is x/2 near 0: at sigma_w^2 = 2 the signal halves per layer once small, so a deep He SiLU
    # stack loses its gradient. Re-initializing with he_normal would change nothing: the finding is
    # the measured vanishing gradient, with the theory's prediction and a fix that is not the init
    for depth in (30, 50):
        torch.manual_seed(0)
        report = diagnose(mlp(100, 10, depth=depth, width=100, activation="silu"), X, Y)
        assert not report.by_kind("beyond_depth_scale")
        (finding,) = report.by_kind("vanishing_gradients")
        assert re.search(rf"{depth} layers exceed the trainable depth 1\d ", finding.message)
        assert "even at he_normal's variance" in finding.fix and "batch_norm='before'" in finding.fix
        assert "re-initialize" not in finding.fix
        assert finding.action["op"] == "insert_normalization"


@pytest.mark.parametrize("depth", [50, 200, 1000])
def test_no_finding_on_lecun_selu_up_to_1000_layers(depth):
    # SELU's gradient grows ~3.5% a layer (chi_1 = 1.07): an explosion of an unbounded activation,
    # which exploding_gradients reports as measured, not a depth limit of the theory's
    torch.manual_seed(0)
    x = torch.randn(32, 100)
    assert not beyond(mlp(100, 10, depth=depth, width=100, activation="selu"), (x - x.mean(0)) / x.std(0))


def test_demo_relu_with_pytorch_default_init():
    torch.manual_seed(0)
    (finding,) = beyond(mlp(100, 10, depth=50, width=100, activation="relu", init="default"))
    # chi = 1/6 per layer: past 100x from 4 layers on (the 10-way output layer adds a 0.3x)
    assert "50 layers exceed the trainable depth 3 " in finding.message and "ordered" in finding.message
    assert "signal variance" in finding.message and "at the last hidden layer" in finding.message
    assert "past 100x from 4 layers on" in finding.message
    assert "re-initialize with he_normal" in finding.fix and finding.action["max_depth"] == 3


@pytest.mark.parametrize("activation, depth", [("tanh", 20), ("sigmoid", 500)])
def test_deep_tanh_and_sigmoid_with_standard_normal_weights(activation, depth):
    # tanh: chaotic, gradients explode (chi ~ 5 at q* ~ 94); sigmoid: saturated, ordered (chi ~ 0.98)
    torch.manual_seed(0)
    (finding,) = beyond(normal01(mlp(100, 10, depth=depth, width=100, activation=activation, init="default")),
                        torch.randn(32, 100))  # fmt: skip
    assert ("chaotic" if activation == "tanh" else "ordered") in finding.message
    assert "glorot_uniform" in finding.fix


def test_the_prediction_uses_each_layers_measured_variance():
    # 45 He layers then 5 at sigma_w^2 = 0.05: the mean variance (1.8) predicts a gain within
    # 100x; per layer the last five cost 0.16x each, which the measurement confirms
    torch.manual_seed(0)
    model = mlp(100, 10, depth=50, width=100, activation="relu")
    for m in list(model)[90:100:2]:
        nn.init.normal_(m.weight, 0.0, (0.05 / 100) ** 0.5)
    report = diagnose(model, X, Y)
    (finding,) = report.by_kind("beyond_depth_scale")
    assert "vanishing_gradients" in {f.kind for f in report.findings}
    weights = [s for s in report.layers if s.role == "weight"]
    measured = weights[0].grad_rms / weights[-1].grad_rms
    predicted = float(re.search(r"gradient at the first layer ([0-9.e+-]+)x", finding.message).group(1))
    assert 1 / 3 < measured / predicted < 3
    assert not theory.propagate("relu", 1.805, depth=50, output_weight_variance=1.8, output_width=10).beyond


def test_stacks_the_theory_does_not_describe_are_skipped():
    torch.manual_seed(0)
    assert not beyond(mlp(100, 10, depth=50, width=100, activation="relu", init="default", batch_norm="before"))
    mixed = nn.Sequential(nn.Linear(100, 100), nn.Tanh(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    assert not beyond(mixed)
