"""SELU's four conditions for self-normalization (Klambauer et al. 2017), and AlphaDropout."""

from __future__ import annotations

import math

from torch import nn

from trainability import adapters
from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence, span

LECUN_TOLERANCE = 1.33
#: The input counts as standardized when its per-feature means have RMS within this of 0 and its
#: varying features' RMS std is within this factor of 1 (plus sampling noise). Klambauer et al.
#: 2017's Theorem 1 proves the SELU map attracting for means within 0.1 and variances in
#: [0.8, 1.5] (stds 0.89 to 1.22); the scale bound is that, the mean bound a little wider.
MEAN_BOUND = 0.25
SCALE_FACTOR = 1.25


def _unstandardized(ev: Evidence) -> tuple[str, list[str], str, str] | None:
    """The input condition, judged on the pooled statistics a first LeCun layer sees
    (:class:`~trainability.doctor.rules.evidence.InputStats`), each bound plus ``3 / sqrt(batch)``
    of sampling noise: per-feature means of RMS over :data:`MEAN_BOUND`; or a std off 1 by more
    than :data:`SCALE_FACTOR` whichever way the features constant over the batch are read: too
    small over the features that vary (as if the constant ones were constant in the data), or too
    large over all of them (as if they varied elsewhere in the data with std 1)."""
    stats = ev.inputs
    if stats is None:
        return None
    noise = 3.0 / math.sqrt(max(ev.batch_size, 1))
    bound = math.log(SCALE_FACTOR) + noise
    if stats.mean_rms > MEAN_BOUND + noise:
        scale = f"RMS std {stats.pooled:.3g}"
    elif stats.scale is not None and math.log(stats.scale) < -bound:
        scale = f"the {stats.varying} features that vary have an RMS std of {stats.scale:.3g}"
    elif math.log(max(stats.pooled, 1e-300)) > bound:
        scale = f"an RMS std of {stats.pooled:.3g} over all {stats.features} features"
    else:
        return None
    constant = (f"; {stats.constant} of {stats.features} features are constant over the batch (constant in the data, "
                "or absent from this batch), which no scaling brings to std 1" if stats.constant else "")  # fmt: skip
    return ("unstandardized input", [],
            f"the input is not standardized: per-feature means have RMS {stats.mean_rms:.3g}, {scale} (want 0 and 1)"
            f"{constant}",
            "standardize the inputs to mean 0 and std 1 (sklearn StandardScaler, or (x - mean) / std)")  # fmt: skip


def _selu_conditions(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[tuple[str, list[str], str, str]]:
    """(condition, layers, message, fix) for each of SELU's self-normalization conditions that fails."""
    failed = []
    unstandardized = _unstandardized(ev)
    if unstandardized is not None:
        failed.append(unstandardized)
    off = []
    for link in ev.links.values():
        if link.activation is not None and link.activation.name == "selu" and link.name in ev.weight_var:
            ratio = ev.weight_var[link.name] * link.fans[0]
            tolerance = LECUN_TOLERANCE * (1 + 3 * math.sqrt(2 / link.weights[0].numel))
            if not 1 / tolerance <= ratio <= tolerance:
                off.append((link.name, ratio))
    if off:
        failed.append(("non-LeCun weights", [n for n, _ in off],
                       f"{len(off)} layers feeding SELU have weight variance {sorted(r for _, r in off)[len(off) // 2]:.3g} / fan_in "
                       "(median), not the 1 / fan_in of LeCun normal",
                       "re-initialize them with lecun_normal (trainability.initialize(model))"))  # fmt: skip
    if ev.skips:
        failed.append(("skip connections", ev.skips,
                       f"the network is not a plain sequential stack: skip connections at {span(ev.skips)}",
                       "use elu (he_normal) in networks with skip connections, or remove the skips"))  # fmt: skip
    dropout = [n for n, m in model_modules if adapters.is_ordinary_dropout(m)]
    if dropout:
        failed.append(("ordinary dropout", dropout, f"ordinary dropout at {span(dropout)} breaks self-normalization",
                       "use AlphaDropout (trainability.activations.AlphaDropout) instead of Dropout"))  # fmt: skip
    conv = [n for n, m in model_modules if any(w.role == "conv" for w in adapters.module_weights(n, m))]
    if conv:
        failed.append(("non-dense layers", conv,
                       f"self-normalization is only guaranteed for dense layers; {span(conv)} are convolutions",
                       "expect weaker normalization with convolutions: use batch norm, or elu with he_normal"))  # fmt: skip
    return failed


def self_normalization(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[Finding]:
    if not any(s.activation == "selu" or s.type == "SELU" for s in ev.layers):
        return []
    return [
        Finding("self_normalization_broken", "warning", layers,
                f"SELU is present but self-normalization fails ({condition}): {message}", fix,
                {"op": "self_normalize", "condition": condition, "layers": layers})  # fmt: skip
        for condition, layers, message, fix in _selu_conditions(ev, model_modules)
    ]
