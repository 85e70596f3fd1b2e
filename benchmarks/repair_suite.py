"""Repair on a suite of deliberately broken networks, and on healthy ones that must be left alone.

Each broken configuration comes with its correctly built counterpart (the same architecture built
the way the textbook says). For every configuration:

- ``trainability.repair(broken, data)`` with the configuration's training settings, the default
  budget (300 steps) and one worker (the suite's models live in this script, so they could not
  travel to worker processes anyway);
- **repaired**: the returned model, trained with the returned settings for the same budget and
  seed, reaches a validation accuracy of at least 80% of what the counterpart reaches under the
  same budget and seed (the issue's definition); a broken network left alone counts only if it
  meets that too;
- **one normal training run**: the counterpart trained as a user would, epoch by epoch until its
  validation accuracy has not improved for 5 epochs (Keras' ``EarlyStopping(patience=5)``), at
  most 60 epochs, with the configuration's settings; its steps and its wall-clock time on one
  torch thread;
- **cost**: repair's wall-clock time (everything: doctor passes, screening, planning, range
  tests, evaluation) over the normal run's (the issue's target: at most 1.5x on average), and its
  steps (every run and range test) over the normal run's steps.

The broken kinds: deep sigmoid/tanh/ReLU MLPs drawn wrongly, ReLU with negative biases, SELU with
ordinary dropout, learning rates that blow up, unnormalized residual stacks of several depths (blocks
as modules, or added in a loop of ``forward``), LSTMs and GRUs whose memory must span 30 to 60 steps
with the memory gate biased shut, plain RNNs over long sequences, transformers built from
``transformers`` configs (BERT, GPT-2) with a bad ``initializer_range`` or a learning rate too high,
and CNNs.

Every configuration runs with three seeds (the network's initial draw, the batches, the repair's
seed); healthy ones must be left alone every time (no candidate tried). AutoTrainer's figures (Zhang et al., ICSE 2021; its 2024 extension) were
measured on its own benchmark of Keras models and are quoted, not reproduced.

    python benchmarks/repair_suite.py              # the whole suite, writes docs/RESULTS.md
    python benchmarks/repair_suite.py --only relu   # configurations whose name contains "relu"
    python benchmarks/repair_suite.py --quick       # one broken, one healthy, one seed (run_all's smoke run)
    python benchmarks/repair_suite.py --held-out    # the held-out networks, their own section
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import trainability
from trainability import datasets, initialize, mlp

BUDGET = 300
PATIENCE = 5
MAX_EPOCHS = 60
SEEDS = (0, 1, 2)
REPAIRED_FRACTION = 0.8
QUICK = ("relu-30-default-digits", "healthy-relu-10-digits")  # --quick: one of each


# -- architectures that are not plain MLPs (flat features in, class scores out) -----------------
class ResidualMLP(nn.Module):
    """A stem, ``blocks`` residual blocks ``x + Linear(ReLU(Linear(x)))`` without normalization
    (He init: each branch adds its variance to the stream), a head."""

    def __init__(self, inputs: int, outputs: int, blocks: int = 16, width: int = 64, norm: bool = False) -> None:
        super().__init__()
        self.stem = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(*([nn.LayerNorm(width)] if norm else []), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, outputs)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


class TokenTransformer(nn.Module):
    """The features cut into tokens of ``size``, a linear embedding, a post-LN
    ``nn.TransformerEncoder``, mean pooling, a linear head."""

    def __init__(self, inputs: int, outputs: int, size: int = 8, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.size = size
        self.embed = nn.Linear(size, width)
        self.position = nn.Parameter(torch.zeros(inputs // size, width))
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(x.shape[0], -1, self.size)) + self.position
        return self.head(self.encoder(tokens).mean(1))


class SequenceRNN(nn.Module):
    """The features read as a sequence of ``size`` values per step by a recurrent layer; the head
    reads the last state only (a long dependency)."""

    def __init__(self, inputs: int, outputs: int, size: int = 1, hidden: int = 32, kind: str = "rnn", layers: int = 1,
                 bidirectional: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.size = size
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](size, hidden, layers, batch_first=True,
                                                                         bidirectional=bidirectional)  # fmt: skip
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.view(x.shape[0], -1, self.size))
        return self.head(out[:, -1])


def fixup_conv(model: ConvResidual) -> ConvResidual:
    """Fixup for :class:`ConvResidual`: each block's last convolution 0, its first He x L^(-1/2)."""
    with torch.no_grad():
        for block in model.blocks:
            block[0].weight.mul_(len(model.blocks) ** -0.5)
            block[-1].weight.zero_()
    return model


