"""Keras 3 models on the PyTorch backend: diagnosed, initialized and monitored like their PyTorch
twins. Each Keras model is checked against an independent reference: the same network built in
PyTorch with the same weights (the doctor's PyTorch path), Keras' own initializers, or Keras'
own ``fit`` and ``save``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

_backend = os.environ.get("KERAS_BACKEND")
os.environ["KERAS_BACKEND"] = "torch"  # read once, when Keras is imported
try:
    keras = pytest.importorskip("keras")
finally:  # the rest of the suite (and its subprocesses) keeps its own environment
    if _backend is None:
        del os.environ["KERAS_BACKEND"]
    else:
        os.environ["KERAS_BACKEND"] = _backend
if keras.backend.backend() != "torch":  # pragma: no cover - Keras was imported elsewhere first
    pytest.skip("Keras was imported on another backend before this module", allow_module_level=True)

from keras import layers  # noqa: E402

from trainability import Monitor, adapters, diagnose, fit, initialize  # noqa: E402
from trainability.adapters import keras as keras_adapter  # noqa: E402
from trainability.cli import main  # noqa: E402
from trainability.graph import find_consumers, skip_connections  # noqa: E402
from trainability.integrations.keras import TrainabilityCallback as KerasCallback  # noqa: E402

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "keras_textbook.py"
#: Keras' own: saving reads variables through numpy 2's deprecated __array__ protocol.
KERAS_NUMPY2 = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
TORCH_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "selu": nn.SELU, "elu": nn.ELU}


@pytest.fixture(autouse=True)
def _keras_seed_and_one_thread(one_thread):
    """Seeded Keras; tiny models on one thread (two threads thrash on a busy machine: 30 s for a
    fit that takes 0.5 s on one)."""
    keras.utils.set_random_seed(0)


def torch_twin(model) -> nn.Sequential:
    """The same network in PyTorch, with the Keras model's weights (kernels transposed)."""
    out: list[nn.Module] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            kernel = layer.kernel.value.detach()
            linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=layer.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(kernel.T)
                if layer.bias is not None:
                    linear.bias.copy_(layer.bias.value)
            out.append(linear)
            fused = layer.get_config()["activation"]
            if fused != "linear":
                out.append(TORCH_ACTIVATIONS[fused]())
        elif kind == "LeakyReLU":
            out.append(nn.LeakyReLU(layer.negative_slope))
        elif kind == "ReLU":  # ReLU(max_value=6) is torch's ReLU6
            out.append(nn.ReLU() if layer.max_value is None else nn.Hardtanh(0.0, float(layer.max_value)))
        elif kind == "PReLU":
            alpha = layer.alpha.value.detach()
            prelu = nn.PReLU(alpha.numel())
            with torch.no_grad():
                prelu.weight.copy_(alpha.reshape(-1))
            out.append(prelu)
        elif kind == "Activation":
            out.append(TORCH_ACTIVATIONS[layer.get_config()["activation"]]())
        elif kind == "Dropout":
            out.append(nn.Dropout(layer.rate))
        else:  # pragma: no cover - the test builds only these
            raise AssertionError(kind)
    return nn.Sequential(*out)


def verdicts(report) -> list[tuple[str, str]]:
    return sorted((f.kind, f.severity) for f in report.findings)


def per_layer(report) -> dict[str, list[float]]:
    """What the doctor measured, in layer order, without names: weight layers' gradient RMS
    relative to the top, dead and saturated fractions."""
    weights = [s for s in report.layers if s.role == "weight"]
    return {
        "gradient": [s.unit_grad_rms / weights[-1].unit_grad_rms for s in weights],
        "dead": [s.dead_fraction for s in report.layers if s.dead_fraction is not None],
        "saturated": [s.saturated_fraction for s in report.layers if s.saturated_fraction is not None],
    }


def assert_twins_agree(model, x, y=None):
    """Same findings; and, without dropout (whose masks the two libraries draw differently),
    the same measurements layer by layer."""
    keras_report = diagnose(model, x, y)
    torch_report = diagnose(torch_twin(model), x, y)
    assert verdicts(keras_report) == verdicts(torch_report), (keras_report.verdict(), torch_report.verdict())
    if any(type(layer).__name__ == "Dropout" for layer in model.layers):
        return keras_report
    ours, theirs = per_layer(keras_report), per_layer(torch_report)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert keras_report.loss == pytest.approx(torch_report.loss, rel=1e-5)
    return keras_report


def stack(activation, initializer, *, depth=10, width=64, features=20, dropout=0.0, fused=True):
    """A deep Dense stack as people write it in Keras."""
    model = [keras.Input((features,))]
    for _ in range(depth):
        if fused:
            model.append(layers.Dense(width, activation=activation, kernel_initializer=initializer))
        else:
            model += [layers.Dense(width, kernel_initializer=initializer), layers.Activation(activation)]
        if dropout:
            model.append(layers.Dropout(dropout))
    model.append(layers.Dense(3, kernel_initializer=initializer))
    return keras.Sequential(model)


def data(n=256, features=20):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


# -- the textbook's snippets, and sick models, against their PyTorch twins ---------------------
TEXTBOOK = {
    # he_norm = Dense(10, activation='relu', kernel_initializer='he_normal'), stacked
    "he_normal": lambda: stack("relu", "he_normal"),
    # VarianceScaling(scale=2, mode='fan_avg', distribution='uniform')
    "he_fan_avg": lambda: stack("relu", keras.initializers.VarianceScaling(scale=2, mode="fan_avg", distribution="uniform")),
    "leaky_relu": lambda: keras.Sequential([keras.Input((20,))] + [
        m for _ in range(8) for m in (layers.Dense(64, kernel_initializer="he_normal"), layers.LeakyReLU(negative_slope=0.2))
    ] + [layers.Dense(3)]),
    "prelu": lambda: keras.Sequential([keras.Input((20,))] + [
        m for _ in range(8) for m in (layers.Dense(64, kernel_initializer="he_normal"), layers.PReLU())
    ] + [layers.Dense(3)]),
    "selu": lambda: stack("selu", "lecun_normal"),
    # MobileNet's ReLU6: Dense(..., kernel_initializer='he_normal'), ReLU(max_value=6)
    "relu6": lambda: keras.Sequential([keras.Input((20,))] + [
        m for _ in range(12) for m in (layers.Dense(48, kernel_initializer="he_normal"), layers.ReLU(max_value=6.0))
    ] + [layers.Dense(3)]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TEXTBOOK))
def test_textbook_models_agree_with_pytorch_and_are_healthy(name):
    x, y = data()
    report = assert_twins_agree(TEXTBOOK[name](), x, y)
    assert not [f for f in report.findings if f.severity == "error"], report.verdict()
    assert not {f.kind for f in report.findings} & {"vanishing_gradients", "exploding_gradients", "init_mismatch"}


