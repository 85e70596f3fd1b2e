"""From the doctor's findings to an ordered list of candidates.

Every finding carries a machine-readable ``action`` (``{"op": "reinitialize", "layers": [...],
"init": ...}``, ``swap_activation``, ``scale_residual_branches``, ``recurrent_init``,
``self_normalize``, ``insert_normalization``, ``clip``, ``lower_learning_rate``, ...), and the
other fixes its text names as ``action["alternatives"]``. Each action becomes one or more
:class:`~trainability.repair.candidates.Candidate` s, resolved against the model (which modules
the named layers are, which activation module follows each, which layers a normalization can
follow); an action that cannot apply to this model is listed with the reason. Then:

- re-initializations with the matched initializer merge into one: the union of the named layers
  and of every other layer whose weight variance is off the matched initializer's by more than
  the doctor's mismatch factor (1.5x, ``init_mismatch``'s per-layer test; the doctor names only
  the layers where it measured a symptom, while a network drawn wrongly throughout is wrong
  everywhere), followed by re-initializing every layer when that is not all of them;
- duplicates merge, keeping every finding that asked;
- when the probe did not train, the training-only fallbacks follow (clip at norm 1, the learning
  rate x 0.1, Adam), so that there is always something to try;
- the order is the kinds' rank (smallest change first, :mod:`~trainability.repair.candidates`),
  then candidates asked for by an error before those asked for by a warning, then the order of
  the findings. One exception: when the doctor found nothing at initialization
  (``training_first``), the network as built is sound and the failure comes from training (a
  learning rate that blows the loss up, then kills units): the training-only changes go first,
  and what the monitor saw while training (dead units, vanishing gradients: consequences) after.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from trainability import activations, adapters
from trainability import init as inits
from trainability.graph import activation_of, is_norm
from trainability.initialization import initialize
from trainability.repair.candidates import TRAINING_ONLY, Candidate
from trainability.repair.surgery import Structure, module_name, norm_for, trace

#: What to try when the probe did not train, after what the findings ask for.
FALLBACKS: tuple[dict[str, Any], ...] = (
    {"op": "clip", "clip_norm": 1.0},
    {"op": "lower_learning_rate", "factor": 0.1},
    {"op": "change_optimizer", "optimizer": "adam"},
)
RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)


class NotApplicable(Exception):
    """An action that cannot be applied to this model; the message says why."""


@dataclass
class _Facts:
    model: nn.Module
    modules: dict[str, nn.Module]
    structure: Structure
    auto: dict[str, str]  # weight module -> the initializer initialize(model) gives it
    settings: Mapping[str, Any]
    off: set[str]  # weight modules drawn off the matched initializer's variance

    def weight_modules(self, names: list[str]) -> list[str]:
        """The weight modules the doctor's names refer to: the module itself, the layers feeding
        an activation module, or the weight modules inside a block."""
        out: list[str] = []
        for raw in names:
            name = module_name(self.model, raw)
            if name is None:
                continue
            if name in self.structure.weights:
                found = [name]
            elif activation_of(self.modules[name]) is not None:
                found = self.structure.feeding(name)
            else:
                found = [w for w in self.structure.weights if w.startswith(name + ".")]
            out += [w for w in found if w not in out]
        return sorted(out, key=self.structure.weights.index)

    def activation_modules(self, names: list[str]) -> list[str]:
        """Activation modules the names refer to, or that follow the named weight layers."""
        out: list[str] = []
        for raw in names:
            name = module_name(self.model, raw)
            if name is None:
                continue
            if activation_of(self.modules[name]) is not None:
                found: list[str | None] = [name]
            else:
                found = [self.structure.activation_after.get(w) for w in self.weight_modules([name])]
            out += [a for a in found if a is not None and a not in out]
        return out


def _expand(action: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The action and its alternatives, depth first."""
    head = {k: v for k, v in action.items() if k != "alternatives"}
    return [head] + [a for alt in action.get("alternatives", []) for a in _expand(alt)]


def _effective_lr(settings: Mapping[str, Any]) -> float:
    from trainability.training import OPTIMIZERS

    lr = settings.get("lr")
    return float(lr) if lr is not None else OPTIMIZERS[str(settings["optimizer"]).lower()][1]