class ResidualLoop(nn.Module):
    """Residual blocks written as a loop in ``forward``, no block module: ``h = h + b_i(relu(a_i(h)))``,
    He-initialized, no normalization (the issue's deep residual MLP: its branches are found only
    on the traced graph)."""

    def __init__(self, inputs: int, outputs: int, blocks: int = 16, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Linear(inputs, width)
        self.a = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.b = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.head = nn.Linear(width, outputs)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for a, b in zip(self.a, self.b, strict=True):
            h = h + b(torch.relu(a(h)))
        return self.head(h)


class ConvNet(nn.Module):
    """The features as a one-channel image (``side`` x ``side``; digits: 8 x 8) or, with
    ``side=None``, a one-channel sequence (mnist1d), ``depth`` 3x3 convolutions of ``channels``
    with ReLU, global average pooling, a linear head."""

    def __init__(self, inputs: int, outputs: int, depth: int = 6, channels: int = 16, side: int | None = 8,
                 activation: type[nn.Module] = nn.ReLU) -> None:  # fmt: skip
        super().__init__()
        self.side = side
        conv = nn.Conv2d if side else nn.Conv1d
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [conv(1 if i == 0 else channels, channels, 3, padding=1), activation()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], 1, self.side, self.side) if self.side else x.unsqueeze(1)
        h = self.body(x)
        return self.head(h.flatten(2).mean(-1))


class ConvResidual(nn.Module):
    """A one-channel 8 x 8 image, a stem convolution, ``blocks`` residual blocks
    ``x + conv(relu(conv(x)))`` with (``norm=True``) or without batch norm, He init, global
    average pooling, a linear head."""

    def __init__(self, inputs: int, outputs: int, blocks: int = 8, channels: int = 16, norm: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)

        def block() -> nn.Sequential:
            layers = [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)]
            if norm:
                layers = [layers[0], nn.BatchNorm2d(channels), layers[1], layers[2], nn.BatchNorm2d(channels)]
            return nn.Sequential(*layers)

        self.blocks = nn.ModuleList(block() for _ in range(blocks))
        self.head = nn.Linear(channels, outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x.view(x.shape[0], 1, 8, 8))
        for block in self.blocks:
            h = h + block(h)
        return self.head(h.flatten(2).mean(-1))


class HFClassifier(nn.Module):
    """A ``transformers`` encoder built from its config (no download): the features cut into
    tokens of ``size``, a linear embedding into ``inputs_embeds``, BERT (post-LN) or GPT-2
    (pre-LN) with ``initializer_range``, and the model's own classification head; returns logits."""

    def __init__(self, inputs: int, outputs: int, kind: str = "bert", size: int = 8, hidden: int = 32, layers: int = 2,
                 initializer_range: float = 0.02) -> None:  # fmt: skip
        super().__init__()
        import transformers

        transformers.logging.set_verbosity_error()
        self.size = size
        self.embed = nn.Linear(size, hidden)
        if kind == "bert":
            config = transformers.BertConfig(vocab_size=4, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                             intermediate_size=2 * hidden, max_position_embeddings=inputs // size,
                                             num_labels=outputs, initializer_range=initializer_range,
                                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
            self.net = transformers.BertForSequenceClassification(config)
        else:
            config = transformers.GPT2Config(vocab_size=4, n_embd=hidden, n_layer=layers, n_head=4, n_positions=inputs // size,
                                             num_labels=outputs, initializer_range=initializer_range, resid_pdrop=0.0,
                                             embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)  # fmt: skip
            self.net = transformers.GPT2ForSequenceClassification(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(inputs_embeds=self.embed(x.view(x.shape[0], -1, self.size))).logits


# -- generated data: a memory that must span the whole sequence -----------------------------------
def memory(steps: int, classes: int = 4, features: int = 4, samples: int = 2000, seed: int = 0) -> Any:
    """``steps`` time steps of ``features`` standard-normal values; the class is written at step 0
    only (a one-hot of size 3 over the first ``classes`` features), and a model reading the last
    state must carry it across every step (64/16/20% train/validation/test)."""
    from trainability.datasets import Split, Splits

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (samples,), generator=g)
    x = torch.randn(samples, steps, features, generator=g)
    x[:, 0, :] = 0.0
    x[torch.arange(samples), 0, y] = 3.0
    x = x.reshape(samples, steps * features)
    a, b = int(0.64 * samples), int(0.8 * samples)
    return Splits(f"memory{steps}", Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]))


GENERATED: dict[str, Callable[[], Any]] = {f"memory{t}": (lambda t=t: memory(t)) for t in (30, 40, 60)}


def load(name: str) -> Any:
    """A built-in data set by name, or one of :data:`GENERATED`."""
    return GENERATED[name]() if name in GENERATED else datasets.load(name)