SICK = {
    "sigmoid N(0, 1)": (lambda: stack("sigmoid", keras.initializers.RandomNormal(0.0, 1.0)), {"saturated_units", "init_mismatch"}),
    "relu N(0, 1)": (lambda: stack("relu", keras.initializers.RandomNormal(0.0, 1.0)), {"exploding_gradients", "init_mismatch"}),
    "selu with Dropout": (lambda: stack("selu", "lecun_normal", dropout=0.2), {"self_normalization_broken"}),
    # PyTorch's default bound 1/sqrt(fan_in) at width 100: vanishing, and mean-field theory's depth limit
    "relu U(+-0.1), 30 layers": (lambda: stack("relu", keras.initializers.RandomUniform(-0.1, 0.1), depth=30, width=100),
                                 {"vanishing_gradients", "init_mismatch", "beyond_depth_scale"}),
    "tanh N(0, 1), separate layers": (lambda: stack("tanh", keras.initializers.RandomNormal(0.0, 1.0), fused=False),
                                      {"saturated_units", "init_mismatch"}),
    "relu6 at its cap": (lambda: keras.Sequential([keras.Input((20,))] + [
        m for _ in range(8) for m in (layers.Dense(64, kernel_initializer="he_normal", bias_initializer=keras.initializers.Constant(8.0)),
                                      layers.ReLU(max_value=6.0))
    ] + [layers.Dense(3)]), {"saturated_units"}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SICK))
def test_sick_models_get_the_findings_of_their_pytorch_twins(name):
    make, expected = SICK[name]
    x, y = data()
    report = assert_twins_agree(make(), x, y)
    assert expected <= {f.kind for f in report.findings}, report.verdict()


def test_dropout_in_a_selu_stack_is_named_by_its_keras_name():
    model = stack("selu", "lecun_normal", depth=3, dropout=0.2)
    found = [f for f in diagnose(model, *data()).findings if f.action.get("condition") == "ordinary dropout"]
    assert found and found[0].layers == [layer.name for layer in model.layers if type(layer).__name__ == "Dropout"]


def test_fused_activation_units_are_read_before_and_after_the_activation():
    """A Dense with activation='relu': the Dense row is the pre-activation z (its mean is that of
    x W + b), the activation row the ReLU's output, whose zeros give the dead units."""
    model = stack("relu", keras.initializers.RandomNormal(0.0, 1.0), depth=4, width=32)
    x, _ = data()
    report = diagnose(model, x)
    first = model.layers[0]
    z = x @ first.kernel.value.detach() + first.bias.value.detach()
    rows = {s.name: s for s in report.layers}
    assert rows[first.name].mean == pytest.approx(float(z.mean()), rel=1e-4)
    assert rows[first.name].std == pytest.approx(float(z.std(unbiased=False)), rel=1e-4)
    assert rows[f"{first.name}/activation"].dead_fraction == pytest.approx(float((z.amax(0) <= 0).float().mean()))
    assert rows[first.name].activation == "relu" and rows[f"{first.name}/activation"].type == "ReLU"


def test_layers_are_named_by_their_keras_names_and_activations_read_with_hyperparameters():
    model = keras.Sequential([
        keras.Input((8,)),
        layers.Dense(16, name="hidden", kernel_initializer="he_normal"), layers.LeakyReLU(negative_slope=0.2, name="leaky"),
        layers.Dense(16, name="elu_in"), layers.ELU(alpha=0.5),
        layers.Dense(16, name="prelu_in"), layers.PReLU(name="prelu"),
        layers.Dense(16, name="selu_in"), layers.Activation("selu"),
        layers.Dense(16, name="relu_in"), layers.ReLU(negative_slope=0.1),
        layers.Dense(16, name="fused", activation=keras.activations.leaky_relu),
        layers.Dense(2, name="head", activation="softmax"),
    ])  # fmt: skip
    links, method = find_consumers(model)
    assert method == "sequential"
    found = {n: (link.activation.name if link.activation else None, link.hyperparameters) for n, link in links.items()}
    assert found == {
        "hidden": ("leaky_relu", {"negative_slope": 0.2}), "elu_in": ("elu", {"alpha": 0.5}),
        "prelu_in": ("prelu", {"num_parameters": 16, "init": 0.0}), "selu_in": ("selu", {}),
        "relu_in": ("leaky_relu", {"negative_slope": 0.1}), "fused": ("leaky_relu", {"negative_slope": 0.2}),
        "head": ("softmax", {"dim": -1}),
    }  # fmt: skip
    report = diagnose(model, torch.randn(32, 8))
    assert [s.name for s in report.layers if s.role == "weight"] == list(found)


def test_weights_have_keras_layouts_and_fans():
    model = keras.Sequential([
        keras.Input((16, 16, 3)), layers.Conv2D(8, 3, activation="relu"), layers.DepthwiseConv2D(3),
        layers.Conv2DTranspose(4, 3), layers.Conv2D(8, 3, groups=2), layers.Flatten(), layers.Dense(5),
    ])  # fmt: skip
    fans = {n: (w.role, w.fans) for n, _, ws in adapters.weight_modules(model) for w in ws}
    conv, depthwise, transpose, grouped, _, dense = (layer.name for layer in model.layers)
    assert fans == {
        conv: ("conv", (27, 72)), depthwise: ("conv", (9, 9)), transpose: ("conv", (72, 36)),
        grouped: ("conv", (18, 36)), dense: ("dense", (12 * 12 * 8, 5)),
    }  # fmt: skip
    report = diagnose(model, torch.randn(16, 16, 16, 3))
    dead = {s.name: s.dead_fraction for s in report.layers if s.dead_fraction is not None}
    assert set(dead) == {f"{conv}/activation"}  # per channel (channels last): 8 units


def test_embedding_is_a_lookup():
    model = keras.Sequential([keras.Input((6,), dtype="int32"), layers.Embedding(50, 12), layers.Flatten(), layers.Dense(2)])
    (name, _, (weight,)), _ = adapters.weight_modules(model)
    assert weight.role == "embedding" and weight.fans == (1, 12)
    batch = adapters.example_batch(model, batch=4)
    assert batch.shape == (4, 6) and not batch.is_floating_point()


def test_functional_model_follows_the_keras_graph():
    inputs = keras.Input((16,))
    left = layers.Dense(32, name="left")(inputs)
    right = layers.Dense(32, name="right")(inputs)
    left = layers.BatchNormalization(name="bn")(left)
    left = layers.Activation("selu", name="left_act")(left)
    right = layers.Activation("tanh", name="right_act")(right)
    merged = layers.Add(name="add")([left, right])
    outputs = layers.Dense(3, name="out")(merged)
    model = keras.Model(inputs, outputs)
    links, method = find_consumers(model)
    assert method == "graph"
    assert {n: (link.activation and link.activation.name, link.normalized) for n, link in links.items()} == {
        "left": ("selu", True), "right": ("tanh", False), "out": (None, False)}
    assert skip_connections(model) == ["left_act", "right_act"]


