"""``trainability compare``: train a grid of configurations and rank them; a thin layer over
:func:`trainability.compare`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from trainability.cli._common import UsageError


def _list(flag: str, cast: Callable[[str], Any] = str) -> Callable[[str], list[Any]]:
    """``a,b,c`` -> a list; a value ``cast`` cannot read is a usage error naming the flag."""

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{flag} needs at least one value")
        try:
            return [cast(t) for t in items]
        except ValueError:
            kind = {int: "integers", float: "numbers"}.get(cast, "values")
            raise argparse.ArgumentTypeError(f"{flag} expects comma-separated {kind}, got {text!r}") from None

    return parse


def run(args: argparse.Namespace) -> int:
    from trainability.experiments import compare

    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    results = compare(
        args.data, activation=args.activation, init=args.init, depth=args.depth, width=args.width,
        batch_norm=args.batch_norm, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
        epochs=args.epochs, seeds=args.seeds, preset=args.preset, out=args.out, workers=args.workers,
        backend=args.backend, address=args.address, force_new=args.force_new, retry_failed=args.retry_failed,
        target=args.target, data_dir=args.data_dir, progress=not args.quiet,
    )  # fmt: skip
    print(results.summary())
    print(f"\nresults: {results.folder / 'results.sqlite'}; the page: trainability report {results.folder}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train a grid of activations, initializers, depths, ... over seeds and rank them",
        description="Every factor takes comma-separated values; the grid is their product times --seeds. Rerunning the "
        "same command resumes (finished runs are skipped, interrupted ones continue from their last epoch); adding "
        "values to a factor runs only the new cells. --preset textbook asks the textbook's question: SELU > ELU > "
        "leaky ReLU > ReLU > tanh > logistic?",
    )  # fmt: skip
    p.add_argument("--preset", choices=["textbook"], help="the textbook's grid; other flags override it")
    p.add_argument("--data", help="digits, moons, circles, blobs, mnist1d, mnist, fashion_mnist, or a .npz / .csv file")
    p.add_argument("--target", help="a .csv file's target column (header name or index; default the last)")
    p.add_argument("--data-dir", help="folder holding mnist/ and fashion_mnist/ IDX files (default $TRAINABILITY_DATA)")
    p.add_argument("--activation", type=_list("--activation"), help="e.g. selu,elu,leaky_relu,relu,tanh,sigmoid")
    p.add_argument("--init", type=_list("--init"), help="auto (matched to the activation), default (PyTorch's), lsuv, or initializer names")
    p.add_argument("--depth", type=_list("--depth", int), help="hidden layers, e.g. 10,50,100")
    p.add_argument("--width", type=_list("--width", int), help="units per hidden layer")
    p.add_argument("--batch-norm", type=_list("--batch-norm"), help="none, before, after (the activation)")
    p.add_argument("--optimizer", type=_list("--optimizer"), help="sgd, adam, adamw, rmsprop, nadam")
    p.add_argument("--lr", type=_list("--lr", float), help="learning rates, e.g. 1e-3,1e-2")
    p.add_argument("--batch-size", type=_list("--batch-size", int), help="mini-batch sizes")
    p.add_argument("--epochs", type=int, help="epochs per run (default 10; the textbook preset 60)")
    p.add_argument("--seeds", type=int, help="runs per configuration (default 3)")
    p.add_argument("--out", help="results folder (default runs/<preset> or runs/compare)")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (local processes or Ray tasks), one thread each")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="local processes, or Ray tasks (pip install 'trainability[ray]')")
    p.add_argument("--address", help="a Ray cluster's address (with --backend ray); default: a local Ray instance")
    p.add_argument("--force-new", action="store_true", help="move the folder's old results aside and start afresh")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again (they are skipped by default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
