"""``trainability theory depth|phase``: mean-field predictions and the phase diagram."""

from __future__ import annotations

import argparse
import json
import math

from trainability.cli._common import UsageError


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


def _finite(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _depth(args: argparse.Namespace) -> int:
    from trainability import theory

    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth must be a positive number of layers, got {args.depth}")
    if args.input_variance < 0:
        raise UsageError(f"--input-variance (the input's second moment E[x^2]) must be >= 0, got {args.input_variance}")
    variance = args.weight_variance
    if variance is None:
        variance = theory.weight_variance_of(args.init, args.width)
    summary = theory.summary(args.activation, variance, args.bias_variance, input_variance=args.input_variance)
    p = theory.propagate(args.activation, variance, args.bias_variance, args.input_variance, depth=args.depth or 1)
    finite = {"input_variance": args.input_variance, "crossing_depth": p.crossing_depth,
              "trainable_depth": p.trainable_depth, "direction": p.direction}  # fmt: skip
    if args.depth is not None:
        finite.update(depth=p.depth, signal_variance=p.signal_variance, first_layer_gain=p.first_layer_gain,
                      q=list(p.q), gradient_gain=list(p.gradient_gain))  # fmt: skip
    if args.json:
        result = {"activation": args.activation, "init": None if args.weight_variance else args.init, "width": args.width,
                  **{k: _finite(v) for k, v in summary.items()}, "finite_depth": finite}  # fmt: skip
        print(json.dumps(result, indent=2))
        return 0
    source = f"{args.init}, width {args.width}" if args.weight_variance is None else "given"
    print(f"{args.activation} with sigma_w^2 = {variance:.4g} ({source}), sigma_b^2 = {args.bias_variance:g}")
    print("  asymptotic (at the length fixed point q*)")
    if summary["signal"].startswith("kept"):
        print(f"    q*                  any: the signal is {summary['signal']}")
    if summary["fixed_point"] == "finite":
        if not summary["signal"].startswith("kept"):
            print(f"    q*                  {summary['q_star']:.4g}")
        print(f"    chi_1               {summary['chi_1']:.4g}  ({summary['phase']})")
        print(f"    xi_c                {summary['xi_c']:.4g} layers")
        print(f"    xi_q                {summary['xi_q']:.4g} layers")
        bound = summary["max_trainable_depth"]
        print(f"    6 xi_c              {'no limit' if math.isinf(bound) else f'{bound:.4g} layers'}")
    else:
        print(f"    q*                  {summary['signal']}")
        print(f"    chi_1               {summary['chi_1']:.6g} in that limit ({summary['phase']})")
        print("    xi_c, 6 xi_c        undefined without a finite fixed point: see the finite-depth prediction")
    print(f"  finite depth (mean-field along the stack from input variance {args.input_variance:g})")
    if args.depth is not None:
        print(f"    signal variance     {p.signal_variance:.4g} at layer {p.depth} (from {p.q[0]:.4g} at layer 1)")
        print(f"    gradient gain       {p.first_layer_gain:.4g}x at layer 1 relative to layer {p.depth} (RMS)")
    if math.isinf(p.crossing_depth):
        print(f"    trainable depth     no limit: the gradient gain to layer 1 stays within {p.ratio:g}x")
    else:
        print(f"    trainable depth     {p.trainable_depth} layers: the gradient gain to layer 1 passes {p.ratio:g}x "
              f"({p.direction}) at depth {p.crossing_depth}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    if args.theory_command == "depth":
        return _depth(args)
    from trainability.theory.phase import phase_diagram, plot_phase

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("theory", help="mean-field signal propagation: depth scales and phase diagrams")
    theory_sub = p.add_subparsers(dest="theory_command", required=True, metavar="WHAT")
    q = theory_sub.add_parser(
        "depth", help="q*, chi_1, xi_c, and the finite-depth prediction (signal, gradient gain, trainable depth)")
    q.add_argument("--activation", default="tanh")
    q.add_argument("--init", default="glorot_normal", help="a variance-scaling initializer name")
    q.add_argument("--width", type=int, default=100)
    q.add_argument("--weight-variance", type=float, help="sigma_w^2 = fan_in * Var(W), instead of --init")
    q.add_argument("--bias-variance", type=float, default=0.0)
    q.add_argument("--depth", type=int, help="hidden layers: predict the signal and gradient gain at this depth")
    q.add_argument("--input-variance", type=float, default=1.0, help="the input's second moment E[x^2] (default 1)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=run)
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
    q.set_defaults(run=run)