def _clip(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    current = facts.settings.get("clip_norm")
    norm = float(action["clip_norm"])
    if current is not None and current <= norm:
        raise NotApplicable(f"gradients are already clipped at norm {current:g}")
    return [Candidate("clip_gradients", {"clip_norm": norm})]


def _reinitialize(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    names = facts.weight_modules(list(action["layers"])) if action.get("layers") else list(facts.structure.weights)
    if not names:
        raise NotApplicable("no weight layer to re-initialize among the layers named")
    init = str(action.get("init", "auto"))
    try:
        inits.get(init)
    except ValueError:
        init = "auto"  # "the recommended initializer": the matched one per layer
    if init != "auto" and all(facts.auto.get(n) == init for n in names):
        init = "auto"  # what the matched initializer is anyway: merges with the other re-inits
    found = [Candidate("reinitialize", {"layers": names, "init": init})]
    return found + (_clip(action, facts) if action.get("clip_norm") else [])


def _scale_branches(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    """Every residual block of the stream the named blocks belong to: each branch adds to the
    same stream, and Fixup's factor depends on how many there are."""
    named = list(dict.fromkeys(b for n in action["layers"] if (b := module_name(facts.model, n)) is not None and b))
    groups = [g for g in facts.structure.blocks if set(g) & set(named)]
    blocks = [b for g in groups for b in g] + [b for b in named if not any(b in g for g in groups)]
    layers = [n for n, m in facts.modules.items() if any(n.startswith(b + ".") for b in blocks)
              and next(m.parameters(recurse=False), None) is not None]  # fmt: skip
    if not layers:
        raise NotApplicable("no residual block with weights among the layers named")
    found = [Candidate("scale_residual_branches", {"blocks": blocks, "layers": layers, "init": "auto"})]
    return found + (_clip(action, facts) if action.get("clip_norm") else [])


def _swap(action: Mapping[str, Any], facts: _Facts, *, source: list[str] | None = None) -> list[Candidate]:
    target = activations.get(action["activation"])
    named = source if source is not None else facts.activation_modules(list(action.get("layers", [])))
    kinds = {activation_of(facts.modules[n]).name for n in named}  # type: ignore[union-attr]
    kinds.discard(target.name)
    if not kinds:
        raise NotApplicable("no activation module follows these layers (activations applied as functions in "
                            "forward cannot be swapped)" if not named else f"the activation already is {target.name}")  # fmt: skip
    if target.self_normalizing and (facts.structure.skips or any(
            w.role == "conv" for _, _, ws in adapters.weight_modules(facts.model) for w in ws)):  # fmt: skip
        raise NotApplicable("SELU self-normalizes only in plain dense stacks; this network has skip connections or convolutions")
    modules = [n for n, m in facts.modules.items() if (spec := activation_of(m)) is not None and spec.name in kinds
               and next(m.children(), None) is None]  # fmt: skip
    layers = sorted({w for m in modules for w in facts.structure.feeding(m)}, key=facts.structure.weights.index)
    dropout = [[n, float(m.p)] for n, m in facts.modules.items() if type(m) is nn.Dropout] if target.self_normalizing else []
    return [Candidate("swap_activation", {"from": sorted(kinds), "activation": target.name,
                                          "hyperparameters": dict(action.get("hyperparameters", {})),
                                          "modules": modules, "layers": layers, "dropout": dropout})]  # fmt: skip


def _self_normalize(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    condition = action.get("condition")
    if condition == "ordinary dropout":
        found = [[n, float(facts.modules[n].p)] for n in (module_name(facts.model, x) for x in action["layers"])
                 if n is not None and isinstance(facts.modules[n], nn.Dropout)]  # fmt: skip
        if not found:
            raise NotApplicable("no nn.Dropout module among the layers named")
        return [Candidate("replace_dropout", {"modules": found})]
    if condition == "non-LeCun weights":
        return _reinitialize({"layers": action["layers"], "init": "lecun_normal"}, facts)
    if condition in ("skip connections", "non-dense layers"):
        selu = [n for n, m in facts.modules.items() if (spec := activation_of(m)) is not None and spec.name == "selu"]
        return _swap({"activation": "elu"}, facts, source=selu)
    raise NotApplicable(f"{condition}: repair changes the model and its training, not the data; standardize the inputs"
                        if condition == "unstandardized input" else f"no candidate for the condition {condition!r}")  # fmt: skip


def _insert_norm(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    norm = str(action.get("norm", "batch"))
    inserts = []
    order = facts.structure.order
    for layer, act in facts.structure.activation_after.items():
        if act is None or layer not in order:
            continue
        between = order[order.index(layer) + 1 : order.index(act)] if act in order else []
        if any(is_norm(facts.modules[n]) for n in between):
            continue
        found = norm_for(facts.modules[layer], facts.structure.output_rank.get(layer, 0), norm)
        if found is not None:
            inserts.append([layer, *found])
    if not inserts:
        raise NotApplicable("no hidden Linear or convolution without a normalization before its activation")
    return [Candidate("insert_normalization", {"norm": norm, "inserts": inserts})]


def _recurrent(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    layers = [n for n in dict.fromkeys(module_name(facts.model, x) for x in action["layers"])
              if n is not None and isinstance(facts.modules[n], RECURRENT)]  # fmt: skip
    if not layers:
        raise NotApplicable("no nn.RNN, nn.LSTM or nn.GRU among the layers named")
    found = [Candidate("recurrent_init", {"layers": layers, "init": "auto",
                                          "lstm": any(isinstance(facts.modules[n], nn.LSTM) for n in layers)})]  # fmt: skip
    lstm = [n for n in layers if isinstance(facts.modules[n], nn.LSTM)]
    if lstm and action.get("forget_bias") is not None:
        found.append(Candidate("forget_gate_bias", {"layers": lstm, "value": float(action["forget_bias"])}))
    if action.get("clip_norm"):
        found += _clip(action, facts)
    plain = [n for n in dict.fromkeys(module_name(facts.model, x) for x in action.get("replace_rnn", []))
             if n is not None and type(facts.modules[n]) is nn.RNN]  # fmt: skip
    for with_ in ("gru", "lstm") if plain else ():
        found.append(Candidate("replace_rnn", {"layers": plain, "with": with_}))
    return found


def _lower_lr(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    factor = float(action.get("factor", 0.1))
    return [Candidate("lower_learning_rate", {"lr": _effective_lr(facts.settings) * factor, "factor": factor})]


def _optimizer(action: Mapping[str, Any], facts: _Facts) -> list[Candidate]:
    if str(facts.settings["optimizer"]).lower() == action["optimizer"]:
        raise NotApplicable(f"the optimizer already is {action['optimizer']}")
    return [Candidate("change_optimizer", {"optimizer": action["optimizer"], "lr": action.get("lr")})]


def _nothing(action: Mapping[str, Any], _facts: _Facts) -> list[Candidate]:
    if action["op"] == "clean_input":
        raise NotApplicable("the input batch holds NaN/Inf: clean the data (repair does not change it)")
    return []  # inspect: its alternatives carry the candidates


#: action op -> the candidates it asks for
FROM_ACTION = {
    "reinitialize": _reinitialize,
    "scale_residual_branches": _scale_branches,
    "swap_activation": _swap,
    "self_normalize": _self_normalize,
    "insert_normalization": _insert_norm,
    "recurrent_init": _recurrent,
    "clip": _clip,
    "lower_learning_rate": _lower_lr,
    "change_optimizer": _optimizer,
    "inspect": _nothing,
    "inspect_loss": _nothing,
    "clean_input": _nothing,
}


def _off_matched(model: nn.Module, reference: nn.Module) -> set[str]:
    """Weight modules with a weight whose variance is off the matched initializer's (in
    ``reference``, the model after ``initialize``) by more than the doctor's mismatch factor."""
    from trainability.doctor.rules import MISMATCH_FACTOR

    drawn = {w.name: w for w in adapters.weights(reference)}
    off = set()
    for w in adapters.weights(model):
        twin = drawn.get(w.name)
        if twin is None:
            continue
        now, matched = float(w.tensor.detach().double().var()), float(twin.tensor.detach().double().var())
        if (matched == 0.0) != (now == 0.0) or (matched > 0 and not 1 / MISMATCH_FACTOR <= now / matched <= MISMATCH_FACTOR):
            off.add(w.module_name)
    return off


def _merge_reinitializations(found: list[tuple[tuple, Candidate]], weights: list[str], off: set[str]) -> list[tuple[tuple, Candidate]]:
    """One re-initialization with the matched initializer over the union of the named layers
    and the layers drawn off it (every layer: ``initialize(model)`` itself), then every layer when
    that falls short."""
    auto = [(k, c) for k, c in found if c.kind == "reinitialize" and c.params["init"] == "auto"]
    if not auto:
        return found
    rest = [(k, c) for k, c in found if not (c.kind == "reinitialize" and c.params["init"] == "auto")]
    layers = sorted({n for _, c in auto for n in c.params["layers"]} | off, key=weights.index)
    key = min(k for k, _ in auto)
    reason = "; ".join(dict.fromkeys(c.reason for _, c in auto))
    everything = set(layers) == set(weights)
    merged = [(key, Candidate("reinitialize", {"layers": weights if everything else layers, "init": "auto",
                                               "everything": everything}, reason))]  # fmt: skip
    if not everything:
        merged.append(((key[0], key[1], key[2] + 0.5), Candidate("reinitialize", {"layers": weights, "init": "auto",
                                                                                  "everything": True}, reason)))  # fmt: skip
    return merged + rest


def _with_schemes(candidate: Candidate, schemes: Mapping[str, str]) -> Candidate:
    """A matched re-initialization names the family schemes it applies beyond the textbook's
    table (fixup, zero_gamma, transformer, recurrent, ...)."""
    if candidate.kind not in ("reinitialize", "scale_residual_branches") or candidate.params.get("init") != "auto":
        return candidate
    names = sorted({schemes[n] for n in candidate.params["layers"] if n in schemes} - {"textbook", "given"})
    return Candidate(candidate.kind, {**candidate.params, "schemes": names}, candidate.reason) if names else candidate


def plan(model: nn.Module, sample: Any, findings: list[Mapping[str, Any]], settings: Mapping[str, Any], *,
         fallbacks: bool = True, training_first: bool = False) -> tuple[list[Candidate], list[str]]:  # fmt: skip
    """The candidates for these findings, in the order to try them, and what could not apply.

    ``findings`` are dicts with ``kind``, ``severity`` and ``action`` (a :class:`Finding`'s
    fields); ``settings`` the probe's training settings (``optimizer``, ``lr``, ``clip_norm``).
    """
    reference = copy.deepcopy(model)
    owners = {w.name: w.module_name for w in adapters.weights(model)}
    auto: dict[str, str] = {}
    schemes: dict[str, str] = {}
    for entry in initialize(reference, seed=0):
        auto.setdefault(owners.get(entry.layer, entry.layer), entry.initializer)
        schemes.setdefault(owners.get(entry.layer, entry.layer), entry.scheme)
    facts = _Facts(model, dict(model.named_modules()), trace(model, sample), auto, settings, _off_matched(model, reference))
    found: list[tuple[tuple, Candidate]] = []
    skipped: list[str] = []
    asked = [(f, {"error": 0, "warning": 1}.get(f.get("severity", ""), 1)) for f in findings]
    asked += [({"kind": "fallback", "severity": "", "action": a}, 2) for a in (FALLBACKS if fallbacks else ())]
    for index, (finding, severity) in enumerate(asked):
        reason = finding["kind"] + (f" ({finding['severity']})" if finding.get("severity") else "")
        for position, action in enumerate(_expand(finding.get("action") or {})):
            op = action.get("op")
            if op is None:
                continue
            make = FROM_ACTION.get(op)
            try:
                if make is None:
                    raise NotApplicable(f"no candidate for the action {op!r}")
                for c in make(action, facts):
                    rank = c.rank - 10 if training_first and c.kind in TRAINING_ONLY else c.rank
                    found.append(((rank, severity, index + position / 100), Candidate(c.kind, c.params, reason)))
            except NotApplicable as exc:
                skipped.append(f"{op} ({reason}): {exc}")
    found = _merge_reinitializations(found, facts.structure.weights, facts.off)
    found = [(k, _with_schemes(c, schemes)) for k, c in found]
    unique: dict[str, tuple[tuple, Candidate]] = {}
    for key, c in sorted(found, key=lambda kc: kc[0]):
        if c.key in unique:
            first_key, first = unique[c.key]
            reasons = first.reason if c.reason in first.reason.split("; ") else f"{first.reason}; {c.reason}"
            unique[c.key] = (first_key, Candidate(c.kind, c.params, reasons))
        else:
            unique[c.key] = (key, c)
    ordered = [c for _, c in sorted(unique.values(), key=lambda kc: kc[0])]
    return ordered, list(dict.fromkeys(skipped))


__all__ = ["FALLBACKS", "NotApplicable", "plan"]
