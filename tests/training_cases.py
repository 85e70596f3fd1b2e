"""Small real training runs for the training-time Monitor's tests: each failure is real (the run
fails) and its named fix cures it (the same model with the fix trains), and the healthy runs of
several families are trained to the end. Models are small enough for a run to take a second or
two on one CPU thread."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainability import Monitor, initialize


@dataclass
class Run:
    monitor: Monitor
    losses: list[float] = field(default_factory=list)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.monitor.findings}

    def first(self, kind: str) -> Any:
        return next((f for f in self.monitor.findings if f.kind == kind), None)

    def tail(self, n: int = 20) -> float:
        """The mean loss of the last ``n`` steps (inf if any is non-finite)."""
        last = self.losses[-n:]
        return sum(last) / len(last) if all(math.isfinite(v) for v in last) else math.inf

    @property
    def first_non_finite(self) -> int | None:
        return next((i for i, v in enumerate(self.losses) if not math.isfinite(v)), None)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Callable[[int], Any], steps: int, *,
          loss: Callable[[Any, Any], torch.Tensor] | None = None, scheduler: Any = None, every: Any = None,
          stop_on_nan: bool = True) -> Run:  # fmt: skip
    """A plain loop under a Monitor: ``batch(step)`` gives ``(inputs, targets)`` or a dict of keyword
    arguments holding ``labels`` (the model's own loss)."""
    monitor = Monitor(model, optimizer, every=every)
    run = Run(monitor)
    with monitor:
        for step in range(steps):
            b = batch(step)
            if isinstance(b, dict):
                out = model(**b)
                value = out.loss
            else:
                out = model(b[0])
                value = (loss or F.cross_entropy)(out, b[1])
            optimizer.zero_grad()
            value.backward()
            monitor.step(value)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            run.losses.append(float(value.detach()))
            if stop_on_nan and not math.isfinite(run.losses[-1]):
                break
    return run


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, steps: int) -> Any:
    def factor(s: int) -> float:
        return min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# -- data ---------------------------------------------------------------------------------------
_DIGITS: tuple[torch.Tensor, torch.Tensor] | None = None


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.data, dtype=torch.float32)
        _DIGITS = ((x - x.mean(0)) / (x.std(0) + 1e-6), torch.tensor(d.target))
    return _DIGITS


def digit_batches(size: int = 64, seed: int = 1, images: bool = False) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    x, y = digits()
    if images:
        x = x.reshape(-1, 1, 8, 8)
    g = torch.Generator().manual_seed(seed)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, len(x), (size,), generator=g)
        return x[i], y[i]

    return batch


def copy_batches(vocab: int = 64, half: int = 8, size: int = 32, seed: int = 1) -> Callable[[int], dict[str, torch.Tensor]]:
    """Next-token prediction of ``x x``: the second half is predictable from the first."""
    g = torch.Generator().manual_seed(seed)

    def batch(step: int) -> dict[str, torch.Tensor]:
        x = torch.randint(0, vocab, (size, half), generator=g)
        ids = torch.cat([x, x], 1)
        return {"input_ids": ids, "labels": ids}

    return batch


# -- models -------------------------------------------------------------------------------------
def _transformers() -> Any:
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def gpt2(layers: int = 2, width: int = 64, vocab: int = 64, seed: int = 0, **config: Any) -> nn.Module:
    t = _transformers()
    torch.manual_seed(seed)
    cfg = t.GPT2Config(vocab_size=vocab, n_embd=width, n_layer=layers, n_head=4, n_positions=64, resid_pdrop=0.0,
                       embd_pdrop=0.0, attn_pdrop=0.0, **config)  # fmt: skip
    return t.GPT2LMHeadModel(cfg)


def bert(layers: int = 2, width: int = 64, vocab: int = 64, classes: int = 4, seed: int = 0) -> nn.Module:
    t = _transformers()
    torch.manual_seed(seed)
    cfg = t.BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
                       intermediate_size=2 * width, max_position_embeddings=32, num_labels=classes,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    return t.BertForSequenceClassification(cfg)


def majority_batches(vocab: int = 64, length: int = 16, size: int = 32, seed: int = 1) -> Callable[[int], dict[str, torch.Tensor]]:
    """Classify a sequence by the commonest residue mod 4 of its first four tokens."""
    g = torch.Generator().manual_seed(seed)

    def batch(step: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(1, vocab, (size, length), generator=g)
        return {"input_ids": ids, "labels": (ids[:, :4] % 4).mode(dim=1).values}

    return batch


def mlp(depth: int = 4, width: int = 128, inputs: int = 64, classes: int = 10, seed: int = 0,
        activation: type[nn.Module] = nn.ReLU) -> nn.Module:  # fmt: skip
    """A plain stack, initialized for its activation (the doctor is silent on it at step 0)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = inputs
    for _ in range(depth):
        layers += [nn.Linear(d, width), activation()]
        d = width
    model = nn.Sequential(*layers, nn.Linear(d, classes))
    initialize(model, seed=seed)
    return model


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip


class LSTMClassifier(nn.Module):
    def __init__(self, hidden: int = 32, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(10, 16)
        self.lstm = nn.LSTM(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(x))[0][:, -1])


def recall_batches(length: int = 8, size: int = 64, seed: int = 1) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Recall the sequence's first digit at its end."""
    g = torch.Generator().manual_seed(seed)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 10, (size, length), generator=g)
        return x, x[:, 0]

    return batch
