"""The Monitor as a doctor of training, on real runs.

Each failure is established by training: the run really fails (diverges, stalls at a constant
predictor, does not learn), the Monitor names the cause at a step before the damage is done, and
the same model with the named fix trains. Healthy runs of several families are silent from the
first step to the last.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import training_cases as C
from torch import nn

from trainability.monitor import rules

pytest.importorskip("transformers")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")


def _flip_labels_at(step_of_spike: int, batches):  # noqa: ANN001, ANN202
    def batch(step: int):  # noqa: ANN202
        x, y = batches(step)
        return (x, (y + 1) % 10) if step == step_of_spike else (x, y)

    return batch


# -- learning rate too high ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_too_high():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = C.gpt2()
        return C.train(model, torch.optim.AdamW(model.parameters(), lr=0.1), C.copy_batches(), 150)
    finally:
        torch.set_num_threads(threads)


def test_too_high_on_a_transformer_is_named_early_and_its_rate_trains(gpt2_too_high):
    run = gpt2_too_high
    assert run.tail() > 4.0  # it sits at the unigram loss, ln 64 = 4.16: the copy is never learned
    found = run.first("learning_rate_too_high")
    # before the loss degrades (its 10-step running median 25% above the lr-1e-3 twin's from step 6,
    # benchmarks/monitor_training.py): at step 4, the first record whose loss is up by half its start,
    # after steps that moved whole layers by their own size
    assert found is not None and found.severity == "error" and found.step <= 4, run.monitor.summary()
    assert found.layers and "0.1" in found.message and "warm" in found.fix
    assert not {"vanishing_gradients", "learning_rate_too_low"} & run.kinds()  # not the wrong cause, no opposite advice
    rate = found.action["lr"]
    assert rate <= 0.1 / 3
    model = C.gpt2()
    fixed = C.train(model, torch.optim.AdamW(model.parameters(), lr=rate), C.copy_batches(), 250)
    assert fixed.tail() < 3.6  # the copy is being learned (the same model at 1e-3 reaches 2.0)
    assert not fixed.monitor.findings, fixed.monitor.summary()


def test_too_high_with_every_10_from_collapsed_outputs():
    model = C.gpt2()
    run = C.train(model, torch.optim.AdamW(model.parameters(), lr=0.1), C.copy_batches(), 30, every=10)
    found = run.first("learning_rate_too_high")
    assert found is not None and found.step in (10, 20), run.monitor.summary()
    assert "vanishing_gradients" not in run.kinds()


def test_too_high_before_a_divergence_and_the_lower_rate_trains():
    model = C.mlp()
    run = C.train(model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), C.digit_batches(), 200)
    diverged = run.first_non_finite
    assert diverged is not None  # the run really diverges
    found = run.first("learning_rate_too_high")
    assert found is not None and found.step < diverged, run.monitor.summary()
    model = C.mlp()
    fixed = C.train(model, torch.optim.SGD(model.parameters(), lr=found.action["lr"], momentum=0.9), C.digit_batches(), 200)
    assert fixed.tail() < 0.2 and not fixed.monitor.findings, fixed.monitor.summary()


def test_the_gradient_exploding_is_not_blamed_on_the_rate():
    model = C.mlp()

    def batches(step: int):  # noqa: ANN202
        if step == 120:
            with torch.no_grad():
                model[4].weight.mul_(300.0)  # an accident, not the step size
        return C.digit_batches()(step)

    run = C.train(model, torch.optim.SGD(model.parameters(), lr=0.01), batches, 160, stop_on_nan=False)
    assert "learning_rate_too_high" not in run.kinds(), run.monitor.summary()


# -- learning rate too low --------------------------------------------------------------------------------
def test_too_low_is_named_and_the_higher_rate_trains():
    model = C.mlp()
    run = C.train(model, torch.optim.SGD(model.parameters(), lr=1e-5), C.digit_batches(), 200)
    found = run.first("learning_rate_too_low")
    assert found is not None and found.severity == "warning", run.monitor.summary()
    assert found.step >= rules.learning_rate.MIN_STEPS and found.action["lr"] > 1e-5
    model = C.mlp()
    fixed = C.train(model, torch.optim.SGD(model.parameters(), lr=found.action["lr"]), C.digit_batches(), 200)
    assert fixed.tail() < 0.5 * run.tail()
    assert "learning_rate_too_low" not in fixed.kinds()


def test_too_low_is_never_said_of_a_run_whose_rate_was_too_high(gpt2_too_high):
    # it ends with small updates (its state and weights have grown) and a flat loss: still not "too low"
    assert "learning_rate_too_low" not in gpt2_too_high.kinds()


# -- Adam's epsilon ------------------------------------------------------------------------------------------
def test_adam_epsilon_dominates_and_a_lower_eps_trains():
    model = C.mlp()
    run = C.train(model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1.0), C.digit_batches(), 150)
    assert run.tail() > 1.0  # it barely learns
    found = run.first("adam_epsilon_dominates")
    assert found is not None and found.step <= 2 and len(found.layers) == 5, run.monitor.summary()
    assert found.action["eps"] < 1.0 and "never raise" in found.fix
    assert "learning_rate_too_low" not in run.kinds()  # the rate is fine: eps is the cause
    model = C.mlp()
    fixed = C.train(model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=found.action["eps"]), C.digit_batches(), 150)
    assert fixed.tail() < 0.2 and not fixed.monitor.findings, fixed.monitor.summary()


def test_entries_without_gradient_do_not_count_for_epsilon():
    # BERT's token-type embedding has a row no batch uses (type 1), and every token id below 64 is
    # used here but 0: v = 0 there, which is no evidence about eps
    model = C.bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-8)
    run = C.train(model, optimizer, C.majority_batches(), 40, scheduler=C.warmup_cosine(optimizer, 10, 40))
    record = run.monitor.records[-1]
    share = record.eps["bert.embeddings.token_type_embeddings"][0]
    assert share == 0.0 and "adam_epsilon_dominates" not in run.kinds()


# -- attention logits ---------------------------------------------------------------------------------------
def test_attention_logit_growth_measured_and_named(gpt2_too_high):
    found = gpt2_too_high.first("attention_logit_growth")
    assert found is not None and found.step <= 30, gpt2_too_high.monitor.summary()
    assert "qk-layernorm" in found.fix and found.action["op"] == "qk_layernorm"
    logits = [v for r in gpt2_too_high.monitor.records for v in r.attention.values()]
    assert logits[0] < 1 and max(logits) > rules.attention.WARNING_LOGIT  # from ~0.1 at step 0


def test_attention_probe_equals_the_logits_eager_attention_computes():
    # the independent oracle: BERT's eager attention, whose softmax input is q.k / sqrt(d) (+ a zero mask here)
    transformers = pytest.importorskip("transformers")
    from trainability.monitor.attention import AttentionProbe

    model = C.bert()
    model.config._attn_implementation = "eager"
    seen = []
    softmax = torch.nn.functional.softmax

    def spy(x, *args, **kwargs):  # noqa: ANN001, ANN202
        if x.dim() == 4:
            seen.append(float(x[0].detach().max()))
        return softmax(x, *args, **kwargs)

    probe = AttentionProbe(model)
    probe.attach()
    torch.nn.functional.softmax = spy
    try:
        model(**{k: v for k, v in C.majority_batches()(0).items() if k != "labels"})
    finally:
        torch.nn.functional.softmax = softmax
        probe.detach()
    got = [float(v) for v in probe.values().values()]
    assert transformers is not None and len(got) == len(seen) == 2
    assert got == pytest.approx(seen, rel=1e-5)


# -- loss spikes ------------------------------------------------------------------------------------------------
def test_loss_spike_named_by_its_own_step():
    model = C.mlp()
    run = C.train(model, torch.optim.Adam(model.parameters(), lr=1e-3), _flip_labels_at(150, C.digit_batches()), 200)
    found = [f for f in run.monitor.findings if f.kind == "loss_spike"]
    assert [f.step for f in found] == [150], run.monitor.summary()  # not recorded (the schedule has 150), but its own step
    assert run.monitor.findings == found


def test_loss_spike_gradient_named_when_the_step_is_recorded():
    model = C.mlp()
    run = C.train(model, torch.optim.Adam(model.parameters(), lr=1e-3), _flip_labels_at(150, C.digit_batches()), 160,
                  every=1)  # fmt: skip
    (found,) = [f for f in run.monitor.findings if f.kind == "loss_spike"]
    assert found.step == 150 and "gradient spiked too, first in 8" in found.message  # the output layer first


# -- dead units during training -----------------------------------------------------------------------------
def test_units_that_die_during_training_with_the_step_and_rate():
    model = C.mlp()
    run = C.train(model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9), C.digit_batches(), 40)
    found = run.first("dead_units")
    assert found is not None and "between steps" in found.message and "0.5" in found.message, run.monitor.summary()


# -- silence on healthy runs -------------------------------------------------------------------------------
HEALTHY = {
    "gpt2, AdamW with warm-up and cosine decay": lambda: _warm(C.gpt2(), C.copy_batches(), 3e-3, 250),
    "bert, AdamW with warm-up": lambda: _warm(C.bert(), C.majority_batches(), 1e-3, 250),
    "cnn with batch norm, SGD with momentum": lambda: C.train(m := C.cnn(), torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9,
                                                              weight_decay=5e-4), C.digit_batches(images=True), 250),
    "lstm, Adam": lambda: C.train(m := C.LSTMClassifier(), torch.optim.Adam(m.parameters(), lr=3e-3), C.recall_batches(), 250),
    "mlp converging to a flat loss near 0": lambda: C.train(m := C.mlp(), torch.optim.Adam(m.parameters(), lr=1e-3),
                                                            C.digit_batches(), 500),
    "mlp, cosine schedule to a rate of 0": lambda: _cosine(C.mlp(), 400),
}  # fmt: skip


def _warm(model, batches, lr, steps):  # noqa: ANN001, ANN202
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    return C.train(model, optimizer, batches, steps, scheduler=C.warmup_cosine(optimizer, steps // 10, steps))


def _cosine(model, steps):  # noqa: ANN001, ANN202
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return C.train(model, optimizer, C.digit_batches(), steps, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps))


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_runs_are_silent_from_the_first_step_to_the_last(name):
    run = HEALTHY[name]()
    assert run.tail() < 0.5 * run.losses[0]  # it did train
    assert not run.monitor.findings, run.monitor.summary()
    assert math.isfinite(run.monitor.figures["loss"]) and run.monitor.figures["update_ratio_max"] > 0


# -- output logit divergence ---------------------------------------------------------------------------------
def _records(*points):  # noqa: ANN002, ANN202 - (step, log Z, mean logit) per record
    return [rules.Record(step, lr=1e-3, log_z=z, mean_logit=m) for step, z, m in points]


@pytest.mark.parametrize(("points", "fires"), [
    ([(0, 4.6, 0.0), (25, -40.0, -52.0), (50, -80.0, -95.0)], True),     # every logit drifting down, away from 0
    ([(0, 4.6, 0.0), (25, 45.0, 33.0), (50, 60.0, 48.0)], True),         # every logit drifting up
    ([(0, 2.3, 0.0), (25, 28.0, -9.0), (50, 60.0, -20.0)], False),       # a confident classifier: top logit up, the rest down
    ([(0, 4.6, 0.0), (25, 4.9, -1.0), (50, -80.0, -95.0)], False),       # one odd batch is no drift
    ([(0, 4.6, 0.0), (25, -80.0, -95.0), (50, -50.0, -60.0)], False),    # coming back towards 0
])  # fmt: skip
def test_output_logit_divergence_is_a_drift_of_every_logit(points, fires):
    # A natural drift is a late-training effect of long large runs (docs/MONITOR.md): the rule is
    # checked here on the records such a run produces
    from trainability.monitor.losses import LossSeries

    found = rules.output_divergence(rules.TrainingEvidence(_records(*points), LossSeries()))
    assert bool(found) == fires
    if fires:
        assert found[0].action["op"] == "z_loss" and "z-loss" in found[0].fix and "weight decay" in found[0].fix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_turbulent_start_that_trains_is_no_rate_too_high(seed):
    # a 20-layer ELU stack's first steps swing the loss from 2.5 to 8.2 and back to 0.9; it then
    # trains to a loss near 0: the rate is not too high, and nothing says so
    from trainability import datasets, mlp

    splits = datasets.load("circles")
    x, y = splits.train.x, splits.train.y
    torch.manual_seed(seed)
    model = mlp(x.shape[1], 2, depth=20, width=64, activation="elu")
    g = torch.Generator().manual_seed(seed)

    def batches(step: int):  # noqa: ANN202
        i = torch.randint(0, len(x), (32,), generator=g)
        return x[i], y[i]

    run = C.train(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), batches, 300)
    late = sorted(run.losses[-50:])
    assert late[25] < 0.4  # it trains (the median of its last 50 batch losses: the first seed jumps 2.5, 8.2, 0.9 first)
    assert not {"learning_rate_too_high", "learning_rate_too_low"} & run.kinds(), run.monitor.summary()


# -- a broken initialization is the cause, not the rate --------------------------------------------------
def test_a_broken_initialization_is_not_blamed_on_the_rate():
    """A ReLU stack on N(0, 1) weights diverges with SGD at every rate from 1e-1 down to 1e-4, and
    trains at 1e-2 once initialized for ReLU: the cause is the initialization (named at step 0), so
    no rate verdict, and no explosion or dead units after it, are reported as findings of their own."""
    broken = C.mlp(depth=6)
    torch.manual_seed(0)
    for layer in broken.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 1.0)
            nn.init.zeros_(layer.bias)
    initial = copy.deepcopy(broken.state_dict())
    for lr in (1e-2, 1e-4):
        broken.load_state_dict(initial)
        run = C.train(broken, torch.optim.SGD(broken.parameters(), lr=lr), C.digit_batches(), 40, stop_on_nan=False)
        assert run.first_non_finite is not None  # it fails, whatever the rate
        kinds = [(f.kind, f.step) for f in run.monitor.findings]
        assert kinds[0] == ("exploding_gradients", 0), run.monitor.summary()
        assert not {"learning_rate_too_high", "learning_rate_too_low"} & run.kinds(), run.monitor.summary()
        assert not [k for k, step in kinds if k in {"exploding_gradients", "dead_units"} and step > 0], kinds
    healthy = C.mlp(depth=6)  # the same stack initialized for ReLU: trains at 1e-2, silently
    run = C.train(healthy, torch.optim.SGD(healthy.parameters(), lr=1e-2), C.digit_batches(), 200)
    assert run.tail() < 0.5 * run.losses[0] and not run.monitor.findings, run.monitor.summary()


# -- every step: light records between full ones ----------------------------------------------------------
def test_every_step_records_are_light_between_full_ones_and_their_gradient_norms_are_autograds():
    """At ``every=1`` one record in DETAIL_EVERY is in full detail; the others hold the loss, the
    rate and each weight's gradient norm, which equal plain autograd's at that step."""
    from trainability import Monitor
    from trainability.monitor.core import DETAIL_EVERY

    model = C.mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = C.digit_batches()
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    seen: list[list[float]] = []
    with Monitor(model, optimizer, every=1) as monitor:
        for step in range(3 * DETAIL_EVERY + 5):
            x, y = batches(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            seen.append(sorted(float(w.grad.norm()) for w in weights))
            monitor.step()
            optimizer.step()
    records = monitor.records
    assert [r.step for r in records] == list(range(len(seen)))  # every step recorded
    detailed = [r.step for r in records if r.detail]
    assert detailed[:DETAIL_EVERY] == list(range(DETAIL_EVERY))  # the first steps in full
    assert all(b - a == DETAIL_EVERY for a, b in zip(detailed[DETAIL_EVERY - 1:], detailed[DETAIL_EVERY:], strict=False))
    assert detailed[DETAIL_EVERY:] == [2 * DETAIL_EVERY - 1, 3 * DETAIL_EVERY - 1]
    for record in records:
        norms = sorted(s.weight_grad_norm for s in record.layers if s.role == "weight" and s.weight_grad_norm is not None)
        assert norms == pytest.approx(seen[record.step], rel=1e-5), record.step
        if not record.detail:  # nothing measured that a light record does not measure
            assert not record.updates and not record.eps and not record.attention
            assert all(s.std is None and s.dead_fraction is None for s in record.layers)
        else:
            assert any(s.std is not None for s in record.layers)


def test_every_step_history_equals_recomputing_it_from_the_records():
    """The monitor keeps what the rules read from every record as records arrive (no pass over
    the whole run at each step); it equals what the records and losses give when recomputed."""
    model = C.mlp()
    run = C.train(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), C.digit_batches(), 60, every=1)
    kept = run.monitor._history
    again = rules.History.of(run.monitor.records, run.monitor.losses)
    assert len(kept.levels) == 60 and kept.levels == pytest.approx(again.levels)
    assert kept.max_lr == again.max_lr == 0.05 and kept.first_dead == again.first_dead
    assert kept.max_update_initial == pytest.approx(again.max_update_initial) and kept.max_update_initial > 0
    assert kept.max_update == pytest.approx(again.max_update) and kept.max_update > 0
    assert [kept.lowest_level(k) for k in (1, 2, 10)] == pytest.approx([again.lowest_level(k) for k in (1, 2, 10)])
    assert run.monitor.losses.highest() == pytest.approx(max(run.losses))


def test_a_spike_at_every_step_is_named_at_its_own_step_from_a_light_record():
    model = C.mlp()
    run = C.train(model, torch.optim.Adam(model.parameters(), lr=1e-3), _flip_labels_at(153, C.digit_batches()), 170,
                  every=1)  # fmt: skip
    spiked = next(r for r in run.monitor.records if r.step == 153)
    assert not spiked.detail  # between full records: the spike's own record is a light one
    (found,) = [f for f in run.monitor.findings if f.kind == "loss_spike"]
    assert found.step == 153 and "gradient spiked too" in found.message, run.monitor.summary()
    assert all(r.detail for r in run.monitor.records if r.step > 153)  # recorded in full after it


@pytest.mark.parametrize("name", ["gpt2, AdamW with warm-up and cosine decay", "mlp converging to a flat loss near 0"])
def test_healthy_runs_recorded_at_every_step_are_silent(name):
    steps = 250
    if name.startswith("gpt2"):
        model = C.gpt2()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        run = C.train(model, optimizer, C.copy_batches(), steps, every=1,
                      scheduler=C.warmup_cosine(optimizer, steps // 10, steps))  # fmt: skip
    else:
        model = C.mlp()
        run = C.train(model, torch.optim.Adam(model.parameters(), lr=1e-3), C.digit_batches(), 2 * steps, every=1)
    assert run.tail() < 0.5 * run.losses[0]
    assert len(run.monitor.records) == len(run.losses) and not run.monitor.findings, run.monitor.summary()


def test_the_highest_loss_is_kept_as_values_arrive_and_read_again_when_replaced():
    from trainability.monitor.losses import LossSeries

    series = LossSeries()
    for step, value in enumerate([2.0, 3.0, float("nan"), 1.0]):
        series.add(step, value)
    series.flush()
    assert series.highest() == 3.0 and series.initial() == 2.0
    series.add(4, 5.0)
    series.flush()
    assert series.highest() == 5.0
    series.values = [9.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # a loaded state, longer than what was read
    assert series.highest() == 9.0
