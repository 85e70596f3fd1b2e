import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainability import initialize, mlp
from trainability.doctor import diagnose

X = torch.randn(256, 100)
Y = torch.randint(0, 10, (256,))


def normal01(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)
    return model


def kinds(report):
    return {f.kind for f in report.findings}


def test_deep_sigmoid_with_standard_normal_weights_saturates_and_vanishes():
    # N(0,1) sigmoid layers saturate at once; the gradient then shrinks ~4% per layer (mean-field
    # chi_1 ~ 0.96), so it falls below 1/100 of the top's past ~120 layers
    model = normal01(mlp(100, 10, depth=200, width=100, activation="sigmoid", init="default"))
    report = diagnose(model, X, Y)
    assert {"saturated_units", "vanishing_gradients"} <= kinds(report)
    (saturated,) = report.by_kind("saturated_units")
    assert saturated.severity == "error" and "1" in saturated.layers  # the first Sigmoid module
    (vanishing,) = report.by_kind("vanishing_gradients")
    assert vanishing.layers[0] == "0"
    assert "sigmoid" in vanishing.fix or "relu" in vanishing.fix


def test_relu_50_layers_with_pytorch_default_init_vanishes_with_init_mismatch():
    model = mlp(100, 10, depth=50, width=100, activation="relu", init="default")
    report = diagnose(model, X, Y)
    assert kinds(report) == {"vanishing_gradients", "init_mismatch", "beyond_depth_scale"}
    (vanishing,) = report.by_kind("vanishing_gradients")
    assert vanishing.severity == "error"
    assert vanishing.layers[:3] == ["0", "2", "4"]
    assert "he_normal" in vanishing.fix
    (mismatch,) = report.by_kind("init_mismatch")
    assert "0" in mismatch.layers and "98" in mismatch.layers
    assert "re-initialize layers" in mismatch.fix and "he_normal" in mismatch.fix
    assert "0.167x" in mismatch.message or "0.16" in mismatch.message  # 1/(3 fan_in) vs 2/fan_in
    initialize(model)
    assert diagnose(model, X, Y).healthy


def test_relu_with_standard_normal_weights_explodes():
    model = normal01(mlp(100, 10, depth=10, width=100, activation="relu", init="default"))
    report = diagnose(model, X, Y)
    assert "exploding_gradients" in kinds(report)
    (exploding,) = report.by_kind("exploding_gradients")
    assert exploding.layers[0] == "0" and exploding.severity == "error"
    assert "clip" in exploding.fix


def test_large_negative_biases_kill_relu_units():
    model = mlp(100, 10, depth=8, width=100, activation="relu")
    for m in list(model)[2:-1]:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, -10.0)
    report = diagnose(model, X, Y)
    (dead,) = report.by_kind("dead_units")
    assert dead.layers[0] == "3"  # the ReLU after the first layer with a -10 bias
    assert "1" not in dead.layers
    stats = {s.name: s for s in report.layers}
    assert stats["3"].dead_fraction == 1.0 and stats["1"].dead_fraction < 0.1
    assert "leaky_relu" in dead.fix


def _forward_nan(module, args, output):
    output = output.clone()
    output[0, 0] = float("nan")
    return output


def test_nan_in_forward_output_is_localized():
    model = mlp(100, 10, depth=6, width=50)
    model[4].register_forward_hook(_forward_nan)
    report = diagnose(model, X, Y)
    assert [f.kind for f in report.findings] == ["non_finite"]
    assert report.findings[0].layers == ["4"]
    assert "forward output of 4 (Linear)" in report.findings[0].message
    assert "input batch was finite" in report.findings[0].message


def test_nan_in_backward_gradient_is_localized():
    model = mlp(100, 10, depth=6, width=50)

    def poison(module, grad_input, grad_output):
        return (torch.full_like(grad_input[0], float("nan")),)

    model[6].register_full_backward_hook(poison)
    report = diagnose(model, X, Y)
    (finding,) = report.findings
    assert finding.kind == "non_finite" and finding.layers == ["6"]
    assert "backward pass of 6" in finding.message


def test_non_finite_input_is_named():
    x = X.clone()
    x[3, 7] = float("inf")
    report = diagnose(mlp(100, 10, depth=3, width=20), x, Y)
    (finding,) = report.findings
    assert finding.kind == "non_finite" and "input batch itself" in finding.message


def standardized(x):
    return (x - x.mean(0)) / x.std(0)


def sn_conditions(report):
    return [f.message for f in report.by_kind("self_normalization_broken")]


