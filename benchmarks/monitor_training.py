"""The Monitor on training runs that fail: how early it names the cause, and what it costs.

Each failing case is trained twice, as it is and with the fix the Monitor names, under a Monitor on
its default schedule (steps 0, 1, 2, 4, 8, 16, 32, then every 50). Reported per case: the first
finding (kind and step); the step where the loss degrades, the first non-finite loss or, for a run
that never blows up, the first step where the loss (a running median of 10 steps) is 25% above the
fixed run's, its twin on the same batches; the lead between the two; and whether the fixed run
trains and stays silent. Healthy runs of several families are trained to the end and must stay
silent. Then the cost: recording every step and the default schedule, against a plain training
step (two plain copies: their mean is the baseline, their ratio the noise floor), on a 50-layer width-256 ReLU MLP (batch 128) and a 2-layer GPT-2 (width 64, 4 heads, batch
32 x 16 tokens), at one thread and at the default thread count, round-robin slices of 50 steps.
Targets: a finding before the loss degrades in every case, silence on every healthy run, every
step at most 1.2x a plain step, the default schedule at most 1.02x.

    python benchmarks/monitor_training.py [--quick] [--slices 16]
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _checks import Check, context, emit, parser, setup, table
from _results import machine, write_section
from torch import nn

from trainability import Monitor, initialize

# -- models and data ----------------------------------------------------------------------------


def gpt2(seed: int = 0) -> nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def bert(seed: int = 0) -> nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=32, num_labels=4,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def mlp(seed: int = 0, depth: int = 4, width: int = 128) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = 64
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    model = nn.Sequential(*layers, nn.Linear(d, 10))
    initialize(model, seed=seed)
    return model


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                         nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))  # fmt: skip


class Recall(nn.Module):
    """An LSTM that recalls the first of 8 digits at the end."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed, self.lstm, self.head = nn.Embedding(10, 16), nn.LSTM(16, 32, batch_first=True), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(x))[0][:, -1])


_DIGITS: Any = None


def digits(images: bool = False, flip_at: int | None = None) -> Callable[[int], Any]:
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.data, dtype=torch.float32)
        _DIGITS = ((x - x.mean(0)) / (x.std(0) + 1e-6), torch.tensor(d.target))
    x, y = _DIGITS
    if images:
        x = x.reshape(-1, 1, 8, 8)
    g = torch.Generator().manual_seed(1)

    def batch(step: int) -> Any:
        i = torch.randint(0, len(x), (64,), generator=g)
        return x[i], ((y[i] + 1) % 10 if step == flip_at else y[i])  # flip_at: a batch of wrong labels

    return batch


def copy_task(step: int, _g: list[torch.Generator] = []) -> dict[str, torch.Tensor]:  # noqa: B006 - one stream of batches
    if step == 0 or not _g:
        _g[:] = [torch.Generator().manual_seed(1)]
    x = torch.randint(0, 64, (32, 8), generator=_g[0])
    ids = torch.cat([x, x], 1)
    return {"input_ids": ids, "labels": ids}


def majority(step: int, _g: list[torch.Generator] = []) -> dict[str, torch.Tensor]:  # noqa: B006
    if step == 0 or not _g:
        _g[:] = [torch.Generator().manual_seed(1)]
    ids = torch.randint(1, 64, (32, 16), generator=_g[0])
    return {"input_ids": ids, "labels": (ids[:, :4] % 4).mode(dim=1).values}


def recall(step: int, _g: list[torch.Generator] = []) -> Any:  # noqa: B006
    if step == 0 or not _g:
        _g[:] = [torch.Generator().manual_seed(1)]
    x = torch.randint(0, 10, (64, 8), generator=_g[0])
    return x, x[:, 0]


def warm(optimizer: torch.optim.Optimizer, steps: int) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (steps // 10)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Callable[[int], Any], steps: int,
          scheduler: Any = None) -> tuple[Monitor, list[float]]:  # fmt: skip
    monitor = Monitor(model, optimizer)
    losses: list[float] = []
    with monitor:
        for step in range(steps):
            b = batch(step)
            loss = model(**b).loss if isinstance(b, dict) else F.cross_entropy(model(b[0]), b[1])
            optimizer.zero_grad()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                break
    return monitor, losses


