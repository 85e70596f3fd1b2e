"""``trainability demo``: the textbook's vanishing-gradient story on built-in data, with a picture."""

from __future__ import annotations

import argparse
from dataclasses import fields

from trainability.cli._common import PICTURES, writable
from trainability.demo import DemoSettings, run_demo

OPTIONS = {"depth": "hidden layers", "width": "units per hidden layer", "epochs": "training epochs per network",
           "batch_size": "batch size", "lr": "SGD learning rate", "momentum": "SGD momentum", "seed": "seed"}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from trainability import datasets

    picture = writable(args.plot, "--plot", suffixes=PICTURES)  # before the training, not after
    settings = DemoSettings(**{name: getattr(args, name) for name in OPTIONS})
    result = run_demo(datasets.load("digits"), settings, progress=not args.no_progress,
                      echo=lambda text: print(text, flush=True))  # flushed: the progress bars go to stderr
    path = result.plot(picture)
    print(f"\ndone in {result.seconds:.0f} s; the picture (gradient against depth, learning curves): {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the textbook's vanishing-gradient story on digits: diagnosed, fixed, trained, drawn")
    for field in fields(DemoSettings):
        if field.name in OPTIONS:
            p.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                           help=f"{OPTIONS[field.name]} (default: %(default)s)")  # fmt: skip
    p.add_argument("--plot", metavar="PATH", default="demo.png", help="where to write the picture (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
