import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest
import torch

import trainability
from trainability import datasets
from trainability.datasets import idx


@pytest.mark.parametrize(("name", "features", "classes"), [("digits", 64, 10), ("circles", 2, 2), ("moons", 2, 2),
                                                             ("blobs", 8, 4), ("mnist1d", 40, 10)])  # fmt: skip
def test_builtin_sets_split_three_ways_and_standardize_on_training_statistics(name, features, classes):
    splits = trainability.datasets.load(name)
    assert (splits.in_features, splits.n_outputs, splits.classification) == (features, classes, True)
    mean, std = splits.train.x.mean(0), splits.train.x.std(0, unbiased=False)
    live = std > 0
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    assert torch.allclose(std[live], torch.ones_like(std[live]), atol=1e-3)
    # validation and test are scaled with the training statistics, not their own
    raw = trainability.datasets.load(name, standardize=False)
    scale = torch.where(live, raw.train.x.std(0, unbiased=False), torch.ones(features))
    expected = (raw.test.x - raw.train.x.mean(0)) / scale
    assert torch.allclose(splits.test.x, expected, atol=1e-4)
    assert torch.allclose(splits.feature_mean, raw.train.x.mean(0), atol=1e-4)
    assert splits.train.y.dtype == torch.int64
    assert splits.validation.samples > 0 and splits.test.samples > 0


def test_mnist1d_keeps_its_paper_split_and_cuts_validation_from_training():
    splits = datasets.load("mnist1d")
    assert splits.train.samples + splits.validation.samples == 4000
    assert splits.test.samples == 1000
    assert splits.validation.samples == 800


def test_splits_are_disjoint_stratified_and_seeded():
    a, b = datasets.load("digits", seed=0), datasets.load("digits", seed=1)
    raw = datasets.load("digits", standardize=False)
    rows = {tuple(r.tolist()) for r in raw.train.x}
    assert not rows & {tuple(r.tolist()) for r in raw.test.x}
    assert not rows & {tuple(r.tolist()) for r in raw.validation.x}
    assert raw.train.samples + raw.validation.samples + raw.test.samples == 1797
    assert not torch.equal(a.test.y, b.test.y)
    assert torch.equal(a.test.y, datasets.load("digits", seed=0).test.y)
    share = torch.bincount(raw.test.y, minlength=10).float() / raw.test.samples
    overall = torch.bincount(torch.cat([raw.train.y, raw.validation.y, raw.test.y]), minlength=10).float() / 1797
    assert (share - overall).abs().max() < 0.01  # stratified


def test_a_split_is_a_tuple_fit_takes():
    splits = datasets.load("moons")
    x, y = splits.train
    assert x is splits.train.x and len(splits.train) == 2
    history = trainability.fit(trainability.mlp(2, 2, depth=1, width=8), splits.train, val_data=splits.validation,
                               epochs=1, progress=False, seed=0)  # fmt: skip
    assert "val_accuracy" in history.epochs[0]


def test_npz_with_and_without_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=rng.normal(size=(100, 3)), y=rng.integers(0, 3, 100))
    np.savez(tmp_path / "b.npz", x=rng.normal(size=(80, 3)), y=rng.normal(size=80), x_test=rng.normal(size=(20, 3)),
             y_test=rng.normal(size=20))  # fmt: skip
    a = datasets.load(tmp_path / "a.npz")
    assert a.name == "a" and a.n_outputs == 3 and a.train.samples + a.validation.samples + a.test.samples == 100
    b = datasets.load(str(tmp_path / "b.npz"))
    assert not b.classification and b.test.samples == 20 and b.train.y.dtype == torch.float32


def test_npz_whose_x_and_y_lengths_differ_is_refused_naming_the_file(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 2)), y=np.zeros(9))
    with pytest.raises(ValueError, match=r"bad\.npz: x has 10 samples but y has 9"):
        datasets.load(tmp_path / "bad.npz")


def test_csv_with_header_target_column_and_class_names(tmp_path):
    rows = [f"{i % 7}.5,{i},{['setosa', 'virginica'][i % 2]},{i * 2}" for i in range(40)]
    (tmp_path / "iris.csv").write_text("a,b,species,c\n" + "\n".join(rows) + "\n")
    splits = datasets.load(tmp_path / "iris.csv", target="species")
    assert splits.classes == ("setosa", "virginica") and splits.in_features == 3 and splits.n_outputs == 2
    with pytest.raises(ValueError, match=r"iris\.csv line 2, column 'species': 'setosa' is not a number"):
        datasets.load(tmp_path / "iris.csv", target="1")  # species is then a feature
    (tmp_path / "num.csv").write_text("\n".join(f"{i * 0.1},{i},{i % 3}" for i in range(30)))
    by_index = datasets.load(tmp_path / "num.csv", target=0, standardize=False)
    assert by_index.in_features == 2 and not by_index.classification