def test_subclassed_and_nested_models_by_a_probe_pass():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.body = keras.Sequential([layers.Dense(16, name="inner"), layers.ReLU(name="inner_relu")], name="body")
            self.head = layers.Dense(2, activation="tanh", name="head")

        def call(self, x):
            return self.head(self.body(x))

    model = Net()
    model(torch.randn(2, 4))
    links, method = find_consumers(model)
    assert method == "probe"
    assert {n: link.activation.name for n, link in links.items()} == {"body/inner": "relu", "head": "tanh"}
    assert skip_connections(model) is None


# -- diagnose leaves the model as it was --------------------------------------------------------
@pytest.mark.filterwarnings(KERAS_NUMPY2)
def test_diagnose_leaves_no_trace_and_respects_train_eval(tmp_path):
    model = keras.Sequential([keras.Input((20,)), layers.Dense(64, activation="relu"), layers.BatchNormalization(),
                              layers.Dropout(0.5), layers.Dense(3)])  # fmt: skip
    dense, norm, *_ = model.layers
    before = [v.value.detach().clone() for v in model.variables]
    x, y = data()
    train = diagnose(model, x, y)
    after = [v.value for v in model.variables]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # moving statistics, seed states
    assert dense.activation is keras.activations.relu and not dense._forward_hooks and not dense._forward_pre_hooks
    model.eval()  # Keras' own fit leaves the model in eval mode: inference (no dropout, moving statistics)
    with torch.no_grad():
        model(x, training=True)  # as fit does, move the moving statistics off their initial 0 and 1
        inference = float(nn.functional.cross_entropy(model(x), y))
    assert diagnose(model, x, y).loss == pytest.approx(inference, rel=1e-5)
    assert train.loss != pytest.approx(diagnose(model, x, y).loss)
    model.save(tmp_path / "model.keras")  # the fused activation is the layer's own again: it serializes
    assert keras.models.load_model(tmp_path / "model.keras").layers[0].get_config()["activation"] == "relu"


def test_unbuilt_model_builds_on_the_batch_or_says_how():
    model = keras.Sequential([layers.Dense(10, kernel_initializer="he_normal"), layers.Dense(1)])
    with pytest.raises(ValueError, match=r"not built yet.*keras.Input"):
        initialize(model)
    assert diagnose(model, torch.randn(32, 8)).layers[0].name == model.layers[0].name


