"""SELU's four conditions for self-normalization (Klambauer et al. 2017), and AlphaDropout."""

from __future__ import annotations

import math

from torch import nn

from trainability import adapters
from trainability.doctor.records import Finding
from trainability.doctor.rules.evidence import Evidence, span

LECUN_TOLERANCE = 1.33

def _selu_conditions(ev: Evidence, model_modules: list[tuple[str, nn.Module]]) -> list[tuple[str, list[str], str, str]]:
    """(condition, layers, message, fix) for each of SELU's self-normalization conditions that fails."""
    failed = []
    noise = 3.0 / math.sqrt(max(ev.batch_size, 1))
    if ev.input_mean_rms is not None and (
        ev.input_mean_rms > 0.25 + noise or ev.input_log_std_rms > math.log(1.25) + noise  # type: ignore[operator]
    ):
        failed.append(("unstandardized input", [],
                       f"the input is not standardized: per-feature means have RMS {ev.input_mean_rms:.3g} "
                       f"and per-feature stds are off 1 by a factor of {math.exp(ev.input_log_std_rms):.3g} (RMS)",  # type: ignore[arg-type]
                       "standardize the inputs to mean 0 and std 1 (sklearn StandardScaler, or (x - mean) / std)"))  # fmt: skip
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
