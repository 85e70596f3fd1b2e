"""``trainability repair``: find the smallest change that makes a model train; a thin layer over
:func:`trainability.repair`."""

from __future__ import annotations

import argparse

from trainability.cli._common import UsageError, writable
from trainability.cli.doctor import _user_model


def run(args: argparse.Namespace) -> int:
    from trainability import datasets
    from trainability.models import BUILTINS, from_spec
    from trainability.repair import repair

    if args.budget_steps < 10:
        raise UsageError(f"--budget-steps must be at least 10 (a shorter run cannot show whether a network trains), got {args.budget_steps}")
    if args.out:
        writable(args.out, "--out", folder=True)  # before the search, not after
    if args.model.partition(":")[0] in BUILTINS:
        splits = datasets.load(args.data)
        model = from_spec(args.model, in_features=splits.in_features, out_features=splits.n_outputs)
    else:
        model = _user_model(args.model)  # a Keras file gets the PyTorch backend, as for the doctor
    result = repair(model, args.data, budget_steps=args.budget_steps, lr=args.lr, optimizer=args.optimizer,
                    momentum=args.momentum, batch_size=args.batch_size, all=args.all, seed=args.seed,
                    workers=args.workers, out=args.out, progress=not args.quiet)  # fmt: skip
    if args.json:
        print(result.to_json())
    else:
        print(result.summary())
        if args.out:
            print(f"\nthe page: {args.out}/report.html (and learning_curves.png, doctor_before.png, doctor_after.png, "
                  "snippet.py, result.json)")  # fmt: skip
    return 0 if result.trains else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "repair",
        help="find the smallest change that makes a model train, prove it, and print it as code",
        description="Probe the model (the doctor at initialization; if it finds no error, a training run under the "
        "Monitor); if it does not train, turn the findings into ladders of fixes (re-initialize, scale residual branches, "
        "forget-gate bias then chrono init, GRU/LSTM for a plain RNN, swap the activation, add normalization, qk-layernorm, "
        "clip gradients, a learning rate from the range test, warm-up, Adam's epsilon), screen each with the doctor before "
        "training it, and race the ones it clears from the same initial weights (successive halving); the first that "
        "trains wins. Exit 0 when the model trains (as it is or repaired), 1 when nothing made it train, 2 on a usage error.",
    )  # fmt: skip
    p.add_argument("model", help="mlp:depth=30,activation=relu,init=default, or path/to/file.py:factory(depth=50)")
    p.add_argument("--data", required=True, help="digits, mnist1d, moons, circles, blobs, or a .npz (x, y) / .csv file")
    p.add_argument("--budget-steps", type=int, default=300, help="training steps one run may take: the probe and each candidate (default 300)")
    p.add_argument("--all", action="store_true", help="train every candidate the doctor clears for the whole budget and rank them, "
                   "instead of racing them and stopping at the first that trains")
    p.add_argument("--out", metavar="DIR", help="write report.html, its PNGs, snippet.py and result.json here")
    p.add_argument("--optimizer", default="sgd", help="sgd, adam, adamw, rmsprop, nadam (default sgd)")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer's, as trainability.fit)")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum for sgd and rmsprop (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument("--workers", type=int, help="processes for candidates (default: automatic, at most the cores)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)
