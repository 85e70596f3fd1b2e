import pytest
import torch
from torch import nn

from trainability import mlp
from trainability.models import from_spec, parse_kwargs


def kinds(model):
    return [type(m).__name__ for m in model]


def test_mlp_layout_and_init():
    model = mlp(10, 3, depth=2, width=16, activation="leaky_relu")
    assert kinds(model) == ["Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"]
    assert model[0].weight.shape == (16, 10) and model[-1].weight.shape == (3, 16)
    assert torch.all(model[0].bias == 0)  # initialized: biases zero


def test_batch_norm_before_drops_bias_and_after_follows_activation():
    before = mlp(10, 3, depth=2, width=16, batch_norm="before")
    assert kinds(before)[:3] == ["Linear", "BatchNorm1d", "ReLU"] and before[0].bias is None
    after = mlp(10, 3, depth=2, width=16, batch_norm="after")
    assert kinds(after)[:3] == ["Linear", "ReLU", "BatchNorm1d"] and after[0].bias is not None


def test_selu_dropout_is_alpha_dropout_and_others_plain():
    assert isinstance(mlp(4, 2, depth=1, width=4, activation="selu", dropout=0.1)[2], nn.AlphaDropout)
    assert type(mlp(4, 2, depth=1, width=4, activation="relu", dropout=0.1)[2]) is nn.Dropout


def test_module_activation_is_copied_per_layer():
    model = mlp(4, 2, depth=2, width=4, activation=nn.PReLU())
    assert model[1] is not model[3] and isinstance(model[1], nn.PReLU)


def test_init_default_keeps_pytorch_default():
    torch.manual_seed(0)
    a = mlp(50, 2, depth=1, width=50, init="default")
    assert a[0].weight.var().item() == pytest.approx(1 / (3 * 50), rel=0.15)
    assert a[0].bias.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [({"depth": 0}, "depth must be a positive int, got 0"), ({"width": 2.5}, "width must be a positive int"),
     ({"batch_norm": "middle"}, "batch_norm must be None, 'before' or 'after'"), ({"dropout": 1.0}, "dropout must be in [0, 1)"),
     ({"activation": "sinus"}, "unknown activation 'sinus'")],
)
def test_mlp_bad_input(kwargs, message):
    args = {"depth": 2, "width": 8, **kwargs}
    with pytest.raises(ValueError) as excinfo:
        mlp(4, 2, **args)
    assert message in str(excinfo.value)


def test_parse_kwargs_and_builtin_spec():
    assert parse_kwargs("depth=5, activation=relu,init=default,dropout=0.1") == {
        "depth": 5, "activation": "relu", "init": "default", "dropout": 0.1,
    }
    model = from_spec("mlp:depth=3,width=7,activation=tanh", in_features=5, out_features=2)
    assert kinds(model).count("Tanh") == 3 and model[0].in_features == 5


def test_file_spec(tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\ndef build(depth=2):\n    return nn.Sequential(*[nn.Linear(3, 3) for _ in range(depth)])\n"
                    "def not_a_model():\n    return 3\n")
    assert len(from_spec(f"{path}:build(depth=4)")) == 4
    with pytest.raises(ValueError, match="returned int, not a torch.nn.Module"):
        from_spec(f"{path}:not_a_model")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        from_spec(f"{path}:nope")
    with pytest.raises(ValueError, match="model file not found"):
        from_spec(f"{tmp_path}/missing.py:build")
    with pytest.raises(ValueError, match="cannot read model spec 'resnet'"):
        from_spec("resnet")
    with pytest.raises(ValueError, match="expected key=value, got 'depth'"):
        from_spec("mlp:depth", in_features=2, out_features=2)