def test_selu_with_ordinary_dropout():
    model = mlp(100, 10, depth=8, width=100, activation="selu")
    model.insert(2, nn.Dropout(0.2))
    report = diagnose(model, standardized(X), Y)
    (msg,) = sn_conditions(report)
    assert "ordinary dropout" in msg
    assert report.by_kind("self_normalization_broken")[0].layers == ["2"]
    assert "AlphaDropout" in report.by_kind("self_normalization_broken")[0].fix


class SkipSelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(100, 64)
        self.blocks = nn.ModuleList(nn.Linear(64, 64) for _ in range(4))
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        x = F.selu(self.inp(x))
        for block in self.blocks:
            x = x + F.selu(block(x))
        return self.out(x)


def test_selu_with_skip_connection():
    model = SkipSelu()
    initialize(model)
    report = diagnose(model, standardized(X), Y)
    messages = sn_conditions(report)
    assert any("skip connections" in m for m in messages)
    assert not any("non-LeCun" in m for m in messages)


def test_selu_with_unstandardized_input():
    model = mlp(100, 10, depth=8, width=100, activation="selu")
    report = diagnose(model, X * 4 + 3, Y)
    messages = sn_conditions(report)
    assert len(messages) == 1 and "unstandardized input" in messages[0]


def test_selu_with_he_weights_is_not_lecun():
    model = mlp(100, 10, depth=8, width=100, activation="selu", init="he_normal")
    messages = sn_conditions(diagnose(model, standardized(X), Y))
    assert len(messages) == 1 and "non-LeCun weights" in messages[0]


class Residual(nn.Module):
    def __init__(self, width=64, blocks=4):
        super().__init__()
        self.inp = nn.Linear(100, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in range(blocks))
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        x = torch.relu(self.inp(x))
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.out(x)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10),
    )


@pytest.mark.parametrize(
    "build, x",
    [
        (lambda: mlp(100, 10, depth=20, width=100, activation="relu"), X),
        (lambda: mlp(100, 10, depth=50, width=100, activation="relu"), X),
        (lambda: mlp(100, 10, depth=50, width=100, activation="selu"), standardized(X)),
        (lambda: mlp(100, 10, depth=20, width=100, activation="relu", batch_norm="before"), X),
        (lambda: mlp(100, 10, depth=20, width=100, activation="tanh"), X),
        (lambda: mlp(100, 10, depth=10, width=100, activation="leaky_relu", dropout=0.2), X),
        (lambda: initialize(m := Residual()) and m, X),
        (lambda: initialize(m := small_cnn()) and m, torch.randn(128, 1, 8, 8)),
    ],
    ids=["he-relu-20", "he-relu-50", "lecun-selu-50", "bn-relu", "glorot-tanh", "leaky-dropout", "residual", "cnn"],
)
def test_healthy_networks_get_no_finding(build, x):
    report = diagnose(build(), x, Y[: len(x)])
    assert report.healthy, report.verdict()
    assert str(report).startswith("HEALTHY")


def test_model_left_exactly_as_found():
    model = mlp(100, 10, depth=4, width=32, batch_norm="before", dropout=0.1)
    model.train()
    model[1].eval()  # a mixed mode to restore
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    diagnose(model, X, Y)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers, strict=True))
    assert model.training and not model[1].training and model[2].training
    assert torch.equal(rng, torch.get_rng_state())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_hooks_removed_and_state_restored_when_forward_raises():
    model = mlp(100, 10, depth=3, width=16)
    with pytest.raises(ValueError, match=r"forward pass failed on inputs of shape \(4, 7\)"):
        diagnose(model, torch.randn(4, 7))
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_inputs_as_dataloader_batch_tuple_and_no_targets():
    model = mlp(100, 10, depth=3, width=16)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=64)
    assert diagnose(model, next(iter(loader))).batch_size == 64
    assert diagnose(model, loader).batch_size == 64
    report = diagnose(model, X)  # surrogate loss: every layer still gets a gradient
    assert all(s.grad_norm and s.grad_norm > 0 for s in report.layers)

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(100, 8), nn.Linear(100, 8)

        def forward(self, x, z):
            return self.a(x) + self.b(z)

    assert diagnose(TwoInputs(), (X, X)).batch_size == 256


def test_float_targets_use_mse_and_custom_loss():
    model = mlp(100, 1, depth=3, width=16)
    report = diagnose(model, X, torch.randn(256))
    assert report.loss == pytest.approx(F.mse_loss(model(X).squeeze(1), torch.randn(256)).item(), rel=2.0)
    report = diagnose(model, X, torch.zeros(256, 1), loss_fn=lambda out, t: (out - t).abs().mean())
    assert report.loss == pytest.approx(model(X).abs().mean().item(), rel=1e-5)


