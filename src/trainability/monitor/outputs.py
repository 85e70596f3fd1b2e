"""What the output logits say at a recorded step: their log-partition, and whether they still
depend on the input.

- ``log_z``: the mean over samples (and positions) of ``log Z = logsumexp_c z_c``. The softmax is
  unchanged by a shift of all logits, so nothing in the cross-entropy holds ``log Z`` in place;
  without weight decay it can drift far from 0, and then the loss degrades, most of all in low
  precision (Wortsman et al. 2023, "output logit divergence"; PaLM's z-loss
  ``1e-4 * log^2 Z`` holds it near 0).
- ``input_dependence``: the share of the logits' variance that varies from sample to sample,
  ``V_b / (V_b + V_c)``, with ``V_b`` the mean over classes of each class logit's variance over
  samples and ``V_c`` the variance over classes of their means. A network whose output no longer
  depends on its input predicts the same distribution for every sample, which is all a constant
  predictor can do: ``V_b -> 0`` while ``V_c`` holds that distribution. At initialization the
  share is near 1 (the logits are small and vary with the input).

Sums, sums of squares and counts are kept (on the device), so that ranks add up; the share and
the mean follow on the host. At most :data:`MAX_ROWS` rows (samples x positions) and
:data:`MAX_CLASSES` classes are used for the variances.

>>> import torch
>>> stats = output_statistics(torch.randn(64, 10))
>>> summarize({k: v.tolist() for k, v in stats.items()})["input_dependence"] > 0.8
True
"""

from __future__ import annotations

import math
from typing import Any

import torch

MAX_ROWS = 1024
MAX_CLASSES = 1024


def output_statistics(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Device tensors: ``lse_sum``, ``rows``, and per class ``class_sum``/``class_sq`` over the rows
    used for the variances, and ``var_rows``. Empty for an output with fewer than two classes."""
    if logits.dim() < 2 or logits.shape[-1] < 2 or not logits.is_floating_point():
        return {}
    z = logits.detach().reshape(-1, logits.shape[-1])
    lse = torch.logsumexp(z.float(), dim=-1)
    rows = z
    if rows.shape[0] > MAX_ROWS:
        rows = rows[torch.linspace(0, rows.shape[0] - 1, MAX_ROWS, device=z.device).long()]
    if rows.shape[1] > MAX_CLASSES:
        rows = rows[:, torch.linspace(0, rows.shape[1] - 1, MAX_CLASSES, device=z.device).long()]
    rows = rows.float()
    return {
        "lse_sum": lse.sum(),
        "rows": torch.tensor(float(z.shape[0]), device=z.device),
        "class_sum": rows.sum(0),
        "class_sq": rows.pow(2).sum(0),
        "var_rows": torch.tensor(float(rows.shape[0]), device=z.device),
    }


def summarize(values: dict[str, Any]) -> dict[str, float]:
    """Host values (after any reduction) -> ``log_z``, ``mean_logit`` (over classes and samples)
    and ``input_dependence``."""
    if not values or float(values["rows"]) == 0:
        return {}
    n = float(values["var_rows"])
    sums = [float(s) for s in values["class_sum"]]
    squares = [float(s) for s in values["class_sq"]]
    means = [s / n for s in sums]
    within = sum(max(q / n - m * m, 0.0) for q, m in zip(squares, means, strict=True)) / len(means)
    center = sum(means) / len(means)
    between = sum((m - center) ** 2 for m in means) / len(means)
    total = within + between
    out = {"log_z": float(values["lse_sum"]) / float(values["rows"]), "mean_logit": center}
    if total > 0 and math.isfinite(total) and n >= 2:
        out["input_dependence"] = within / total
    return out


__all__ = ["MAX_CLASSES", "MAX_ROWS", "output_statistics", "summarize"]
