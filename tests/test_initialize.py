import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainability import init, initialize, mlp


def layer_outputs(model, x, types=(nn.SELU, nn.ReLU)):
    outs = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, types):
                outs.append(x)
    return outs


def test_selu_1000_layers_self_normalizes_with_initialize_not_with_default():
    x = torch.randn(500, 100)
    x = (x - x.mean(0)) / x.std(0)
    model = mlp(100, 10, depth=1000, width=100, activation="selu", init="default")
    default_outs = layer_outputs(model, x)
    plan = initialize(model)
    assert {e.initializer for e in plan.entries[:-1]} == {"lecun_normal"}
    outs = layer_outputs(model, x)
    assert len(outs) == 1000
    for h in outs[99::100]:
        assert abs(h.mean().item()) < 0.1
        assert 0.75 < h.std().item() < 1.25
    default_std = [h.std().item() for h in default_outs[99::100]]
    assert not all(0.75 < s < 1.25 for s in default_std)
    assert default_std[-1] < 0.5  # PyTorch's default (variance 1/(3 fan_in)) lets the signal die


def test_relu_50_layers_default_init_collapses_and_initialize_keeps_scale():
    x = torch.randn(256, 100)
    model = mlp(100, 10, depth=50, width=100, activation="relu", init="default")
    # the std across samples: how much each unit's activation still depends on the input
    outs = [h.std(dim=0).mean().item() for h in layer_outputs(model, x)]
    assert outs[-1] < 1e-6 * outs[0]  # many orders of magnitude
    # After initialize, He init keeps E[h^2] layer to layer in expectation over the weights; one
    # draw at width 100 wanders by a log-normal factor (variance 5/width per layer, Hanin 2018),
    # so the property is checked over 25 independent draws: the mean second-moment ratio (what He
    # init preserves exactly) and the typical std ratio (geometric mean; the log-normal wander
    # drifts it down by about exp(-2.5 L / width / 2)).
    std_ratios, square_ratios = [], []
    for seed in range(25):
        initialize(model, seed=seed)
        outs = layer_outputs(model, x)
        std_ratios.append(outs[-1].std().item() / outs[0].std().item())
        square_ratios.append(outs[-1].pow(2).mean().item() / outs[0].pow(2).mean().item())
    assert 0.5 < sum(square_ratios) / 25 < 2.0
    geometric_mean = math.exp(sum(math.log(r) for r in std_ratios) / 25)
    assert 0.4 < geometric_mean < 2.0, geometric_mean


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(20, 30)
        self.b = nn.Linear(30, 30)
        self.norm = nn.LayerNorm(30)
        self.c = nn.Linear(30, 30)
        self.out = nn.Linear(30, 5)

    def forward(self, x):
        x = F.leaky_relu(self.a(x), 0.2)
        x = self.norm(self.b(x)).tanh()
        x = x + torch.selu(self.c(x))
        return self.out(x)


def test_custom_forward_is_traced_with_fx():
    plan = initialize(Functional())
    assert plan.method == "fx"
    assert [(e.layer, e.activation, e.initializer) for e in plan] == [
        ("a", "leaky_relu", "he_normal"), ("b", "tanh", "glorot_uniform"), ("c", "selu", "lecun_normal"),
        ("out", None, "glorot_uniform"),
    ]


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.act = nn.SELU()
        self.b = nn.Linear(20, 3)

    def forward(self, x):
        if x.sum() > 1e9:  # data-dependent control flow defeats symbolic tracing
            return self.b(x)
        return self.b(self.act(self.a(x)))


def test_untraceable_model_falls_back_to_probe():
    plan = initialize(DataDependent())
    assert plan.method == "probe"
    assert plan["a"].activation == "selu" and plan["a"].initializer == "lecun_normal"
    assert plan["b"].activation is None


def test_conv_network_and_variances():
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.ConvTranspose2d(64, 32, 2, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(32 * 64, 10),
    )
    plan = initialize(model)
    assert [e.initializer for e in plan] == ["he_normal", "glorot_uniform", "glorot_uniform"]
    assert model[0].weight.var().item() == pytest.approx(2 / 27, rel=0.1)
    fan_in, fan_out = 64 * 4, 32 * 4
    assert model[4].weight.var().item() == pytest.approx(2 / (fan_in + fan_out), rel=0.1)
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)
    assert all(torch.all(m.bias == 0) for m in (model[0], model[4], model[7]))


def test_one_name_for_every_layer_and_a_dict():
    model = mlp(20, 2, depth=3, width=50, activation="relu")
    plan = initialize(model, init="orthogonal")
    assert {e.initializer for e in plan} == {"orthogonal"}
    plan = initialize(model, init={"0": "lecun_uniform", "2": init.Constant(0.01)})
    assert plan["0"].initializer == "lecun_uniform"
    assert plan["4"].initializer == "he_normal" and plan["6"].initializer == "glorot_uniform"
    assert torch.all(model[2].weight == 0.01)


def test_seed_repeats_and_leaves_global_rng():
    a, b = mlp(8, 2, depth=2, width=8, init="default"), mlp(8, 2, depth=2, width=8, init="default")
    state = torch.get_rng_state()
    initialize(a, seed=3)
    initialize(b, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_lsuv_gives_unit_output_variance():
    x = torch.randn(512, 40)
    model = mlp(40, 10, depth=8, width=64, activation="tanh", init="default")
    plan = initialize(model, init="lsuv", data=x, tol=0.05)
    assert {e.initializer for e in plan} == {"lsuv"}
    h = x
    with torch.no_grad():
        for module in model:
            h = module(h)
            if isinstance(module, nn.Linear):
                assert h.var().item() == pytest.approx(1.0, abs=0.06)


def test_plan_prints_as_table():
    text = str(initialize(mlp(4, 2, depth=2, width=8, activation="selu")))
    assert "activation" in text and "lecun_normal" in text and "glorot_uniform" in text
    assert "sequential" in text


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: initialize(nn.Sequential(nn.ReLU(), nn.Tanh())), "has no weight layers to initialize (Linear, Conv1d"),
        (lambda: initialize(mlp(4, 2, depth=1, width=4), init="lsuv"), "init='lsuv' needs data="),
        (lambda: initialize(mlp(4, 2, depth=1, width=4), init="glorotuniform"), "unknown initializer 'glorotuniform'"),
        (lambda: initialize(mlp(4, 2, depth=1, width=4), init={"9": "he_normal"}), "init names layers the model does not have: 9; weight layers: 0, 2"),
        (lambda: initialize(mlp(4, 2, depth=1, width=4), init="lsuv", data=torch.randn(4, 4), tol=0), "LSUV needs tol > 0"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError) as excinfo:
        call()
    assert message in str(excinfo.value)
