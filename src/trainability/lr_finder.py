"""The learning-rate range test: find a learning rate by growing it during one short run.

Smith ("Cyclical Learning Rates for Training Neural Networks", WACV 2017; the "LR range test")
and the textbooks after him: train for a few hundred steps while the learning rate grows
exponentially from a tiny value (``1e-7``) to a huge one (``10``),

    lr_i = start * (end / start) ** (i / (steps - 1)),

record the loss at every step, and stop once it has clearly turned up (the smoothed loss over
``diverge`` times its lowest, or NaN/Inf). The loss first stays flat (the rate is too small to
move anything), then falls, reaches its lowest, and turns up when the rate becomes too large.
The rate where the smoothed loss is lowest is already at the edge of instability: choose one
about ten times below it (:attr:`LRRangeTest.suggestion`).

The loss is smoothed with a bias-corrected exponential moving average whose memory is a third
of a decade of rates (``beta = 1 - 3 / steps_per_decade``): a longer memory lags the curve (its
minimum moves to larger rates), a shorter one leaves the mini-batch noise in.

The model is left as it was: the test trains a copy, and the global random state is restored.

>>> import torch
>>> from trainability import mlp
>>> from trainability.lr_finder import find_lr
>>> x, y = torch.randn(512, 8), torch.randint(0, 2, (512,))
>>> test = find_lr(mlp(8, 2, depth=2, width=16), (x, y), steps=60)
>>> 1e-7 <= test.suggestion <= 10
True
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Where the range starts and ends (Smith 2017; the textbook's 1e-7 to 10).
START_LR = 1e-7
END_LR = 10.0
#: Steps of the test: a few hundred in the literature; 100 covers 8 decades at 12.5 steps each.
STEPS = 100
#: The test stops once the smoothed loss exceeds this multiple of its lowest value.
DIVERGE = 4.0
#: The chosen rate is this factor below the rate of the lowest smoothed loss.
BELOW_MINIMUM = 10.0
#: The loss "falls" when its smoothed lowest is at least this fraction below where it started.
FALL = 0.05


@dataclass
class LRRangeTest:
    """What :func:`find_lr` measured: every step's rate and loss, and the rate to use.

    ``lr_min`` is the rate where the smoothed loss was lowest; ``suggestion`` the rate to train
    with (``lr_min / 10``). ``falls`` says whether the loss fell at all over the range (its
    smoothed lowest at least :data:`FALL` below the median of the first tenth of the test): a
    network whose loss never moves (dead, saturated, or a task it cannot learn) has no good
    rate, and ``suggestion`` then says nothing.
    """

    optimizer: str
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    lr_min: float
    suggestion: float
    falls: bool
    stopped: str  # why the test ended: "end of range", "diverged" or "non-finite loss"
    start_lr: float = START_LR
    end_lr: float = END_LR
    batch_size: int = 32
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.lrs)

    def summary(self) -> str:
        """A few lines: the chosen rate, the minimum, how the test ended."""
        head = (f"learning-rate range test ({self.optimizer}, {self.steps} steps from {self.start_lr:g} to "
                f"{self.end_lr:g}, batch {self.batch_size}; ended: {self.stopped})")  # fmt: skip
        if not self.falls:
            return (f"{head}\nthe loss did not fall anywhere in the range (lowest smoothed loss "
                    f"{min(self.smoothed):.4g} against {self.smoothed[0]:.4g} at the start): no rate trains this "
                    "network as it is; diagnose it (trainability doctor) before choosing a rate")  # fmt: skip
        return (f"{head}\nsuggested learning rate: {self.suggestion:.3g} ({BELOW_MINIMUM:g}x below {self.lr_min:.3g}, "
                f"where the smoothed loss was lowest: {min(self.smoothed):.4g}, from {self.smoothed[0]:.4g})")  # fmt: skip

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "suggestion": self.suggestion, "lr_min": self.lr_min, "falls": self.falls,
                "stopped": self.stopped, "start_lr": self.start_lr, "end_lr": self.end_lr, "batch_size": self.batch_size,
                "seconds": self.seconds, "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed}  # fmt: skip

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """The loss against the rate (log scale), raw and smoothed, with the minimum and the
        suggested rate marked; written to ``path`` (any format matplotlib writes)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        finite = [(lr, loss) for lr, loss in zip(self.lrs, self.losses, strict=True) if math.isfinite(loss)]
        if finite:
            ax.plot(*zip(*finite, strict=True), color="0.75", lw=0.8, label="loss (each step)")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=1.8, label="smoothed")
        ax.axvline(self.lr_min, color="C3", ls=":", lw=1.2, label=f"lowest at {self.lr_min:.2g}")
        if self.falls:
            ax.axvline(self.suggestion, color="C2", lw=1.5, label=f"suggested {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        low, high = min(self.smoothed), self.smoothed[0]
        ax.set_ylim(low - 0.1 * abs(high - low) - 1e-12, max(self.smoothed[: self.smoothed.index(low) + 1]) + 0.5 * abs(high - low) + 1e-12)
        ax.set_title(f"learning-rate range test ({self.optimizer}, batch {self.batch_size})")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


# -- data -------------------------------------------------------------------------------------------
def _training_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor] | Any:
    """(inputs, targets) tensors, or a DataLoader/Dataset to iterate."""
    from torch.utils.data import DataLoader, Dataset

    from trainability import datasets

    if isinstance(data, (str, os.PathLike)):
        data = datasets.load(os.fspath(data))
    if isinstance(data, datasets.Splits):
        return data.train.x, data.train.y
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        if len(data[0]) != len(data[1]):
            raise ValueError(f"the data has {len(data[0])} inputs but {len(data[1])} targets")
        if len(data[0]) == 0:
            raise ValueError("the data is empty")
        return data[0], data[1]
    if isinstance(data, (DataLoader, Dataset)):
        return data
    raise ValueError(f"data must be a data set name or file, trainability.datasets.Splits, an (inputs, targets) tuple of "
                     f"tensors, a Dataset or a DataLoader; got {type(data).__name__}")  # fmt: skip