def test_numpy_arrays_as_keras_fit_takes_them():
    """x and y as NumPy arrays (float64 features, integer labels): the report of the same batch as
    tensors; an unbuilt model builds on them; several inputs as a list of arrays."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 20)), rng.integers(0, 3, 128)
    model = stack("sigmoid", keras.initializers.RandomNormal(0.0, 1.0), depth=6, width=32)
    ours, reference = diagnose(model, x, y), diagnose(model, torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    assert verdicts(ours) == verdicts(reference) and "saturated_units" in {f.kind for f in ours.findings}
    assert ours.loss == pytest.approx(reference.loss, rel=1e-6)
    unbuilt = keras.Sequential([layers.Dense(16, activation="relu"), layers.Dense(3)])
    assert initialize(unbuilt, data=x).entries[0].fan_in == 20
    a, b = keras.Input((6,)), keras.Input((4,))
    joined = layers.Concatenate()([layers.Dense(8, activation="relu")(a), layers.Dense(8, activation="relu")(b)])
    two = keras.Model([a, b], layers.Dense(3)(joined))
    xa, xb = rng.normal(size=(64, 6)), rng.normal(size=(64, 4))
    listed = diagnose(two, [xa, xb], y[:64])
    assert listed.loss == pytest.approx(diagnose(two, (torch.tensor(xa).float(), torch.tensor(xb).float()), torch.tensor(y[:64])).loss)
    with torch.no_grad():
        assert listed.loss == pytest.approx(float(nn.functional.cross_entropy(two([xa, xb]), torch.tensor(y[:64]))), rel=1e-5)


def test_eval_mode_batch_norms_that_never_saw_a_batch_use_the_batchs_statistics():
    """A Keras CNN in eval mode whose BatchNormalization moving statistics are still 0 and 1: the
    doctor judges what a training step runs (the same verdict and loss as in training mode) and
    says so; once the statistics have moved, eval mode is judged as it is."""
    model = keras.Sequential([keras.Input((12, 12, 3))] + [
        m for _ in range(6) for m in (layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU())
    ] + [layers.GlobalAveragePooling2D(), layers.Dense(4)])  # fmt: skip
    x, y = torch.randn(16, 12, 12, 3), torch.randint(0, 4, (16,))
    training = diagnose(model, x, y)
    model.eval()
    report = diagnose(model, x, y)
    assert verdicts(report) == verdicts(training) and report.loss == pytest.approx(training.loss, rel=1e-5)
    assert len(report.notes) == 1 and "batch_normalization" in report.notes[0]
    assert all(float(v.value.abs().sum()) in (0.0, 16.0) for v in model.non_trainable_variables if "moving" in v.path)
    with torch.no_grad():
        for _ in range(3):
            model(x, training=True)  # the moving statistics move
    report = diagnose(model, x, y)
    with torch.no_grad():
        assert report.notes == [] and report.loss == pytest.approx(float(nn.functional.cross_entropy(model(x, training=False), y)), rel=1e-5)


# -- initialize --------------------------------------------------------------------------------
def wide():
    return keras.Sequential([keras.Input((512,)), layers.Dense(768, activation="relu"), layers.Dense(512, activation="selu"),
                             layers.Dense(384, activation="tanh"), layers.Dense(10)])  # fmt: skip


@pytest.mark.parametrize("init, variance", [
    ("auto", [2 / 512, 1 / 768, 2 / (512 + 384), 2 / (384 + 10)]),
    ("he_normal", [2 / 512, 2 / 768, 2 / 512, 2 / 384]),
    ("lecun_normal", [1 / 512, 1 / 768, 1 / 512, 1 / 384]),
    ("glorot_uniform", [2 / (512 + 768), 2 / (768 + 512), 2 / (512 + 384), 2 / (384 + 10)]),
    (keras.initializers.VarianceScaling(scale=2, mode="fan_avg", distribution="uniform"),
     [4 / (512 + 768), 4 / (768 + 512), 4 / (512 + 384), 4 / (384 + 10)]),
])  # fmt: skip
def test_initialize_gives_the_variance_the_keras_name_promises(init, variance):
    model = wide()
    plan = initialize(model, init=init, seed=0)
    kernels = [layer.kernel.value.detach() for layer in model.layers]
    measured = [float(k.var()) for k in kernels]
    np.testing.assert_allclose(measured[:3], variance[:3], rtol=0.02)  # the large layers
    np.testing.assert_allclose(measured[3], variance[3], rtol=0.1)  # 3840 weights
    if isinstance(init, str) and init != "auto":  # Keras' own initializer of that name draws the same variance
        own = [float(keras.initializers.get(init)(k.shape).var()) for k in kernels[:3]]
        np.testing.assert_allclose(measured[:3], own, rtol=0.02)
    assert [e.layer for e in plan] == [layer.name for layer in model.layers]
    assert all(float(layer.bias.value.detach().abs().max()) == 0.0 for layer in model.layers)


def test_lsuv_scales_the_pre_activation_of_a_fused_layer():
    model = stack("tanh", "glorot_uniform", depth=4, width=64)
    x, _ = data()
    initialize(model, init="lsuv", data=x)
    h = x
    with torch.no_grad():
        for layer in model.layers[:-1]:
            z = h @ layer.kernel.value + layer.bias.value
            assert float(z.var()) == pytest.approx(1.0, abs=0.1)
            h = torch.tanh(z)


def test_initialize_conv_kernels_with_their_fans():
    model = keras.Sequential([keras.Input((8, 8, 64)), layers.Conv2D(128, 3, activation="relu"), layers.Flatten(), layers.Dense(4)])
    initialize(model, seed=0)
    assert float(model.layers[0].kernel.value.detach().var()) == pytest.approx(2 / (3 * 3 * 64), rel=0.02)


@pytest.mark.filterwarnings(KERAS_NUMPY2)
def test_initialized_model_still_trains_with_keras_fit_and_saves(tmp_path):
    model = stack("relu", keras.initializers.RandomNormal(0.0, 1.0), depth=6, width=32)
    initialize(model, seed=0)
    assert not [f for f in diagnose(model, *data()).findings if f.severity == "error"]
    x, y = (t.numpy() for t in data(512))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.75 * history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5)


def test_trainability_fit_trains_a_keras_model_in_training_mode():
    model = keras.Sequential([keras.Input((20,)), layers.Dense(32, activation="relu"), layers.BatchNormalization(), layers.Dense(3)])
    initialize(model, seed=0)
    norm = model.layers[1]
    history = fit(model, data(256), epochs=3, lr=0.05, progress=False, seed=0)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert float(norm.moving_mean.value.abs().sum()) > 0  # batch statistics were used and tracked


# -- monitoring --------------------------------------------------------------------------------
def test_monitor_callback_in_keras_fit():
    model = stack("relu", "he_normal", depth=3, width=32)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = KerasCallback(every=4, verbose=False)
    x, y = (t.numpy() for t in data(256))
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    rows = callback.monitor.rows
    assert sorted({step for step, *_ in rows}) == [0, 4, 8, 12]
    dense = [layer.name for layer in model.layers]
    assert {layer for _, layer, *_ in rows} == set(dense) | {"(model)"}  # and the model's own rows: loss, output
    assert {layer for _, layer, stat, _ in rows if stat == "dead_fraction"} == set(dense[:-1])  # fused relu, pre-activation
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in model.layers)
    # History holds each epoch's last figures (steps 4 and 12: 8 steps an epoch) and no finding
    last = [r for r in rows if r[0] == 12 and r[2] == "weight_grad_norm"]
    assert history.history["trainability/grad_norm"][1] == pytest.approx(math.sqrt(sum(r[3] ** 2 for r in last)))
    assert history.history["trainability/findings"] == [0.0, 0.0] and not callback.monitor.findings
    assert callback.monitor.optimizer.lr() == pytest.approx(0.05)  # the Keras optimizer: its rate is read


def test_monitor_callback_in_keras_fit_reports_a_finding_once(capsys):
    """N(0, 1) weights in a ReLU stack: the gradient explodes going down (the doctor's verdict at
    step 0, by plain autograd in test_sick_models_get_the_findings_of_their_pytorch_twins)."""
    model = stack("relu", keras.initializers.RandomNormal(0.0, 1.0), depth=6, width=32)
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen: list[dict] = []
    after = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    x, y = (t.numpy() for t in data(256))
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[KerasCallback(every=4), after])
    out = capsys.readouterr().out
    assert out.count("[trainability] exploding_gradients (warning): step 0: ") == 1 and out.count("[trainability]") == 1
    assert history.history["trainability/findings"] == [1.0, 0.0]
    assert seen[0]["trainability/finding/exploding_gradients"] == 1.0  # a callback after this one gets the step's numbers
    assert [i for i, logs in enumerate(seen) if "trainability/grad_norm" in logs] == [0, 4, 8, 12]


def test_monitor_watches_keras_layers_by_name():
    model = stack("relu", "he_normal", depth=3, width=16)
    first = model.layers[0].name
    x, y = data(64)
    with Monitor(model, every=1, layers=[first, f"{first}/activation"]) as monitor:
        nn.functional.cross_entropy(model(x, training=True), y).backward()
        monitor.step(0.0)
    assert {layer for _, layer, *_ in monitor.rows} == {first, f"{first}/activation", "(model)"}
    with pytest.raises(ValueError, match="layers not in the model: nope"):
        Monitor(model, layers=["nope"])


def test_monitor_in_a_torch_loop_finds_a_nan():
    model = stack("relu", "he_normal", depth=3, width=16)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e6)
    x, y = data(64)
    with Monitor(model, every=1) as monitor:
        for _ in range(6):
            loss = nn.functional.cross_entropy(model(x, training=True), y)
            loss.backward()
            monitor.step(loss)
            optimizer.step()
            optimizer.zero_grad()
            if not torch.isfinite(loss):
                break
    assert any(f.kind in ("non_finite", "exploding_gradients") for f in monitor.findings)
    assert any(f.kind == "learning_rate_too_high" for f in monitor.findings)  # at lr 1e6: the cause, named
    assert {layer for _, layer, *_ in monitor.rows} <= {layer.name for layer in model.layers} | {"(model)"}


# -- the doctor command, imports and errors ------------------------------------------------------
def test_doctor_command_on_a_keras_file(capsys):
    assert main(["doctor", f"{EXAMPLE}:selu_model"]) == 0
    out = capsys.readouterr().out
    assert "example_batch()" in out and "HEALTHY" in out and "Dense" in out


def test_doctor_command_on_a_sick_keras_file(tmp_path, capsys):
    path = tmp_path / "sick.py"
    path.write_text(
        "import keras\n"
        "def build(depth=12):\n"
        "    init = keras.initializers.RandomNormal(0.0, 1.0)\n"
        "    return keras.Sequential([keras.Input((64,))] + [keras.layers.Dense(64, activation='sigmoid', kernel_initializer=init)"
        " for _ in range(depth)] + [keras.layers.Dense(10)])\n"
    )
    assert main(["doctor", f"{path}:build", "--batch-size", "128"]) == 1  # 64 inputs: the digits data
    out = capsys.readouterr().out
    assert "digits" in out and "saturated_units" in out and "dense" in out


def test_import_trainability_does_not_import_keras():
    code = "import sys, trainability, trainability.cli, trainability.adapters; assert 'keras' not in sys.modules, 'keras'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_without_keras_the_keras_path_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras fails, as when it is not installed
    with pytest.raises(ValueError, match=r"pip install 'trainability\[keras\]'"):
        keras_adapter.load()
    path = tmp_path / "net.py"
    path.write_text("import keras\ndef build():\n    return keras.Sequential([keras.layers.Dense(1)])\n")
    assert main(["doctor", f"{path}:build"]) == 2
    assert "pip install 'trainability[keras]'" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_keras_on_another_backend_gets_a_clear_error(backend):
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = f"import sys\nfrom trainability.cli import main\nsys.exit(main(['doctor', {str(EXAMPLE)!r} + ':selu_model']))"
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert f"the {backend} backend" in result.stderr and "set KERAS_BACKEND=torch before Keras is imported" in result.stderr
    code = "from trainability.adapters.keras import load\ntry:\n    load()\nexcept ValueError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "set KERAS_BACKEND=torch" in out


def test_a_keras_model_on_jax_gets_the_backend_error():
    code = (
        "import os\nos.environ['KERAS_BACKEND'] = 'jax'\nimport keras, numpy as np, trainability\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "for call in (lambda: trainability.diagnose(model, np.zeros((2, 4))), lambda: trainability.initialize(model),"
        " lambda: trainability.Monitor(model)):\n"
        "    try:\n        call()\n    except ValueError as e:\n        print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if "No module named 'jax'" in result.stderr:
        pytest.skip("jax is not installed (the CLI test above covers a missing backend)")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all("Sequential is a Keras model on the jax backend" in line for line in lines), result.stderr


# -- recurrent layers --------------------------------------------------------------------------
class _LastState(nn.Module):
    """An LSTM (batch first) whose last step's output feeds a Linear head, as Keras' ``LSTM``
    (``return_sequences=False``) then ``Dense``."""

    def __init__(self, lstm: nn.LSTM, head: nn.Linear) -> None:
        super().__init__()
        self.lstm, self.head = lstm, head

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def _lstm_twin(model) -> nn.Module:
    """The Keras LSTM + Dense model in PyTorch with the same weights: gates (input, forget, cell,
    output) in the same order, kernels transposed, Keras' one bias as ``bias_ih``."""
    cell, dense = model.layers[0].cell, model.layers[1]
    units = cell.units
    lstm = nn.LSTM(cell.kernel.shape[0], units, batch_first=True)
    head = nn.Linear(units, dense.kernel.shape[1])
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(cell.kernel.value.T)
        lstm.weight_hh_l0.copy_(cell.recurrent_kernel.value.T)
        lstm.bias_ih_l0.copy_(cell.bias.value)
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(dense.kernel.value.T)
        head.bias.copy_(dense.bias.value)
    return _LastState(lstm, head)