def test_csv_problems_are_one_line_errors_naming_the_file(tmp_path):
    (tmp_path / "words.csv").write_text("1,2,0\n3,abc,1\n")
    with pytest.raises(ValueError, match=r"words\.csv line 2, column 2: 'abc' is not a number"):
        datasets.load(tmp_path / "words.csv")
    (tmp_path / "ragged.csv").write_text("1,2,0\n3,1\n")
    with pytest.raises(ValueError, match=r"ragged\.csv line 2 has 2 columns, expected 3"):
        datasets.load(tmp_path / "ragged.csv")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    with pytest.raises(ValueError, match=r"header\.csv holds only a header row"):
        datasets.load(tmp_path / "header.csv")
    with pytest.raises(ValueError, match=r"no target column 'z'"):
        (tmp_path / "ok.csv").write_text("a,b,y\n" + "\n".join(f"{i},{i},{i % 2}" for i in range(20)))
        datasets.load(tmp_path / "ok.csv", target="z")


def test_empty_csv_raises_our_error_and_no_numpy_warning(tmp_path, recwarn):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv is empty"):
        datasets.load(tmp_path / "empty.csv")
    assert not recwarn.list  # pytest runs with warnings as errors; this states it


def test_unknown_names_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown data 'nope'; built-in: digits, circles, moons, blobs, mnist1d, mnist"):
        datasets.load("nope")
    with pytest.raises(ValueError, match="data file not found"):
        datasets.load(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported data file"):
        datasets.load(tmp_path / "x.txt")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"cannot read .*junk\.npz: not a valid \.npz file"):
        datasets.load(tmp_path / "junk.npz")


# -- IDX -----------------------------------------------------------------------------------------
def _idx(array: np.ndarray, code: int) -> bytes:
    big = array.astype(array.dtype.newbyteorder(">"))
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()


def _write_mnist_folder(folder, n_train=60, n_test=20, compress=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), 0x08),
        "train-labels-idx1-ubyte": (np.arange(n_train, dtype=np.uint8) % 10, 0x08),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), 0x08),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) % 10, 0x08),
    }
    for name, (array, code) in arrays.items():
        data = _idx(array, code)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize(("dtype", "code"), [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
                                             (np.float32, 0x0D), (np.float64, 0x0E)])  # fmt: skip
def test_idx_parser_reads_every_type_big_endian(tmp_path, dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype) if dtype != np.uint8 else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx").write_bytes(_idx(array, code))
    (tmp_path / "a-idx.gz").write_bytes(gzip.compress(_idx(array, code)))
    for path in (tmp_path / "a-idx", tmp_path / "a-idx.gz"):
        read = idx.read_idx(path)
        assert read.dtype == np.dtype(dtype) and np.array_equal(read, array)


def test_corrupt_and_truncated_idx_files_name_the_file(tmp_path):
    data = _idx(np.arange(100, dtype=np.uint8).reshape(4, 25), 0x08)
    (tmp_path / "short-idx").write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"short-idx is truncated: 93 bytes of data, the header \(4 x 25 uint8\) says 100"):
        idx.read_idx(tmp_path / "short-idx")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(ValueError, match=r"cut\.gz is a corrupt or truncated gzip file"):
        idx.read_idx(tmp_path / "cut.gz")
    (tmp_path / "text-idx").write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"text-idx is not an IDX file"):
        idx.read_idx(tmp_path / "text-idx")
    (tmp_path / "head-idx").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match=r"head-idx is truncated: its header is cut off"):
        idx.read_idx(tmp_path / "head-idx")


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_a_local_folder(tmp_path, monkeypatch, compress):
    arrays = _write_mnist_folder(tmp_path / "mnist", compress=compress)
    monkeypatch.setenv("TRAINABILITY_DATA", str(tmp_path))
    splits = datasets.load("mnist", download=False, validation=10, standardize=False)
    assert splits.in_features == 784 and splits.n_outputs == 10
    assert (splits.train.samples, splits.validation.samples, splits.test.samples) == (50, 10, 20)
    assert torch.equal(splits.test.x, torch.as_tensor(arrays["t10k-images-idx3-ubyte"][0].reshape(20, -1), dtype=torch.float32))
    other = datasets.load("mnist", data_dir=tmp_path, download=False, validation=10)
    assert other.train.samples == 50


