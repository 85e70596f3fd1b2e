"""From the findings to ordered ladders of candidates.

Every finding, the doctor's at initialization and the monitor's while the network trained,
carries a machine-readable ``action`` (``{"op": "reinitialize", "layers": [...], "init": ...}``,
``swap_activation``, ``scale_residual_branches``, ``recurrent_init``, ``self_normalize``,
``insert_normalization``, ``clip``, ``lower_learning_rate``, ``warmup``, ``set_adam_eps``,
``qk_layernorm``, ``z_loss``, ...), and the other fixes its text names as
``action["alternatives"]``. Each action becomes one or more :class:`Ladder` s: a fix in ordered
strengths, resolved against the model (which modules the named layers are, which activation
module follows each, where the residual branches end, how many steps each recurrent layer reads).
The search climbs a ladder while the doctor at initialization (screening) or a short training
prefix shows that the failure persists. An action that cannot apply to this model is listed with
the reason.

The ladders:

- **re-initialize**: the named layers and every layer drawn off the matched initializer's
  variance (by more than the doctor's mismatch factor, 1.5x), then every layer
  (``initialize(model)`` itself, whose family schemes cover transformers' N(0, 0.02) with GPT-2's
  scaled residual projections, zero-gamma, Fixup and recurrent layers);
- **residual branches** (whenever the traced graph has residual branches and a finding is about
  the gradient or the signal's scale): the branches re-drawn by the table with their ends scaled
  by 1/sqrt(branches) (GPT-2, and T-Fixup's depth scaling), Fixup (ends 0, the inner layers scaled
  by L^(-1/(2m-2)); Zhang et al. 2019), and ends 0 (each block starts as the identity, SkipInit's
  effect; De & Smith 2020); for blocks with a normalization inside, initialize's family scheme;
- **recurrent**: the forget gate's bias 1 (a GRU's update gate), then chrono initialization for
  the layer's sequence length (Tallec & Ollivier 2018); orthogonal recurrent weights, then with
  chrono; for a plain RNN, a GRU, a GRU with chrono, an LSTM, an LSTM with chrono;
- **activation**: the finding's activations in its order (ReLU then SELU for saturated units,
  leaky ReLU then ELU for dead ones);
- **clipping** at the global gradient norm measured at initialization, then a tenth of it;
- **learning rate** from the range test (:func:`trainability.lr_finder.find_lr`, run only when
  the ladder is reached), then ten times lower; Adam at its own range-test rate;
- single rungs: normalization, AlphaDropout, warm-up, Adam's epsilon, qk-layernorm, z-loss.

Order: by the first rung's rank (the smallest change first, :mod:`~trainability.repair.candidates`),
then ladders asked for by an error before those asked for by a warning, then the findings' order.
When the doctor found nothing at initialization (``training_first``), the network as built is
sound and the failure comes from training: the training-only ladders go first. When the network
did not train, the training-only fallbacks follow everything (clip, learning rate, Adam), so there
is always something to try.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from trainability import activations, adapters
from trainability import init as inits
from trainability.graph import activation_of, find_consumers, is_norm
from trainability.initialization import initialize
from trainability.repair.candidates import TRAINING_ONLY, Candidate
from trainability.repair.surgery import Structure, module_name, norm_for, qk_targets, trace
from trainability.table import recommended_init

#: What to try when the network did not train, after what the findings ask for.
FALLBACKS: tuple[dict[str, Any], ...] = (
    {"op": "clip"},
    {"op": "lower_learning_rate"},
    {"op": "change_optimizer", "optimizer": "adam"},
)
RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)
#: A learning-rate rung whose rate the range test gives (resolved by the search when reached).
RANGE_TEST = "range test"
#: Finding kinds about the scale of the signal or the gradient: residual branches may be the cause.
SCALE_KINDS = frozenset({"exploding_gradients", "vanishing_gradients", "non_finite", "init_mismatch",
                         "saturated_units", "beyond_depth_scale"})  # fmt: skip


class NotApplicable(Exception):
    """An action that cannot be applied to this model; the message says why."""


@dataclass
class Ladder:
    """One fix in ordered strengths: the search tries ``rungs[0]`` first and climbs while the
    doctor at initialization or a short training prefix shows the failure persists. ``asked``
    are the findings (kind, severity, layers) that asked for it."""

    rungs: list[Candidate]
    order: tuple[float, ...]
    asked: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return self.rungs[0].reason if self.rungs else ""


@dataclass
class _Facts:
    model: nn.Module
    modules: dict[str, nn.Module]
    structure: Structure
    auto: dict[str, str]  # weight module -> the initializer initialize(model) gives it
    settings: Mapping[str, Any]
    off: set[str]  # weight modules drawn off the matched initializer's variance
    table: dict[str, str]  # weight module -> the textbook's initializer for the activation after it
    grad_norm: float | None  # the global gradient norm the doctor measured at initialization
    init_errors: bool = False  # whether the doctor found an error at initialization
    schemes: dict[str, str] = field(default_factory=dict)  # weight module -> initialize's family scheme

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


Ladders = list[list[Candidate]]


def _expand(action: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The action and its alternatives, depth first."""
    head = {k: v for k, v in action.items() if k != "alternatives"}
    return [head] + [a for alt in action.get("alternatives", []) for a in _expand(alt)]