def _batches(data: Any, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches for ever: seeded permutations of the tensors, or the loader again and again."""
    from torch.utils.data import DataLoader

    if isinstance(data, tuple):
        x, y = data
        while True:
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                yield x[idx], y[idx]
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator)
    while True:
        empty = True
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError("a Dataset or DataLoader for find_lr must give (inputs, targets) pairs")
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise ValueError("the data is empty")


# -- the test -----------------------------------------------------------------------------------------
def smooth(losses: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (as Adam's moments): ``m_i = beta m_{i-1} +
    (1 - beta) x_i``, reported as ``m_i / (1 - beta^i)``; a non-finite value stays non-finite."""
    out, m = [], 0.0
    for i, value in enumerate(losses, start=1):
        if not math.isfinite(value):
            out.append(math.inf)
            continue
        m = beta * m + (1 - beta) * value
        out.append(m / (1 - beta**i))
    return out


def _validate(optimizer: Any, start_lr: Any, end_lr: Any, steps: Any, batch_size: Any, diverge: Any, momentum: Any) -> None:
    from trainability.training import OPTIMIZERS

    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid names: {', '.join(OPTIMIZERS)} (find_lr builds its own "
                         "optimizer on a copy of the model, so it takes a name)")  # fmt: skip
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not end_lr > start_lr:
        raise ValueError(f"end_lr ({end_lr:g}) must be larger than start_lr ({start_lr:g}): the rate grows during the test")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an int of at least 10 (a few hundred is usual), got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(diverge, bool) or not isinstance(diverge, (int, float)) or not diverge > 1:
        raise ValueError(f"diverge must be a number above 1 (the test stops when the loss exceeds diverge x its lowest), got {diverge!r}")
    if not isinstance(momentum, (int, float)) or momentum < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum!r}")


def find_lr(
    model: nn.Module,
    data: Any,
    *,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    batch_size: int = 32,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = STEPS,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    clip_norm: float | None = None,
    diverge: float = DIVERGE,
    seed: int = 0,
) -> LRRangeTest:
    """Smith's learning-rate range test (see the module docstring) on a copy of ``model``.

    ``data`` is what :func:`trainability.fit` and :func:`trainability.repair` take: a data set
    name or file (its training split), :class:`~trainability.datasets.Splits`, an ``(inputs,
    targets)`` tuple of tensors, a Dataset or a DataLoader. ``optimizer`` (a name, with
    ``momentum`` for SGD and RMSprop) is the one you will train with: the good rate depends on
    it. ``loss`` defaults to cross-entropy for integer targets and MSE for float targets;
    ``clip_norm`` clips the gradient norm at every step, as ``fit`` would. Returns an
    :class:`LRRangeTest`; its ``suggestion`` is the rate to train with, ``plot(path)`` draws the
    curve.
    """
    import time

    from trainability.losses import default_loss
    from trainability.training import make_optimizer

    _validate(optimizer, start_lr, end_lr, steps, batch_size, diverge, momentum)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    source = _training_tensors(data)
    started = time.perf_counter()
    try:
        work = copy.deepcopy(model)
    except Exception as exc:
        raise ValueError(f"find_lr trains a copy of the model (copy.deepcopy), which failed: {type(exc).__name__}: {exc}"
                         .splitlines()[0]) from exc  # fmt: skip
    loss_fn = loss if loss is not None else default_loss
    decades = math.log10(end_lr / start_lr)
    beta = max(0.0, 1.0 - 3.0 / max(steps / decades, 3.0))
    lrs, losses = [], []
    stopped = "end of range"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        work.train()
        opt = make_optimizer(optimizer.lower(), work, lr=start_lr, momentum=momentum)
        params = [p for p in work.parameters() if p.requires_grad]
        batches = _batches(source, batch_size, torch.Generator().manual_seed(seed))
        best, m = math.inf, 0.0
        for i in range(steps):
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = next(batches)
            try:
                value_t = loss_fn(work(x), y)
            except Exception as exc:
                raise ValueError(f"the model and the data do not fit: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
            value = float(value_t.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                stopped = "non-finite loss"
                break
            value_t.backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            m = beta * m + (1 - beta) * value  # the smoothed loss, as smooth() computes it
            current = m / (1 - beta ** len(losses))
            best = min(best, current)
            if i >= 5 and current > diverge * best:
                stopped = "diverged"
                break
    smoothed = smooth(losses, beta)
    finite = [(s, i) for i, s in enumerate(smoothed) if math.isfinite(s)]
    if not finite:
        raise ValueError("the loss was NaN or infinite from the first step of the range test: no rate trains this network "
                         "as it is; diagnose it (trainability doctor) first")  # fmt: skip
    low, at = min(finite)
    start = sorted(s for s, _ in finite[: max(3, len(finite) // 10)])
    falls = low < (1 - FALL) * start[len(start) // 2]  # below the median of the first tenth
    return LRRangeTest(optimizer.lower(), lrs, losses, smoothed, lrs[at], lrs[at] / BELOW_MINIMUM, falls, stopped,
                       start_lr, end_lr, batch_size, time.perf_counter() - started)  # fmt: skip


__all__ = ["BELOW_MINIMUM", "DIVERGE", "END_LR", "START_LR", "STEPS", "LRRangeTest", "find_lr", "smooth"]
