"""Small models of the kinds people train, built from ``transformers`` configs (no downloads) and
``torch.nn``, with a batch each takes; shared by the architecture tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

VOCAB, SEQ, CLASSES = 120, 12, 3


def _transformers():
    import pytest

    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def tokens(batch: int = 8, length: int = SEQ, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def labels(batch: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, CLASSES, (batch,), generator=torch.Generator().manual_seed(seed))


def bert(layers: int = 4, hidden: int = 32, **config: Any) -> nn.Module:
    t = _transformers()
    cfg = t.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                       intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=CLASSES, **config)  # fmt: skip
    return t.BertForSequenceClassification(cfg)


def gpt2(layers: int = 4, hidden: int = 32, **config: Any) -> nn.Module:
    t = _transformers()
    return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=VOCAB, n_embd=hidden, n_layer=layers, n_head=4, n_positions=64, **config))


def vit(layers: int = 4, hidden: int = 32, **config: Any) -> nn.Module:
    t = _transformers()
    cfg = t.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=4, intermediate_size=2 * hidden, num_labels=CLASSES, **config)  # fmt: skip
    return t.ViTForImageClassification(cfg)


def convnext(**config: Any) -> nn.Module:
    t = _transformers()
    cfg = t.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16, 32, 64], depths=[2, 2, 3, 2], num_labels=CLASSES, **config)
    return t.ConvNextForImageClassification(cfg)


def resnet(**config: Any) -> nn.Module:
    t = _transformers()
    cfg = t.ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[2, 2, 2, 2],
                         layer_type="basic", num_labels=CLASSES, **config)  # fmt: skip
    return t.ResNetForImageClassification(cfg)


class Encoder(nn.Module):
    """Token embedding, ``nn.TransformerEncoder`` (pre- or post-LN), mean pooling, a classifier."""

    def __init__(self, norm_first: bool, layers: int = 4, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).mean(1))


class Attention(nn.Module):
    """``nn.MultiheadAttention`` used directly: self-attention, a residual LayerNorm, a head."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        a, _ = self.attn(x, x, x, need_weights=False)
        return self.head(self.norm(x + a).mean(1))


class Recurrent(nn.Module):
    """Embedding, a recurrent layer, a classifier reading the last state (``"last"``), the mean
    over time (``"pool"``) or every step (``"step"``)."""

    def __init__(self, kind: str = "lstm", read: str = "pool", hidden: int = 32, layers: int = 1,
                 nonlinearity: str = "tanh") -> None:  # fmt: skip
        super().__init__()
        self.read = read
        self.embed = nn.Embedding(VOCAB, 16)
        if kind == "rnn":
            self.rnn: nn.RNNBase = nn.RNN(16, hidden, layers, batch_first=True, nonlinearity=nonlinearity)
        else:
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](16, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))
        if self.read == "last":
            return self.head(out[:, -1])
        if self.read == "pool":
            return self.head(out.mean(1))
        return self.head(out).flatten(0, 1)


class ResidualMLP(nn.Module):
    """``x = x + block(x)`` over a stack of blocks (LayerNorm, Linear, ReLU, Linear), He init;
    ``norm=False`` removes the normalization, so each block adds its variance to the stream."""

    def __init__(self, blocks: int = 16, d: int = 64, norm: bool = True) -> None:
        super().__init__()
        self.stem = nn.Linear(20, d)
        self.blocks = nn.ModuleList(
            nn.Sequential(*([nn.LayerNorm(d)] if norm else []), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
            for _ in range(blocks)
        )
        self.head = nn.Linear(d, CLASSES)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def images(batch: int = 8, size: int = 16, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


#: name -> (model factory, batch factory): each batch is what the model's forward takes, with
#: labels inside for the ``transformers`` models (their own loss) or as targets for the others.
HEALTHY: dict[str, tuple[Callable[[], nn.Module], Callable[[], Any]]] = {
    "bert": (bert, lambda: {"input_ids": tokens(), "attention_mask": torch.ones(8, SEQ, dtype=torch.long), "labels": labels()}),
    "gpt2": (gpt2, lambda: {"input_ids": tokens(), "labels": tokens()}),
    "vit": (vit, lambda: {"pixel_values": images(), "labels": labels()}),
    "convnext": (convnext, lambda: {"pixel_values": images(size=32), "labels": labels()}),
    "resnet": (resnet, lambda: {"pixel_values": images(size=32), "labels": labels()}),
    "encoder_post_ln": (lambda: Encoder(norm_first=False), lambda: [tokens(), labels()]),
    "encoder_pre_ln": (lambda: Encoder(norm_first=True), lambda: [tokens(), labels()]),
    "multihead_attention": (Attention, lambda: [tokens(), labels()]),
    "lstm_pool": (lambda: Recurrent("lstm", "pool"), lambda: [tokens(length=40), labels()]),
    "gru_pool": (lambda: Recurrent("gru", "pool"), lambda: [tokens(length=40), labels()]),
    "lstm_every_step": (lambda: Recurrent("lstm", "step", layers=2), lambda: [tokens(length=40), labels(8 * 40)]),
    "gru_every_step": (lambda: Recurrent("gru", "step"), lambda: [tokens(length=40), labels(8 * 40)]),
}