def _clip(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    """Clip at the gradient norm the network had at initialization (its healthy scale, where the
    doctor found no error there: updates no larger than its first ones), then at a tenth of it;
    where the gradient at initialization is itself wrong, at the action's norm (1.0, the common
    choice), then a tenth of that."""
    current = facts.settings.get("clip_norm")
    g = facts.grad_norm if not facts.init_errors else None
    if g is not None and math.isfinite(g) and g > 0:
        rungs = [(g, "the gradient norm at initialization"), (g / 10, "a tenth of the gradient norm at initialization")]
    else:
        norm = float(action.get("clip_norm") or 1.0)
        rungs = [(norm, ""), (norm / 10, "")]
    rungs = [(float(f"{norm:.3g}"), source) for norm, source in rungs if current is None or norm < current]
    if not rungs:
        raise NotApplicable(f"gradients are already clipped at norm {current:g}")
    return [[Candidate("clip_gradients", {"clip_norm": norm, **({"source": source} if source else {})}) for norm, source in rungs]]


def _reinitialize(action: Mapping[str, Any], facts: _Facts) -> Ladders:
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
    found = [[Candidate("reinitialize", {"layers": names, "init": init})]]
    return found + (_clip(action, facts) if action.get("clip_norm") else [])


def _fx_branches(facts: _Facts) -> Ladders:
    """Scaled, Fixup and zero-ended residual branches, from the traced graph's branches."""
    branches = facts.structure.branches
    if not branches:
        return []
    n = len(branches)
    layers = [name for b in branches for name in b.layers]
    ends = [b.end for b in branches]
    inner = [name for b in branches for name in b.inner]
    table = {name: facts.table.get(name, "glorot_uniform") for name in layers}
    m = max(len(b.layers) for b in branches)
    fixup = n ** (-1 / (2 * m - 2)) if m > 1 else 1.0
    base = {"blocks": ends, "layers": layers, "ends": ends, "inner": inner, "inits": table}
    rungs = [Candidate("scale_residual_branches", {**base, "scheme": "scaled", "end_factor": 1 / math.sqrt(n), "inner_factor": 1.0})]
    if not any(b.normalized for b in branches):
        rungs += [Candidate("scale_residual_branches", {**base, "scheme": "fixup", "end_factor": 0.0, "inner_factor": fixup}),
                  Candidate("scale_residual_branches", {**base, "scheme": "zero", "end_factor": 0.0, "inner_factor": 1.0})]  # fmt: skip
    return [rungs]


def _scale_branches(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    """Every residual block of the stream the named blocks belong to (each branch adds to the
    same stream, and Fixup's factor depends on how many there are) by initialize's family
    scheme, and the traced graph's branches scaled, Fixup'd and zeroed."""
    named = list(dict.fromkeys(b for n in action.get("layers", []) if (b := module_name(facts.model, n)) is not None and b))
    groups = [g for g in facts.structure.blocks if set(g) & set(named)]
    blocks = [b for g in groups for b in g] + [b for b in named if not any(b in g for g in groups)]
    layers = [n for n, m in facts.modules.items() if any(n.startswith(b + ".") for b in blocks)
              and next(m.parameters(recurse=False), None) is not None]  # fmt: skip
    family = [Candidate("scale_residual_branches", {"blocks": blocks, "layers": layers, "init": "auto"})] if layers else []
    traced = _fx_branches(facts)
    unnormalized = traced and traced[0][-1].params["scheme"] == "zero"
    found = [traced[0] if unnormalized else family + (traced[0] if traced else [])] if (traced or family) else []
    if not found:
        raise NotApplicable("no residual block with weights among the layers named")
    return found + (_clip(action, facts) if action.get("clip_norm") else [])


def _swap(action: Mapping[str, Any], facts: _Facts, *, source: list[str] | None = None) -> Ladders:
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
    return [[Candidate("swap_activation", {"from": sorted(kinds), "activation": target.name,
                                           "hyperparameters": dict(action.get("hyperparameters", {})),
                                           "modules": modules, "layers": layers, "dropout": dropout})]]  # fmt: skip


def _self_normalize(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    condition = action.get("condition")
    if condition == "ordinary dropout":
        found = [[n, float(facts.modules[n].p)] for n in (module_name(facts.model, x) for x in action["layers"])
                 if n is not None and isinstance(facts.modules[n], nn.Dropout)]  # fmt: skip
        if not found:
            raise NotApplicable("no nn.Dropout module among the layers named")
        return [[Candidate("replace_dropout", {"modules": found})]]
    if condition == "non-LeCun weights":
        return _reinitialize({"layers": action["layers"], "init": "lecun_normal"}, facts)
    if condition in ("skip connections", "non-dense layers"):
        selu = [n for n, m in facts.modules.items() if (spec := activation_of(m)) is not None and spec.name == "selu"]
        return _swap({"activation": "elu"}, facts, source=selu)
    raise NotApplicable(f"{condition}: repair changes the model and its training, not the data; standardize the inputs"
                        if condition == "unstandardized input" else f"no candidate for the condition {condition!r}")  # fmt: skip


def _insert_norm(action: Mapping[str, Any], facts: _Facts) -> Ladders:
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
    return [[Candidate("insert_normalization", {"norm": norm, "inserts": inserts})]]


def _recurrent(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    """Per kind of recurrent layer: the memory gate's bias, then chrono; orthogonal recurrent
    weights, then with chrono; for a plain RNN, gated cells with their gate initialization."""
    layers = [n for n in dict.fromkeys(module_name(facts.model, x) for x in action["layers"])
              if n is not None and isinstance(facts.modules[n], RECURRENT)]  # fmt: skip
    if not layers:
        raise NotApplicable("no nn.RNN, nn.LSTM or nn.GRU among the layers named")
    steps = max((facts.structure.steps.get(n, 0) for n in layers), default=0)
    chrono = steps if steps >= 3 else None
    gated = [n for n in layers if isinstance(facts.modules[n], (nn.LSTM, nn.GRU))]
    found: Ladders = []
    if gated and action.get("forget_bias") is not None:
        rungs = [Candidate("forget_gate_bias", {"layers": gated, "value": float(action["forget_bias"])})]
        found.append(rungs + ([Candidate("chrono_init", {"layers": gated, "steps": chrono})] if chrono else []))
    lstm = any(isinstance(facts.modules[n], nn.LSTM) for n in layers)
    orthogonal = [Candidate("recurrent_init", {"layers": layers, "init": "auto", "lstm": lstm})]
    if chrono and gated == layers:
        orthogonal.append(Candidate("recurrent_init", {"layers": layers, "init": "auto", "lstm": lstm, "chrono": chrono}))
    found.append(orthogonal)
    if action.get("clip_norm"):
        found += _clip(action, facts)
    plain = [n for n in dict.fromkeys(module_name(facts.model, x) for x in action.get("replace_rnn", []))
             if n is not None and type(facts.modules[n]) is nn.RNN]  # fmt: skip
    if plain:
        found.append([Candidate("replace_rnn", {"layers": plain, "with": with_, **({"chrono": c} if c else {})})
                      for with_ in ("gru", "lstm") for c in (None, chrono) if c or c is None])  # fmt: skip
    return found


def _lower_lr(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    """The range test's rate, then ten times lower (resolved by the search when reached)."""
    return [[Candidate("lower_learning_rate", {"lr": None, "from": RANGE_TEST, "below": 1.0}),
             Candidate("lower_learning_rate", {"lr": None, "from": RANGE_TEST, "below": 10.0})]]  # fmt: skip


def _optimizer(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    if str(facts.settings["optimizer"]).lower() == action["optimizer"]:
        raise NotApplicable(f"the optimizer already is {action['optimizer']}")
    return [[Candidate("change_optimizer", {"optimizer": action["optimizer"], "lr": None, "from": RANGE_TEST, "below": 1.0})]]


def _warmup(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    steps = action.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise NotApplicable(f"the warm-up needs a number of steps, got {steps!r}")
    if facts.settings.get("warmup") and facts.settings["warmup"] >= steps:
        raise NotApplicable(f"the learning rate is already warmed up over {facts.settings['warmup']} steps")
    return [[Candidate("warmup", {"steps": steps})]]


def _adam_eps(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    name = str(facts.settings["optimizer"]).lower()
    if name not in ("adam", "adamw", "nadam", "rmsprop"):
        raise NotApplicable(f"epsilon is an Adam-style optimizer's setting; this network trains with {name}")
    return [[Candidate("set_adam_eps", {"eps": float(action["eps"])})]]


def _qk_layernorm(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    names = [n for n in (module_name(facts.model, x) for x in action.get("layers", [])) if n is not None] or None
    targets = qk_targets(facts.model, names)
    if not targets:
        raise NotApplicable("no attention module with separate query and key projections (or GPT-2's c_attn) and a head "
                            "count among the layers named (nn.MultiheadAttention packs them inside one call)")  # fmt: skip
    return [[Candidate("qk_layernorm", {"targets": [list(t) for t in targets]})]]


def _z_loss(action: Mapping[str, Any], facts: _Facts) -> Ladders:
    if facts.settings.get("z_loss"):
        raise NotApplicable(f"the z-loss is already on ({facts.settings['z_loss']:g})")
    return [[Candidate("z_loss", {"coefficient": float(action.get("coefficient", 1e-4))})]]


def _nothing(action: Mapping[str, Any], _facts: _Facts) -> Ladders:
    if action["op"] == "clean_input":
        raise NotApplicable("the input batch holds NaN/Inf: clean the data (repair does not change it)")
    return []  # inspect: its alternatives carry the candidates


#: action op -> the ladders it asks for
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
    "warmup": _warmup,
    "set_adam_eps": _adam_eps,
    "qk_layernorm": _qk_layernorm,
    "z_loss": _z_loss,
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


def _merge_reinitializations(found: list[tuple[tuple, list[Candidate]]], weights: list[str],
                             off: set[str]) -> list[tuple[tuple, list[Candidate]]]:  # fmt: skip
    """One ladder of re-initializations with the matched initializer: the union of the named
    layers and of the layers drawn off it (every layer: ``initialize(model)`` itself), then every
    layer when that falls short."""
    auto = [(k, rungs) for k, rungs in found if len(rungs) == 1 and rungs[0].kind == "reinitialize" and rungs[0].params["init"] == "auto"]
    if not auto:
        return found
    rest = [(k, rungs) for k, rungs in found if not any(rungs is r for _, r in auto)]
    layers = sorted({n for _, r in auto for n in r[0].params["layers"]} | off, key=weights.index)
    key = min(k for k, _ in auto)
    reason = "; ".join(dict.fromkeys(r[0].reason for _, r in auto))
    everything = set(layers) == set(weights)
    rungs = [Candidate("reinitialize", {"layers": weights if everything else layers, "init": "auto", "everything": everything}, reason)]
    if not everything:
        rungs.append(Candidate("reinitialize", {"layers": weights, "init": "auto", "everything": True}, reason))
    return [(key, rungs), *rest]


def _with_schemes(candidate: Candidate, schemes: Mapping[str, str]) -> Candidate:
    """A matched re-initialization names the family schemes it applies beyond the textbook's
    table (fixup, zero_gamma, transformer, recurrent, ...)."""
    if candidate.kind not in ("reinitialize", "scale_residual_branches") or candidate.params.get("init") != "auto":
        return candidate
    names = sorted({schemes[n] for n in candidate.params["layers"] if n in schemes} - {"textbook", "given"})
    return Candidate(candidate.kind, {**candidate.params, "schemes": names}, candidate.reason) if names else candidate


def _grad_norm(report: Any) -> float | None:
    """The global gradient norm over the weights the doctor measured (``None`` without one)."""
    if report is None:
        return None
    norms = [s.weight_grad_norm for s in report.layers if s.role == "weight" and s.weight_grad_norm is not None]
    return math.sqrt(sum(n * n for n in norms)) if norms else None


def _table(model: nn.Module, sample: Any) -> dict[str, str]:
    """Each weight module's textbook initializer for the activation that follows it."""
    try:
        links, _ = find_consumers(model, sample)
    except Exception:  # noqa: BLE001 - without links, Glorot (no activation) everywhere
        links = {}
    return {name: recommended_init(link.activation) for name, link in links.items()}


def facts_of(model: nn.Module, sample: Any, settings: Mapping[str, Any], report: Any = None) -> _Facts:
    """What planning needs to know about the model (one trace, one ``initialize`` on a copy)."""
    reference = copy.deepcopy(model)
    owners = {w.name: w.module_name for w in adapters.weights(model)}
    auto: dict[str, str] = {}
    schemes: dict[str, str] = {}
    for entry in initialize(reference, seed=0):
        auto.setdefault(owners.get(entry.layer, entry.layer), entry.initializer)
        schemes.setdefault(owners.get(entry.layer, entry.layer), entry.scheme)
    errors = report is not None and any(f.severity == "error" for f in report.findings)
    return _Facts(model, dict(model.named_modules()), trace(model, sample), auto, settings, _off_matched(model, reference),
                  _table(model, sample), _grad_norm(report), errors, schemes)  # fmt: skip


def plan(model: nn.Module, sample: Any, findings: list[Mapping[str, Any]], settings: Mapping[str, Any], *,
         fallbacks: bool = True, training_first: bool = False, report: Any = None) -> tuple[list[Ladder], list[str]]:  # fmt: skip
    """The ladders for these findings, in the order to try them, and what could not apply.

    ``findings`` are dicts with ``kind``, ``severity``, ``layers`` and ``action`` (a
    :class:`Finding`'s fields); ``settings`` the training settings (``optimizer``, ``lr``,
    ``clip_norm``, ...); ``report`` the doctor's report at initialization (its gradient norms set
    the clipping rungs).
    """
    facts = facts_of(model, sample, settings, report)
    schemes = facts.schemes
    found: list[tuple[tuple, list[Candidate]]] = []
    skipped: list[str] = []
    asked = [(f, {"error": 0, "warning": 1}.get(f.get("severity", ""), 1)) for f in findings]
    if facts.structure.branches and any(f.get("kind") in SCALE_KINDS for f, _ in asked):
        first = next((f, s) for f, s in asked if f.get("kind") in SCALE_KINDS)
        branches = {"op": "scale_residual_branches", "layers": []}
        asked.insert(asked.index(first) + 1, ({**first[0], "action": branches}, first[1]))
    asked += [({"kind": "fallback", "severity": "", "action": a}, 2) for a in (FALLBACKS if fallbacks else ())]
    for index, (finding, severity) in enumerate(asked):
        reason = finding["kind"] + (f" ({finding['severity']})" if finding.get("severity") else "")
        swaps: list[Candidate] = []
        for position, action in enumerate(_expand(finding.get("action") or {})):
            op = action.get("op")
            if op is None:
                continue
            make = FROM_ACTION.get(op)
            try:
                if make is None:
                    raise NotApplicable(f"no candidate for the action {op!r}")
                for rungs in make(action, facts):
                    rungs = [Candidate(c.kind, c.params, reason) for c in rungs]
                    if rungs[0].kind == "swap_activation" and swaps:  # a finding's activations: one ladder
                        swaps += rungs
                        continue
                    if rungs[0].kind == "swap_activation":
                        swaps = rungs
                    rank = rungs[0].rank - 10 if training_first and rungs[0].kind in TRAINING_ONLY else rungs[0].rank
                    found.append(((rank, severity, index + position / 100), rungs))
            except NotApplicable as exc:
                skipped.append(f"{op} ({reason}): {exc}")
    found = _merge_reinitializations(found, facts.structure.weights, facts.off)
    found = [(k, [_with_schemes(c, schemes) for c in rungs]) for k, rungs in found]
    ladders: list[Ladder] = []
    seen: dict[str, Ladder] = {}
    for key, rungs in sorted(found, key=lambda kr: kr[0]):
        fresh = [c for c in rungs if c.key not in seen]
        for c in rungs:
            if c.key in seen:  # a rung asked for twice: keep every finding that asked
                ladder = seen[c.key]
                ladder.rungs = [Candidate(r.kind, r.params, r.reason if c.reason in r.reason.split("; ") else f"{r.reason}; {c.reason}")
                                if r.key == c.key else r for r in ladder.rungs]  # fmt: skip
        if not fresh:
            continue
        ladder = Ladder(fresh, key)
        ladders.append(ladder)
        for c in fresh:
            seen[c.key] = ladder
    kinds = {f.get("kind"): f for f, _ in asked}
    for ladder in ladders:
        named = {k.split(" (")[0] for k in ladder.reason.split("; ")}
        ladder.asked = [{"kind": k, "severity": kinds[k].get("severity"), "layers": list(kinds[k].get("layers", []))}
                        for k in named if k in kinds and k != "fallback"]  # fmt: skip
    return ladders, list(dict.fromkeys(skipped))


__all__ = ["FALLBACKS", "RANGE_TEST", "Ladder", "NotApplicable", "facts_of", "plan"]