def test_recurrent_layers_are_read_with_fans_per_gate():
    model = keras.Sequential([keras.Input((7, 6)), layers.LSTM(8, return_sequences=True, name="lstm"),
                              layers.GRU(5, return_sequences=True, name="gru"), layers.SimpleRNN(4, name="simple_rnn"),
                              layers.Dense(3, name="dense")])  # fmt: skip
    found = {w.name: (w.role, w.fans, w.gates) for _, _, ws in adapters.weight_modules(model) for w in ws}
    assert found == {
        "lstm/kernel": ("recurrent_input", (6, 8), 4), "lstm/recurrent_kernel": ("recurrent_hidden", (8, 8), 4),
        "gru/kernel": ("recurrent_input", (8, 5), 3), "gru/recurrent_kernel": ("recurrent_hidden", (5, 5), 3),
        "simple_rnn/kernel": ("recurrent_input", (5, 4), 1), "simple_rnn/recurrent_kernel": ("recurrent_hidden", (4, 4), 1),
        "dense": ("dense", (4, 3), 1),
    }  # fmt: skip
    (lstm_kernel,) = [w for _, _, ws in adapters.weight_modules(model) for w in ws if w.name == "lstm/kernel"]
    blocks = list(lstm_kernel.blocks())  # one (units, in) view of the kernel per gate
    assert [tuple(b.shape) for b in blocks] == [(8, 6)] * 4
    assert torch.equal(blocks[1], model.layers[0].cell.kernel.value[:, 8:16].T)


def test_an_lstm_reads_through_time_as_its_pytorch_twin():
    model = keras.Sequential([keras.Input((40, 6)), layers.LSTM(16), layers.Dense(4)])
    x, y = torch.randn(32, 40, 6), torch.randint(0, 4, (32,))
    ours = diagnose(model, x, y)
    twin = diagnose(_lstm_twin(model), x, y)
    (keras_time,), (torch_time,) = ours.time, twin.time
    assert len(keras_time.grad_norms) == 40
    np.testing.assert_allclose(keras_time.grad_norms, torch_time.grad_norms, rtol=1e-3)
    assert {f.kind for f in ours.findings} == {f.kind for f in twin.findings}


def test_a_plain_rnn_over_100_steps_vanishes_through_time_and_the_fix_fits_keras():
    model = keras.Sequential([keras.Input((100, 6)), layers.SimpleRNN(32, name="simple_rnn"), layers.Dense(4)])
    x = torch.randn(32, 100, 6)
    # the label, measured independently: autograd's gradient at the input, first step over last
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    per_step = xg.grad.norm(dim=(0, 2))
    assert per_step[0] / per_step[-1] < 1e-4
    (finding,) = diagnose(model, x, torch.randint(0, 4, (32,))).by_kind("vanishing_through_time")
    assert finding.layers == ["simple_rnn"] and "use an LSTM or GRU layer instead of the plain RNN" in finding.fix


def test_an_lstm_whose_forget_bias_is_already_1_is_not_told_to_set_it():
    # Keras' LSTM starts with unit_forget_bias=True; PyTorch's does not
    model = keras.Sequential([keras.Input((60, 6)), layers.LSTM(16), layers.Dense(4)])
    x, y = torch.randn(32, 60, 6), torch.randint(0, 4, (32,))
    (keras_finding,) = diagnose(model, x, y).by_kind("vanishing_through_time")
    assert "already about 1" in keras_finding.fix and "set the LSTM forget-gate bias to 1" not in keras_finding.fix
    twin = _lstm_twin(model)
    with torch.no_grad():
        twin.lstm.bias_ih_l0.zero_()
    (torch_finding,) = diagnose(twin, x, y).by_kind("vanishing_through_time")
    assert "set the LSTM forget-gate bias to 1" in torch_finding.fix


