"""The doctor, initialize and Monitor on the architectures people train (transformers, modern CNNs,
recurrent networks). Every "broken" label is checked independently of the doctor: with plain
autograd or a short training run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from architectures import (
    HEALTHY,
    Recurrent,
    ResidualMLP,
    bert,
    gpt2,
    labels,
    tokens,
)
from torch import nn

from trainability import Monitor, adapters, diagnose, initialize
from trainability.batches import Batch

pytest.importorskip("transformers")


def kinds(report) -> set[str]:
    return {f.kind for f in report.findings}


def gradient_by_step(model: Recurrent, ids: torch.Tensor) -> torch.Tensor:
    """Plain autograd: the norm of the loss gradient reaching each time step's input."""
    x = model.embed(ids).detach().requires_grad_(True)
    out, _ = model.rnn(x)
    F.cross_entropy(model.head(out[:, -1]), labels(len(ids))).backward()
    return x.grad.norm(dim=(0, 2))


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_library_default_init_is_healthy(name):
    make, batch = HEALTHY[name]
    model = make()
    report = diagnose(model, batch())
    assert not [f for f in report.findings if f.severity == "error"], report.verdict()
    assert not kinds(report) & {"vanishing_gradients", "exploding_gradients"}, report.verdict()
    assert len({s.name for s in report.layers if s.role == "weight"}) >= 3  # every weight is visible


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_initialize_keeps_healthy_models_healthy(name):
    make, batch = HEALTHY[name]
    model = make()
    example = batch()
    plan = initialize(model, data=example[0] if isinstance(example, list) else example, seed=0)
    assert len(plan) >= 3 and all(e.scheme for e in plan)
    report = diagnose(model, example)
    assert not [f for f in report.findings if f.severity == "error"], report.verdict()
    assert not kinds(report) & {"vanishing_gradients", "exploding_gradients"}, report.verdict()


def test_residual_stream_is_what_is_compared_in_transformers():
    report = diagnose(bert(layers=4), HEALTHY["bert"][1]())
    assert [b.name for b in report.blocks][:4] == [f"bert.encoder.layer.{i}" for i in range(4)]
    gradients = [b.unit_grad_rms for b in report.blocks]
    assert max(gradients) / min(gradients) < 10  # post-LN BERT passes its gradient on evenly


