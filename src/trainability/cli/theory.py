"""``trainability theory depth|phase``: mean-field predictions and the phase diagram."""

from __future__ import annotations

import argparse
import json

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


def run(args: argparse.Namespace) -> int:
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
    q = theory_sub.add_parser("depth", help="q*, chi_1, xi_c and the predicted trainable depth for one pairing")
    q.add_argument("--activation", default="tanh")
    q.add_argument("--init", default="glorot_normal", help="a variance-scaling initializer name")
    q.add_argument("--width", type=int, default=100)
    q.add_argument("--weight-variance", type=float, help="sigma_w^2 = fan_in * Var(W), instead of --init")
    q.add_argument("--bias-variance", type=float, default=0.0)
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