@pytest.mark.parametrize(
    "targets, message",
    [(torch.full((256,), 12), "targets hold classes 12..12 but the model outputs 10 scores"),
     (torch.randn(256, 3), "float targets of shape (256, 3) do not fit outputs of shape (256, 10)"),
     (torch.zeros(5, dtype=torch.long), "5 targets for a batch of 256 outputs")],
)
def test_bad_targets(targets, message):
    with pytest.raises(ValueError) as excinfo:
        diagnose(mlp(100, 10, depth=2, width=8), X, targets)
    assert message in str(excinfo.value)


def test_bad_inputs():
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        diagnose("model", X)
    with pytest.raises(ValueError, match="inputs must be a tensor"):
        diagnose(mlp(100, 10, depth=2, width=8), [1, 2, 3])


def test_report_dict_json_and_layers():
    report = diagnose(mlp(100, 10, depth=30, width=64, init="default"), X, Y)
    d = report.to_dict()
    assert set(d) == {"findings", "layers"}
    assert all(set(f) == {"kind", "severity", "layers", "message", "fix"} for f in d["findings"])
    assert json.loads(report.to_json()) == json.loads(json.dumps(d))
    layer = d["layers"][0]
    assert layer["name"] == "0" and layer["type"] == "Linear" and layer["activation"] == "relu"
    assert {"mean", "std", "dead_fraction", "saturated_fraction", "grad_norm", "weight_std", "weight_grad_norm",
            "grad_weight_ratio", "non_finite"} <= set(layer)
    assert [s["name"] for s in d["layers"]][:4] == ["0", "1", "2", "3"]  # execution order
    text = str(report)
    assert text.index("vanishing_gradients") < text.index("grad norm")  # verdicts first


def test_gradient_norms_match_autograd():
    model = mlp(100, 10, depth=3, width=16)
    report = diagnose(model, X, Y)
    model.zero_grad()
    F.cross_entropy(model(X), Y).backward()
    stats = {s.name: s for s in report.layers}
    for name in ("0", "2", "4", "6"):
        assert stats[name].weight_grad_norm == pytest.approx(model.get_submodule(name).weight.grad.norm().item(), rel=1e-5)
    outputs = {}
    h = X
    for i, m in enumerate(model):
        h = m(h)
        h.retain_grad()
        outputs[str(i)] = h
    F.cross_entropy(h, Y).backward()
    assert stats["2"].grad_norm == pytest.approx(outputs["2"].grad.norm().item(), rel=1e-5)
    assert stats["3"].std == pytest.approx(outputs["3"].std(correction=0).item(), rel=1e-5)


def test_plot_writes_png(tmp_path):
    report = diagnose(mlp(100, 10, depth=10, width=32, init="default"), X, Y)
    path = report.plot(tmp_path / "doctor.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def tanh_stack(depth, weight_variance, bias_variance=0.05):
    torch.manual_seed(1)
    model = mlp(100, 10, depth=depth, width=100, activation="tanh", init="default")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, (weight_variance / m.in_features) ** 0.5)
            nn.init.normal_(m.bias, 0.0, bias_variance**0.5)
    return model


def test_beyond_depth_scale_for_ordered_tanh_and_not_at_criticality():
    # tanh, sigma_b^2 = 0.05: sigma_w^2 = 1 gives xi_c = 3.6, so 40 layers exceed 6 xi_c = 21.8
    report = diagnose(tanh_stack(40, 1.0), X, Y)
    (finding,) = report.by_kind("beyond_depth_scale")
    assert "40 layers exceed the trainable depth 2" in finding.message and "ordered" in finding.message
    assert len(finding.layers) == 40
    # sigma_w^2 = 1 is glorot's variance here, the recommended init: the fix is not to re-initialize
    assert "even at glorot_uniform's variance" in finding.fix and "replace it with relu" in finding.fix
    # well off it (sigma_w^2 = 0.5) the depth limit is the init's
    (finding,) = diagnose(tanh_stack(40, 0.5), X, Y).by_kind("beyond_depth_scale")
    assert "ordered" in finding.message and "re-initialize with glorot_uniform" in finding.fix
    # at the edge of chaos (sigma_w^2 = 1.76) xi_c is large: no such finding
    assert not diagnose(tanh_stack(40, 1.76), X, Y).by_kind("beyond_depth_scale")