def test_initialize_a_keras_lstm_per_gate_and_it_still_trains():
    model = keras.Sequential([keras.Input((20, 16)), layers.LSTM(64, name="lstm"), layers.Dense(4)])
    cell = model.layers[0].cell
    with torch.no_grad():
        cell.bias.value.normal_()  # something to reset
    plan = initialize(model)
    schemes = {e.layer: (e.initializer, e.scheme) for e in plan.entries}
    assert schemes["lstm/kernel"] == ("glorot_uniform", "recurrent, forget bias 1")
    assert schemes["lstm/recurrent_kernel"] == ("orthogonal", "recurrent")
    kernel, hidden, bias = cell.kernel.value.detach(), cell.recurrent_kernel.value.detach(), cell.bias.value.detach()
    for g in range(4):  # Glorot per gate: Var = 2 / (16 + 64); each gate's hidden matrix orthogonal
        assert kernel[:, g * 64 : (g + 1) * 64].var().item() == pytest.approx(2 / 80, rel=0.1)
        block = hidden[:, g * 64 : (g + 1) * 64]
        assert torch.allclose(block.T @ block, torch.eye(64), atol=1e-4)
    assert torch.equal(bias[64:128], torch.ones(64)) and not bias[:64].any() and not bias[128:].any()
    x, y = np.random.default_rng(0).normal(size=(256, 20, 16)).astype("float32"), np.arange(256) % 4
    x[np.arange(256), :, 0] += 2.0 * (y[:, None] - 1.5)  # a class signal on every step
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # Dense(4) gives logits
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


class _BothEnds(nn.Module):
    """A bidirectional LSTM whose forward final state (last step) and backward final state (first
    step) feed a Linear head, as Keras' ``Bidirectional(LSTM)`` (merge ``concat``) then ``Dense``."""

    def __init__(self, lstm: nn.LSTM, head: nn.Linear) -> None:
        super().__init__()
        self.lstm, self.head = lstm, head

    def forward(self, x):
        out, h = self.lstm(x)[0], self.lstm.hidden_size
        return self.head(torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1))


def test_a_bidirectional_lstm_is_judged_as_one_layer_like_its_pytorch_twin():
    # each half alone vanishes towards the step it reads first; read together the earliest and the
    # last steps are both close to one half's output, and the middle is the farthest
    model = keras.Sequential([keras.Input((40, 6)), layers.Bidirectional(layers.LSTM(16), name="bi"), layers.Dense(4)])
    x, y = torch.randn(32, 40, 6), torch.randint(0, 4, (32,))
    wrapper, dense = model.layers[0], model.layers[1]
    lstm = nn.LSTM(6, 16, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for suffix, half in (("", wrapper.forward_layer.cell), ("_reverse", wrapper.backward_layer.cell)):
            getattr(lstm, f"weight_ih_l0{suffix}").copy_(half.kernel.value.T)
            getattr(lstm, f"weight_hh_l0{suffix}").copy_(half.recurrent_kernel.value.T)
            getattr(lstm, f"bias_ih_l0{suffix}").copy_(half.bias.value)
            getattr(lstm, f"bias_hh_l0{suffix}").zero_()
    head = nn.Linear(32, 4)
    with torch.no_grad():
        head.weight.copy_(dense.kernel.value.T)
        head.bias.copy_(dense.bias.value)
    ours, twin = diagnose(model, x, y), diagnose(_BothEnds(lstm, head), x, y)
    (keras_time,), (torch_time,) = ours.time, twin.time
    assert keras_time.name == "bi" and keras_time.bidirectional and len(keras_time.grad_norms) == 40
    spread = [min(t.grad_norms) / max(t.grad_norms) for t in (keras_time, torch_time)]
    assert spread[0] == pytest.approx(spread[1], rel=0.2)  # norms in quadrature vs the norm of the sum
    assert not ours.by_kind("exploding_through_time") and not twin.by_kind("exploding_through_time")
    assert {f.kind for f in ours.findings} == {f.kind for f in twin.findings}


# -- transformers: MultiHeadAttention, the residual stream across Add layers ------------------------
TOKENS, STEPS = 120, 12


def keras_encoder(blocks=2, d=32, heads=4, ffn=64, *, pre_norm=False, kernel="glorot_uniform", embeddings="uniform"):
    """The textbook's encoder written inline: each block adds an attention branch and a
    feed-forward branch back with Add, post-norm (LayerNormalization after each Add) or pre-norm
    (before each branch, and once at the end); mean pooling and a classifier."""
    ids = keras.Input((STEPS,), dtype="int32")
    x = layers.Embedding(TOKENS, d, embeddings_initializer=embeddings)(ids)
    for _ in range(blocks):
        for branch in ("attention", "feed-forward"):
            h = layers.LayerNormalization()(x) if pre_norm else x
            if branch == "attention":
                h = layers.MultiHeadAttention(heads, d // heads, kernel_initializer=kernel)(h, h)
            else:
                h = layers.Dense(d, kernel_initializer=kernel)(layers.Dense(ffn, activation="relu", kernel_initializer=kernel)(h))
            x = layers.Add()([h, x])
            if not pre_norm:
                x = layers.LayerNormalization()(x)
    if pre_norm:
        x = layers.LayerNormalization()(x)
    return keras.Model(ids, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))


class _TorchEncoder(nn.Module):
    def __init__(self, blocks, d, heads, ffn, pre_norm):
        super().__init__()
        self.embed = nn.Embedding(TOKENS, d)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True, norm_first=pre_norm,
                                                               layer_norm_eps=1e-3) for _ in range(blocks))  # fmt: skip
        self.norm = nn.LayerNorm(d, eps=1e-3) if pre_norm else nn.Identity()
        self.head = nn.Linear(d, 3)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))


def torch_encoder_twin(model, blocks, d, heads, ffn, pre_norm=False) -> _TorchEncoder:
    """``nn.TransformerEncoderLayer`` s with the Keras encoder's weights: q, k and v kernels
    ``(d, heads, head_dim)`` packed into ``in_proj_weight``, the output kernel ``(heads, head_dim, d)``
    into ``out_proj``, Dense kernels transposed."""
    twin = _TorchEncoder(blocks, d, heads, ffn, pre_norm)
    of = lambda kind: [layer for layer in model.layers if type(layer).__name__ == kind]  # noqa: E731
    value = lambda v: v.value.detach()  # noqa: E731
    norms, denses, attention = of("LayerNormalization"), of("Dense"), of("MultiHeadAttention")
    with torch.no_grad():
        twin.embed.weight.copy_(value(of("Embedding")[0].embeddings))
        for i, layer in enumerate(twin.layers):
            mha = attention[i]
            projections = (mha._query_dense, mha._key_dense, mha._value_dense)
            layer.self_attn.in_proj_weight.copy_(torch.cat([value(p.kernel).reshape(d, -1).T for p in projections]))
            layer.self_attn.in_proj_bias.copy_(torch.cat([value(p.bias).reshape(-1) for p in projections]))
            layer.self_attn.out_proj.weight.copy_(value(mha._output_dense.kernel).reshape(-1, d).T)
            layer.self_attn.out_proj.bias.copy_(value(mha._output_dense.bias))
            for linear, dense in ((layer.linear1, denses[2 * i]), (layer.linear2, denses[2 * i + 1])):
                linear.weight.copy_(value(dense.kernel).T)
                linear.bias.copy_(value(dense.bias))
            for norm, keras_norm in ((layer.norm1, norms[2 * i]), (layer.norm2, norms[2 * i + 1])):
                norm.weight.copy_(value(keras_norm.gamma))
                norm.bias.copy_(value(keras_norm.beta))
        if pre_norm:
            twin.norm.weight.copy_(value(norms[-1].gamma))
            twin.norm.bias.copy_(value(norms[-1].beta))
        twin.head.weight.copy_(value(denses[-1].kernel).T)
        twin.head.bias.copy_(value(denses[-1].bias))
    return twin


