import json
import math
import statistics

import pytest
import torch

from trainability import activations, theory
from trainability.cli import main

WIDTH, DEPTH, SEEDS = 512, 30, 5


pytestmark = pytest.mark.usefixtures("one_thread")


# (activation, bias variance, weight variances): ordered, critical and chaotic pairings. GELU at
# exactly sigma_w^2 = 2 is left out: there q'/q -> 1 from below at large q (a marginal map), and
# finite-width fluctuations decide single draws (median 0.01 measured vs 0.003 predicted)
CASES = {
    "tanh": (0.05, (1.0, 1.76, 3.0)),
    "relu": (0.0, (1.0, 2.0, 3.0)),
    "gelu": (0.0, (1.5, 2.5, 4.0)),
    "selu": (0.0, (0.5, 1.0, 2.0)),
    "sigmoid": (0.0, (1.0, 4.0, 16.0)),
}


def measured(activation, weight_variance, bias_variance, seed, output=None, batch=8):
    """RMS gradient at the first layer's pre-activations over the top's, with plain autograd:
    the top is the last hidden layer, or an output layer of ``output = (variance, width)``."""
    g = torch.Generator().manual_seed(seed)
    phi = activations.get(activation).module()
    a = torch.randn(batch, WIDTH, generator=g).requires_grad_(True)
    pre = []
    for _ in range(DEPTH):
        w = torch.randn(WIDTH, WIDTH, generator=g) * math.sqrt(weight_variance / WIDTH)
        b = torch.randn(WIDTH, generator=g) * math.sqrt(bias_variance)
        h = a @ w.T + b
        h.retain_grad()
        pre.append(h)
        a = phi(h)
    if output is not None:
        variance, width = output
        h = a @ (torch.randn(width, WIDTH, generator=g) * math.sqrt(variance / WIDTH)).T
        h.retain_grad()
        pre.append(h)
    readout = torch.randn(pre[-1].shape[1], generator=g)
    (pre[-1] @ readout).sum().backward()  # a random direction at the top, as the doctor's surrogate loss
    rms = [float(h.grad.pow(2).mean().sqrt()) for h in (pre[0], pre[-1])]
    return rms[0] / rms[1], float(pre[DEPTH - 1].detach().pow(2).mean())


@pytest.mark.parametrize("activation", CASES)
def test_predicted_gradient_gain_matches_autograd_within_3x(activation):
    torch.manual_seed(0)
    bias_variance, weight_variances = CASES[activation]
    for weight_variance in weight_variances:
        p = theory.propagate(activation, weight_variance, bias_variance, 1.0, depth=DEPTH)
        runs = [measured(activation, weight_variance, bias_variance, seed) for seed in range(SEEDS)]
        gain = statistics.median(r[0] for r in runs)
        signal = statistics.median(r[1] for r in runs)
        assert 1 / 3 < gain / p.first_layer_gain < 3, (weight_variance, gain, p)
        assert 1 / 3 < signal / p.signal_variance < 3, (weight_variance, signal, p)


def test_output_layer_joins_the_product():
    # tanh stack under a 10-unit readout: chi_out = sigma_w,out^2 (10 / 512) E[phi'^2]
    p = theory.propagate("tanh", 1.5, 0.05, depth=DEPTH, widths=[WIDTH] * DEPTH, output_weight_variance=1.0,
                         output_width=10)  # fmt: skip
    gain = statistics.median(measured("tanh", 1.5, 0.05, seed, output=(1.0, 10))[0] for seed in range(SEEDS))
    assert 1 / 3 < gain / p.first_layer_gain < 3
    hidden_only = theory.propagate("tanh", 1.5, 0.05, depth=DEPTH)
    assert p.first_layer_gain == pytest.approx(hidden_only.first_layer_gain * math.sqrt(p.output_chi))


def test_relu_family_closed_form():
    # PyTorch's default init: q shrinks and chi is 1/6 per layer exactly
    p = theory.propagate("relu", [1 / 3] * 50, 0.0, 1.0)
    assert p.q[9] == pytest.approx((1 / 3) * (1 / 6) ** 9)
    assert p.chi == pytest.approx([1 / 6] * 49)
    assert p.first_layer_gain == pytest.approx((1 / 6) ** 24.5)
    # sqrt(1/6)^(D-1) passes 1/100 once (D-1) ln 6 >= 2 ln 100, i.e. D = 7
    assert (p.crossing_depth, p.trainable_depth, p.direction) == (7, 6, "vanishing")
    he = theory.propagate("relu", 2.0, 0.0, 1.0, depth=50)
    assert he.crossing_depth == math.inf and he.direction is None and he.first_layer_gain == pytest.approx(1.0)