def _short_training(model: nn.Module, steps: int = 30) -> float:
    """Mean training loss over a short AdamW run on a fixed toy task (is a token present?)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        ids = torch.randint(5, 120, (16, 12), generator=generator)
        y = torch.randint(0, 2, (16,), generator=generator)
        ids[y == 1, 3] = 4
        loss = model(input_ids=ids, labels=y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


def test_transformer_with_far_too_large_weights():
    torch.manual_seed(0)
    broken, healthy = bert(initializer_range=1.0), bert()
    assert _short_training(broken) > 2 * _short_training(healthy)  # independent label: it trains badly
    batch = HEALTHY["bert"][1]()
    report = diagnose(broken, batch)
    saturated = [f for f in report.by_kind("saturated_units") if "attention" in f.message]
    assert saturated and saturated[0].severity == "error"
    assert any("attention.self.query" in layer for layer in saturated[0].layers)
    plan = initialize(broken, data=batch, seed=0)
    assert {e.scheme for e in plan} <= {"transformer", "gpt2_residual"}
    assert diagnose(broken, batch).healthy


def test_gpt2_with_far_too_large_weights_starts_confidently_wrong():
    model = gpt2(initializer_range=1.0)
    batch = HEALTHY["gpt2"][1]()
    first_loss = float(model(**batch).loss.detach())
    assert first_loss > math.log(120) + math.log(10)  # independent label: far above chance
    report = diagnose(model, batch)
    assert {"saturated_units", "init_mismatch"} <= kinds(report)
    initialize(model, data=batch, seed=0)
    assert diagnose(model, batch).healthy


def test_deep_residual_net_without_normalization_explodes():
    torch.manual_seed(0)
    model, x, y = ResidualMLP(norm=False), torch.randn(64, 20), torch.randint(0, 3, (64,))
    # independent label, plain autograd: the stream's std and gradient at the first and last block
    stream = []
    handles = [b.register_forward_pre_hook(lambda m, a: stream.append(a[0])) for b in model.blocks]
    logits = model(x)
    for h in handles:
        h.remove()
    for t in stream:
        t.retain_grad()
    F.cross_entropy(logits, y).backward()
    assert float(stream[-1].detach().std() / stream[0].detach().std()) > 10
    assert float(stream[0].grad.norm() / stream[-1].grad.norm()) > 100
    model.zero_grad()
    report = diagnose(model, x, y)
    (finding,) = report.by_kind("exploding_gradients")
    assert "residual stream" in finding.message and finding.layers[0] == "blocks.0"
    assert "Fixup" in finding.fix
    plan = initialize(model, seed=0)
    assert "fixup" in {e.scheme for e in plan}
    assert diagnose(model, x, y).healthy
    assert not diagnose(ResidualMLP(norm=True), x, y).findings


def test_plain_rnn_vanishes_through_time():
    torch.manual_seed(0)
    model, ids = Recurrent("rnn", "last"), tokens(length=100)
    steps = gradient_by_step(model, ids)
    assert float(steps[0] / steps[-1]) < 1e-4  # independent label
    report = diagnose(model, ids, labels())
    (finding,) = report.by_kind("vanishing_through_time")
    assert finding.layers == ["rnn"] and finding.severity == "error"
    assert "LSTM" in finding.fix and "100 steps" in finding.message
    assert len(report.time[0].grad_norms) == 100


def test_plain_rnn_explodes_through_time():
    torch.manual_seed(0)
    model, ids = Recurrent("rnn", "last"), tokens(length=100)
    with torch.no_grad():
        nn.init.orthogonal_(model.rnn.weight_hh_l0)
        model.rnn.weight_hh_l0.mul_(2.0)  # largest singular value 2
        model.embed.weight.mul_(0.1)
    steps = gradient_by_step(model, ids)
    assert float(steps[0] / steps[-1]) > 1e4  # independent label
    (finding,) = diagnose(model, ids, labels()).by_kind("exploding_through_time")
    assert finding.layers == ["rnn"] and "clip" in finding.fix


def test_lstm_reading_its_last_state_vanishes_through_time_and_initialize_helps():
    torch.manual_seed(0)
    model, ids = Recurrent("lstm", "last"), tokens(length=50)
    before = float((s := gradient_by_step(model, ids))[0] / s[-1])
    assert before < 1e-6  # independent label (about 1e-9..1e-11 at PyTorch's default)
    (finding,) = diagnose(model, ids, labels()).by_kind("vanishing_through_time")
    assert "forget-gate bias" in finding.fix
    plan = initialize(model, seed=0)
    assert plan["rnn.weight_hh_l0"].initializer == "orthogonal"
    bias = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    assert torch.allclose(bias[32:64], torch.ones(32)) and not bias[:32].any()
    after = float((s := gradient_by_step(model, ids))[0] / s[-1])
    assert after > 100 * before


def test_dead_units_in_a_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )  # fmt: skip
    with torch.no_grad():
        model[2].bias.fill_(-10.0)
    x = torch.randn(16, 3, 12, 12)
    with torch.no_grad():
        dead = float((model[:3](x).amax(dim=(0, 2, 3)) <= 0).float().mean())
    assert dead == 1.0  # independent label: no channel of conv 2 ever fires
    (finding,) = diagnose(model, x, labels(16)).by_kind("dead_units")
    assert finding.layers == ["3"]  # the ReLU after conv 2


def test_nan_inside_one_attention_block_is_named():
    model = gpt2()
    with torch.no_grad():
        model.transformer.h[2].attn.c_proj.weight[0, 0] = float("nan")
    report = diagnose(model, HEALTHY["gpt2"][1]())
    (finding,) = report.by_kind("non_finite")
    assert finding.layers == ["transformer.h.2.attn.c_proj"]


def test_weights_of_every_kind_are_seen_with_their_fans():
    gpt = gpt2()
    by_name = {w.name: w for w in adapters.weights(gpt)}
    c_fc = by_name["transformer.h.0.mlp.c_fc"]  # Conv1D stored (in, out) = (32, 128)
    assert c_fc.transposed and c_fc.fans == (32, 128)
    assert by_name["transformer.wte"].role == "embedding"
    lstm = {w.name: w for w in adapters.weights(nn.LSTM(8, 16, num_layers=2))}
    assert lstm["weight_ih_l0"].fans == (8, 16) and lstm["weight_hh_l1"].fans == (16, 16)
    assert lstm["weight_ih_l1"].gates == 4 and lstm["weight_ih_l1"].tensor.shape == (64, 16)
    attention = nn.MultiheadAttention(16, 4)
    mha = {w.name: w for w in adapters.weights(attention)}
    assert mha["in_proj.k"].tensor.data_ptr() == attention.in_proj_weight[16:32].data_ptr()  # a view
    assert set(mha) == {"in_proj.q", "in_proj.k", "in_proj.v", "out_proj"}
    assert mha["in_proj.k"].tensor.shape == (16, 16) and mha["in_proj.k"].fans == (16, 16)


def test_gpt2_rows_use_the_models_own_names_and_every_layer():
    report = diagnose(gpt2(), HEALTHY["gpt2"][1]())
    names = {s.name for s in report.layers if s.role == "weight"}
    for i in range(4):
        assert {f"transformer.h.{i}.attn.c_attn", f"transformer.h.{i}.attn.c_proj",
                f"transformer.h.{i}.mlp.c_fc", f"transformer.h.{i}.mlp.c_proj"} <= names  # fmt: skip


def test_lstm_rows_per_layer_and_gate_matrix():
    model = Recurrent("lstm", "pool", layers=3)
    report = diagnose(model, tokens(length=20), labels())
    rows = {s.name: s for s in report.layers if s.module == "rnn"}
    assert {f"rnn.weight_{k}_l{i}" for k in ("ih", "hh") for i in range(3)} <= set(rows)
    assert all(r.weight_grad_norm and r.weight_grad_norm > 0 for r in rows.values())
    assert report.time and report.time[0].name == "rnn" and len(report.time[0].grad_norms) == 20


def test_model_loss_is_used_when_labels_are_in_the_batch():
    model, batch = bert(), HEALTHY["bert"][1]()
    model.eval()  # no dropout: the doctor's loss equals a plain forward's
    expected = float(model(**batch).loss.detach())
    assert diagnose(model, batch).loss == pytest.approx(expected, rel=1e-5)
    without = {k: v for k, v in batch.items() if k != "labels"}
    assert diagnose(model, without, batch["labels"]).loss == pytest.approx(expected, rel=1e-5)


def test_initialize_on_transformer_encoder_and_hf_models_without_data():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2, enable_nested_tensor=False)
    plan = initialize(nn.Sequential(model))
    assert any(e.layer.endswith("self_attn.in_proj.q") for e in plan)
    for make in (bert, gpt2):
        plan = initialize(make(), seed=0)
        stds = [e.weight_std for e in plan if e.scheme == "transformer" and e.type != "LayerNorm"]
        assert stds and all(0.015 < s < 0.025 for s in stds)


def test_gpt2_residual_projections_are_scaled_by_depth():
    model = gpt2(layers=6, hidden=64)
    plan = initialize(model, seed=0)
    scaled = [e for e in plan if e.scheme == "gpt2_residual"]
    assert {e.layer.rsplit(".", 2)[-2] + "." + e.layer.rsplit(".", 1)[-1] for e in scaled} == {"attn.c_proj", "mlp.c_proj"}
    assert len(scaled) == 12
    for e in scaled:
        assert e.weight_std == pytest.approx(0.02 / math.sqrt(12), rel=0.1)


def test_monitor_takes_dict_batches_and_model_outputs():
    model = bert()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with Monitor(model, every=1) as monitor:
        for _ in range(3):
            output = model(**HEALTHY["bert"][1]())
            output.loss.backward()
            monitor.step(output)
            optimizer.step()
            optimizer.zero_grad()
    layers = set(monitor.history["layer"])
    assert "bert.encoder.layer.3.output.dense" in layers and "bert.embeddings.word_embeddings" in layers
    with pytest.raises(ValueError, match="model output holding a loss"):
        Monitor(model).step("not a loss")


def test_batches_are_read_as_models_take_them():
    assert Batch.of({"input_ids": tokens()}).size == 8
    with pytest.raises(ValueError, match="dict batch must hold at least one tensor"):
        diagnose(bert(), {"input_ids": [1, 2, 3]})
    with pytest.raises(ValueError, match="forward pass failed"):
        diagnose(bert(), {"pixel_values": torch.randn(2, 3, 8, 8)})


def test_report_json_and_plot_carry_streams_and_time(tmp_path):
    report = diagnose(Recurrent("lstm", "last"), tokens(length=30), labels())
    data = report.to_dict()
    assert data["time"][0]["name"] == "rnn" and len(data["time"][0]["grad_norms"]) == 30
    path = report.plot(tmp_path / "lstm.png")
    import matplotlib.image

    assert matplotlib.image.imread(path).shape[0] > 900  # four panels: the last one is time
    assert "blocks" in diagnose(bert(), HEALTHY["bert"][1]()).to_dict()


def test_promised_names_exist_exactly_as_written():
    import trainability.doctor
    import trainability.integrations.lightning
    import trainability.theory

    for name in ("init", "activations", "initialize", "InitPlan", "mlp", "recommended_init", "diagnose", "Report",
                 "fit", "Monitor", "History", "fold_batchnorm"):  # fmt: skip
        assert hasattr(trainability, name), name
    assert trainability.diagnose is trainability.doctor.diagnose
    assert trainability.Report is trainability.doctor.Report
    assert callable(trainability.integrations.lightning.TrainabilityCallback)
    for name in ("chi", "fixed_point", "depth_scale", "critical_weight_variance", "max_trainable_depth"):
        assert callable(getattr(trainability.theory, name)), name
    assert callable(trainability.init.VarianceScaling) and callable(trainability.activations.AlphaDropout)


def test_doctor_command_uses_example_batch_from_the_model_file(tmp_path, capsys):
    import json

    from trainability.cli import main

    source = tmp_path / "encoder.py"
    source.write_text(
        "import torch, transformers\n"
        "def build(layers=2):\n"
        "    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers,\n"
        "                                     num_attention_heads=2, intermediate_size=32, num_labels=2)\n"
        "    return transformers.BertForSequenceClassification(config)\n"
        "def example_batch():\n"
        "    ids = torch.randint(0, 50, (4, 10), generator=torch.Generator().manual_seed(0))\n"
        "    return {'input_ids': ids, 'labels': torch.tensor([0, 1, 0, 1])}\n"
    )
    assert main(["doctor", f"{source}:build(layers=3)", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["blocks"]) == 4 and not report["findings"]
    assert any(row["name"] == "bert.encoder.layer.2.output.dense" for row in report["layers"])
    source.write_text(source.read_text().replace("return {", "raise RuntimeError('no data here'); return {"))
    assert main(["doctor", f"{source}:build"]) == 2
    assert "example_batch() failed: RuntimeError: no data here" in capsys.readouterr().err


def test_every_weight_matrix_of_these_architectures_is_read():
    # the report lists weight matrices no adapter reads; on these, none
    unread = {name: adapters.unread_weights(make()) for name, (make, _) in HEALTHY.items()}
    unread["nn.MultiheadAttention"] = adapters.unread_weights(nn.MultiheadAttention(16, 2))
    assert unread == dict.fromkeys(unread, [])


def test_a_weight_matrix_no_adapter_reads_is_named_in_the_report():
    class Gated(nn.Module):  # applies its own weight with einsum: no adapter knows how
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 8, 8) / 8**0.5)

        def forward(self, x):
            return torch.einsum("bi,gij->bj", x, self.weight)

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), Gated(), nn.Linear(8, 3))
    report = diagnose(model, torch.randn(16, 8), torch.randint(0, 3, (16,)))
    assert report.unread == ["2 (Gated)"] and report.to_dict()["unread"] == ["2 (Gated)"]
    assert "Not read: 2 (Gated)" in str(report)


def test_repeated_diagnoses_and_monitored_steps_leave_no_capture_behind():
    # stream tensors carry gradient hooks that reference the capture: kept past the pass, they made
    # a cycle through autograd's graph that Python's collector cannot free (60 MB a BERT pass)
    import gc

    from trainability.doctor.capture import Capture

    make, batch = HEALTHY["bert"]
    model, inputs = make(), batch()
    for _ in range(2):
        diagnose(model, inputs)
    monitor = Monitor(model, every=1)
    for _ in range(2):
        out = Batch.of(inputs)(model)
        monitor.step(out.loss)
        model.zero_grad(set_to_none=True)
    monitor.close()
    del monitor, out  # what the user holds
    gc.collect()
    assert [o for o in gc.get_objects() if type(o) is Capture] == []  # type(): isinstance reads __class__, which warns on some torch objects


@pytest.mark.parametrize("name", ["bert", "gpt2", "vit", "convnext", "encoder_post_ln", "resnet"])
def test_monitor_judges_gradient_flow_along_the_residual_stream(name):
    """As diagnose does: a key projection is not compared with the classifier head, so a healthy
    transformer is silent from its first recorded step."""
    make, batch = HEALTHY[name]
    model, inputs = make(), Batch.of(batch())
    with Monitor(model, every=1) as monitor:
        for _ in range(2):
            output = inputs(model)
            loss = output.loss if inputs.labels_inside else F.cross_entropy(output, inputs.targets)
            loss.backward()
            monitor.step(loss)
            model.zero_grad()
    assert not monitor.findings, [f.message for f in monitor.findings]


def test_monitor_finds_a_residual_stream_that_explodes_as_diagnose_does():
    model, x, y = ResidualMLP(norm=False), torch.randn(64, 20), torch.randint(0, 3, (64,))
    with Monitor(model, every=1) as monitor:
        F.cross_entropy(model(x), y).backward()
        (finding,) = monitor.step()
    assert finding.kind == "exploding_gradients" and "residual stream" in finding.message and finding.layers[0] == "blocks.0"
