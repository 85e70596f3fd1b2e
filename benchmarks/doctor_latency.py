"""How long one diagnosis takes next to one plain training step, case by case.

Each case is a model with a batch: 100-layer, width-100 ReLU MLPs at batch 256, initialized with
``torch.nn.init.kaiming_normal_``, ``xavier_uniform_``, PyTorch's default and the presets
(``trainability.initialize``); a BERT-style encoder from ``transformers`` (4 layers, hidden 64,
batch 32 of 64 tokens, labels in the batch: the model's own loss); an LSTM classifier (2 layers of
128, 100 steps, batch 32), where the doctor also records the gradient at every time step. The plain step is forward, loss, backward and
zero_grad. Within a case the two are timed alternately, one repetition each in turn, so that the
shared machine's noise hits both alike; the theory's cache is cleared before every diagnosis, so
each one pays for ``beyond_depth_scale``'s prediction as a fresh model would. Medians and their
ratio go to docs/RESULTS.md, with the median time spent in ``beyond_depth_scale``.
Target: diagnose at most 2.5x the plain step on every case, at the default thread count.

Add a case by appending a :class:`Case` to ``CASES`` (a model factory, a batch factory and a loss).

Run: python benchmarks/doctor_latency.py [--repeats 30] [--threads N]
(``--threads 1`` on a machine shared with other jobs: two intra-op threads contending with other
processes make both timings swing several-fold.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _results import machine, write_section
from torch import nn

import trainability.doctor.rules as rules
from trainability import initialize, mlp
from trainability.batches import Batch, model_loss
from trainability.doctor import diagnose
from trainability.theory import finite_depth

TARGET = 2.5  # issue 18: one diagnosis at most 2.5x a plain step at the default thread count


@dataclass
class Case:
    name: str
    model: Callable[[], nn.Module]
    batch: Callable[[], tuple[Any, torch.Tensor | None]]  # (inputs, targets); a dict with labels: no targets
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy


def _mlp(init: Callable[[nn.Module], None] | None) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model = mlp(100, 10, depth=100, width=100, activation="relu", init="default")
        if init is not None:
            init(model)
        return model

    return build


def _each_linear(fill: Callable[[torch.Tensor], Any]) -> Callable[[nn.Module], None]:
    def init(model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                fill(m.weight)
                nn.init.zeros_(m.bias)

    return init


def _mlp_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(256, 100), torch.randint(0, 10, (256,))


def _bert() -> nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=256, num_labels=5)  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _bert_batch() -> tuple[dict[str, torch.Tensor], None]:
    ids = torch.randint(0, 1000, (32, 64))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 5, (32,))}, None


class _LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.lstm = nn.LSTM(64, 128, num_layers=2, batch_first=True)
        self.head = nn.Linear(128, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(ids))[0][:, -1])


def _lstm_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, 1000, (32, 100)), torch.randint(0, 5, (32,))


CASES = [
    Case("ReLU MLP, kaiming_normal_", _mlp(_each_linear(nn.init.kaiming_normal_)), _mlp_batch),
    Case("ReLU MLP, xavier_uniform_", _mlp(_each_linear(nn.init.xavier_uniform_)), _mlp_batch),
    Case("ReLU MLP, PyTorch default", _mlp(None), _mlp_batch),
    Case("ReLU MLP, presets (trainability.initialize)", _mlp(initialize), _mlp_batch),
    Case("BERT-style encoder (transformers, 4 x 64)", _bert, _bert_batch),
    Case("LSTM classifier (2 x 128, 100 steps)", _LSTMClassifier, _lstm_batch),
]


def _timed_rule() -> list[float]:
    """Wrap ``beyond_depth_scale`` as ``diagnose`` calls it, recording each call's seconds."""
    spent: list[float] = []
    rule = rules.beyond_depth_scale

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return rule(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    rules.beyond_depth_scale = timed  # type: ignore[assignment]
    return spent


def measure(case: Case, repeats: int, rule_times: list[float]) -> dict[str, float]:
    torch.manual_seed(0)
    model, (x, y) = case.model(), case.batch()

    batch = Batch.of(x, y)

    def step() -> None:
        output = batch(model)
        loss = model_loss(output) if y is None else case.loss(output, y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def doctor() -> None:
        finite_depth._propagate.cache_clear()  # every diagnosis predicts afresh
        diagnose(model, x, y, loss_fn=None if y is None else case.loss)

    for _ in range(5):  # warm-up
        step()
        doctor()
    rule_times.clear()
    times: dict[str, list[float]] = {"step": [], "doctor": []}
    for _ in range(repeats):
        for name, fn in (("step", step), ("doctor", doctor)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    step_ms = statistics.median(times["step"]) * 1e3
    doctor_ms = statistics.median(times["doctor"]) * 1e3
    rule_ms = statistics.median(rule_times) * 1e3 if rule_times else float("nan")
    return {"step": step_ms, "doctor": doctor_ms, "ratio": doctor_ms / step_ms, "rule": rule_ms}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rule_times = _timed_rule()
    results = [(case, measure(case, args.repeats, rule_times)) for case in CASES]
    rows = "\n".join(
        f"| {case.name} | {r['step']:.2f} | {r['doctor']:.2f} | **{r['ratio']:.2f}x** | "
        f"{'not run' if r['rule'] != r['rule'] else format(r['rule'], '.2f')} |"
        for case, r in results
    )
    worst_case, worst = max(results, key=lambda cr: cr[1]["ratio"])
    verdict = (f"Every case is within the {TARGET:g}x target (worst: {worst_case.name}, {worst['ratio']:.2f}x)."
               if worst["ratio"] <= TARGET else
               f"**Missed** on {worst_case.name}: {worst['ratio']:.2f}x, "
               f"{worst['ratio'] / TARGET:.2f}x over the {TARGET:g}x target.")  # fmt: skip
    body = f"""## Doctor latency (`benchmarks/doctor_latency.py`)

`diagnose(model, x, y)` against one plain step (forward + loss + backward + zero_grad), {args.repeats}
alternating repetitions per case, medians; 100-layer, width-100 ReLU MLPs at batch 256, a
BERT-style encoder (4 layers, hidden 64, batch 32 x 64 tokens) and an LSTM classifier (2 x 128,
100 steps, batch 32). The
theory's cache is cleared before every diagnosis, so each pays for `beyond_depth_scale`'s
finite-depth prediction (`trainability.theory.propagate`) as a fresh model would.
Machine: {machine()}; 1-minute load average {load:.1f} at the start (the machine is shared).

| case | plain step ms | `diagnose` ms | ratio (target <= {TARGET:g}x) | of which `beyond_depth_scale` ms |
|---|---|---|---|---|
{rows}

{verdict} `beyond_depth_scale` runs only to explain a measured vanishing or exploding gradient
("not run": the network's own gradients are within 100x).
"""
    write_section("doctor_latency", body)
    print(body)


if __name__ == "__main__":
    main()