@pytest.mark.parametrize("activation, weight_variance, depth", [("gelu", 2.0, 5), ("selu", 1.0, 10), ("tanh", 1.0, 3)])
def test_crossing_depth_is_where_a_stack_that_deep_passes_100x(activation, weight_variance, depth):
    # found past the given layers (block-wise, then the closed form once chi settles), it must
    # agree with propagating a stack exactly that deep
    bias = 0.05 if activation == "tanh" else 0.0
    crossing = theory.propagate(activation, weight_variance, bias, depth=depth).crossing_depth
    assert theory.propagate(activation, weight_variance, bias, depth=crossing).beyond
    assert not theory.propagate(activation, weight_variance, bias, depth=crossing - 1).beyond


def test_per_layer_variances_matter():
    # 45 He layers and 5 nearly dead ones: the mean variance (1.8) would keep the gain within 100x
    variances = [2.0] * 45 + [0.05] * 5
    p = theory.propagate("relu", variances)
    assert p.beyond and p.direction == "vanishing"
    assert not theory.propagate("relu", sum(variances) / 50, depth=50).beyond
    assert p.gradient_gain[45] == pytest.approx(0.025**2, rel=1e-9)  # sqrt(chi = 0.025) per layer, 4 layers


def test_results_are_cached_and_readable():
    a = theory.propagate("tanh", [1.0] * 20, 0.05, 1.0)
    assert theory.propagate("tanh", [1.0] * 20, 0.05, 1.0) is a
    text = repr(a)
    assert text.startswith("Propagation(tanh, 20 layers") and "crosses 100x at depth 31 (vanishing)" in text
    d = a.to_dict()
    assert d["crossing_depth"] == 31 and len(d["q"]) == 20 and len(d["chi"]) == 19
    json.dumps(d)


def test_hyperparameters_and_callables():
    slope = theory.propagate("leaky_relu", 2 / (1 + 0.2**2), depth=10, negative_slope=0.2)
    assert slope.chi == pytest.approx([1.0] * 9) and slope.crossing_depth == math.inf
    assert theory.propagate(torch.tanh, 1.5, 0.05, depth=10).q == pytest.approx(theory.propagate("tanh", 1.5, 0.05, depth=10).q)


def test_bad_input():
    with pytest.raises(ValueError, match="weight_variances is a single number: give depth="):
        theory.propagate("tanh", 1.0)
    with pytest.raises(ValueError, match="weight_variances has 3 values but depth=4"):
        theory.propagate("tanh", [1.0] * 3, depth=4)
    with pytest.raises(ValueError, match="input_variance .* must be >= 0, got -1"):
        theory.propagate("tanh", 1.0, depth=3, input_variance=-1)
    with pytest.raises(ValueError, match="widths must be 3 positive ints"):
        theory.propagate("tanh", 1.0, depth=3, widths=[10, 10])
    with pytest.raises(ValueError, match="weight_variance .* must be positive, got 0"):
        theory.propagate("tanh", [1.0, 0.0])
    with pytest.raises(ValueError, match="unknown activation 'sinh'"):
        theory.propagate("sinh", 1.0, depth=3)


def test_theory_depth_command_finite_depth(capsys):
    assert main(["theory", "depth", "--activation", "tanh", "--weight-variance", "1", "--bias-variance", "0.05",
                 "--depth", "40", "--json"]) == 0  # fmt: skip
    finite = json.loads(capsys.readouterr().out)["finite_depth"]
    assert finite["crossing_depth"] == 31 and finite["trainable_depth"] == 30 and finite["direction"] == "vanishing"
    assert finite["signal_variance"] == pytest.approx(0.1936, rel=1e-3) and len(finite["q"]) == 40
    assert main(["theory", "depth", "--activation", "gelu", "--init", "he_normal", "--depth", "20"]) == 0
    out = capsys.readouterr().out
    assert "no finite fixed point: the signal decays to 0, x0.5 per layer" in out
    assert "gradient gain       0.08" in out and "trainable depth     26 layers" in out
    assert main(["theory", "depth", "--depth", "0"]) == 2
    assert "--depth must be a positive number of layers" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--activation", "leaky_relu", "--weight-variance", "2"],
    ["--activation", "selu", "--weight-variance", "2"],
    ["--activation", "tanh", "--init", "glorot_normal", "--width", "100"],
    ["--activation", "relu", "--init", "he_normal"],
    ["--activation", "relu", "--weight-variance", "0.001"],
    ["--activation", "tanh", "--weight-variance", "0.001", "--bias-variance", "0.05"],
])  # fmt: skip
def test_theory_depth_never_prints_depth_0_nor_a_depth_for_no_limit(argv, capsys):
    assert main(["theory", "depth", *argv]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if "trainable depth" in s)
    if "no limit" not in line:
        assert int(line.split()[2]) >= 1  # a single layer has no gradient gain to lose
    if "no finite fixed point" in out:
        assert "6 xi_c              " not in out and "1.2e+04" not in out
    if argv[1] == "relu" and argv[-1] == "he_normal":
        assert "no limit" in line
