import math

import pytest
import torch
from scipy import stats
from torch import nn

from trainability import init

BIG_SHAPES = {"linear": (2000, 500), "conv2d": (256, 64, 8, 8)}  # >= 10^6 elements each


def fans(shape):
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


@pytest.mark.parametrize("layout", BIG_SHAPES)
@pytest.mark.parametrize(
    "name, scale, mode",
    [("glorot_uniform", 1, "fan_avg"), ("glorot_normal", 1, "fan_avg"), ("he_uniform", 2, "fan_in"),
     ("he_normal", 2, "fan_in"), ("lecun_uniform", 1, "fan_in"), ("lecun_normal", 1, "fan_in")],
)
def test_preset_variance_within_2_percent(layout, name, scale, mode):
    shape = BIG_SHAPES[layout]
    fan_in, fan_out = fans(shape)
    n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    w = init.get(name)(torch.empty(shape))
    assert w.numel() >= 10**6
    assert w.var().item() == pytest.approx(scale / n, rel=0.02)
    assert abs(w.mean().item()) < 0.01 * math.sqrt(scale / n)


@pytest.mark.parametrize("layout", BIG_SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
def test_variance_scaling_every_mode(layout, mode, distribution):
    shape = BIG_SHAPES[layout]
    fan_in, fan_out = fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    w = init.VarianceScaling(3.0, mode, distribution)(torch.empty(shape))
    assert w.var().item() == pytest.approx(3.0 / n, rel=0.02)


def test_truncated_draws_stay_within_two_precorrection_stds():
    w = init.get("he_normal")(torch.empty(2000, 500))
    s = math.sqrt(2 / 500) / init.TRUNCATED_STD
    assert w.abs().max().item() <= 2 * s
    assert w.abs().max().item() > 1.9 * s  # the tails are really there


def test_uniform_has_uniform_shape_and_bound():
    w = init.get("glorot_uniform")(torch.empty(500, 300))
    limit = math.sqrt(6 / 800)
    assert w.abs().max().item() <= limit
    assert stats.kstest(w.flatten().numpy() / limit, stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_untruncated_normal_is_normal():
    w = init.VarianceScaling(distribution="untruncated_normal")(torch.empty(400, 100))
    assert stats.kstest(w.flatten().numpy() / 0.1, "norm").pvalue > 1e-3


def test_seeded_calls_repeat_and_unseeded_do_not():
    a = init.HeNormal(seed=7)(torch.empty(50, 20))
    b = init.HeNormal(seed=7)(torch.empty(50, 20))
    c = init.get({"class_name": "HeNormal", "config": {"seed": 7}})(torch.empty(50, 20))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(init.HeNormal()(torch.empty(50, 20)), init.HeNormal()(torch.empty(50, 20)))
    assert not torch.equal(a, init.HeNormal(seed=8)(torch.empty(50, 20)))


def test_seeded_draw_leaves_global_rng_alone():
    state = torch.get_rng_state()
    init.Orthogonal(seed=1)(torch.empty(5, 5))
    init.RandomUniform(seed=1)(torch.empty(5, 5))
    assert torch.equal(state, torch.get_rng_state())


def test_fills_in_place_without_autograd():
    layer = nn.Linear(30, 20)
    out = init.get("lecun_normal")(layer.weight)
    assert out is layer.weight and layer.weight.grad_fn is None and layer.weight.requires_grad


def test_fans_for_conv_transposed_and_grouped():
    assert init.compute_fans((20, 30)) == (30, 20)
    assert init.module_fans(nn.Conv2d(8, 16, 3)) == (8 * 9, 16 * 9)
    assert init.module_fans(nn.Conv1d(8, 16, 5, groups=4)) == (2 * 5, 4 * 5)
    # ConvTranspose stores (in, out/groups, *kernel): the fans swap meaning
    assert init.module_fans(nn.ConvTranspose2d(8, 16, 3)) == (8 * 9, 16 * 9)
    assert init.module_fans(nn.ConvTranspose2d(8, 16, 3, groups=2)) == (4 * 9, 8 * 9)
    assert init.module_fans(nn.Conv3d(2, 4, (1, 2, 3))) == (2 * 6, 4 * 6)


def test_conv_transpose_gets_fan_in_of_its_real_layout():
    layer = nn.ConvTranspose2d(64, 256, 4)  # weight (64, 256, 4, 4); each output sees 64*16 inputs
    init.apply(init.get("lecun_normal"), layer)
    assert layer.weight.var().item() == pytest.approx(1 / (64 * 16), rel=0.03)


def test_orthogonal_is_orthogonal():
    w = init.Orthogonal(gain=2.0)(torch.empty(30, 50))
    assert torch.allclose(w @ w.T, 4 * torch.eye(30), atol=1e-4)


def test_simple_initializers():
    t = torch.empty(10, 10)
    assert torch.all(init.get("zeros")(t) == 0) and torch.all(init.get("ones")(t) == 1)
    assert torch.all(init.Constant(0.5)(t) == 0.5)
    w = init.RandomNormal(1.0, 0.5)(torch.empty(1000, 1000))
    assert w.mean().item() == pytest.approx(1.0, abs=0.005) and w.std().item() == pytest.approx(0.5, rel=0.01)
    w = init.TruncatedNormal(0.0, 0.5)(torch.empty(1000, 100))
    assert w.abs().max().item() <= 1.0
    w = init.RandomUniform(2.0, 3.0)(torch.empty(1000))
    assert w.min().item() >= 2.0 and w.max().item() <= 3.0


@pytest.mark.parametrize("name", ["he_normal", "HeNormal", "kaiming_normal", " he_normal "])
def test_get_by_name(name):
    assert isinstance(init.get(name), init.HeNormal)


def test_get_passes_objects_and_callables_through():
    obj = init.VarianceScaling(2.0)
    assert init.get(obj) is obj
    assert init.get(nn.init.orthogonal_) is nn.init.orthogonal_
    assert isinstance(init.get(init.GlorotNormal), init.GlorotNormal)


@pytest.mark.parametrize("initializer", [init.VarianceScaling(2.0, "fan_avg", "uniform", seed=3), init.HeUniform(seed=1),
                                         init.Orthogonal(0.5), init.Constant(2.0), init.RandomUniform(-1, 2),
                                         init.TruncatedNormal(0.1, 0.2)])
def test_config_round_trip(initializer):
    assert type(initializer).from_config(initializer.get_config()) == initializer
    assert init.get(init.serialize(initializer)) == initializer


def test_preset_is_variance_scaling():
    p = init.GlorotUniform()
    assert isinstance(p, init.VarianceScaling)
    assert (p.scale, p.mode, p.distribution) == (1.0, "fan_avg", "uniform")


def test_normal_means_truncated_normal_as_in_keras():
    assert init.VarianceScaling(distribution="normal").distribution == "truncated_normal"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: init.get("he_normall"), "unknown initializer 'he_normall'; valid names: "),
        (lambda: init.get(42), "Could not interpret initializer identifier: 42"),
        (lambda: init.get({"config": {}}), "expected {'class_name'"),
        (lambda: init.VarianceScaling(scale=0), "scale must be a positive number, got 0"),
        (lambda: init.VarianceScaling(scale=-1.5), "got -1.5"),
        (lambda: init.VarianceScaling(mode="fan_sum"), "unknown mode 'fan_sum'; valid modes: fan_in, fan_out, fan_avg"),
        (lambda: init.VarianceScaling(distribution="cauchy"), "unknown distribution 'cauchy'; valid distributions: truncated_normal"),
        (lambda: init.get("he_normal")(torch.empty(10)), "at least 2 dimensions, got shape (10,)"),
        (lambda: init.Orthogonal()(torch.empty(10)), "at least 2 dimensions"),
        (lambda: init.RandomUniform(1, 0), "minval must be below maxval"),
        (lambda: init.HeNormal(seed=1.5), "seed must be an int"),
    ],
)
def test_bad_input_raises_clear_value_error(call, message):
    with pytest.raises(ValueError) as excinfo:
        call()
    assert message in str(excinfo.value)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="glorot_uniform.*he_normal.*lecun_normal"):
        init.get("hee")
