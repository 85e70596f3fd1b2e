"""``trainability doctor``: diagnose a model on a batch of data."""

from __future__ import annotations

import argparse

from trainability.cli._common import UsageError


def _doctor_batch(model_spec: str, data_name: str | None, batch_size: int):
    """The model and one batch (inputs, targets or None) for ``doctor``: from ``--data``, else
    from ``example_batch()`` in the model's file, else built-in data that fits, else random."""
    import torch

    from trainability import datasets
    from trainability.batches import Batch
    from trainability.graph import example_input, weight_layers
    from trainability.models import BUILTINS, from_spec, spec_example_batch

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
        raise UsageError(f"{model_spec} has no weight layers (Linear, ConvNd, Embedding, attention, RNN) to diagnose")
    if loaded is None and not builtin:
        example = spec_example_batch(model_spec)
        if example is not None:
            batch = Batch.of(example)
            return model, batch, batch.targets, f"example_batch() ({batch.describe()})"
    first = layers[0][1]
    if loaded is None:  # built-in data that fits the model's input size, else random inputs
        fits = {64: "digits", 40: "mnist1d"}
        size = first.in_features if isinstance(first, torch.nn.Linear) else None
        if size in fits:
            loaded = datasets.load(fits[size])
        else:
            torch.manual_seed(0)
            return model, example_input(model, batch=batch_size), None, "random inputs shaped for the model"
    x, y = loaded.train.x[:batch_size], loaded.train.y[:batch_size]
    if isinstance(first, torch.nn.Linear):
        if first.in_features != loaded.in_features:
            raise UsageError(f"the model takes {first.in_features} input features but {loaded.name} has {loaded.in_features}")
    elif first.weight.dim() == 3:  # Conv1d: the features as a 1-channel sequence
        x = x.unsqueeze(1)
    return model, x, y, f"{loaded.name} ({len(x)} samples)"


def run(args: argparse.Namespace) -> int:
    import torch

    from trainability.doctor import diagnose

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    model, x, y, described = _doctor_batch(args.model, args.data, args.batch_size)
    if y is not None and not y.is_floating_point() and isinstance(x, torch.Tensor):
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


def register(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(run=run)