# -- how each configuration is broken ---------------------------------------------------------------
def normal_weights(model: nn.Module, std: float = 1.0) -> nn.Module:
    """Every weight (Linear, attention's packed projections) drawn from N(0, std^2)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "position" not in name:
                p.normal_(0.0, std)
    return model


def gate_bias(model: nn.Module, value: float) -> nn.Module:
    """The recurrent layer's memory gate (an LSTM's forget gate, a GRU's update gate) biased to
    ``value`` (``bias_ih``; ``bias_hh``'s block 0)."""
    rnn = model.rnn  # type: ignore[union-attr]
    h = rnn.hidden_size
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith(("bias_ih", "bias_hh")):
                p[h : 2 * h] = value if name.startswith("bias_ih") else 0.0
    return model


def chrono(model: nn.Module, steps: int) -> nn.Module:
    """The textbook build of a gated recurrent layer for long memory: initialize, then chrono
    gate biases for ``steps`` (Tallec & Ollivier 2018)."""
    from trainability.initialization import chrono_bias_

    initialize(model)
    chrono_bias_(model.rnn, steps, generator=torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    return model


def fixup_loop(model: ResidualLoop) -> ResidualLoop:
    """Fixup for :class:`ResidualLoop` (Zhang et al. 2019): each branch's last layer 0, its first
    He x L^(-1/2) (two layers a branch)."""
    with torch.no_grad():
        for a, b in zip(model.a, model.b, strict=True):
            a.weight.mul_(len(model.a) ** -0.5)
            b.weight.zero_()
    return model


def negative_biases(model: nn.Sequential, value: float) -> nn.Module:
    with torch.no_grad():
        for layer in list(model)[:-1]:
            if isinstance(layer, nn.Linear):
                layer.bias.fill_(value)
    return model


def ordinary_dropout(model: nn.Sequential) -> nn.Sequential:
    """AlphaDropout swapped for ordinary Dropout of the same rate."""
    return nn.Sequential(*[nn.Dropout(m.p) if isinstance(m, nn.AlphaDropout) else m for m in model])


def _mlp(activation: str, depth: int, width: int = 64, init: str = "auto", **kw: Any) -> Callable[[int, int], nn.Module]:
    return lambda i, o: mlp(i, o, depth=depth, width=width, activation=activation, init=init, **kw)


def _initialized(factory: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
    def build(i: int, o: int) -> nn.Module:
        model = factory(i, o)
        initialize(model)
        return model

    return build


@dataclass(frozen=True)
class Case:
    name: str
    family: str  # which of the broken kinds (or "healthy")
    data: str
    broken: Callable[[int, int], nn.Module]  # (in_features, classes) -> model; torch's RNN is seeded first
    fixed: Callable[[int, int], nn.Module] | None  # the correctly built counterpart; None: healthy
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.0
    fixed_lr: float | None = None  # the counterpart's learning rate when ``lr`` is what is broken

    @property
    def healthy(self) -> bool:
        return self.fixed is None

    def settings(self, which: str) -> dict[str, Any]:
        lr = self.fixed_lr if which == "fixed" and self.fixed_lr is not None else self.lr
        lr = None if which == "fixed" and self.family == "exploding learning rate" and self.fixed_lr is None else lr
        return {"optimizer": self.optimizer, "lr": lr, "momentum": self.momentum, "batch_size": 32, "clip_norm": None}

    def build(self, which: str, splits: Any, seed: int) -> nn.Module:
        factory = self.broken if which == "broken" or self.fixed is None else self.fixed
        torch.manual_seed(seed)
        return factory(splits.in_features, splits.n_outputs)


relu_default = _mlp("relu", 30, init="default")
sig = _mlp("sigmoid", 10, init="default")
CASES: list[Case] = [
    # deep sigmoid with N(0, 1) weights: counterpart, the textbook's ReLU + He at the same depth
    Case("sigmoid-10-normal-digits", "deep sigmoid, N(0,1)", "digits", lambda i, o: normal_weights(sig(i, o)), _mlp("relu", 10)),
    Case("sigmoid-20-normal-mnist1d", "deep sigmoid, N(0,1)", "mnist1d",
         lambda i, o: normal_weights(_mlp("sigmoid", 20, init="default")(i, o)), _mlp("relu", 20)),
    # deep ReLU with PyTorch's default init: counterpart, He
    Case("relu-30-default-digits", "deep ReLU, PyTorch default", "digits", relu_default, _mlp("relu", 30)),
    Case("relu-30-default-moons", "deep ReLU, PyTorch default", "moons", relu_default, _mlp("relu", 30)),
    Case("relu-50-default-circles", "deep ReLU, PyTorch default", "circles", _mlp("relu", 50, init="default"), _mlp("relu", 50)),
    Case("relu-40-default-blobs", "deep ReLU, PyTorch default", "blobs", _mlp("relu", 40, init="default"), _mlp("relu", 40)),
    # ReLU with N(0, 1) weights
    Case("relu-10-normal-blobs", "ReLU, N(0,1)", "blobs", lambda i, o: normal_weights(_mlp("relu", 10, init="default")(i, o)), _mlp("relu", 10)),
    Case("relu-20-normal-circles", "ReLU, N(0,1)", "circles", lambda i, o: normal_weights(_mlp("relu", 20, init="default")(i, o)), _mlp("relu", 20)),
    # ReLU with large negative biases
    Case("relu-10-bias-blobs", "ReLU, large negative biases", "blobs", lambda i, o: negative_biases(_mlp("relu", 10)(i, o), -2.0), _mlp("relu", 10)),
    Case("relu-20-bias-moons", "ReLU, large negative biases", "moons", lambda i, o: negative_biases(_mlp("relu", 20)(i, o), -2.0), _mlp("relu", 20)),
    # saturated tanh (N(0, 1) weights): counterpart, Glorot
    Case("tanh-10-normal-circles", "saturated tanh", "circles", lambda i, o: normal_weights(_mlp("tanh", 10, init="default")(i, o)), _mlp("tanh", 10)),
    Case("tanh-20-normal-digits", "saturated tanh", "digits", lambda i, o: normal_weights(_mlp("tanh", 20, init="default")(i, o)), _mlp("tanh", 20)),
    # SELU with ordinary dropout: counterpart, AlphaDropout (the textbook's build)
    Case("selu-20-dropout-digits", "SELU with ordinary Dropout", "digits",
         lambda i, o: ordinary_dropout(_mlp("selu", 20, dropout=0.2)(i, o)), _mlp("selu", 20, dropout=0.2)),
    Case("selu-30-dropout-moons", "SELU with ordinary Dropout", "moons",
         lambda i, o: ordinary_dropout(_mlp("selu", 30, dropout=0.1)(i, o)), _mlp("selu", 30, dropout=0.1)),
    # a learning rate that makes the loss explode: counterpart, the default rate
    Case("relu-10-lr1-circles", "exploding learning rate", "circles", _mlp("relu", 10), _mlp("relu", 10), lr=1.0),
    Case("relu-20-lr05-digits", "exploding learning rate", "digits", _mlp("relu", 20), _mlp("relu", 20), lr=0.5),
    # an unnormalized deep residual net: counterpart, the same net initialized (Fixup)
    Case("residual-16-digits", "unnormalized deep residual", "digits", lambda i, o: ResidualMLP(i, o, 16),
         _initialized(lambda i, o: ResidualMLP(i, o, 16))),
    Case("residual-16-blobs", "unnormalized deep residual", "blobs", lambda i, o: ResidualMLP(i, o, 16),
         _initialized(lambda i, o: ResidualMLP(i, o, 16))),
    # a transformer with far too large an init: counterpart, the transformer init N(0, 0.02); Adam
    Case("transformer-normal-digits", "transformer, far too large init", "digits",
         lambda i, o: normal_weights(TokenTransformer(i, o, 8)), _initialized(lambda i, o: TokenTransformer(i, o, 8)), optimizer="adam"),
    Case("transformer-normal-mnist1d", "transformer, far too large init", "mnist1d",
         lambda i, o: normal_weights(TokenTransformer(i, o, 4)), _initialized(lambda i, o: TokenTransformer(i, o, 4)), optimizer="adam"),
    # a plain RNN whose gradient vanishes through time: counterpart, orthogonal recurrent init
    Case("rnn-64-steps-digits", "plain RNN, vanishing through time", "digits", lambda i, o: SequenceRNN(i, o, 1),
         _initialized(lambda i, o: SequenceRNN(i, o, 1))),
    Case("rnn-32-steps-digits", "plain RNN, vanishing through time", "digits", lambda i, o: SequenceRNN(i, o, 2),
         _initialized(lambda i, o: SequenceRNN(i, o, 2))),
    Case("rnn-20-steps-mnist1d", "plain RNN, vanishing through time", "mnist1d", lambda i, o: SequenceRNN(i, o, 2),
         _initialized(lambda i, o: SequenceRNN(i, o, 2))),
    # unnormalized residual stacks of several depths, blocks as modules or as a loop in forward: counterpart, Fixup
    Case("residual-loop-8-digits", "unnormalized deep residual", "digits", lambda i, o: ResidualLoop(i, o, 8),
         lambda i, o: fixup_loop(ResidualLoop(i, o, 8))),
    Case("residual-loop-32-blobs", "unnormalized deep residual", "blobs", lambda i, o: ResidualLoop(i, o, 32),
         lambda i, o: fixup_loop(ResidualLoop(i, o, 32))),
    Case("residual-32-mnist1d", "unnormalized deep residual", "mnist1d", lambda i, o: ResidualMLP(i, o, 32),
         _initialized(lambda i, o: ResidualMLP(i, o, 32))),
    # LSTMs and GRUs whose memory must span the sequence, with the memory gate biased shut: counterpart, chrono init
    Case("lstm-memory60-forget-5", "LSTM/GRU long memory, bad gate bias", "memory60",
         lambda i, o: gate_bias(SequenceRNN(i, o, 4, kind="lstm"), -5.0), lambda i, o: chrono(SequenceRNN(i, o, 4, kind="lstm"), 60),
         optimizer="adam", lr=0.01),
    Case("lstm-memory40-forget-3", "LSTM/GRU long memory, bad gate bias", "memory40",
         lambda i, o: gate_bias(SequenceRNN(i, o, 4, kind="lstm"), -3.0), lambda i, o: chrono(SequenceRNN(i, o, 4, kind="lstm"), 40),
         optimizer="adam", lr=0.01),
    Case("gru-memory60-update-5", "LSTM/GRU long memory, bad gate bias", "memory60",
         lambda i, o: gate_bias(SequenceRNN(i, o, 4, kind="gru"), -5.0), lambda i, o: chrono(SequenceRNN(i, o, 4, kind="gru"), 60),
         optimizer="adam", lr=0.01),
    Case("gru-memory30-update-3", "LSTM/GRU long memory, bad gate bias", "memory30",
         lambda i, o: gate_bias(SequenceRNN(i, o, 4, kind="gru"), -3.0), lambda i, o: chrono(SequenceRNN(i, o, 4, kind="gru"), 30),
         optimizer="adam", lr=0.01),
    # plain tanh RNNs over long sequences: counterpart, an LSTM of the same size with chrono init
    Case("rnn-memory40", "plain RNN over a long sequence", "memory40", lambda i, o: SequenceRNN(i, o, 4),
         lambda i, o: chrono(SequenceRNN(i, o, 4, kind="lstm"), 40), optimizer="adam", lr=0.01),
    Case("rnn-memory60", "plain RNN over a long sequence", "memory60", lambda i, o: SequenceRNN(i, o, 4),
         lambda i, o: chrono(SequenceRNN(i, o, 4, kind="lstm"), 60), optimizer="adam", lr=0.01),
    # transformers built from transformers configs: a bad initializer range, or a learning rate too high
    Case("bert-init1-digits", "transformers config, bad initializer_range", "digits",
         lambda i, o: HFClassifier(i, o, "bert", initializer_range=1.0), lambda i, o: HFClassifier(i, o, "bert"), optimizer="adam"),
    Case("gpt2-init1-mnist1d", "transformers config, bad initializer_range", "mnist1d",
         lambda i, o: HFClassifier(i, o, "gpt2", size=4, initializer_range=1.0), lambda i, o: HFClassifier(i, o, "gpt2", size=4),
         optimizer="adam"),
    Case("bert-lr01-digits", "transformers config, learning rate too high", "digits", lambda i, o: HFClassifier(i, o, "bert"),
         lambda i, o: HFClassifier(i, o, "bert"), optimizer="adam", lr=0.1, fixed_lr=1e-3),
    Case("gpt2-lr1-mnist1d", "transformers config, learning rate too high", "mnist1d",
         lambda i, o: HFClassifier(i, o, "gpt2", size=4), lambda i, o: HFClassifier(i, o, "gpt2", size=4), optimizer="adam",
         lr=1.0, fixed_lr=1e-3),
    # CNNs (SGD with momentum 0.9): PyTorch's default init, N(0, 1) weights, a learning rate that blows up: counterpart, He
    Case("cnn-6-default-digits", "CNN", "digits", lambda i, o: ConvNet(i, o, 6), _initialized(lambda i, o: ConvNet(i, o, 6)),
         momentum=0.9),
    Case("cnn-6-default-mnist1d", "CNN", "mnist1d", lambda i, o: ConvNet(i, o, 6, side=None),
         _initialized(lambda i, o: ConvNet(i, o, 6, side=None)), momentum=0.9),
    Case("cnn-6-normal-digits", "CNN", "digits", lambda i, o: normal_weights(ConvNet(i, o, 6)),
         _initialized(lambda i, o: ConvNet(i, o, 6)), momentum=0.9),
    Case("cnn-6-lr05-digits", "CNN", "digits", _initialized(lambda i, o: ConvNet(i, o, 6)), _initialized(lambda i, o: ConvNet(i, o, 6)),
         lr=0.5, momentum=0.9, fixed_lr=0.01),
    # healthy networks: left alone every time
    Case("healthy-relu-10-digits", "healthy", "digits", _mlp("relu", 10), None),
    Case("healthy-tanh-5-circles", "healthy", "circles", _mlp("tanh", 5), None),
    Case("healthy-selu-20-moons", "healthy", "moons", _mlp("selu", 20), None),
    Case("healthy-relu-3-mnist1d", "healthy", "mnist1d", _mlp("relu", 3), None),
    Case("healthy-residual-norm-blobs", "healthy", "blobs", lambda i, o: ResidualMLP(i, o, 8, norm=True), None),
    Case("healthy-transformer-digits", "healthy", "digits", _initialized(lambda i, o: TokenTransformer(i, o, 8)), None,
         optimizer="adam"),
    Case("healthy-bert-digits", "healthy", "digits", lambda i, o: HFClassifier(i, o, "bert"), None, optimizer="adam"),
    Case("healthy-lstm-chrono-memory40", "healthy", "memory40", lambda i, o: chrono(SequenceRNN(i, o, 4, kind="lstm"), 40), None,
         optimizer="adam", lr=0.01),
    Case("healthy-cnn-6-digits", "healthy", "digits", _initialized(lambda i, o: ConvNet(i, o, 6)), None, optimizer="adam"),
]  # fmt: skip


#: Networks built differently from the suite, kept apart: repair was designed and tuned on CASES
#: only, and these were run once, after, to see whether its rules hold on networks it has not seen.
HELD_OUT: list[Case] = [
    Case("vgg-sigmoid-8-digits", "saturating CNN (sigmoid, default init)", "digits", lambda i, o: ConvNet(i, o, 8, activation=nn.Sigmoid),
         _initialized(lambda i, o: ConvNet(i, o, 8)), momentum=0.9),
    Case("resnet-conv-12-digits", "unnormalized residual CNN (He)", "digits", lambda i, o: ConvResidual(i, o, 12),
         lambda i, o: fixup_conv(ConvResidual(i, o, 12)), momentum=0.9),
    Case("lstm-bi-memory40-forget-5", "bidirectional LSTM, memory gate shut", "memory40",
         lambda i, o: gate_bias(SequenceRNN(i, o, 4, kind="lstm", bidirectional=True), -5.0),
         lambda i, o: chrono(SequenceRNN(i, o, 4, kind="lstm", bidirectional=True), 40), optimizer="adam", lr=0.01),
    Case("gru-2layer-memory60-update-5", "two-layer GRU, update gate shut", "memory60",
         lambda i, o: gate_bias(SequenceRNN(i, o, 4, kind="gru", layers=2), -5.0),
         lambda i, o: chrono(SequenceRNN(i, o, 4, kind="gru", layers=2), 60), optimizer="adam", lr=0.01),
    Case("elu-20-normal-circles", "ELU MLP, N(0,1)", "circles", lambda i, o: normal_weights(_mlp("elu", 20, init="default")(i, o)),
         _mlp("elu", 20)),
    Case("gpt2-lr03-digits", "pre-LN transformer, learning rate too high (the issue's)", "digits",
         lambda i, o: HFClassifier(i, o, "gpt2"), lambda i, o: HFClassifier(i, o, "gpt2"), optimizer="adam", lr=0.3, fixed_lr=1e-3),
    Case("post-ln-lr01-digits", "post-LN nn.TransformerEncoder, learning rate too high", "digits",
         _initialized(lambda i, o: TokenTransformer(i, o, 8)), _initialized(lambda i, o: TokenTransformer(i, o, 8)),
         optimizer="adam", lr=0.1, fixed_lr=1e-3),
    Case("healthy-resnet-bn-digits", "healthy", "digits", lambda i, o: ConvResidual(i, o, 8, norm=True), None, momentum=0.9),
    Case("healthy-gru-rows-digits", "healthy", "digits", lambda i, o: SequenceRNN(i, o, 8, kind="gru"), None, optimizer="adam"),
]  # fmt: skip


# -- measuring ------------------------------------------------------------------------------------
def budget_run(model: nn.Module, splits: Any, settings: dict[str, Any], seed: int) -> float | None:
    """Validation accuracy after the budget, trained exactly as repair trains a candidate (the
    same batches, rounds and settings: warm-up, Adam's epsilon and the z-loss included)."""
    from trainability.repair.runs import ROUNDS, Run, full_settings, rounds_of

    settings = full_settings(settings)
    run = Run("check", copy.deepcopy(model), settings, rounds_of(splits.train, BUDGET, settings["batch_size"], seed),
              splits.validation, seed, BUDGET // ROUNDS)  # fmt: skip
    run.advance(ROUNDS)
    run.close()
    return run.records[-1].get("val_accuracy") if run.status != "failed" and run.records else 0.0


def normal_run(model: nn.Module, splits: Any, case: Case, seed: int) -> tuple[int, float, float]:
    """(steps, seconds, best validation accuracy) of training until 5 epochs without improvement."""
    from trainability.training import make_optimizer

    torch.manual_seed(seed)
    settings = case.settings("fixed")
    optimizer = make_optimizer(settings["optimizer"], model, lr=settings["lr"], momentum=settings["momentum"])
    best, since, steps = -1.0, 0, 0
    start = time.perf_counter()
    for epoch in range(MAX_EPOCHS):
        history = trainability.fit(model, splits.train, val_data=splits.validation, epochs=1, optimizer=optimizer,
                                   monitor=False, progress=False, seed=seed + epoch)  # fmt: skip
        if history.stopped:
            break
        steps += int(history.epochs[-1]["steps"])
        accuracy = history.epochs[-1]["val_accuracy"]
        if accuracy > best:
            best, since = accuracy, 0
        else:
            since += 1
            if since >= PATIENCE:
                break
    return steps, time.perf_counter() - start, best


def run_case(case: Case, seed: int = 0) -> dict[str, Any]:
    splits = load(case.data)
    broken = case.build("broken", splits, seed)
    start = time.perf_counter()
    result = trainability.repair(broken, case.data if case.data not in GENERATED else splits, budget_steps=BUDGET,
                                 optimizer=case.optimizer, lr=case.lr, momentum=case.momentum, seed=seed, workers=1)  # fmt: skip
    seconds = time.perf_counter() - start
    row = {"case": case.name, "family": case.family, "data": case.data, "seed": seed, "verdict": result.verdict,
           "change": result.change.label if result.change else "-", "kind": result.change.kind if result.change else "-",
           "tried": len(result.trained), "screened": len(result.screened_out), "steps": result.steps, "seconds": seconds,
           "probe": result.probe.score, "probe_steps": result.probe.steps}  # fmt: skip
    if case.healthy:
        row["left_alone"] = result.verdict == "healthy" and not result.attempts
        return row
    counterpart = case.build("fixed", splits, seed)
    row["counterpart"] = budget_run(copy.deepcopy(counterpart), splits, case.settings("fixed"), seed)
    row["repaired_score"] = budget_run(result.model, splits, result.settings, seed)
    row["letter"] = (row["repaired_score"] is not None and row["counterpart"] is not None
                     and row["repaired_score"] >= REPAIRED_FRACTION * row["counterpart"])  # fmt: skip
    row["repaired"] = result.trains and row["letter"]  # and repair itself says the model trains
    normal_steps, normal_seconds, row["normal_best"] = normal_run(counterpart, splits, case, seed)
    row["normal_steps"], row["normal_seconds"] = normal_steps, normal_seconds
    row["cost_steps"] = result.steps / normal_steps
    row["cost_seconds"] = seconds / normal_seconds
    return row


def _mean(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.mean(present):.3f}" if present else "NaN loss"


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| configuration | data | as it was | repaired | winning change (seeds) | trained / screened out | repaired / counterpart (val acc) | cost (steps) | cost (time) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in dict.fromkeys(r["case"] for r in rows):
        runs = [r for r in rows if r["case"] == name]
        done = sum(r["repaired"] for r in runs)
        changes = statistics.multimode(r["change"] for r in runs)
        count = sum(r["change"] == changes[0] for r in runs)
        verdicts = ", ".join(sorted({r["verdict"] for r in runs} - {"repaired"}))
        change = f"{changes[0]} ({count})" + (f"; {verdicts}" if verdicts else "")
        ratio = f"{done}/{len(runs)}" if done == len(runs) else f"**{done}/{len(runs)}**"
        lines.append(f"| {name} | {runs[0]['data']} | {_mean([r['probe'] for r in runs])} | {ratio} | {change} | "
                     f"{statistics.mean(r['tried'] for r in runs):.3g} / {statistics.mean(r['screened'] for r in runs):.3g} | "
                     f"{_mean([r['repaired_score'] for r in runs])} / "
                     f"{_mean([r['counterpart'] for r in runs])} | {statistics.mean(r['cost_steps'] for r in runs):.2f}x | "
                     f"{statistics.mean(r['cost_seconds'] for r in runs):.2f}x |")  # fmt: skip
    return "\n".join(lines)


def _misses(rows: list[dict[str, Any]]) -> str:
    missed = [r for r in rows if not r["repaired"]]
    return "; ".join(f"{r['case']} seed {r['seed']} ({r['verdict'].replace('_', ' ')}"
                     + (f", {r['change']}" if r["change"] != "-" else "")
                     + f": {r['repaired_score']:.3f} against the counterpart's {r['counterpart']:.3f})" for r in missed) or "none"


def held_out_report(broken: list[dict[str, Any]], healthy: list[dict[str, Any]], wall: float) -> str:
    """The held-out networks: the same measurements, in a section of their own."""
    from _results import machine

    repaired = sum(r["repaired"] for r in broken)
    alone = sum(r["left_alone"] for r in healthy)
    times = [r["cost_seconds"] for r in broken]
    lines = [f"""## Repair on held-out networks (benchmarks/repair_suite.py --held-out)

Networks built differently from the suite's (HELD_OUT in the script), kept apart: repair was designed on the
suite only, and these were run after its design was settled, to see whether its rules hold on networks it
has not seen. One rule changed after their first run, for every network (which training-time errors deny a
candidate "trains": docs/REPAIR.md, section 2; the commit log has the first run's figures). Same
measurements as the suite's (previous section).

{len({r["case"] for r in broken})} broken and {len({r["case"] for r in healthy})} healthy configurations ({"; ".join(dict.fromkeys(r["family"] for r in broken))}),
{len(SEEDS)} seeds each: **{repaired} of {len(broken)} runs repaired ({repaired / len(broken):.1%})**, healthy left alone
{alone} of {len(healthy)}, mean cost **{statistics.mean(times):.2f}x** one normal run in wall-clock time (median
{statistics.median(times):.2f}x, worst {max(times):.2f}x), {statistics.mean(r["cost_steps"] for r in broken):.2f}x in steps.

{_table(broken)}

Runs not repaired: {_misses(broken)}. Healthy: {", ".join(sorted({f"{r['case']} {sum(x['left_alone'] for x in healthy if x['case'] == r['case'])}/{len(SEEDS)}" for r in healthy}))}.

Machine: {machine()}; these runs took {wall / 60:.1f} minutes."""]
    return "\n".join(lines)


def checks(broken: list[dict[str, Any]], healthy: list[dict[str, Any]], held_out: bool = False) -> list[Any]:
    """The issue's targets, for run_all's summary."""
    from _checks import Check

    where = " (held-out networks)" if held_out else ""
    repaired = sum(r["repaired"] for r in broken) / len(broken)
    alone = sum(r["left_alone"] for r in healthy) / len(healthy)
    steps = statistics.mean(r["cost_steps"] for r in broken)
    seconds = statistics.mean(r["cost_seconds"] for r in broken)
    return [
        Check(f"broken networks repaired (>= 80% of the counterpart's validation accuracy){where}", ">= 90%",
              f"{repaired:.1%} of {len(broken)} runs", repaired >= 0.9),
        Check(f"healthy networks left alone (no candidate tried){where}", "every time", f"{alone:.0%} of {len(healthy)} runs",
              alone == 1),
        Check(f"repair cost, wall-clock, in normal training runs of the fixed network{where}", "<= 1.5x (AutoTrainer: 2.14x)",
              f"{seconds:.2f}x", seconds <= 1.5),
        Check(f"... in training steps{where}", "reported", f"{steps:.2f}x", None),
    ]  # fmt: skip


def report(broken: list[dict[str, Any]], healthy: list[dict[str, Any]], wall: float) -> str:
    from _results import machine

    repaired = sum(r["repaired"] for r in broken)
    letter = sum(r["letter"] for r in broken)
    alone = sum(r["left_alone"] for r in healthy)
    steps = [r["cost_steps"] for r in broken]
    times = [r["cost_seconds"] for r in broken]
    tried = [r["tried"] for r in broken]
    screened = [r["screened"] for r in broken]
    families = sorted({r["family"] for r in broken})
    configurations = list(dict.fromkeys(r["case"] for r in broken))
    always = sum(all(r["repaired"] for r in broken if r["case"] == c) for c in configurations)
    return f"""## Repair on deliberately broken networks (benchmarks/repair_suite.py)

{len(configurations)} broken configurations ({len(families)} kinds: {"; ".join(families)}) on
{", ".join(sorted({r["data"] for r in broken}))}, and {len({r["case"] for r in healthy})} healthy ones, each run with
{len(SEEDS)} seeds ({len(broken)} broken and {len(healthy)} healthy runs). `trainability.repair(model, data)` with each configuration's training settings
(SGD at lr 0.01 unless the configuration says otherwise: Adam for the transformers and at lr 0.01 for the
recurrent memory tasks, momentum 0.9 for the CNNs), the default budget of
{BUDGET} steps, one worker. The memory tasks are generated: {", ".join(sorted(GENERATED))} (the class written at the
first of T steps of noise, read from the last state). *Repaired*: the returned model, trained with the returned settings for the same
budget and seed, reaches at least {REPAIRED_FRACTION:.0%} of the validation accuracy of the correctly built
counterpart under the same budget and seed, and repair itself found that it trains (its criterion, docs/REPAIR.md);
by the first condition alone, {letter} of {len(broken)}. *One normal training run*: the counterpart trained epoch by epoch
until its validation accuracy has not improved for {PATIENCE} epochs (at most {MAX_EPOCHS}). *Cost*: repair's
wall-clock time (doctor passes, screening, planning, range tests and evaluation included) over the normal run's, and
its training steps (every run and range test) over the normal run's steps, both on one torch thread.

| | trainability repair (this suite) | AutoTrainer (its own benchmark) |
|---|---|---|
| repaired | **{repaired} of {len(broken)} runs ({repaired / len(broken):.1%})**; {always} of {len(configurations)} configurations in every seed | 97.3% of 262 (ICSE 2021); 98.4% of 422 (2024 extension) |
| healthy networks left alone | **{alone} of {len(healthy)} runs ({alone / max(len(healthy), 1):.0%})** | not reported |
| candidates trained, mean | {statistics.mean(tried):.2f} (median {statistics.median(tried):g}, most {max(tried)}); screened out by the doctor without training: {statistics.mean(screened):.2f} | up to 10 retrainings per model |
| cost, mean (time) | **{statistics.mean(times):.2f}x** one normal run (median {statistics.median(times):.2f}x, worst {max(times):.2f}x) | 2.14x the original training time (median 1.76x, worst 37x) |
| cost, mean (steps) | {statistics.mean(steps):.2f}x (median {statistics.median(steps):.2f}x, worst {max(steps):.2f}x) | |

AutoTrainer's figures were measured on its own benchmark of Keras models (Zhang et al., ICSE 2021, and the
2024 extension), not on these networks; they are quoted for scale, not reproduced.

{_table(broken)}

Each row: means over the seeds; *trained*, candidates raced (the network as it is not counted); *screened out*,
candidates the doctor rejected at initialization, never trained. Runs not repaired:
{_misses(broken)}. Healthy configurations (left
alone = healthy verdict, no candidate tried):
{", ".join(sorted({f"{r['case']} {sum(x['left_alone'] for x in healthy if x['case'] == r['case'])}/{len(SEEDS)}" for r in healthy}))}.

Networks built differently, run apart once the design was settled: the next section.

Machine: {machine()}; the whole suite took {wall / 60:.1f} minutes."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the configurations whose name contains this")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="one broken and one healthy configuration, one seed (the smoke run)")
    parser.add_argument("--seeds", type=int, help="run only the first N seeds")
    parser.add_argument("--held-out", action="store_true",
                        help="run the held-out networks instead (their own section of docs/RESULTS.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    global SEEDS
    if args.quick:
        SEEDS = SEEDS[:1]
    if args.seeds:
        SEEDS = SEEDS[: args.seeds]
    pool = HELD_OUT if args.held_out else CASES
    quick = QUICK if not args.held_out else tuple(next(c.name for c in pool if c.healthy is h) for h in (False, True))
    chosen = lambda c: (args.only is None or args.only in c.name) and (not args.quick or c.name in quick)  # noqa: E731
    cases = [c for c in pool if chosen(c)]
    torch.manual_seed(0)  # warm up (imports, first passes) before anything is timed
    trainability.repair(mlp(8, 4, depth=2, width=8), "blobs", budget_steps=10, workers=1)
    start = time.perf_counter()
    broken, healthy = [], []
    for case in cases:
        for seed in SEEDS:
            row = run_case(case, seed)
            (healthy if case.healthy else broken).append(row)
            shown = {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()}
            print(shown, flush=True)
    wall = time.perf_counter() - start
    if args.held_out:
        text = held_out_report(broken, healthy, wall) if broken and healthy else ""
    else:
        text = report(broken, healthy, wall) if broken and healthy else ""
    if text and not args.no_write and args.only is None:
        from _checks import emit
        from _results import write_section

        name = "repair_held_out" if args.held_out else "repair_suite"
        emit(name, checks(broken, healthy, held_out=args.held_out))
        write_section(name, text)
    print(text or "(partial run: nothing written)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    sys.exit(main())
