"""The textbook's story in one call, as ``trainability demo`` tells it.

A deep ReLU MLP with PyTorch's default initialization is diagnosed (vanishing gradients) and
trained: it stays at chance. The same network after :func:`trainability.initialize` is diagnosed
healthy and trains. Then the chapter's other two cures at the same depth, trained the same way:
SELU with LeCun normal weights (Klambauer et al. 2017), and batch norm before each ReLU with
PyTorch's default init left in place (Ioffe & Szegedy 2015). Every network gets the same
optimizer, learning rate, batch size, epochs and data order; only what the story varies differs.

>>> from trainability import datasets
>>> from trainability.demo import DemoSettings, run_demo
>>> result = run_demo(datasets.load("digits"), DemoSettings(depth=10, width=32, epochs=2), progress=False)
>>> result.default.report.healthy, result.fixed.report.healthy
(False, True)
"""

from __future__ import annotations

import copy
import math
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainability.doctor import Report, diagnose
from trainability.initialization import InitPlan, initialize
from trainability.models import mlp
from trainability.training import History, fit, make_optimizer


@dataclass(frozen=True)
class DemoSettings:
    """What every network in the demo shares, and why these values (printed by :meth:`why`).

    ``depth=30``: He et al. (2015) show a 30-layer plain ReLU network that stalls with a poorly
    scaled init and trains with theirs. ``width=100`` and SGD with ``lr=1e-3``, ``momentum=0.9``,
    ``batch_size=32``: the textbook's deep-network examples (Geron, ch. 11: 100 units a layer,
    SGD 1e-3, momentum 0.9, batch 32). ``epochs=40``: about 1,400 steps on digits' 1,150
    training images, enough for the fixed network to converge.
    """

    depth: int = 30
    width: int = 100
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("depth", 2), ("width", 1), ("epochs", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    def why(self, train_samples: int) -> str:
        """The settings and the reason for each; values changed from the defaults say so."""
        steps = self.epochs * math.ceil(train_samples / self.batch_size)
        default = DemoSettings.__dataclass_fields__

        def reason(text: str, *names: str) -> str:
            changed = [n for n in names if getattr(self, n) != default[n].default]
            return f"your choice of {', '.join(changed)}" if changed else text

        lines = [
            (f"{self.depth} hidden ReLU layers of {self.width} units: "
             + reason("the depth at which He et al. (2015) show a plain ReLU net stalling with Glorot init and "
                      "training with He init", "depth", "width")),
            (f"SGD, lr {self.lr:g}, momentum {self.momentum:g}, batch {self.batch_size}: "
             + reason("the optimizer of the textbook's deep-network examples (Geron, ch. 11), tuned to neither network",
                      "lr", "momentum", "batch_size")),
            (f"{self.epochs} epochs ({steps} steps on {train_samples} training samples), seed {self.seed}, one data order "
             "for all: " + reason("enough for the fixed network to converge", "epochs")),
        ]  # fmt: skip
        bullets = [textwrap.fill(line, 100, initial_indent="  - ", subsequent_indent="    ") for line in lines]
        return "\n".join(["The same settings for every network below, so that only the initialization differs:", *bullets])


@dataclass(frozen=True)
class Trained:
    """One network of the demo: what the doctor said before training, and how it trained."""

    label: str
    report: Report
    history: History

    @property
    def accuracy(self) -> float:
        """Validation accuracy after the last completed epoch (NaN if none completed)."""
        accuracy = self.history.metric("val_accuracy")
        return accuracy[-1] if accuracy else float("nan")


@dataclass(frozen=True)
class DemoResult:
    """Everything :func:`run_demo` measured; ``plot(path)`` draws the picture."""

    settings: DemoSettings
    data: str
    chance: float  # the validation accuracy of always answering the most frequent class
    plan: InitPlan
    default: Trained
    fixed: Trained
    selu: Trained
    batch_norm: Trained
    seconds: float

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: gradient RMS against depth before and after ``initialize``, and the
        validation accuracy of every network against the epoch."""
        path = Path(path)
        return plot_demo(self, path if path.suffix else path.with_suffix(".png"))  # what matplotlib writes


def _verdict_line(report: Report) -> str:
    if report.healthy:
        return "doctor: healthy"
    return "doctor: " + ", ".join(dict.fromkeys(f.kind for f in report.findings))


def _stopped(run: Trained) -> str:
    if not run.history.stopped:
        return ""
    return f"  [stopped after {len(run.history.epochs)} epochs: the loss became NaN or Inf; try a lower learning rate]"


def _train(label: str, model: torch.nn.Module, data: Any, settings: DemoSettings, progress: bool) -> History:
    """``fit`` one epoch at a time behind one progress bar; ``seed + epoch`` gives each epoch the
    data order a single ``fit(..., seed=seed)`` call would."""
    from tqdm.auto import tqdm

    optimizer = make_optimizer("sgd", model, lr=settings.lr, momentum=settings.momentum)
    history = History()
    with tqdm(total=settings.epochs, desc=f"{label:<28}", leave=True, file=sys.stderr, disable=not progress,
              bar_format="{desc} |{bar:20}| {n_fmt}/{total_fmt} epochs [{elapsed}{postfix}]") as bar:
        for epoch in range(settings.epochs):
            one = fit(model, data.train, val_data=data.validation, epochs=1, batch_size=settings.batch_size,
                      optimizer=optimizer, seed=settings.seed + epoch, monitor=False, progress=False)  # fmt: skip
            if one.stopped:  # a non-finite loss: fit explains it in one.findings
                history.stopped, history.findings = one.stopped, one.findings
                break
            history.epochs.append({**one.epochs[0], "epoch": epoch + 1})
            bar.set_postfix_str(f"val_accuracy {history.epochs[-1]['val_accuracy']:.3f}", refresh=False)
            bar.update()
    return history


def run_demo(
    data: Any,
    settings: DemoSettings | None = None,
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    threads: int | None = 1,
) -> DemoResult:
    """Run the story on ``data`` (:class:`trainability.datasets.Splits` of a classification set:
    ``train`` and ``validation``) and return what was measured.

    ``echo`` receives the story's text as it unfolds (the CLI passes ``print``); ``progress``
    shows a progress bar per network on stderr. ``threads`` is torch's intra-op thread count
    while the demo runs (``None``: leave it): one by default, because the matrices are small
    (100 x 100, batch 32) so more threads do not help, several threads per process on a busy
    machine slow each other down many-fold, and the numbers then do not depend on the core
    count. The caller's thread count and global RNG are left as they were.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(data, settings or DemoSettings(), progress, echo)
    finally:
        torch.set_num_threads(before)


def _run(data: Any, settings: DemoSettings, progress: bool, echo: Callable[[str], None] | None) -> DemoResult:
    if not data.classification:
        raise ValueError(f"the demo trains classifiers; {data.name} is a regression set: use e.g. digits")
    say = echo or (lambda _text: None)
    start = time.perf_counter()
    s = settings
    x, y = data.train  # the doctor looks at the whole training split: a few ms here
    chance = float(torch.bincount(data.validation.y).max()) / len(data.validation.y)

    def build(**kwargs: Any) -> torch.nn.Module:
        torch.manual_seed(s.seed)
        return mlp(data.in_features, data.n_outputs, depth=s.depth, width=s.width, init="default", **kwargs)

    with torch.random.fork_rng(devices=[]):
        say(f"trainability demo: the vanishing-gradient story of Geron's chapter 11 on {data.name} "
            f"({data.train.samples} training / {data.validation.samples} validation samples, {data.n_outputs} classes)\n")  # fmt: skip
        say(s.why(data.train.samples))

        sick = build(activation="relu")
        sick_report = diagnose(sick, x, y)
        say(f"\n== 1. {s.depth} ReLU layers with PyTorch's default init ==\n")
        say(sick_report.verdict())
        say("\n" + _why_default(s.width))

        fixed = copy.deepcopy(sick)
        plan = initialize(fixed, seed=s.seed)
        fixed_report = diagnose(fixed, x, y)
        say("\n== 2. The same network after trainability.initialize(model) ==\n")
        say(str(plan))
        say("\n" + fixed_report.verdict())

        say(f"\n== 3. Training both ({s.epochs} epochs, SGD lr {s.lr:g}, momentum {s.momentum:g}, batch {s.batch_size}) ==\n")
        default = Trained("PyTorch default init", sick_report, _train("PyTorch default init", sick, data, s, progress))
        healthy = Trained("after initialize()", fixed_report, _train("after initialize()", fixed, data, s, progress))
        for run in (default, healthy):
            say(f"{run.label:<28} validation accuracy {run.accuracy:.3f}{_stopped(run)}")
        say(f"{'chance (commonest class)':<28} validation accuracy {chance:.3f}")

        say("\n== 4. The textbook's other cures, same depth and training ==\n")
        selu = build(activation="selu")
        selu_plan = initialize(selu, seed=s.seed)
        lessons = []
        for label, model, how in (
            ("SELU + LeCun normal", selu, f"{selu_plan[0].initializer} from initialize()"),
            ("batch norm before each ReLU", build(activation="relu", batch_norm="before"), "PyTorch's default init kept"),
        ):
            report = diagnose(model, x, y)
            run = Trained(label, report, _train(label, model, data, s, progress))
            lessons.append(run)
            say(f"{label:<28} validation accuracy {run.accuracy:.3f}  ({how}; {_verdict_line(report)}){_stopped(run)}")

    return DemoResult(s, data.name, chance, plan, default, healthy, lessons[0], lessons[1], time.perf_counter() - start)


def _why_default(width: int) -> str:
    """Why PyTorch's default init fails a deep ReLU net, in numbers from mean-field theory."""
    from trainability import theory

    # nn.Linear's default: weights and biases U(+-1/sqrt(fan_in)), so sigma_w^2 = 1/3, sigma_b^2 = 1/(3 fan_in)
    default, he = theory.summary("relu", 1 / 3, 1 / (3 * width)), theory.summary("relu", 2.0)
    depth = default["max_trainable_depth"]
    text = (f"why: nn.Linear draws U(+-1/sqrt(fan_in)), a weight variance of 1/(3 fan_in), where a ReLU needs "
            f"2/fan_in (He). Mean-field theory: chi_1 = {default['chi_1']:.3g} a layer ({default['phase']} phase), so "
            f"gradients shrink about {1 / default['chi_1']:.0f}x a layer"
            + (f" and the trainable depth is about {depth:.0f} layers" if math.isfinite(depth) else "")
            + f"; He init gives chi_1 = {he['chi_1']:.3g} ({he['phase']}).")  # fmt: skip
    return textwrap.fill(text, 100, subsequent_indent="     ")


def plot_demo(result: DemoResult, path: Path) -> Path:
    """Two panels: gradient RMS at each weight layer's output before and after ``initialize``
    (log scale), and validation accuracy against the epoch for every network, chance dotted."""
    from trainability.doctor.plot import _pyplot

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    s = result.settings
    fig.suptitle(f"trainability demo: {s.depth} ReLU layers of {s.width} on {result.data}", fontsize=13)
    for run, color in ((result.default, "tab:red"), (result.fixed, "tab:green")):
        weights = [layer for layer in run.report.layers if layer.role == "weight"]
        rms = [v if v is not None and v > 0 else float("nan") for v in (layer.grad_rms for layer in weights)]
        left.plot(range(1, len(weights) + 1), rms, marker="o", ms=3, lw=1.4, color=color, label=run.label)
    left.set_yscale("log")
    left.set_xlabel("weight layer (input to output)")
    left.set_ylabel("gradient RMS at the layer's output")
    left.set_title("before training: the doctor's gradient against depth")
    left.legend(loc="best", fontsize=9)
    curves = ((result.default, "tab:red", "-", 2.0), (result.fixed, "tab:green", "-", 2.0),
              (result.selu, "tab:blue", "--", 1.2), (result.batch_norm, "tab:purple", "--", 1.2))  # fmt: skip
    for run, color, style, width in curves:
        accuracy = run.history.metric("val_accuracy")
        right.plot(range(1, len(accuracy) + 1), accuracy, ls=style, lw=width, color=color,
                   label=f"{run.label} ({run.accuracy:.2f})")  # fmt: skip
    right.axhline(result.chance, color="gray", ls=":", lw=1, label=f"chance ({result.chance:.2f})")
    right.set_ylim(0, 1)
    right.set_xlabel("epoch")
    right.set_ylabel("validation accuracy")
    right.set_title(f"training: SGD lr {s.lr:g}, momentum {s.momentum:g}, batch {s.batch_size}")
    right.legend(loc="center right", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["DemoResult", "DemoSettings", "Trained", "plot_demo", "run_demo"]
