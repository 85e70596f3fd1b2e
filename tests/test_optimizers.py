"""fit's optimizers by name use torch's fused kernels where the parameters allow, with the same updates."""

import torch

from trainability import fit, mlp
from trainability.training import make_optimizer


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 20, generator=g), torch.randint(0, 3, (8,), generator=g)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_named_optimizers_are_fused_and_update_like_the_default_implementation():
    for name, cls, kwargs in [("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
                              ("adam", torch.optim.Adam, {"lr": 1e-2}), ("adamw", torch.optim.AdamW, {"lr": 1e-2})]:  # fmt: skip
        torch.manual_seed(0)
        a, b = mlp(20, 3, depth=3, width=16), mlp(20, 3, depth=3, width=16)
        b.load_state_dict(a.state_dict())
        named = make_optimizer(name, a, **kwargs)
        assert named.param_groups[0]["fused"] is True, name
        reference = cls(b.parameters(), weight_decay=0.0, **kwargs)  # torch's default: the per-tensor loop (fit: no decay)
        assert not reference.param_groups[0]["fused"]
        assert torch.allclose(_train(a, named), _train(b, reference), atol=1e-6), name


def test_parameters_the_fused_kernels_refuse_get_the_plain_optimizer():
    model = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))])
    opt = make_optimizer("sgd", model, lr=0.1, momentum=0.9)
    assert not opt.param_groups[0]["fused"]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # torch checks fused support only here: the plain optimizer must not raise
    assert make_optimizer("rmsprop", mlp(4, 2, depth=1, width=4)).defaults.get("fused") is None  # no fused RMSprop in torch


def test_fit_with_a_named_optimizer_trains_the_same_way_twice():
    x, y = torch.randn(64, 6), torch.randint(0, 2, (64,))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = mlp(6, 2, depth=2, width=8)
        fit(model, (x, y), epochs=2, optimizer="sgd", momentum=0.9, seed=0, progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