# -- the cases ----------------------------------------------------------------------------------
#: name -> (the failing run, the same model with the fix, steps, the fix)
def failing_cases(quick: bool) -> dict[str, tuple[Callable, Callable, int, str]]:
    n = 20 if quick else None
    return {
        "GPT-2 copy task, AdamW lr 0.1": (
            lambda s: train(m := gpt2(), torch.optim.AdamW(m.parameters(), lr=0.1), copy_task, s),
            lambda s: train(m := gpt2(), torch.optim.AdamW(m.parameters(), lr=1e-3), copy_task, s), n or 200, "lr 1e-3"),
        "BERT, AdamW lr 0.3": (
            lambda s: train(m := bert(), torch.optim.AdamW(m.parameters(), lr=0.3), majority, s),
            lambda s: train(m := bert(), torch.optim.AdamW(m.parameters(), lr=1e-3), majority, s), n or 200, "lr 1e-3"),
        "MLP, SGD lr 0.5 momentum 0.9 (diverges)": (
            lambda s: train(m := mlp(), torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9), digits(), s),
            lambda s: train(m := mlp(), torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), digits(), s), n or 200, "lr 0.05"),
        "MLP, Adam eps 1.0": (
            lambda s: train(m := mlp(), torch.optim.Adam(m.parameters(), lr=1e-3, eps=1.0), digits(), s),
            lambda s: train(m := mlp(), torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-8), digits(), s), n or 200, "eps 1e-8"),
        "MLP, SGD lr 1e-5 (too low)": (
            lambda s: train(m := mlp(), torch.optim.SGD(m.parameters(), lr=1e-5), digits(), s),
            lambda s: train(m := mlp(), torch.optim.SGD(m.parameters(), lr=1e-2), digits(), s), n or 300, "lr 1e-2"),
        "MLP, Adam, a batch of wrong labels at step 150": (
            lambda s: train(m := mlp(), torch.optim.Adam(m.parameters(), lr=1e-3), digits(flip_at=150), s),
            lambda s: train(m := mlp(), torch.optim.Adam(m.parameters(), lr=1e-3), digits(), s), n or 250, "skip that batch"),
    }  # fmt: skip


def healthy_cases(quick: bool) -> dict[str, tuple[Callable, int]]:
    n = 20 if quick else None
    return {
        "GPT-2, AdamW 3e-3, warm-up + cosine": (lambda s: train(m := gpt2(), o := torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01),
                                                                copy_task, s, warm(o, s)), n or 300),
        "BERT, AdamW 1e-3, warm-up + cosine": (lambda s: train(m := bert(), o := torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01),
                                                               majority, s, warm(o, s)), n or 300),
        "CNN + batch norm, SGD 0.05 momentum 0.9": (lambda s: train(m := cnn(), torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9,
                                                                    weight_decay=5e-4), digits(images=True), s), n or 300),
        "LSTM, Adam 3e-3": (lambda s: train(m := Recall(), torch.optim.Adam(m.parameters(), lr=3e-3), recall, s), n or 300),
        "MLP, Adam 1e-3 to a loss near 0": (lambda s: train(m := mlp(), torch.optim.Adam(m.parameters(), lr=1e-3), digits(), s), n or 600),
        "MLP, SGD, cosine to a rate of 0": (lambda s: train(m := mlp(), o := torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
                                                            digits(), s, torch.optim.lr_scheduler.CosineAnnealingLR(o, s)), n or 400),
    }  # fmt: skip


def running_median(values: list[float], window: int = 10) -> list[float]:
    return [statistics.median(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def degrades_at(sick: list[float], fixed: list[float]) -> int | None:
    """The first non-finite loss, else the first step whose 10-step running median is 25% above the fixed run's."""
    bad = next((i for i, v in enumerate(sick) if not math.isfinite(v)), None)
    if bad is not None:
        return bad
    a, b = running_median(sick), running_median(fixed)
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x > 1.25 * y and i >= 1), None)


# -- the cost ---------------------------------------------------------------------------------------
def _mlp_step(x: torch.Tensor, y: torch.Tensor) -> Callable[[nn.Module], torch.Tensor]:
    def call(model: nn.Module) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    return call


