"""Repair's candidates: small, named changes to a model or to how it trains.

A :class:`Candidate` is a kind (a key of :data:`KINDS`) and its parameters, all plain JSON
values. Each kind is three small functions: ``apply`` changes a model in place (seeded, so that
the same candidate on the same model gives the same weights), ``code`` writes the same change as
Python lines for the user's own model, and ``train`` changes the training settings. ``rank``
orders kinds from the smallest change to the largest:

====  ========================  =============================================================
rank  kind                      change
====  ========================  =============================================================
0     reinitialize              named layers re-drawn with the matched initializer (no
                                architecture change): :func:`trainability.initialize` on a copy,
                                then those layers' state copied over
0     recurrent_init            the same for recurrent layers: orthogonal hidden-hidden weights,
                                Glorot input weights, biases 0, LSTM forget-gate bias 1; with
                                ``chrono``, chrono initialization of the gate biases after
0     forget_gate_bias          the gate that keeps the memory (LSTM forget gate, GRU update
                                gate) biased to a value (1: Gers et al. 2000)
0     chrono_init               that gate's bias drawn from log U(1, T - 1) for sequences of T
                                steps (Tallec & Ollivier 2018)
1     scale_residual_branches   the layers of every residual branch re-drawn by a family
                                scheme: initialize's own (Fixup, zero-gamma, GPT-2), the
                                branch ends scaled by 1/sqrt(branches), Fixup, or zero ends
2     swap_activation           every module of one activation replaced (SELU with LeCun and
                                AlphaDropout; ELU, leaky ReLU or ReLU with He), the layers
                                feeding it re-initialized for it
2     replace_dropout           ordinary Dropout replaced by AlphaDropout (same rate) for SELU
3     insert_normalization      BatchNorm (or LayerNorm on sequences) after each hidden layer
3     qk_layernorm              layer norm on each head's queries and keys
4     clip_gradients            clip the gradient norm (training only)
4.5   replace_rnn               nn.GRU (or an LSTM returning what nn.RNN does) for a plain RNN,
                                with the gate initialization (and chrono) applied
5     lower_learning_rate       a learning rate from the range test (training only)
5     warmup                    linear learning-rate warm-up (training only)
5     set_adam_eps              Adam's epsilon (training only)
5     z_loss                    PaLM's auxiliary z-loss (training only)
5     change_optimizer          Adam at a rate from the range test (training only)
====  ========================  =============================================================
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from trainability import activations
from trainability.repair.surgery import LSTMAsRNN, QKNorm, replace

Notes = dict[str, str]  # module name -> what was done to it, for the diff


@dataclass(frozen=True)
class Candidate:
    """One change to try; ``reason`` says which finding asked for it."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def key(self) -> str:
        """Identity for de-duplication: kind and parameters."""
        return f"{self.kind}:{json.dumps(self.params, sort_keys=True)}"

    @property
    def rank(self) -> float:
        return KINDS[self.kind].rank

    @property
    def label(self) -> str:
        """A short description, e.g. ``swap ReLU -> LeakyReLU(negative_slope=0.2) (He init)``."""
        return KINDS[self.kind].describe(self.params)

    def apply(self, model: nn.Module, *, seed: int) -> Notes:
        """Change ``model`` in place; returns per-module notes (initializers, replacements)."""
        return KINDS[self.kind].apply(model, self.params, seed)

    def code(self, *, seed: int) -> list[str]:
        """The same change as Python lines acting on a variable ``model``."""
        return KINDS[self.kind].code(self.params, seed)

    def train(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The training settings with this candidate's changes."""
        return KINDS[self.kind].train(self.params, dict(settings))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params), "reason": self.reason, "label": self.label}


class Kind(NamedTuple):
    rank: float
    describe: Callable[[Mapping[str, Any]], str]
    apply: Callable[[nn.Module, Mapping[str, Any], int], Notes]
    code: Callable[[Mapping[str, Any], int], list[str]]
    train: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]


