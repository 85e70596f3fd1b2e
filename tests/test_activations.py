import math

import pytest
import torch
from torch import nn

from trainability import activations, recommended_init


@pytest.mark.parametrize(
    "name, torch_name, kwargs",
    [("identity", "linear", {}), ("sigmoid", "sigmoid", {}), ("tanh", "tanh", {}), ("relu", "relu", {}),
     ("leaky_relu", "leaky_relu", {}), ("selu", "selu", {})],
)
def test_gain_equals_torch_where_torch_defines_one(name, torch_name, kwargs):
    assert activations.get(name).gain() == pytest.approx(nn.init.calculate_gain(torch_name))


def test_leaky_gain_follows_slope():
    assert activations.get("leaky_relu").gain(negative_slope=0.2) == pytest.approx(
        nn.init.calculate_gain("leaky_relu", 0.2)
    )


@pytest.mark.parametrize("name", ["elu", "gelu", "silu", "mish", "softsign"])
def test_second_moment_gain_matches_monte_carlo(name):
    spec = activations.get(name)
    assert spec.gain_rule == "second_moment"
    z = torch.randn(2_000_000, dtype=torch.float64)
    expected = 1 / math.sqrt(spec.function()(z).pow(2).mean().item())
    assert spec.gain() == pytest.approx(expected, rel=0.01)


def test_second_moment_rule_agrees_with_torch_for_relu():
    # the documented rule gives torch's constant where both apply
    rrelu = activations.get("rrelu")
    assert rrelu.gain(lower=0.2, upper=0.2) == pytest.approx(nn.init.calculate_gain("leaky_relu", 0.2))


@pytest.mark.parametrize(
    "identifier, name",
    [("logistic", "sigmoid"), ("linear", "identity"), ("swish", "silu"), ("LeakyReLU", "leaky_relu"),
     (nn.LeakyReLU(0.2), "leaky_relu"), (nn.PReLU(), "prelu"), (nn.SELU(), "selu"), (nn.ELU, "elu"),
     (torch.relu, "relu"), (torch.nn.functional.gelu, "gelu"), (nn.RReLU(), "rrelu"), (nn.Mish(), "mish")],
)
def test_get_finds_spec(identifier, name):
    assert activations.get(identifier).name == name


def test_every_registered_activation_builds_its_module():
    for name in activations.names():
        spec = activations.get(name)
        module = spec.module()
        assert isinstance(module, spec.module_type)
        assert activations.get(module) is spec


def test_hyperparameters_are_settable_and_read_back():
    leaky = activations.get("leaky_relu").module(negative_slope=0.2)
    assert leaky.negative_slope == 0.2
    assert activations.get("leaky_relu").hyperparameters_of(leaky) == {"negative_slope": 0.2}
    rrelu = activations.get("rrelu").module(lower=0.1, upper=0.2)
    assert (rrelu.lower, rrelu.upper) == (0.1, 0.2)
    prelu = activations.get("prelu").module(num_parameters=8, init=0.1)
    assert prelu.weight.shape == (8,) and torch.allclose(prelu.weight, torch.tensor(0.1))
    assert activations.get("elu").module(alpha=0.5).alpha == 0.5


def test_metadata_flags():
    assert activations.get("selu").self_normalizing
    assert {n for n in activations.names() if activations.get(n).saturating} == {
        "sigmoid", "tanh", "softmax", "softsign", "relu6", "hardtanh", "hardsigmoid"}  # fmt: skip
    assert activations.get("relu").can_die and not activations.get("leaky_relu").can_die


@pytest.mark.parametrize(
    "call, message",
    [(lambda: activations.get("relu7"), "unknown activation 'relu7'; valid names: identity, sigmoid"),
     (lambda: activations.get(nn.Hardswish()), "unknown activation 'Hardswish'"),
     (lambda: activations.get("leaky_relu").module(alpha=0.2), "leaky_relu takes no hyperparameter alpha; valid: negative_slope"),
     (lambda: recommended_init("sine"), "unknown activation 'sine'")],
)
def test_bad_names_raise(call, message):
    with pytest.raises(ValueError) as excinfo:
        call()
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    "activation, expected",
    [("selu", "lecun_normal"), ("leaky_relu", "he_normal"), ("tanh", "glorot_uniform"), ("logistic", "glorot_uniform"),
     ("softmax", "glorot_uniform"), ("relu", "he_normal"), ("elu", "he_normal"), ("prelu", "he_normal"),
     ("rrelu", "he_normal"), (None, "glorot_uniform"), (nn.SELU(), "lecun_normal")],
)
def test_recommended_init_is_the_textbook_table(activation, expected):
    assert recommended_init(activation) == expected


def test_alpha_dropout_matches_reference_formula():
    p = 0.2
    drop = activations.AlphaDropout(p).train()
    x = torch.randn(1000, 1000)
    y = drop(x)
    alpha_prime = -1.7580993408473766
    a = ((1 - p) * (1 + p * alpha_prime**2)) ** -0.5
    b = -a * alpha_prime * p
    dropped = ~torch.isclose(y, a * x + b, atol=1e-5)
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.005)
    assert torch.allclose(y[dropped], torch.tensor(a * alpha_prime + b), atol=1e-5)
    assert abs(y.mean().item()) < 0.01 and y.var().item() == pytest.approx(1.0, abs=0.01)
    assert torch.equal(drop.eval()(x), x)
