"""Inputs whose features do not all vary: digits' always-0 pixels, one-hot columns of absent
categories, padding positions, sparse word counts. SELU's input condition is judged on the
features that vary, and the same networks on the same data unstandardized are still told."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainability import datasets, diagnose, mlp
from trainability.cli import main
from trainability.doctor.rules import InputStats, input_stats

pytestmark = pytest.mark.usefixtures("one_thread")


def standardize(x: np.ndarray) -> np.ndarray:
    """Per-feature standardization over the data set, as sklearn's StandardScaler: a constant
    column becomes 0."""
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std == 0, 1.0, std)


def one_hot_table(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four numeric columns in their own units, three categorical ones one-hot encoded with
    Zipf-like frequencies (rare categories are absent from most batches)."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, 4)) * [1, 10, 100, 0.1] + [0, 5, 1000, 3]
    columns = [numeric]
    for k in (8, 12, 20):
        p = 1 / np.arange(1, k + 1) ** 2
        columns.append(np.eye(k)[rng.choice(k, size=n, p=p / p.sum())])
    y = (numeric[:, 0] > 0).astype(int) + (columns[1][:, 0] > 0).astype(int)
    return np.concatenate(columns, 1), y


def padded_sequences(n: int = 1200, length: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of 2 channels, 5 steps or more (4 + geometric(0.2)), zero-padded to 40 steps and
    flattened: the later positions are padding in most samples, the last ones in every sample."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, length, 2))
    for i, steps in enumerate(np.minimum(4 + rng.geometric(0.2, size=n), length)):
        x[i, :steps] = rng.normal(size=(steps, 2)) * [1, 5] + [2, -1]  # two sensors in their own units
    return x.reshape(n, -1), (x[:, :5, 0].sum(1) > 2.5).astype(int)


def bag_of_words(n: int = 1200, vocab: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF of 25-word documents over a Zipf vocabulary, each row of unit norm (sklearn's
    TfidfVectorizer): most columns are 0 in most rows."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, vocab + 1) ** 1.1
    counts = np.zeros((n, vocab))
    for row in counts:
        np.add.at(row, rng.choice(vocab, size=25, p=p / p.sum()), 1)
    tfidf = counts * (np.log((1 + n) / (1 + (counts > 0).sum(0))) + 1)
    return tfidf / np.linalg.norm(tfidf, axis=1, keepdims=True), (counts[:, 3] + counts[:, 7] > counts[:, 5]).astype(int)


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    split = datasets.load("digits", standardize=False).train
    return split.x.numpy(), split.y.numpy()


DATA = {"digits": digits_raw, "one-hot": one_hot_table, "padded": padded_sequences, "bag of words": bag_of_words}
#: (data, depth, width, batch): models and batches of different sizes on each data set. The
#: per-feature rule this replaces (RMS of log std over the features with std > 0) called three of
#: these standardized batches unstandardized: digits' first 256 rows (the doctor command's batch,
#: 1.63x), its first 128 (1.71x) and the bag of words (1.80x).
CASES = [("digits", 20, 64, 256), ("digits", 8, 32, 128), ("one-hot", 12, 48, 128), ("padded", 16, 100, 64),
         ("bag of words", 10, 64, 128)]  # fmt: skip


def batch(name: str, size: int, *, standardized: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` rows (as the doctor command takes them), standardized over the data set."""
    x, y = DATA[name]()
    if standardized:
        x = standardize(x)
    return torch.tensor(x[:size], dtype=torch.float32), torch.tensor(y[:size])


def unstandardized(report) -> list[str]:
    return [f.message for f in report.findings if f.action.get("condition") == "unstandardized input"]


@pytest.mark.parametrize("name, depth, width, size", CASES)
def test_standardized_data_with_constant_features_is_healthy_for_selu(name, depth, width, size):
    x, y = batch(name, size, standardized=True)
    assert input_stats(x).constant > 0  # each data set has features that do not vary in the batch
    model = mlp(x.shape[1], int(y.max()) + 1, depth=depth, width=width, activation="selu")
    report = diagnose(model, x, y)
    # the label, measured: the stack self-normalizes (its last SELU's output near mean 0, std 1)
    last = [s for s in report.layers if s.type == "SELU"][-1]
    assert abs(last.mean) < 0.15 and 0.8 < last.std < 1.25, (last.mean, last.std)
    assert report.healthy, report.verdict()


@pytest.mark.parametrize("name, depth, width, size", CASES)
def test_the_same_data_unstandardized_is_told_and_constant_features_are_named(name, depth, width, size):
    x, y = batch(name, size, standardized=False)
    stats = input_stats(x)
    report = diagnose(mlp(x.shape[1], int(y.max()) + 1, depth=depth, width=width, activation="selu"), x, y)
    (message,) = unstandardized(report)
    assert f"{stats.constant} of {x.shape[1]} features are constant over the batch" in message


def test_the_doctor_command_on_a_selu_net_and_digits_exits_0(capsys):
    assert main(["doctor", "mlp:depth=20,width=64,activation=selu"]) == 0
    assert "HEALTHY" in capsys.readouterr().out


def test_input_stats_pool_what_a_first_lecun_layer_sees():
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(4096, 30, generator=g)
    sparse = (torch.rand(4096, 10, generator=g) < 0.01).double()  # ink in 1% of the samples
    sparse = (sparse - sparse.mean(0)) / sparse.std(0, unbiased=False)  # standardized over this data
    x = torch.cat([dense, sparse.float(), torch.zeros(4096, 4), torch.full((4096, 1), 2.0)], 1)
    stats = input_stats(x[:256])
    absent = int((sparse[:256].std(0) == 0).sum())  # sparse columns without ink in this batch
    assert (stats.features, stats.constant) == (45, 5 + absent) and 0 < absent < 10
    # the first layer's variance under LeCun weights is the pooled second moment of the inputs
    w = torch.randn(2000, 45, generator=g, dtype=torch.float64) / 45**0.5
    z = x[:256].double() @ w.T
    assert stats.pooled**2 == pytest.approx(float(z.var(0, unbiased=False).mean()), rel=0.1)
    assert stats.scale**2 == pytest.approx(stats.pooled**2 * 45 / stats.varying)
    assert stats.mean_rms**2 == pytest.approx(float(z.mean(0).pow(2).mean()), rel=0.1)  # the constant 2 counts here
    assert input_stats(torch.randint(0, 9, (8, 5))) is None and input_stats(torch.randn(1, 5)) is None
    assert input_stats(torch.zeros(8, 3)) == InputStats(features=3, constant=3, mean_rms=0.0, scale=None, pooled=0.0)