def one_hot_rows(twin, ids) -> float:
    """The label, by a plain forward of the twin: the fraction of the first attention layer's rows
    (per sample, head and query) whose largest probability is over 0.99 (near one-hot)."""
    layer = twin.layers[0]
    with torch.no_grad():
        x = twin.embed(ids)
        h = layer.norm1(x) if layer.norm_first else x
        _, probabilities = layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)
    return float((probabilities.amax(-1) > 0.99).float().mean())


ENCODERS = {  # name: (blocks, d, heads, ffn, pre_norm, Keras initializers, saturated)
    "post-norm, 2 x 32, Keras' defaults": (2, 32, 4, 64, False, {}, False),
    # (with Keras' uniform(+-0.05) embeddings a pre-norm stream grows 60x over 3 blocks and both
    # twins get exploding_gradients at the first block, 165x: the stream, not attention)
    "pre-norm, 3 x 48, N(0, 1) embeddings": (3, 48, 6, 96, True, {"embeddings": keras.initializers.RandomNormal(0.0, 1.0)}, False),
    "post-norm, 4 x 16, N(0, 0.02) as BERT": (4, 16, 2, 32, False, {"kernel": keras.initializers.RandomNormal(0.0, 0.02),
                                                                     "embeddings": keras.initializers.RandomNormal(0.0, 0.02)}, False),
    "post-norm, 2 x 32, N(0, 1) attention and embeddings": (2, 32, 4, 64, False, {"kernel": keras.initializers.RandomNormal(0.0, 1.0),
                                                                                   "embeddings": keras.initializers.RandomNormal(0.0, 1.0)}, True),
    "pre-norm, 2 x 48, N(0, 1) attention and embeddings": (2, 48, 6, 96, True, {"kernel": keras.initializers.RandomNormal(0.0, 1.0),
                                                                                 "embeddings": keras.initializers.RandomNormal(0.0, 1.0)}, True),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_a_keras_encoder_gets_the_verdicts_of_its_pytorch_twin(name):
    blocks, d, heads, ffn, pre_norm, inits, saturated = ENCODERS[name]
    model = keras_encoder(blocks, d, heads, ffn, pre_norm=pre_norm, **inits)
    twin = torch_encoder_twin(model, blocks, d, heads, ffn, pre_norm)
    g = torch.Generator().manual_seed(4)
    ids, y = torch.randint(0, TOKENS, (16, STEPS), generator=g), torch.randint(0, 3, (16,), generator=g)
    ours, theirs = diagnose(model, ids, y), diagnose(twin, ids, y)
    assert ours.loss == pytest.approx(theirs.loss, rel=1e-4)  # the same network
    assert verdicts(ours) == verdicts(theirs), (ours.verdict(), theirs.verdict())
    mha = next(layer for layer in model.layers if type(layer).__name__ == "MultiHeadAttention")
    roles = [(w.role, w.fans) for w in adapters.module_weights(mha.name, mha)]
    assert ours.unread == [] and roles == [("attention_q", (d, d)), ("attention_k", (d, d)), ("attention_v", (d, d)), ("attention_out", (d, d))]
    adds = [layer.name for layer in model.layers if type(layer).__name__ == "Add"]
    assert [b.name for b in ours.blocks] == [*adds, f"{adds[-1]}:output"]  # the stream entering each Add's block, and leaving
    label = one_hot_rows(twin, ids)
    assert (label > 0.5) == saturated and (label < 0.05) != saturated  # most rows one-hot, or almost none
    if saturated:
        (ours_found,), (theirs_found,) = ours.by_kind("saturated_units"), theirs.by_kind("saturated_units")
        assert ours_found.severity == "error" and ours_found.message.split("about ")[1][:6] == theirs_found.message.split("about ")[1][:6]
    else:
        assert ours.healthy, ours.verdict()


def test_initialize_gives_a_keras_encoder_the_transformer_scheme():
    model = keras_encoder(kernel=keras.initializers.RandomNormal(0.0, 1.0), embeddings=keras.initializers.RandomNormal(0.0, 1.0))
    ids, y = torch.randint(0, TOKENS, (16, STEPS)), torch.randint(0, 3, (16,))
    assert diagnose(model, ids, y).by_kind("saturated_units")
    plan = initialize(model)
    attention = [e for e in plan if e.type == "MultiHeadAttention"]
    assert len(attention) == 8 and {(e.scheme, e.initializer) for e in attention} == {("transformer", "random_normal(0.02)")}
    assert {e.fan_in for e in attention} == {32}  # (d, heads, head_dim) read as d -> heads x head_dim
    mha = next(layer for layer in model.layers if type(layer).__name__ == "MultiHeadAttention")
    query = mha._query_dense.kernel.value  # Keras' own variable, written in place
    assert float(query.detach().std()) == pytest.approx(0.02, rel=0.15)
    assert diagnose(model, ids, y).healthy


class _TransformerBlock(keras.layers.Layer):
    """Keras' own text-classification example: a block as a layer of its own, adding with ``+``."""

    def __init__(self, d, heads, ffn, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads=heads, key_dim=d)
        self.ffn = keras.Sequential([layers.Dense(ffn, activation="relu"), layers.Dense(d)])
        self.norm1, self.norm2 = layers.LayerNormalization(epsilon=1e-6), layers.LayerNormalization(epsilon=1e-6)

    def call(self, x):
        x = self.norm1(x + self.att(x, x))
        return self.norm2(x + self.ffn(x))


def test_transformer_blocks_written_as_keras_layers_are_read_as_torch_modules_are():
    ids = keras.Input((STEPS,), dtype="int32")
    x = layers.Embedding(TOKENS, 32, embeddings_initializer=keras.initializers.RandomNormal(0.0, 1.0))(ids)
    for i in range(3):
        x = _TransformerBlock(32, 2, 64, name=f"block_{i}")(x)
    model = keras.Model(ids, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))
    tokens, y = torch.randint(0, TOKENS, (16, STEPS)), torch.randint(0, 3, (16,))
    report = diagnose(model, tokens, y)
    assert [b.name for b in report.blocks] == ["block_0", "block_1", "block_2", "block_2:output"] and report.healthy, report.verdict()
    for block in ("block_0", "block_1", "block_2"):
        for v in model.get_layer(block).att.trainable_variables:
            if "query" in v.path or "key" in v.path:
                with torch.no_grad():
                    v.value.normal_(0.0, 1.0)
    (saturated,) = diagnose(model, tokens, y).by_kind("saturated_units")
    assert saturated.severity == "error" and "block_0/multi_head_attention" in saturated.message
    plan = initialize(model)
    assert {e.scheme for e in plan if e.type == "MultiHeadAttention"} == {"transformer"}
    assert diagnose(model, tokens, y).healthy


