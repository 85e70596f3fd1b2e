"""``trainability doctor``: diagnose a model on a batch of data."""

from __future__ import annotations

import argparse

from trainability.cli._common import UsageError


def _doctor_batch(model_spec: str, data_name: str | None, batch_size: int):
    """The model and one batch (inputs, targets or None) for ``doctor``: from ``--data``, else
    from ``example_batch()`` in the model's file, else built-in data that fits, else random."""
    import contextlib

    import torch

    from trainability import adapters, datasets
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
        model = _user_model(model_spec)
    example = spec_example_batch(model_spec) if loaded is None and not builtin else None
    if example is not None:
        batch = Batch.of(example)
        adapters.build(model, batch.args, batch.kwargs)  # a Keras model without an Input builds on it
    elif loaded is not None:  # if the data does not fit, weight_layers says the model is not built
        with contextlib.suppress(Exception):
            adapters.build(model, (loaded.train.x[:2],), {})
    layers = weight_layers(model)
    if not layers:
        raise UsageError(f"{model_spec} has no weight layers (Linear, ConvNd, Embedding, attention, RNN) to diagnose")
    if example is not None:
        return model, batch, batch.targets, f"example_batch() ({batch.describe()})"
    name, first = layers[0]
    weight = adapters.module_weights(name, first)[0]
    if loaded is None:  # built-in data that fits the model's input size, else random inputs
        fits = {64: "digits", 40: "mnist1d"}
        size = weight.fans[0] if weight.role == "dense" else None
        if size in fits:
            loaded = datasets.load(fits[size])
        else:
            torch.manual_seed(0)
            return model, example_input(model, batch=batch_size), None, "random inputs shaped for the model"
    x, y = loaded.train.x[:batch_size], loaded.train.y[:batch_size]
    if weight.role == "dense":
        if weight.fans[0] != loaded.in_features:
            raise UsageError(f"the model takes {weight.fans[0]} input features but {loaded.name} has {loaded.in_features}")
    elif weight.tensor.dim() == 3:  # Conv1d: the features as a 1-channel sequence
        x = x.unsqueeze(-1 if getattr(first, "data_format", None) == "channels_last" else 1)  # Keras: channels last
    return model, x, y, f"{loaded.name} ({len(x)} samples)"


def _user_model(spec: str):  # noqa: ANN202 - a torch.nn.Module
    """The model a file's factory returns. A file that imports Keras gets the PyTorch backend
    unless ``KERAS_BACKEND`` says otherwise; a Keras import that fails, or a Keras model on
    another backend, is explained (install ``trainability[keras]``, set ``KERAS_BACKEND=torch``)."""
    import os

    from trainability.adapters import keras
    from trainability.models import from_spec

    unset = "KERAS_BACKEND" not in os.environ
    if unset:  # Keras reads it when the file imports Keras
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        return from_spec(spec)
    except ValueError as exc:
        hint = keras.explain(exc)
        if hint is None:
            raise
        raise UsageError(f"{exc}; {hint}") from exc
    finally:
        if unset:
            del os.environ["KERAS_BACKEND"]


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