def test_missing_idx_files_offline_say_where_to_put_them(tmp_path):
    with pytest.raises(ValueError, match=r"fashion_mnist: train-images-idx3-ubyte\.gz is not in .*fashion_mnist and downloads are off"):
        datasets.load("fashion_mnist", data_dir=tmp_path, download=False)


def test_download_keeps_a_file_only_when_its_sha256_matches(tmp_path):
    payload = gzip.compress(_idx(np.arange(10, dtype=np.uint8), 0x08))
    source = tmp_path / "src" / "labels.gz"
    source.parent.mkdir()
    source.write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    target = idx.download(source.as_uri(), tmp_path / "out" / "labels.gz", good)
    assert target.read_bytes() == payload and idx.read_idx(target).tolist() == list(range(10))
    with pytest.raises(ValueError, match=r"SHA-256 .* does not match the published 0{64}; the download was discarded"):
        idx.download(source.as_uri(), tmp_path / "out" / "other.gz", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.gz"]  # nothing half-written left


def test_mnist_downloads_over_http_with_verification(tmp_path, monkeypatch):
    served = tmp_path / "server"
    arrays = _write_mnist_folder(served)
    sums = {f: hashlib.sha256((served / f).read_bytes()).hexdigest() for f in idx.FILES}

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(served), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        dead = "http://127.0.0.1:9/"  # nothing listens: the next mirror is tried
        monkeypatch.setitem(idx.SOURCES, "mnist", idx.Source((dead, url), sums))
        splits = datasets.load("mnist", data_dir=tmp_path / "data", validation=5)
        assert splits.test.samples == 20 and torch.equal(splits.test.y, torch.as_tensor(arrays["t10k-labels-idx1-ubyte"][0], dtype=torch.int64))
        assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(idx.FILES)
        monkeypatch.setitem(idx.SOURCES, "fashion_mnist", idx.Source((url,), dict.fromkeys(idx.FILES, "f" * 64)))
        with pytest.raises(ValueError, match=r"fashion_mnist: .* the download failed \(.*does not match the published"):
            datasets.load("fashion_mnist", data_dir=tmp_path / "data")
        assert not (tmp_path / "data" / "fashion_mnist").exists() or not any((tmp_path / "data" / "fashion_mnist").iterdir())
    finally:
        server.shutdown()
        server.server_close()


def test_published_checksums_are_sha256_hex():
    for source in idx.SOURCES.values():
        assert set(source.sha256) == set(idx.FILES)
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in source.sha256.values())


def test_the_old_data_module_still_loads_through_datasets_with_a_deprecation_warning():
    import trainability.data

    with pytest.warns(DeprecationWarning, match="trainability.datasets.load"):
        old = trainability.data.load("digits")
    new = datasets.load("digits")
    assert old.x.shape[0] == new.train.samples + new.validation.samples
    assert torch.equal(old.x_test, new.test.x)
    assert old.n_outputs == 10 and old.in_features == 64 and old.classification


def test_targets_that_cannot_train_are_caught_when_loading(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 3))
    np.savez(tmp_path / "signs.npz", x=x, y=np.where(x[:, 0] > 0, 1, -1))
    signs = datasets.load(tmp_path / "signs.npz")  # -1/+1 labels: classes 0 and 1, as LabelEncoder maps them
    assert signs.classes == ("-1", "1") and signs.n_outputs == 2
    assert set(torch.cat([signs.train.y, signs.validation.y, signs.test.y]).tolist()) == {0, 1}
    (tmp_path / "holes.csv").write_text("a,b,t\n" + "\n".join(f"{i},{2 * i},{'nan' if i == 3 else i % 2}" for i in range(20)))
    with pytest.raises(ValueError, match=r"holes\.csv: 1 target\(s\) are NaN or infinite"):
        datasets.load(tmp_path / "holes.csv")
    (tmp_path / "tiny.csv").write_text("a,t\n1,0\n2,1\n")
    with pytest.raises(ValueError, match=r"tiny\.csv: test=0.2 leaves no samples"):
        datasets.load(tmp_path / "tiny.csv")
    with pytest.raises(ValueError, match="the built-in 'moons' has its own targets"):
        datasets.load("moons", target="x")
