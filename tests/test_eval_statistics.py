"""A model in eval mode whose BatchNorms no batch has updated (running mean 0, variance 1) does not
normalize at all: that forward is neither what a training step runs (batch statistics) nor what a
trained model runs. The doctor judges the training step's normalization there, says so, and
otherwise respects eval mode. Keras' BatchNormalization: tests/test_keras.py."""

from __future__ import annotations

import copy

import pytest
import torch
from architectures import images, labels, resnet
from torch import nn

from trainability import adapters, diagnose, mlp

pytestmark = pytest.mark.usefixtures("one_thread")


def cnn(depth: int, width: int, classes: int = 10) -> nn.Sequential:
    """Conv-BN-ReLU blocks at PyTorch's default init (a third of He's variance), pooled. Judged in
    eval mode as it stands (identity norms) the gradient vanished, x0.29 a layer."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(3 if i == 0 else width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


def resnet50() -> nn.Module:
    """ResNet-50 from ``transformers``' default config (bottleneck blocks 3, 4, 6, 3; 23.5M weights).
    Judged in eval mode as it stands, its first loss was 19.9 (an overconfident start); in a
    training step 2.5."""
    import transformers

    return transformers.ResNetForImageClassification(transformers.ResNetConfig(num_labels=10))


def pixels(size: int = 32) -> dict[str, torch.Tensor]:
    return {"pixel_values": images(8, size), "labels": labels()}


def tensors(shape: tuple[int, ...], classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(*shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)


MODELS = {
    "transformers ResNet-18-like (basic blocks), 32 x 32": (resnet, lambda: pixels(32)),
    "transformers ResNet-50, 64 x 64": (resnet50, lambda: pixels(64)),
    "conv-BN-ReLU x 8, width 32": (lambda: cnn(8, 32), lambda: tensors((16, 3, 16, 16))),
    "conv-BN-ReLU x 20, width 16": (lambda: cnn(20, 16), lambda: tensors((16, 3, 12, 12))),
    "MLP, BN before ReLU, 12 x 64": (lambda: mlp(20, 10, depth=12, width=64, batch_norm="before"), lambda: tensors((64, 20))),
}


def run(model: nn.Module, batch) -> object:
    return diagnose(model, batch) if isinstance(batch, dict) else diagnose(model, *batch)


def first_layer_gradient_ratio(model: nn.Module, batch) -> float:
    """By plain autograd, in the model's mode as it stands, on a copy (a training-mode pass moves
    the running statistics): the gradient RMS at the first weight layer's output over the last
    one's, per sample and channel, summed over the pixels that share the channel's weights."""
    model, outputs = copy.deepcopy(model), []
    found = adapters.weight_modules(model)
    first, last = found[0][1], found[-1][1]
    handles = [m.register_forward_hook(lambda _m, _a, out: (out.retain_grad(), outputs.append(out))[-1]) for m in (first, last)]
    try:
        out = model(**batch) if isinstance(batch, dict) else model(batch[0])
        loss = out.loss if isinstance(batch, dict) else nn.functional.cross_entropy(out, batch[1])
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    summed = [o.grad.sum(tuple(range(2, o.dim()))) if o.dim() > 2 else o.grad for o in outputs]
    rms = [float(g.pow(2).mean().sqrt()) for g in summed]
    return rms[0] / rms[-1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_mode_with_never_updated_batch_norms_gets_the_training_steps_verdict(name):
    make, data = MODELS[name]
    model, batch = make(), data()
    assert first_layer_gradient_ratio(model.train(), batch) > 1e-2  # the label, by autograd: a training step's gradients
    trained_step = run(model, batch)
    report = run(model.eval(), batch)
    assert [(f.kind, f.severity) for f in report.findings] == [(f.kind, f.severity) for f in trained_step.findings] == []
    assert report.loss == pytest.approx(trained_step.loss, rel=1e-5)
    (note,) = report.notes
    assert "running statistics no batch has updated yet" in note and "Note: " in report.verdict()
    assert not model.training and all(not m.training for m in model.modules())  # the model is left in eval mode


def test_what_the_eval_pass_would_have_judged_is_an_artifact():
    """The forward the doctor no longer judges: identity norms over PyTorch's default conv init
    lose the gradient 2x a layer, which no training step sees."""
    model, batch = cnn(8, 32), tensors((16, 3, 16, 16))
    assert first_layer_gradient_ratio(model.eval(), batch) < 1e-2 < first_layer_gradient_ratio(model.train(), batch)


def test_one_sample_has_no_batch_statistics_and_the_note_says_so():
    model, (x, y) = cnn(4, 8).eval(), tensors((1, 3, 8, 8))
    report = diagnose(model, x, y)  # one sample's statistics are not a batch's (BatchNorm1d cannot even take them)
    (note,) = report.notes
    assert "with one sample this pass could not use the batch's statistics" in note


def test_trained_statistics_are_used_as_they_are():
    model, (x, y) = cnn(6, 16), tensors((32, 3, 12, 12))
    with torch.no_grad():
        for _ in range(5):
            model.train()(x)  # the running statistics move off 0 and 1
    model.eval()
    assert adapters.untouched_statistics(model) == []
    report = diagnose(model, x, y)
    with torch.no_grad():
        assert report.loss == pytest.approx(float(nn.functional.cross_entropy(model(x), y)), rel=1e-5)  # eval mode's loss
    assert report.notes == []
    one_fresh = cnn(6, 16).eval()
    one_fresh[1].load_state_dict(model[1].state_dict())  # a checkpoint's statistics count as updated
    assert [n for n, _ in adapters.untouched_statistics(one_fresh)] == [str(i) for i in range(4, 18, 3)]
