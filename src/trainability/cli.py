"""The ``trainability`` command: a thin layer that parses, calls the library, and prints.

Exit status: 0 success (a healthy network, for ``doctor``), 1 findings reported, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trainability import table


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def _table(args: argparse.Namespace) -> int:
    print(json.dumps(table.rows(), indent=2) if args.json else table.format_table())
    return 0


def _doctor_batch(model_spec: str, data_name: str | None, batch_size: int):
    """The model and one batch (inputs, targets or None) for ``doctor``."""
    import torch

    from trainability import data as datasets
    from trainability.graph import example_input, weight_layers
    from trainability.models import BUILTINS, from_spec

    builtin = model_spec.partition(":")[0] in BUILTINS
    if data_name is None and builtin:
        data_name = "digits"
    loaded = datasets.load(data_name) if data_name else None
    if builtin:
        model = from_spec(model_spec, in_features=loaded.in_features, out_features=loaded.n_outputs)  # type: ignore[union-attr]
    else:
        model = from_spec(model_spec)
    layers = weight_layers(model)
    if not layers:
        raise UsageError(f"{model_spec} has no weight layers (Linear, ConvNd) to diagnose")
    first = layers[0][1]
    if loaded is None:  # built-in data that fits the model's input size, else random inputs
        fits = {64: "digits", 40: "mnist1d"}
        size = first.in_features if isinstance(first, torch.nn.Linear) else None
        if size in fits:
            loaded = datasets.load(fits[size])
        else:
            torch.manual_seed(0)
            return model, example_input(model, batch=batch_size), None, "random standard-normal inputs"
    x, y = loaded.x[:batch_size], loaded.y[:batch_size]
    if isinstance(first, torch.nn.Linear):
        if first.in_features != loaded.in_features:
            raise UsageError(f"the model takes {first.in_features} input features but {loaded.name} has {loaded.in_features}")
    elif first.weight.dim() == 3:  # Conv1d: the features as a 1-channel sequence
        x = x.unsqueeze(1)
    return model, x, y, f"{loaded.name} ({len(x)} samples)"


def _doctor(args: argparse.Namespace) -> int:
    from trainability.doctor import diagnose

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    model, x, y, described = _doctor_batch(args.model, args.data, args.batch_size)
    if y is not None and not y.is_floating_point():
        with_targets = _output_size(model, x)
        if with_targets is not None and with_targets <= int(y.max()):
            raise UsageError(f"the model outputs {with_targets} scores per sample but the data has classes up to {int(y.max())}")
    report = diagnose(model, x, y)
    if args.plot:
        report.plot(args.plot)
    if args.json:
        print(report.to_json())
    else:
        print(f"trainability doctor: {args.model} on {described}\n")
        print(report)
        if args.plot:
            print(f"\nplot written to {args.plot}")
    return 0 if report.healthy else 1


def _output_size(model, x) -> int | None:  # noqa: ANN001
    import torch

    from trainability.graph import evaluating

    try:
        with evaluating(model), torch.no_grad():
            out = model(x[:2])
    except Exception as exc:  # noqa: BLE001 - reported as a usage error
        raise UsageError(f"the model cannot take inputs of shape {tuple(x.shape)}: {exc}") from exc
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def _grid(text: str, points: int, integer: bool = False) -> list:
    """``"1:4"`` -> ``points`` evenly spaced values; ``"1,2,3"`` -> those values."""
    try:
        if ":" in text:
            lo, hi = (float(t) for t in text.split(":"))
            values = [lo + (hi - lo) * i / max(points - 1, 1) for i in range(points)] if points > 1 else [lo]
        else:
            values = [float(t) for t in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"expected LOW:HIGH or a comma-separated list, got {text!r}") from exc
    return sorted({int(round(v)) for v in values}) if integer else values


def _theory(args: argparse.Namespace) -> int:
    from trainability import theory

    if args.theory_command == "depth":
        variance = args.weight_variance
        if variance is None:
            variance = theory.weight_variance_of(args.init, args.width)
        result = {"activation": args.activation, "init": None if args.weight_variance else args.init, "width": args.width,
                  **theory.summary(args.activation, variance, args.bias_variance)}  # fmt: skip
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        print(f"{args.activation} with sigma_w^2 = {variance:.4g} ({result['init'] or 'given'}), sigma_b^2 = {args.bias_variance:g}")
        print(f"  q*                    {result['q_star']:.4g}")
        print(f"  chi_1                 {result['chi_1']:.4g}  ({result['phase']})")
        print(f"  xi_c                  {result['xi_c']:.4g} layers")
        print(f"  xi_q                  {result['xi_q']:.4g} layers")
        print(f"  trainable depth       about {result['max_trainable_depth']:.4g} layers (6 xi_c)")
        return 0
    from trainability.phase import phase_diagram, plot_phase

    phase = phase_diagram(
        args.activation, args.data,
        weight_variances=_grid(args.weight_variance, args.points),
        depths=_grid(args.depth, args.depth_points, integer=True),
        bias_variance=args.bias_variance, steps=args.steps, width=args.width, workers=args.workers,
    )  # fmt: skip
    if args.plot:
        plot_phase(phase, args.plot)
    inside, outside = phase.inside_outside()
    if args.json:
        from dataclasses import asdict

        print(json.dumps({**asdict(phase), "inside_mean_accuracy": inside, "outside_mean_accuracy": outside}, indent=2))
        return 0
    print(f"phase diagram: {args.activation} on {args.data}, {phase.steps} steps per cell, {phase.seconds:.0f} s")
    print("sigma_w^2 " + " ".join(f"{d:>6d}" for d in phase.depths) + "   xi_c")
    for v, row, xi in zip(phase.weight_variances, phase.accuracy, phase.xi_c, strict=True):
        print(f"{v:9.3g} " + " ".join(f"{a:6.2f}" for a in row) + f"   {xi:.3g}")
    print(f"mean accuracy inside 6 xi_c: {inside:.3f}; beyond 12 xi_c: {outside:.3f} (chance {phase.chance:.2f})")
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The textbook on built-in data: a deep ReLU MLP with PyTorch's default init, diagnosed,
    fixed with initialize(), diagnosed again, and both trained briefly."""
    import torch

    from trainability import data as datasets
    from trainability import fit, initialize, mlp, theory
    from trainability.doctor import diagnose

    if args.depth < 2 or args.epochs < 1:
        raise UsageError(f"--depth must be >= 2 and --epochs >= 1, got {args.depth} and {args.epochs}")
    digits = datasets.load("digits")
    x, y = digits.x[:256], digits.y[:256]
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
        history = fit(model, (digits.x, digits.y), val_data=(digits.x_test, digits.y_test), epochs=args.epochs,
                      optimizer="sgd", lr=0.01, momentum=0.9, seed=0, progress=False)  # fmt: skip
        results[name] = history.metric("val_accuracy")[-1]
        print(f"{name:16s} validation accuracy {results[name]:.3f}")
    if args.plot:
        report.plot(args.plot)
        print(f"\ndoctor's plot of the default-init network written to {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainability", description="Make deep neural networks trainable."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("table", help="the Glorot / He / LeCun initialization table")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(run=_table)

    p = sub.add_parser(
        "doctor",
        help="diagnose a model: vanishing/exploding gradients, dead or saturated units, NaN, init",
        description="One forward/backward pass; exit 0 when healthy, 1 with findings, 2 on a usage error.",
    )
    p.add_argument("model", help="path/to/file.py:factory, file.py:factory(depth=50), or mlp:depth=100,width=100,activation=relu,init=default")
    p.add_argument("--data", help="digits, mnist1d, circles, blobs, or a .npz (x, y) / .csv (last column target) file")
    p.add_argument("--batch-size", type=int, default=256, help="samples in the diagnosed batch (default 256)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the per-layer statistics")
    p.set_defaults(run=_doctor)

    p = sub.add_parser("demo", help="the textbook's vanishing-gradient demo on built-in data, diagnosed and fixed")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--plot", metavar="FILE", help="write the doctor's plot of the default-init network")
    p.set_defaults(run=_demo)

    p = sub.add_parser("theory", help="mean-field signal propagation: depth scales and phase diagrams")
    theory_sub = p.add_subparsers(dest="theory_command", required=True, metavar="WHAT")
    q = theory_sub.add_parser("depth", help="q*, chi_1, xi_c and the predicted trainable depth for one pairing")
    q.add_argument("--activation", default="tanh")
    q.add_argument("--init", default="glorot_normal", help="a variance-scaling initializer name")
    q.add_argument("--width", type=int, default=100)
    q.add_argument("--weight-variance", type=float, help="sigma_w^2 = fan_in * Var(W), instead of --init")
    q.add_argument("--bias-variance", type=float, default=0.0)
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=_theory)
    q = theory_sub.add_parser("phase", help="train a (sigma_w^2, depth) grid briefly and draw the phase diagram")
    q.add_argument("--activation", default="tanh")
    q.add_argument("--data", default="mnist1d")
    q.add_argument("--weight-variance", default="1:4", help="LOW:HIGH or a list (default 1:4)")
    q.add_argument("--points", type=int, default=6, help="weight variances in a LOW:HIGH range (default 6)")
    q.add_argument("--depth", default="10:100", help="LOW:HIGH or a list (default 10:100)")
    q.add_argument("--depth-points", type=int, default=6, help="depths in a LOW:HIGH range (default 6)")
    q.add_argument("--bias-variance", type=float, default=0.05)
    q.add_argument("--steps", type=int, default=300)
    q.add_argument("--width", type=int, default=100)
    q.add_argument("--workers", type=int, default=None, help="processes (default: min(2, cores))")
    q.add_argument("--plot", metavar="FILE", help="write the heat map PNG")
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=_theory)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"trainability {args.command}: error: {exc}".replace("\n", " "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