# -- separable and channels-first convolutions ------------------------------------------------
def conv_twin(model) -> nn.Sequential:
    """A Keras convolution stack in PyTorch with the same weights: ``SeparableConv2D`` as a
    depthwise ``Conv2d(groups=in)`` and a 1 x 1 ``Conv2d``; kernels ``(*kernel, in, out)`` as
    ``(out, in, *kernel)``; the input channels first."""
    out: list[nn.Module] = []
    value = lambda v: v.value.detach()  # noqa: E731
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "SeparableConv2D":
            depthwise, pointwise = value(layer.depthwise_kernel), value(layer.pointwise_kernel)
            channels, multiplier = depthwise.shape[2], depthwise.shape[3]
            a = nn.Conv2d(channels, channels * multiplier, depthwise.shape[0], padding="same", groups=channels, bias=False)
            b = nn.Conv2d(channels * multiplier, pointwise.shape[-1], 1)
            with torch.no_grad():
                a.weight.copy_(depthwise.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, *depthwise.shape[:2]))
                b.weight.copy_(pointwise.permute(3, 2, 0, 1))
                b.bias.copy_(value(layer.bias))
            out += [a, b, nn.ReLU()]
        elif kind == "Conv2D":
            kernel = value(layer.kernel)
            conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], padding="same")
            with torch.no_grad():
                conv.weight.copy_(kernel.permute(3, 2, 0, 1))
                conv.bias.copy_(value(layer.bias))
            out += [conv, nn.ReLU()]
        elif kind == "GlobalAveragePooling2D":
            out += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif kind == "Dense":
            dense = nn.Linear(*layer.kernel.shape)
            with torch.no_grad():
                dense.weight.copy_(value(layer.kernel).T)
                dense.bias.copy_(value(layer.bias))
            out.append(dense)
    return nn.Sequential(*out)


@pytest.mark.parametrize("depth, width", [(6, 16), (12, 8)])
def test_separable_convolutions_are_read_as_their_twins_and_initialized_per_kernel(depth, width):
    """Keras' own glorot_uniform takes a depthwise kernel's (3, 3, in, 1) input channels for its
    fan-in, 9 x in instead of 9: its stacks vanish, as their twins do; after initialize (the
    depthwise kernel Glorot's, as it feeds the pointwise one; the pointwise one He's) both train."""
    model = keras.Sequential([keras.Input((16, 16, 3))] + [
        layers.SeparableConv2D(width, 3, padding="same", activation="relu") for _ in range(depth)
    ] + [layers.GlobalAveragePooling2D(), layers.Dense(10)])  # fmt: skip
    x, y = torch.randn(16, 16, 16, 3), torch.randint(0, 10, (16,))
    first = model.layers[0]
    assert [(w.name, w.fans) for w in adapters.module_weights(first.name, first)] == [
        (f"{first.name}/depthwise_kernel", (9, 9)), (f"{first.name}/pointwise_kernel", (3, width))]  # fmt: skip
    ours, theirs = diagnose(model, x, y), diagnose(conv_twin(model), x.permute(0, 3, 1, 2), y)
    assert verdicts(ours) == verdicts(theirs) and {"vanishing_gradients", "init_mismatch"} <= {f.kind for f in ours.findings}
    plan = initialize(model)
    assert [e.initializer for e in plan.entries[:2]] == ["glorot_uniform", "he_normal"]
    ours, theirs = diagnose(model, x, y), diagnose(conv_twin(model), x.permute(0, 3, 1, 2), y)
    assert ours.healthy and theirs.healthy, (ours.verdict(), theirs.verdict())
    assert ours.loss == pytest.approx(theirs.loss, rel=1e-4)


@pytest.mark.parametrize("depth", [4, 8])
def test_channels_first_convolutions_count_units_along_their_channels(depth):
    """Half the channels of the second layer biased to -20 never fire: as in the twin, the dead
    fraction is per channel (axis 1), not per column of the image (the last axis)."""
    model = keras.Sequential([keras.Input((3, 12, 12))] + [
        layers.Conv2D(16, 3, padding="same", activation="relu", data_format="channels_first", kernel_initializer="he_normal")
        for _ in range(depth)
    ] + [layers.GlobalAveragePooling2D(data_format="channels_first"), layers.Dense(4)])  # fmt: skip
    bias = model.layers[1].bias.value
    with torch.no_grad():
        bias[:8] = -20.0
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 4, (16,))
    ours, theirs = diagnose(model, x, y), diagnose(conv_twin(model), x, y)
    dead = [s.dead_fraction for s in ours.layers if s.dead_fraction is not None]
    assert dead == pytest.approx([s.dead_fraction for s in theirs.layers if s.dead_fraction is not None])
    assert dead[1] == pytest.approx(0.5)
    assert per_layer(ours)["gradient"] == pytest.approx(per_layer(theirs)["gradient"], rel=1e-4)
    assert verdicts(ours) == verdicts(theirs)


class _Bilinear(keras.layers.Layer):
    """A layer applying its own weight as nothing the doctor knows: x^T W x per output."""

    def build(self, shape):
        self.w = self.add_weight(shape=(3, shape[-1], shape[-1]), name="kernel")

    def call(self, x):
        return keras.ops.einsum("bi,oij,bj->bo", x, self.w, x)


def test_layers_whose_weights_are_not_read_are_named_in_the_report():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, _Bilinear(name="bilinear")(layers.Dense(16, activation="relu")(inputs)))
    report = diagnose(model, torch.randn(16, 16), torch.randint(0, 3, (16,)))
    assert report.unread == ["bilinear (Layer)"]  # named by its Keras class
    assert "Not read: bilinear (Layer)" in str(report)
    # a Dense stack has none, nor attention, einsum and separable layers
    dense = keras.Sequential([keras.Input((8,)), layers.Dense(8, activation="relu"), layers.PReLU(), layers.Dense(2)])
    assert keras_adapter.unread_weights(dense) == []
    sequence = keras.Input((10, 16))
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(sequence, sequence)
    mixed = layers.EinsumDense("btd,de->bte", output_shape=(None, 12), name="einsum")(attended)
    images = layers.SeparableConv1D(4, 3, name="separable")(layers.Reshape((12, 10))(layers.Permute((2, 1))(mixed)))
    model = keras.Model(sequence, layers.Dense(3)(layers.GlobalAveragePooling1D()(images)))
    assert keras_adapter.unread_weights(model) == []


def test_repair_refuses_a_keras_model_in_one_line():
    model = keras.Sequential([keras.Input((2,)), layers.Dense(8, activation="sigmoid"), layers.Dense(2)])
    from trainability import repair

    with pytest.raises(ValueError, match="cannot yet change a Keras model's layers; for a Keras model use trainability.diagnose"):
        repair(model, "moons", budget_steps=10)
