import pytest
import torch
from torch import nn

from trainability import fold_batchnorm, mlp


def randomize(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.3, 3.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return model.eval()


@pytest.mark.parametrize("where", ["before", "after"])
def test_mlp_batchnorm_folds_exactly(where):
    model = randomize(mlp(16, 4, depth=5, width=32, batch_norm=where))
    folded = fold_batchnorm(model)
    x = torch.randn(100, 16)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # the original is untouched


def test_conv_batchnorm_folds():
    model = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 36, 2)))  # fmt: skip
    folded = fold_batchnorm(model)
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0


def test_batchnorm_before_conv_is_left_alone():
    # zero padding sees a BN shift differently, so BN feeding a padded conv is not folded
    model = randomize(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1)))
    folded = fold_batchnorm(model)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert isinstance(folded[1], nn.BatchNorm2d)


def test_untraceable_model_raises_clearly():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn = nn.Linear(4, 4), nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.a(x)) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="cannot trace Branchy with torch.fx"):
        fold_batchnorm(Branchy())