def _unchanged(_params: Mapping[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return settings


def _no_model_change(_model: nn.Module, _params: Mapping[str, Any], _seed: int) -> Notes:
    return {}


def _names(names: list[str], limit: int = 4) -> str:
    return ", ".join(names) if len(names) <= limit else f"{', '.join(names[:3])}, ..., {names[-1]} ({len(names)})"


# -- re-initialize from a seeded copy -----------------------------------------------------------
def take_initialized(model: nn.Module, names: list[str], init: str | Mapping[str, str], seed: int,
                     everything: bool = False) -> Notes:  # fmt: skip
    """Re-initialize the modules ``names`` as :func:`trainability.initialize` would (``init``
    ``"auto"``: the matched initializer per layer; an initializer name: that one for these layers;
    a dict: an initializer per layer): on a copy of the model, whose state for these modules is
    then copied over, so nothing else changes. ``everything=True`` initializes the model itself."""
    from trainability.initialization import initialize

    target = model if everything else copy.deepcopy(model)
    given: Any = dict(init) if isinstance(init, Mapping) else (init if init == "auto" or everything else dict.fromkeys(names, init))
    plan = initialize(target, init=given, seed=seed)
    if not everything:
        for name in names:
            model.get_submodule(name).load_state_dict(target.get_submodule(name).state_dict())
    notes: Notes = {}
    for entry in plan:
        owner = next((n for n in names if entry.layer == n or entry.layer.startswith(n + ".")), None)
        if everything or owner is not None:
            key = owner if owner is not None else entry.layer
            said = f"{entry.initializer}" + (f" ({entry.scheme})" if entry.scheme not in ("textbook", "given") else "")
            notes[key] = said if key not in notes or notes[key] == said else f"{notes[key]}; {said}"
    return notes


def _init_code(names: list[str], init: str | Mapping[str, str], seed: int, everything: bool) -> list[str]:
    if everything:
        return ["import trainability", f"trainability.initialize(model{'' if init == 'auto' else f', init={init!r}'}, seed={seed})"]
    if isinstance(init, Mapping):
        given = f", init={json.dumps(dict(init))}"
    else:
        given = "" if init == "auto" else f", init=dict.fromkeys(layers, {init!r})"
    return [
        "import copy",
        "import trainability",
        f"layers = {json.dumps(names)}",
        "reference = copy.deepcopy(model)  # initialize a copy, then take these layers from it",
        f"trainability.initialize(reference{given}, seed={seed})",
        "for name in layers:",
        "    model.get_submodule(name).load_state_dict(reference.get_submodule(name).state_dict())",
    ]


def _reinit_apply(model: nn.Module, p: Mapping[str, Any], seed: int) -> Notes:
    return take_initialized(model, list(p["layers"]), p.get("init", "auto"), seed, p.get("everything", False))


def _reinit_code(p: Mapping[str, Any], seed: int) -> list[str]:
    return _init_code(list(p["layers"]), p.get("init", "auto"), seed, p.get("everything", False))


def _reinit_describe(p: Mapping[str, Any]) -> str:
    init = "the matched initializer" if p.get("init", "auto") == "auto" else p["init"]
    where = "every layer" if p.get("everything") else f"{len(p['layers'])} layers ({_names(p['layers'])})"
    schemes = f" ({', '.join(p['schemes'])})" if p.get("schemes") else ""
    return f"re-initialize {where} with {init}{schemes}"


REINITIALIZE = Kind(0, _reinit_describe, _reinit_apply, _reinit_code, _unchanged)


# -- recurrent layers: gate biases, chrono ---------------------------------------------------------
def _chrono_apply(model: nn.Module, layers: list[str], steps: int, seed: int) -> Notes:
    from trainability.initialization import chrono_bias_

    generator = torch.Generator().manual_seed(seed)
    for name in layers:
        chrono_bias_(model.get_submodule(name), steps, generator=generator)
    return {name: f"chrono gate biases, log U(1, {steps - 1})" for name in layers}


def _chrono_code(layers: list[str], steps: int, seed: int) -> list[str]:
    return [
        "import torch",
        "from trainability.initialization import chrono_bias_",
        f"generator = torch.Generator().manual_seed({seed})",
        f"for name in {json.dumps(layers)}:  # chrono initialization for {steps}-step dependencies",
        f"    chrono_bias_(model.get_submodule(name), {steps}, generator=generator)",
    ]


def _recurrent_apply(model: nn.Module, p: Mapping[str, Any], seed: int) -> Notes:
    notes = _reinit_apply(model, p, seed)
    if p.get("chrono"):
        for name, said in _chrono_apply(model, list(p["layers"]), int(p["chrono"]), seed).items():
            notes[name] = f"{notes[name]}; {said}" if name in notes else said
    return notes


def _recurrent_code(p: Mapping[str, Any], seed: int) -> list[str]:
    return _reinit_code(p, seed) + (_chrono_code(list(p["layers"]), int(p["chrono"]), seed) if p.get("chrono") else [])


def _recurrent_describe(p: Mapping[str, Any]) -> str:
    gates = f", chrono gate biases for {p['chrono']} steps" if p.get("chrono") else (" (forget-gate bias 1)" if p.get("lstm") else "")
    return f"orthogonal recurrent init{gates} for {_names(p['layers'])}"


RECURRENT_INIT = Kind(0, _recurrent_describe, _recurrent_apply, _recurrent_code, _unchanged)
CHRONO_INIT = Kind(
    0, lambda p: f"chrono initialization of the gate biases of {_names(p['layers'])} for {p['steps']} steps",
    lambda m, p, seed: _chrono_apply(m, list(p["layers"]), int(p["steps"]), seed),
    lambda p, seed: _chrono_code(list(p["layers"]), int(p["steps"]), seed), _unchanged,
)  # fmt: skip


# -- residual branches ----------------------------------------------------------------------------------
def _branches_apply(model: nn.Module, p: Mapping[str, Any], seed: int) -> Notes:
    if p.get("scheme", "family") == "family":
        return _reinit_apply(model, p, seed)
    notes = take_initialized(model, list(p["layers"]), p["inits"], seed)
    with torch.no_grad():
        for names, factor in ((p["ends"], p["end_factor"]), (p["inner"], p["inner_factor"])):
            if factor != 1.0:
                for name in names:
                    model.get_submodule(name).weight.mul_(factor)
                    notes[name] = f"{notes.get(name, 'redrawn')} x{factor:.3g}"
    return notes


def _branches_code(p: Mapping[str, Any], seed: int) -> list[str]:
    if p.get("scheme", "family") == "family":
        return _reinit_code(p, seed)
    lines = _init_code(list(p["layers"]), p["inits"], seed, False)
    scaled = [(names, factor) for names, factor in ((p["ends"], p["end_factor"]), (p["inner"], p["inner_factor"])) if factor != 1.0 and names]
    if scaled:
        lines += ["import torch", "with torch.no_grad():"]
        for names, factor in scaled:
            lines += [f"    for name in {json.dumps(list(names))}:", f"        model.get_submodule(name).weight.mul_({factor!r})"]
    return lines


def _branches_describe(p: Mapping[str, Any]) -> str:
    scheme = p.get("scheme", "family")
    if scheme == "family":
        return f"scale the residual branches of {len(p['blocks'])} blocks ({', '.join(p.get('schemes', [])) or 'the family scheme'})"
    what = {"scaled": f"branch ends x 1/sqrt({len(p['ends'])})", "fixup": "Fixup: branch ends 0, "
            f"inner layers x{p['inner_factor']:.3g}", "zero": "branch ends 0 (each branch starts as nothing)"}[scheme]  # fmt: skip
    return f"re-draw {len(p['ends'])} residual branches by the table, {what}"


SCALE_RESIDUAL_BRANCHES = Kind(1, _branches_describe, _branches_apply, _branches_code, _unchanged)


# -- the forget gate's bias (LSTM; the GRU's update gate) ---------------------------------------------
def _forget_apply(model: nn.Module, p: Mapping[str, Any], _seed: int) -> Notes:
    with torch.no_grad():
        for name in p["layers"]:
            lstm = model.get_submodule(name)
            h = lstm.hidden_size
            for param, tensor in lstm.named_parameters(recurse=False):
                if param.startswith(("bias_ih", "bias_hh")):
                    tensor[h : 2 * h] = p["value"] if param.startswith("bias_ih") else 0.0
    return {name: f"{'update' if isinstance(model.get_submodule(name), nn.GRU) else 'forget'}-gate bias {p['value']:g}"
            for name in p["layers"]}  # fmt: skip


def _forget_code(p: Mapping[str, Any], _seed: int) -> list[str]:
    return [
        "import torch",
        "with torch.no_grad():  # gates: LSTM (input, forget, cell, output), GRU (reset, update, new)",
        f"    for name in {json.dumps(list(p['layers']))}:",
        "        lstm = model.get_submodule(name)",
        "        h = lstm.hidden_size",
        "        for param, tensor in lstm.named_parameters(recurse=False):",
        "            if param.startswith((\"bias_ih\", \"bias_hh\")):",
        f"                tensor[h : 2 * h] = {p['value']!r} if param.startswith(\"bias_ih\") else 0.0",
    ]


FORGET_GATE_BIAS = Kind(0, lambda p: f"forget-gate bias {p['value']:g} (a GRU's update gate) in {_names(p['layers'])}",
                        _forget_apply, _forget_code, _unchanged)  # fmt: skip


# -- replacing modules ------------------------------------------------------------------------------
def _construct(class_name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    return getattr(nn, class_name)(**kwargs)


def _construct_code(class_name: str, kwargs: Mapping[str, Any]) -> str:
    return f"nn.{class_name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def _replace_lines(pairs: list[tuple[str, str]]) -> list[str]:
    """Code that puts each expression where the named module is (a loop when it is one
    expression for many modules)."""
    if len(pairs) > 2 and len({e for _, e in pairs}) == 1:
        return [f"for name in {json.dumps([n for n, _ in pairs])}:",
                "    parent, _, child = name.rpartition(\".\")",
                f"    setattr(model.get_submodule(parent), child, {pairs[0][1]})"]  # fmt: skip
    lines = []
    for name, expression in pairs:
        parent, _, child = name.rpartition(".")
        lines.append(f"setattr(model.get_submodule({parent!r}), {child!r}, {expression})")
    return lines


def _activation_module(p: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    spec = activations.get(p["activation"])
    return spec.module_type.__name__, {**spec.defaults, **p.get("hyperparameters", {})}


def _swap_apply(model: nn.Module, p: Mapping[str, Any], seed: int) -> Notes:
    class_name, kwargs = _activation_module(p)
    notes: Notes = {}
    for name in p["modules"]:
        replace(model, name, _construct(class_name, kwargs))
        notes[name] = _construct_code(class_name, kwargs).removeprefix("nn.")
    for name, rate in p.get("dropout", []):
        replace(model, name, nn.AlphaDropout(p=rate))
        notes[name] = f"AlphaDropout(p={rate!r})"
    if p["layers"]:
        notes.update(take_initialized(model, list(p["layers"]), "auto", seed))
    return notes


def _swap_code(p: Mapping[str, Any], seed: int) -> list[str]:
    class_name, kwargs = _activation_module(p)
    lines = ["from torch import nn"]
    lines += _replace_lines([(n, _construct_code(class_name, kwargs)) for n in p["modules"]])
    lines += _replace_lines([(n, f"nn.AlphaDropout(p={rate!r})") for n, rate in p.get("dropout", [])])
    return lines + (_init_code(list(p["layers"]), "auto", seed, False) if p["layers"] else [])


def _swap_describe(p: Mapping[str, Any]) -> str:
    class_name, kwargs = _activation_module(p)
    init = activations.get(p["activation"]).recommended_init
    extra = " and AlphaDropout" if p.get("dropout") else ""
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"swap {'/'.join(p['from'])} for {class_name}({shown}) with {init}{extra}"


SWAP_ACTIVATION = Kind(2, _swap_describe, _swap_apply, _swap_code, _unchanged)


def _dropout_apply(model: nn.Module, p: Mapping[str, Any], _seed: int) -> Notes:
    for name, rate in p["modules"]:
        replace(model, name, nn.AlphaDropout(p=rate))
    return {name: f"AlphaDropout(p={rate!r})" for name, rate in p["modules"]}


def _dropout_code(p: Mapping[str, Any], _seed: int) -> list[str]:
    return ["from torch import nn", *_replace_lines([(n, f"nn.AlphaDropout(p={rate!r})") for n, rate in p["modules"]])]


REPLACE_DROPOUT = Kind(
    2, lambda p: f"AlphaDropout instead of Dropout in {_names([n for n, _ in p['modules']])}", _dropout_apply, _dropout_code, _unchanged
)


def _norm_apply(model: nn.Module, p: Mapping[str, Any], _seed: int) -> Notes:
    for name, class_name, features in p["inserts"]:
        replace(model, name, nn.Sequential(model.get_submodule(name), getattr(nn, class_name)(features)))
    return {f"{name}.1": f"{class_name}({features}) inserted" for name, class_name, features in p["inserts"]}


def _norm_code(p: Mapping[str, Any], _seed: int) -> list[str]:
    lines = ["from torch import nn"]
    for name, class_name, features in p["inserts"]:
        lines += _replace_lines([(name, f"nn.Sequential(model.get_submodule({name!r}), nn.{class_name}({features}))")])
    return lines


INSERT_NORMALIZATION = Kind(
    3, lambda p: f"insert {p['inserts'][0][1]} after {_names([i[0] for i in p['inserts']])}", _norm_apply, _norm_code, _unchanged
)


def _qk_apply(model: nn.Module, p: Mapping[str, Any], _seed: int) -> Notes:
    for name, heads, head_dim, parts, normalize in p["targets"]:
        replace(model, name, QKNorm(model.get_submodule(name), heads, head_dim, parts, tuple(normalize)))
    return {name: f"QKNorm({heads} heads of {head_dim})" for name, heads, head_dim, _, _ in p["targets"]}


def _qk_code(p: Mapping[str, Any], _seed: int) -> list[str]:
    lines = ["from trainability.repair.surgery import QKNorm"]
    for name, heads, head_dim, parts, normalize in p["targets"]:
        lines += _replace_lines([(name, f"QKNorm(model.get_submodule({name!r}), {heads}, {head_dim}, {parts}, {tuple(normalize)!r})")])
    return lines


QK_LAYERNORM = Kind(3, lambda p: f"qk-layernorm on {_names([t[0] for t in p['targets']])}", _qk_apply, _qk_code, _unchanged)


def _rnn_apply(model: nn.Module, p: Mapping[str, Any], seed: int) -> Notes:
    for name in p["layers"]:
        old = model.get_submodule(name)
        cls = nn.GRU if p["with"] == "gru" else LSTMAsRNN
        replace(model, name, cls(**_rnn_arguments(old)))
    notes = take_initialized(model, list(p["layers"]), "auto", seed)
    if p.get("chrono"):
        for name, said in _chrono_apply(model, list(p["layers"]), int(p["chrono"]), seed).items():
            notes[name] = f"{notes[name]}; {said}" if name in notes else said
    return {n: f"{'GRU' if p['with'] == 'gru' else 'LSTMAsRNN'}; {v}" for n, v in notes.items()}


def _rnn_arguments(rnn: nn.Module) -> dict[str, Any]:
    return {k: getattr(rnn, k) for k in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")}


def _rnn_code(p: Mapping[str, Any], seed: int) -> list[str]:
    cls = "nn.GRU" if p["with"] == "gru" else "LSTMAsRNN"
    lines = ["from torch import nn"] + (["from trainability.repair import LSTMAsRNN"] if p["with"] != "gru" else [])
    lines.append("arguments = (\"input_size\", \"hidden_size\", \"num_layers\", \"bias\", \"batch_first\", \"dropout\", \"bidirectional\")")
    for name in p["layers"]:
        parent, _, child = name.rpartition(".")
        lines.append(f"old = model.get_submodule({name!r})")
        lines.append(f"setattr(model.get_submodule({parent!r}), {child!r}, {cls}(**{{k: getattr(old, k) for k in arguments}}))")
    lines += _init_code(list(p["layers"]), "auto", seed, False)
    return lines + (_chrono_code(list(p["layers"]), int(p["chrono"]), seed) if p.get("chrono") else [])


REPLACE_RNN = Kind(
    4.5, lambda p: f"{'nn.GRU' if p['with'] == 'gru' else 'an LSTM (LSTMAsRNN)'} instead of the plain RNN {_names(p['layers'])}"
                   + (f", chrono gate biases for {p['chrono']} steps" if p.get("chrono") else ""),
    _rnn_apply, _rnn_code, _unchanged,
)  # fmt: skip


# -- training only ---------------------------------------------------------------------------------
def _clip_train(p: Mapping[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "clip_norm": p["clip_norm"]}


def _lr_train(p: Mapping[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "lr": p["lr"]}


def _optimizer_train(p: Mapping[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "optimizer": p["optimizer"], "lr": p.get("lr"), "momentum": 0.0, "eps": None}


def _lr_describe(p: Mapping[str, Any]) -> str:
    if p.get("lr") is None:
        below = f"{p['below']:g}x below " if p.get("below", 1.0) != 1.0 else ""
        return f"learning rate {below}the range test's choice"
    how = p.get("source") or (f"x{p['factor']:g}" if p.get("factor") is not None else "")
    return f"learning rate {p['lr']:.3g}" + (f" ({how})" if how else "")


def _training_code(_p: Mapping[str, Any], _seed: int) -> list[str]:
    return []


CLIP_GRADIENTS = Kind(
    4, lambda p: f"clip gradients at norm {p['clip_norm']:.3g}" + (f" ({p['source']})" if p.get("source") else ""),
    _no_model_change, _training_code, _clip_train,
)  # fmt: skip
LOWER_LEARNING_RATE = Kind(5, _lr_describe, _no_model_change, _training_code, _lr_train)
WARMUP = Kind(5, lambda p: f"warm the learning rate up over {p['steps']} steps", _no_model_change, _training_code,
              lambda p, s: {**s, "warmup": int(p["steps"])})  # fmt: skip
SET_ADAM_EPS = Kind(5, lambda p: f"Adam's epsilon {p['eps']:g}", _no_model_change, _training_code,
                    lambda p, s: {**s, "eps": float(p["eps"])})  # fmt: skip
Z_LOSS = Kind(5, lambda p: f"z-loss {p['coefficient']:g} x log^2 Z", _no_model_change, _training_code,
              lambda p, s: {**s, "z_loss": float(p["coefficient"])})  # fmt: skip
CHANGE_OPTIMIZER = Kind(
    5, lambda p: f"{p['optimizer']} at " + ("its default learning rate" if p.get("lr") is None else f"learning rate {p['lr']:.3g}")
                 + (f" ({p['source']})" if p.get("source") else ""),
    _no_model_change, _training_code, _optimizer_train,
)  # fmt: skip

#: Every kind of candidate, by name.
KINDS: dict[str, Kind] = {
    "reinitialize": REINITIALIZE,
    "recurrent_init": RECURRENT_INIT,
    "forget_gate_bias": FORGET_GATE_BIAS,
    "chrono_init": CHRONO_INIT,
    "scale_residual_branches": SCALE_RESIDUAL_BRANCHES,
    "swap_activation": SWAP_ACTIVATION,
    "replace_dropout": REPLACE_DROPOUT,
    "insert_normalization": INSERT_NORMALIZATION,
    "qk_layernorm": QK_LAYERNORM,
    "clip_gradients": CLIP_GRADIENTS,
    "replace_rnn": REPLACE_RNN,
    "lower_learning_rate": LOWER_LEARNING_RATE,
    "warmup": WARMUP,
    "set_adam_eps": SET_ADAM_EPS,
    "z_loss": Z_LOSS,
    "change_optimizer": CHANGE_OPTIMIZER,
}
#: Kinds that change only the training settings (the doctor at initialization cannot judge them).
TRAINING_ONLY = frozenset({"clip_gradients", "lower_learning_rate", "warmup", "set_adam_eps", "z_loss", "change_optimizer"})
