"""``trainability demo``: the textbook's vanishing-gradient story on built-in data."""

from __future__ import annotations

import argparse

from trainability.cli._common import UsageError


def run(args: argparse.Namespace) -> int:
    """The textbook on built-in data: a deep ReLU MLP with PyTorch's default init, diagnosed,
    fixed with initialize(), diagnosed again, and both trained briefly."""
    import torch

    from trainability import datasets, fit, initialize, mlp, theory
    from trainability.doctor import diagnose

    if args.depth < 2 or args.epochs < 1:
        raise UsageError(f"--depth must be >= 2 and --epochs >= 1, got {args.depth} and {args.epochs}")
    digits = datasets.load("digits")
    x, y = digits.train.x[:256], digits.train.y[:256]
    print(f"== {args.depth}-layer ReLU MLP (width 100) on scikit-learn digits, PyTorch's default init ==\n")
    torch.manual_seed(0)
    sick = mlp(64, 10, depth=args.depth, width=100, activation="relu", init="default")
    report = diagnose(sick, x, y)
    print(report.verdict())
    summary = theory.summary("relu", 1 / 3)
    print(f"\nmean-field theory: sigma_w^2 = 1/3 gives chi_1 = {summary['chi_1']:.3g} ({summary['phase']}), "
          f"trainable depth about {summary['max_trainable_depth']:.1f} layers\n")
    healthy = mlp(64, 10, depth=args.depth, width=100, activation="relu", init="default")
    healthy.load_state_dict(sick.state_dict())
    print("== the same network after trainability.initialize(model) ==\n")
    print(initialize(healthy, seed=0))
    print()
    print(diagnose(healthy, x, y).verdict())
    print(f"\n== training both for {args.epochs} epochs (SGD, momentum 0.9, lr 0.01, batch 32) ==\n")
    results = {}
    for name, model in (("PyTorch default", sick), ("initialize()", healthy)):
        history = fit(model, digits.train, val_data=digits.validation, epochs=args.epochs,
                      optimizer="sgd", lr=0.01, momentum=0.9, seed=0, progress=False)  # fmt: skip
        results[name] = history.metric("val_accuracy")[-1]
        print(f"{name:16s} validation accuracy {results[name]:.3f}")
    if args.plot:
        report.plot(args.plot)
        print(f"\ndoctor's plot of the default-init network written to {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the textbook's vanishing-gradient demo on built-in data, diagnosed and fixed")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--plot", metavar="FILE", help="write the doctor's plot of the default-init network")
    p.set_defaults(run=run)