def test_a_layer_of_zeros_is_no_variance_mismatch_and_no_crash():
    # a zero-initialized layer (Fixup's or SkipInit's branch end, a zeroed head) has variance 0:
    # no initializer drew it wrong, and log(0) must not take the doctor down
    import torch
    from torch import nn

    from trainability import diagnose, initialize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    initialize(model, seed=0)
    with torch.no_grad():
        model[2].weight.zero_()
    report = diagnose(model, torch.randn(64, 16), torch.randint(0, 4, (64,)))
    assert not [f for f in report.findings if f.kind == "init_mismatch" and "2" in f.layers]


# -- float32 first, float64 where it matters -----------------------------------------------------------------
def test_reductions_in_float32_first_are_exact_where_float32_would_overflow_or_hide_a_nan():
    """On the CPU the doctor reduces a float32 tensor in float32 and again in float64 only where a
    result came out non-finite: entries past 1e19 (their squares overflow float32) keep their
    exact finite norm, a NaN stays NaN, and ordinary tensors agree with float64 to 1e-6."""
    from trainability.doctor.capture import _norm, _precise_norms, _precise_sums, _sum_and_norm

    f64 = torch.float64
    ordinary = torch.randn(256, 100)
    total, norm = _sum_and_norm(ordinary, f64)
    assert float(total) == pytest.approx(float(ordinary.double().sum()), rel=1e-5, abs=1e-3)
    assert float(norm) == pytest.approx(float(ordinary.double().norm()), rel=1e-6)
    huge = torch.full((64, 64), 3e20)
    assert float(torch.linalg.vector_norm(huge)) == float("inf")  # float32 alone overflows
    assert float(_norm(huge, f64)) == pytest.approx(3e20 * 64, rel=1e-6)
    assert float(_sum_and_norm(huge, f64)[1]) == pytest.approx(3e20 * 64, rel=1e-6)
    assert [float(n) for n in _precise_norms([ordinary, huge], f64)] == pytest.approx([float(ordinary.double().norm()), 3e20 * 64], rel=1e-6)
    broken = ordinary.clone()
    broken[3, 4] = float("nan")
    assert torch.isnan(_norm(broken, f64)) and all(torch.isnan(v) for v in _sum_and_norm(broken, f64))
    assert torch.isnan(_precise_sums([ordinary, broken], f64)[1])
    assert _norm(ordinary, None).dtype == torch.float32  # the monitor's fast mode: the tensor's own dtype


def test_a_finite_gradient_past_float32_squares_is_exploding_not_non_finite():
    """Gradients of about 1e22 are finite: their norm is reported exactly (as autograd in float64
    gives it), not as the inf a float32 sum of squares would give."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    with torch.no_grad():
        model[2].weight.mul_(1e21)
    report = diagnose(model, X, Y, loss_fn=lambda out, y: out.sum())
    stats = {s.name: s for s in report.layers}
    model.zero_grad()
    model(X).sum().backward()
    expected = model[0].weight.grad.double().norm().item()
    assert expected > 1e22 and stats["0"].weight_grad_norm == pytest.approx(expected, rel=1e-5)
    assert "non_finite" not in kinds(report)


def test_diagnose_leaves_the_garbage_collector_as_it_found_it():
    import gc

    model = mlp(100, 10, depth=3, width=16)
    assert gc.isenabled()
    diagnose(model, X, Y)
    assert gc.isenabled()
    with pytest.raises(ValueError):
        diagnose(model, torch.randn(4, 7))
    assert gc.isenabled()
    gc.disable()
    try:
        diagnose(model, X, Y)
        assert not gc.isenabled()  # the user's choice stays
    finally:
        gc.enable()


def test_structure_read_once_inside_structure_fixed_and_fresh_outside():
    from trainability import adapters

    model = mlp(100, 10, depth=3, width=16)
    with adapters.structure_fixed():
        first = adapters.weight_modules(model)
        first.clear()  # a caller's own list: what is kept is not touched
        kept = adapters.weight_modules(model)
        assert [n for n, _, _ in kept] == ["0", "2", "4", "6"]
        assert kept[0][1] is model[0] and adapters.named_modules(model) == list(model.named_modules())
    model.append(nn.Linear(10, 10))  # outside, a changed model is read again
    assert [n for n, _, _ in adapters.weight_modules(model)] == ["0", "2", "4", "6", "7"]


def test_ledger_positions_of_spans():
    from trainability.distributed import _covered

    spans = ((0, 3), (5, 0), (7, 2), (20, 1))
    assert _covered(spans).tolist() == [0, 1, 2, 7, 8, 20]
    assert _covered(()).tolist() == []
