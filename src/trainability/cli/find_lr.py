"""``trainability find-lr``: the learning-rate range test on a model and data; a thin layer over
:func:`trainability.find_lr`."""

from __future__ import annotations

import argparse

from trainability.cli._common import PICTURES, UsageError, writable


def run(args: argparse.Namespace) -> int:
    import json

    from trainability import datasets
    from trainability.lr_finder import find_lr
    from trainability.models import BUILTINS, from_spec

    picture = writable(args.plot, "--plot", suffixes=PICTURES) if args.plot else None  # before the test, not after
    if args.steps < 10:
        raise UsageError(f"--steps must be at least 10 (a few hundred is usual), got {args.steps}")
    splits = datasets.load(args.data)
    if args.model.partition(":")[0] in BUILTINS:
        model = from_spec(args.model, in_features=splits.in_features, out_features=splits.n_outputs)
    else:
        from trainability.cli.doctor import _user_model

        model = _user_model(args.model)
    test = find_lr(model, splits, optimizer=args.optimizer, momentum=args.momentum, batch_size=args.batch_size,
                   start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps, seed=args.seed)  # fmt: skip
    if args.json:
        print(json.dumps(test.to_dict(), indent=2))
    else:
        print(test.summary())
    if picture is not None:
        print(f"the curve: {test.plot(picture)}")
    return 0 if test.falls else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "find-lr",
        help="the learning-rate range test (Smith 2017): the rate to train with, and its curve",
        description="Train a copy of the model for a few hundred steps while the learning rate grows exponentially from "
        "--start-lr to --end-lr, and suggest a rate ten times below the one where the smoothed loss was lowest before it "
        "turned up. Exit 0 with a suggestion, 1 when the loss fell nowhere in the range (no rate trains the network as it "
        "is: diagnose it first), 2 on a usage error.",
    )  # fmt: skip
    p.add_argument("model", help="mlp:depth=10,activation=relu, or path/to/file.py:factory(depth=50)")
    p.add_argument("--data", required=True, help="digits, mnist1d, moons, circles, blobs, or a .npz (x, y) / .csv file")
    p.add_argument("--optimizer", default="sgd", help="sgd, adam, adamw, rmsprop, nadam (default sgd): the one you will train with")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum for sgd and rmsprop (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--start-lr", type=float, default=1e-7, help="the rate at the first step (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="the rate at the last step (default 10)")
    p.add_argument("--steps", type=int, default=100, help="steps of the test (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches (default 0)")
    p.add_argument("--plot", metavar="PATH", help="write the curve (loss against rate) here, e.g. lr.png")
    p.add_argument("--json", action="store_true", help="print every step's rate and loss as JSON")
    p.set_defaults(run=run)