def _gpt2_step(batch: dict[str, torch.Tensor]) -> Callable[[nn.Module], torch.Tensor]:
    def call(model: nn.Module) -> torch.Tensor:
        return model(**batch).loss

    return call


#: Steps per timed slice: the default schedule's period in its steady state (one record a slice).
SLICE = 50


def overhead(slices: int, threads: int) -> dict[str, dict[str, float]]:
    """Mean step time of plain / default schedule / every step, per model, round-robin."""
    torch.set_num_threads(threads)
    out: dict[str, dict[str, float]] = {}
    for model_name in ("MLP 50 x 256, batch 128", "GPT-2 2 x 64, batch 32 x 16"):
        variants: dict[str, Any] = {}
        for variant in ("plain", "plain (twin)", "default schedule", "every step"):
            torch.manual_seed(0)
            if model_name.startswith("MLP"):
                model = mlp(depth=50, width=256)
                model[0] = nn.Linear(256, 256)
                initialize(model, seed=0)
                call = _mlp_step(torch.randn(128, 256), torch.randint(0, 10, (128,)))
            else:
                model = gpt2()
                call = _gpt2_step(copy_task(0))
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if "GPT" in model_name else torch.optim.SGD(model.parameters(), lr=1e-3)
            monitor = None if variant.startswith("plain") else Monitor(model, optimizer, every=1 if variant == "every step" else None)
            variants[variant] = (model, optimizer, call, monitor)
        times: dict[str, list[float]] = {v: [] for v in variants}

        def block(model: nn.Module, optimizer: Any, call: Callable, monitor: Monitor | None) -> float:
            start = time.perf_counter()
            for _ in range(SLICE):
                loss = call(model)
                loss.backward()
                if monitor is not None:
                    monitor.step(loss)
                else:
                    loss.detach()  # the plain loop keeps its loss, as the monitor does
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            return (time.perf_counter() - start) / SLICE

        for args in variants.values():  # warm-up, past the default schedule's doubling start (0, 1, 2, ..., 32)
            for _ in range(2):
                block(*args)
        for _ in range(slices):
            for variant, args in variants.items():
                times[variant].append(block(*args))
        for _, _, _, monitor in variants.values():
            if monitor is not None:
                monitor.close()
        out[model_name] = {v: statistics.median(t) for v, t in times.items()}
        # the baseline: both plain copies, slice by slice (two identical loops differ by a few
        # percent on a shared machine; their ratio is reported as the noise floor)
        out[model_name]["baseline"] = statistics.median((a + b) / 2 for a, b in zip(times["plain"], times["plain (twin)"], strict=True))
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--slices", type=int, default=16, help=f"round-robin slices of {SLICE} steps per variant")
    args = p.parse_args()
    started = setup(args)
    checks: list[Check] = []
    rows = []
    for name, (sick, fixed, steps, fix) in failing_cases(args.quick).items():
        monitor, losses = sick(steps)
        fixed_monitor, fixed_losses = fixed(steps)
        first = monitor.findings[0] if monitor.findings else None
        degrade = degrades_at(losses, fixed_losses)
        spike = "wrong labels" in name
        if spike:
            degrade = 150 if len(losses) > 150 else None
        trains = (statistics.fmean(fixed_losses[-20:]) < 0.7 * statistics.fmean(losses[-20:])
                  if math.isfinite(statistics.fmean(losses[-20:])) else True) if not spike else True  # fmt: skip
        early = first is not None and degrade is not None and first.step <= degrade
        rows.append(f"| {name} | {f'{first.kind} (step {first.step})' if first else 'none'} | "
                    f"{degrade if degrade is not None else 'never'} | {degrade - first.step if early else '-'} | {fix}: "
                    f"loss {statistics.fmean(fixed_losses[-20:]):.3g} vs {statistics.fmean(losses[-20:]):.3g}, "
                    f"{len(fixed_monitor.findings)} finding(s) |")  # fmt: skip
        if not args.quick and "too low" in name:  # a slow run fails gradually: the rule waits for evidence
            checks.append(Check(f"monitor names the cause within the first half of the run: {name}", f"first finding <= step {steps // 2}",
                                f"{first.kind if first else 'none'} at {first.step if first else '-'}",
                                first is not None and first.kind == "learning_rate_too_low" and first.step <= steps // 2))  # fmt: skip
        elif not args.quick:
            checks.append(Check(f"monitor names the cause before the loss degrades: {name}", "first finding <= degradation step",
                                f"{first.kind if first else 'none'} at {first.step if first else '-'}, degrades at {degrade}",
                                bool(early)))  # fmt: skip
            checks.append(Check(f"the fixed twin trains and is silent: {name}", "trains, 0 findings",
                                f"{'trains' if trains else 'does not train'}, {len(fixed_monitor.findings)} findings",
                                trains and not fixed_monitor.findings))  # fmt: skip
    healthy_rows = []
    for name, (run, steps) in healthy_cases(args.quick).items():
        monitor, losses = run(steps)
        healthy_rows.append(f"| {name} | {steps} | {losses[0]:.3g} -> {statistics.fmean(losses[-20:]):.3g} | "
                            f"{len(monitor.findings)} ({', '.join(sorted({f.kind for f in monitor.findings})) or 'silent'}) |")  # fmt: skip
        if not args.quick:
            checks.append(Check(f"a healthy run is silent: {name}", "0 findings", str(len(monitor.findings)), not monitor.findings))
    threads = sorted({1, min(2, os.cpu_count() or 1)})
    costs = {n: overhead(1 if args.quick else args.slices, n) for n in threads}
    torch.set_num_threads(args.threads)
    cost_rows = []
    for model_name in costs[threads[0]]:
        cells = []
        for n in threads:
            t = costs[n][model_name]
            base = t["baseline"]
            cells.append(f"{base * 1e3:.1f} ms | {t['plain (twin)'] / t['plain']:.3f}x | {t['default schedule'] / base:.3f}x | "
                         f"{t['every step'] / base:.3f}x")  # fmt: skip
            if not args.quick:
                checks.append(Check(f"default schedule, {model_name}, {n} thread(s)", "<= 1.02x", f"{t['default schedule'] / base:.3f}x",
                                    t["default schedule"] / base <= 1.02))  # fmt: skip
                checks.append(Check(f"every step, {model_name}, {n} thread(s)", "<= 1.2x", f"{t['every step'] / base:.3f}x",
                                    t["every step"] / base <= 1.2))  # fmt: skip
        cost_rows.append(f"| {model_name} | " + " | ".join(cells) + " |")
    header = " | ".join(f"{n} thread{'s' if n > 1 else ''}: plain step | plain twin | default | every step" for n in threads)
    body = f"""## The Monitor on failing and healthy runs (`benchmarks/monitor_training.py`)

Each failing run trained as it is and with the fix the Monitor names (its twin, on the same
batches), both under a Monitor on the default schedule. *Degrades at*: the first non-finite loss,
else the first step whose 10-step running median loss is 25% above the fixed twin's (for the batch
of wrong labels, the step it was fed). *Lead*: steps between the first finding and the degradation.

| failing run | first finding | degrades at | lead | the fix: its final loss vs the failing run's, its findings |
|---|---|---|---|---|
{chr(10).join(rows)}

| healthy run | steps | loss (first -> mean of the last 20) | findings |
|---|---|---|---|
{chr(10).join(healthy_rows)}

Cost: median step time of plain training, the Monitor on its default schedule and recording every
step, in round-robin slices of {SLICE} steps ({1 if args.quick else args.slices} slices each), after {2 * SLICE} steps of
warm-up: the default schedule's steady state, one record in 50 steps (its first 32 steps record 7
times, once). A slice is the schedule's period, so each holds one record and its median is the
amortized cost (with slices of 10 steps, a fifth of them held a record, and the median of the
monitor's slices was its 80th percentile without one, about 2% high). Two plain copies run beside them: the baseline is their mean, slice by slice, and
*plain twin* is one copy's time over the other's, the noise floor (identical loops differ by that
much on this shared machine; a difference below it is not measured).

| model | {header} |
|---|{"---|---|---|---|" * len(threads)}
{chr(10).join(cost_rows)}

{table(checks) if checks else "(--quick: no targets checked)"}

{context(started, machine())}
"""
    write_section("monitor_training", body)
    emit("monitor_training", checks)
    print(body)


if __name__ == "__main__":
    main()
