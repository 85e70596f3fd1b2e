import math

import pytest
import torch

from trainability import theory
from trainability.cli import main

# Schoenholz et al. 2017 (REFERENCE.md section 4): tanh, sigma_b^2 = 0.05
XI_TANH = {1.0: 3.6, 1.25: 6.8, 1.5: 15.8, 2.0: 25.2, 2.5: 11.8, 3.0: 9.1, 4.0: 7.0}


def test_tanh_critical_weight_variance():
    assert theory.critical_weight_variance("tanh", bias_variance=0.05) == pytest.approx(1.76, abs=0.01)


@pytest.mark.parametrize("weight_variance, xi", XI_TANH.items())
def test_tanh_correlation_depth_scale_within_5_percent(weight_variance, xi):
    assert theory.depth_scale("tanh", weight_variance, 0.05) == pytest.approx(xi, rel=0.05)


def test_depth_scale_is_infinite_at_criticality():
    critical = theory.critical_weight_variance("tanh", 0.05)
    assert theory.depth_scale("tanh", critical, 0.05) > 1000
    assert theory.depth_scale("relu", 2.0, 0.0) == math.inf


def test_relu_with_he_variance_is_exactly_critical():
    assert theory.chi("relu", 2.0, 0.0) == 1.0
    assert theory.chi("relu", 1 / 3, 0.0) == pytest.approx(1 / 6)  # PyTorch's default: ordered


def test_selu_with_lecun_variance_has_fixed_point_mean_0_variance_1():
    mean, variance = theory.activation_moments("selu", weight_variance=1.0, weight_sum=0.0)
    assert mean == pytest.approx(0.0, abs=1e-3) and variance == pytest.approx(1.0, abs=1e-3)
    assert theory.fixed_point("selu", 1.0, 0.0) == pytest.approx(1.0, abs=1e-3)


def test_fixed_point_against_monte_carlo():
    q = theory.fixed_point("tanh", 2.0, 0.05)
    z = torch.randn(2_000_000, dtype=torch.float64)
    assert q == pytest.approx(2.0 * torch.tanh(math.sqrt(q) * z).pow(2).mean().item() + 0.05, rel=2e-3)


def test_hyperparameters_and_callables():
    # leaky ReLU with slope a is critical at sigma_w^2 = 2 / (1 + a^2)
    assert theory.chi("leaky_relu", 2 / (1 + 0.2**2), 0.0, negative_slope=0.2) == pytest.approx(1.0)
    assert theory.chi(torch.tanh, 1.5, 0.05) == pytest.approx(theory.chi("tanh", 1.5, 0.05))
    assert theory.length_depth_scale("tanh", 1.0, 0.05) > 0


def test_max_trainable_depth_is_six_xi():
    assert theory.max_trainable_depth("tanh", 1.0, 0.05) == pytest.approx(6 * theory.depth_scale("tanh", 1.0, 0.05))


def test_bad_input():
    with pytest.raises(ValueError, match="weight_variance .* must be positive, got -1"):
        theory.chi("tanh", -1, 0.0)
    with pytest.raises(ValueError, match="unknown activation 'sinh'"):
        theory.chi("sinh", 1.0)
    with pytest.raises(ValueError, match="no critical weight variance"):
        theory.critical_weight_variance("relu", 0.5, high=1.0)


def test_theory_depth_command(capsys):
    assert main(["theory", "depth", "--activation", "tanh", "--init", "glorot_normal", "--width", "100",
                 "--bias-variance", "0.05", "--json"]) == 0  # fmt: skip
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["weight_variance"] == pytest.approx(1.0)
    assert result["xi_c"] == pytest.approx(3.6, rel=0.05) and result["phase"] == "ordered"
    assert result["max_trainable_depth"] == pytest.approx(6 * result["xi_c"])
    assert main(["theory", "depth", "--activation", "relu", "--init", "he_normal"]) == 0
    assert "critical" in capsys.readouterr().out


def test_theory_phase_command_small_grid(tmp_path, capsys):
    path = tmp_path / "phase.png"
    assert main(["theory", "phase", "--activation", "tanh", "--data", "digits", "--weight-variance", "1,1.76",
                 "--depth", "4,40", "--steps", "40", "--workers", "1", "--plot", str(path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "xi_c" in out and path.read_bytes()[:4] == b"\x89PNG"


def test_theory_phase_bad_grid(capsys):
    assert main(["theory", "phase", "--weight-variance", "a:b"]) == 2
    assert "expected LOW:HIGH" in capsys.readouterr().err


@pytest.mark.parametrize("activation, weight_variance, q_star, chi_1, words", [
    ("gelu", 2.0, 0.0, 0.5, "decays to 0, x0.5 per layer once small"),  # GELU'(0) = 1/2
    ("silu", 2.0, 0.0, 0.5, "decays to 0, x0.5 per layer once small"),
    ("leaky_relu", 2.0, math.inf, 1.0001, "grows without bound, x1.0001 per layer"),  # 2 (1 + 0.01^2) / 2
    ("selu", 2.0, math.inf, 1.0507009873554805**2, "grows without bound"),  # 2 * scale^2 / 2 once large
])  # fmt: skip
def test_no_finite_fixed_point_is_said_not_turned_into_a_depth(activation, weight_variance, q_star, chi_1, words):
    assert theory.fixed_point(activation, weight_variance) == q_star
    assert theory.chi(activation, weight_variance) == pytest.approx(chi_1, rel=1e-6)
    assert math.isnan(theory.depth_scale(activation, weight_variance))
    assert math.isnan(theory.max_trainable_depth(activation, weight_variance))
    s = theory.summary(activation, weight_variance)
    assert s["fixed_point"] == "none" and s["signal"].startswith("no finite fixed point") and words in s["signal"]
    assert math.isnan(s["xi_c"]) and math.isnan(s["max_trainable_depth"])


def test_tanh_with_glorot_and_no_bias_decays_slower_than_geometrically():
    # q' = q - 2q^2 + ...: q* = 0 is approached as 1/(2l), not at any geometric rate
    assert theory.fixed_point("tanh", 1.0, 0.0) == 0.0
    assert "slower than geometrically" in theory.signal("tanh", 1.0, 0.0)
    assert theory.summary("relu", 2.0)["fixed_point"] == "finite"  # scale-free: every q is kept
    # the finite-depth trainable depth is defined with or without a fixed point
    assert theory.summary("relu", 1 / 3)["trainable_depth"] == 6  # sqrt(1/6)^6 is past 1/100
    assert theory.summary("relu", 2.0)["trainable_depth"] == math.inf


def test_chi_accurate_where_the_pre_activation_is_large():
    # tanh with N(0, 1) weights at width 100: q* ~ 94, where tanh' lives within 1/10 of a unit in z
    q = theory.fixed_point("tanh", 100.0, 0.0)
    z = torch.randn(4_000_000, dtype=torch.float64)
    assert q == pytest.approx(100 * torch.tanh(math.sqrt(q) * z).pow(2).mean().item(), rel=2e-3)
    monte_carlo = 100 * (1 - torch.tanh(math.sqrt(q) * z) ** 2).pow(2).mean().item()
    assert theory.chi("tanh", 100.0, 0.0) == pytest.approx(monte_carlo, rel=0.02)
