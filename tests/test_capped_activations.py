"""Capped activations (ReLU6, Hardtanh, Hardsigmoid): read with their cap, their own gain and
initializer. Each verdict is checked against a label measured with plain autograd: the gradient
reaching each layer's output relative to the top's, and the fraction of units at the cap, where
the derivative is 0. Keras' ``ReLU(max_value=6)`` against its PyTorch twin: tests/test_keras.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainability import activations, datasets, diagnose, initialize

pytestmark = pytest.mark.usefixtures("one_thread")


def stack(activation, depth: int, width: int, features: int, *, init: str = "he", bias: float = 0.0,
          classes: int = 10) -> nn.Sequential:  # fmt: skip
    layers: list[nn.Module] = []
    for i in range(depth):
        linear = nn.Linear(features if i == 0 else width, width)
        if init == "he":
            nn.init.kaiming_normal_(linear.weight)
        elif init == "glorot":
            nn.init.xavier_uniform_(linear.weight)
        else:
            nn.init.normal_(linear.weight, 0.0, 1.0)
        nn.init.constant_(linear.bias, bias)
        layers += [linear, activation()]
    return nn.Sequential(*layers, nn.Linear(width, classes))


def autograd_label(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(smallest gradient RMS at a hidden layer's output over the top layer's, largest fraction of
    a layer's units where the activation's derivative is 0), by plain autograd. A capped ReLU's
    off side (z <= 0) is its ReLU part, whose units the doctor counts as dead, so not here."""
    outputs, flat, h = [], [], x
    for module in model:
        if not isinstance(module, nn.Linear):
            z = h.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(module(z).sum(), z)
            zero = slope == 0
            if getattr(module, "min_val", None) == 0.0:
                zero &= z > 0
            flat.append(float(zero.float().mean()))
        h = module(h)
        if isinstance(module, nn.Linear):
            h.retain_grad()
            outputs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    rms = [float(o.grad.pow(2).mean().sqrt()) for o in outputs]
    return min(r / rms[-1] for r in rms[:-1]), max(flat)


def digits(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    split = datasets.load("digits").train
    return split.x[:n], split.y[:n]


def gaussian(n: int = 256, features: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


HEALTHY = {
    "ReLU6, 20 x 64, digits": (lambda: stack(nn.ReLU6, 20, 64, 64), digits),
    "Hardtanh(0, 6), 30 x 128, gaussian": (lambda: stack(lambda: nn.Hardtanh(0.0, 6.0), 30, 128, 20, classes=3), gaussian),
    "ReLU6, 8 x 32, gaussian": (lambda: stack(nn.ReLU6, 8, 32, 20, classes=3), gaussian),
}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_he_initialized_capped_relu_stacks_are_healthy(name):
    make, data = HEALTHY[name]
    (x, y), model = data(), make()
    smallest, capped = autograd_label(model, x, y)
    assert smallest > 1e-2 and capped < 0.01  # the label: gradients within 100x, the cap all but unreached
    report = diagnose(model, x, y)
    assert report.healthy, report.verdict()
    links = [s for s in report.layers if s.role == "weight" and s.activation is not None]
    assert links and {s.activation for s in links} == {"relu6"}


SATURATED = {
    "ReLU6, biases +10, 10 x 64, digits": (lambda: stack(nn.ReLU6, 10, 64, 64, bias=10.0), digits),
    "ReLU6, N(0, 1) weights, 12 x 100, gaussian": (lambda: stack(nn.ReLU6, 12, 100, 20, init="normal", classes=3), gaussian),
    "Hardtanh(-1, 1), N(0, 1) weights, 8 x 64, gaussian": (lambda: stack(nn.Hardtanh, 8, 64, 20, init="normal", classes=3), gaussian),
    "Hardsigmoid, biases +5, 6 x 48, digits": (lambda: stack(nn.Hardsigmoid, 6, 48, 64, bias=5.0), digits),
}


@pytest.mark.parametrize("name", sorted(SATURATED))
def test_units_at_the_cap_are_saturated(name):
    make, data = SATURATED[name]
    (x, y), model = data(), make()
    _, capped = autograd_label(model, x, y)
    assert capped > 0.3  # the label: a third or more of some layer's units pass no gradient
    report = diagnose(model, x, y)
    (saturated,) = report.by_kind("saturated_units")
    assert saturated.severity == ("error" if capped >= 0.5 else "warning") and "at the cap" in saturated.message
    flagged = {s.name: s.saturated_fraction for s in report.layers if s.name in saturated.layers}
    assert max(flagged.values()) == pytest.approx(capped, abs=1e-3)  # the doctor counts what the label counts
    kind = activations.get(model[1])
    assert f"with {kind.recommended_init} and zero biases" in saturated.fix and saturated.action["init"] == kind.recommended_init


def test_a_glorot_initialized_relu6_stack_is_mismatched_and_initialize_cures_it():
    x, y = gaussian()
    model = stack(nn.ReLU6, 30, 64, 20, init="glorot", classes=3)
    smallest, _ = autograd_label(model, x, y)
    assert smallest < 1e-2  # the label: Glorot halves a ReLU's signal variance each layer
    report = diagnose(model, x, y)
    assert {"init_mismatch", "vanishing_gradients"} <= {f.kind for f in report.findings}
    assert "he_normal" in report.by_kind("init_mismatch")[0].fix
    plan = initialize(model)
    assert {e.initializer for e in plan.entries[:-1]} == {"he_normal"}
    assert diagnose(model, x, y).healthy


@pytest.mark.parametrize("module, name, gain, init", [
    (nn.ReLU6(), "relu6", 2**0.5, "he_normal"), (nn.Hardtanh(0.0, 6.0), "relu6", 2**0.5, "he_normal"),
    (nn.Hardtanh(), "hardtanh", None, "glorot_uniform"), (nn.Hardsigmoid(), "hardsigmoid", None, "glorot_uniform"),
    (activations.CappedReLU(1.0), "relu6", None, "he_normal"),
])  # fmt: skip
def test_the_cap_is_read_with_its_own_gain(module, name, gain, init):
    spec = activations.get(module)
    hyper = spec.hyperparameters_of(module)
    assert (spec.name, spec.recommended_init) == (name, init)
    z = torch.randn(2_000_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = 1 / float(module.double()(z).pow(2).mean().sqrt())  # the second-moment rule, by Monte Carlo
    assert spec.gain(**hyper) == pytest.approx(expected, rel=0.01)
    if gain is not None:
        assert spec.gain(**hyper) == pytest.approx(gain, rel=1e-4)  # a cap at 6 is never reached at unit scale
