"""Tests of annjax.datasets on small files each test writes itself.

No test here reads the user's files or the network: the autouse fixture points
the cache at a temporary folder, unsets ANNJAX_DATA_DIR and makes every URL
fail unless a test installs its own fake server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from annjax import datasets
from annjax.datasets import _fetch, _mnist

# ---------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty cache, no $ANNJAX_DATA_DIR, and no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ANNJAX_DATA_DIR", raising=False)

    def offline(url, timeout=None):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """Returns the IDX encoding of ``array`` (header by hand, body big-endian)."""
    big = array.astype(array.dtype.newbyteorder(">"))
    header = struct.pack(">I", (code << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + big.tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist(folder: Path, prefix: str = "t10k", n: int = 10, gz: bool = True):
    """Writes n random 28 × 28 images and labels; returns (images, labels)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
    write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return images, labels


# -------------------------------------------------------------- logic gates

TABLES = {
    "and": [0, 0, 0, 1],
    "or": [0, 1, 1, 1],
    "xor": [0, 1, 1, 0],
    "nand": [1, 1, 1, 0],
    "nor": [1, 0, 0, 0],
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_logic_gate_truth_table(name):
    gate = datasets.logic_gate(name.upper())
    assert gate.X.dtype == np.float32 and gate.y.dtype == np.int32
    np.testing.assert_array_equal(gate.X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(gate.y, TABLES[name])
    assert gate.feature_names == ("x1", "x2")


@pytest.mark.parametrize("n", [1, 3, 5])
def test_logic_gate_n_inputs(n):
    xor = datasets.logic_gate("xor", n)
    assert xor.X.shape == (2**n, n)
    assert len({tuple(row) for row in xor.X}) == 2**n
    np.testing.assert_array_equal(xor.y, xor.X.sum(axis=1) % 2)
    np.testing.assert_array_equal(datasets.logic_gate("and", n).y, xor.X.all(axis=1))
    np.testing.assert_array_equal(datasets.logic_gate("nor", n).y, ~xor.X.any(axis=1))


def test_logic_gate_errors():
    with pytest.raises(ValueError, match="name: expected one of 'and', 'nand', 'nor'"):
        datasets.logic_gate("xnor")
    with pytest.raises(ValueError, match="n_inputs: expected an integer >= 1, got 0"):
        datasets.logic_gate("and", 0)
    with pytest.raises(ValueError, match="n_inputs: expected an integer <= 24"):
        datasets.logic_gate("and", 30)
    with pytest.raises(TypeError, match="n_inputs"):
        datasets.logic_gate("and", 2.0)


# ---------------------------------------------------- scikit-learn's bundles


def test_load_digits_is_scaled_to_unit_interval():
    from sklearn.datasets import load_digits

    digits = datasets.load_digits()
    assert digits.X.shape == (1797, 64) and digits.X.dtype == np.float32
    assert digits.X.min() == 0.0 and digits.X.max() == 1.0
    np.testing.assert_allclose(digits.X, load_digits().data / 16.0, rtol=1e-6)
    assert digits.y.dtype == np.int32 and set(digits.y) == set(range(10))
    assert datasets.load_digits(as_images=True).X.shape == (1797, 8, 8)
    assert len(digits.feature_names) == 64


def test_load_breast_cancer():
    data = datasets.load_breast_cancer()
    assert data.X.shape == (569, 30) and data.X.dtype == np.float32
    assert data.y.dtype == np.int32 and data.y.sum() == 357
    assert data.target_names == ("malignant", "benign")
    assert data.feature_names[0] == "mean radius"


# ------------------------------------------------------------------ IDX files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("dtype", "code"),
    [
        ("u1", 0x08),
        ("i1", 0x09),
        ("i2", 0x0B),
        ("i4", 0x0C),
        ("f4", 0x0D),
        ("f8", 0x0E),
    ],
)
def test_read_idx_round_trip(tmp_path, gz, dtype, code):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = write(tmp_path / "a.idx", idx_bytes(array, code), gz)
    out = datasets.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_magic_of_mnist(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    path = write(tmp_path / "labels", idx_bytes(labels))
    assert path.read_bytes()[:4] == b"\x00\x00\x08\x01"
    np.testing.assert_array_equal(datasets.read_idx(path, expected_magic=0x801), labels)
    with pytest.raises(ValueError, match="bad magic number: expected 0x00000803, got"):
        datasets.read_idx(path, expected_magic=0x803)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00" + GOOD[2:], "bad magic number 0x01000802"),
        (b"\x00\x00\x07\x02" + GOOD[4:], "bad magic number 0x00000702"),
        (b"\x00\x00\x08\x00" + GOOD[4:], "bad magic number 0x00000800"),
        (GOOD[:3], "truncated IDX header"),
        (GOOD[:9], "truncated IDX header: expected 12 bytes"),
        (GOOD[:-1], "truncated data: expected 12 bytes for shape \\(3, 4\\), got 11"),
        (
            GOOD + b"\x00\x00",
            r"too much data: expected 12 bytes .*\(2 trailing bytes\)",
        ),
    ],
    ids=["zeros", "type", "ndim", "short", "dims", "body", "extra"],
)
def test_read_idx_corrupt_files_say_which(tmp_path, gz, data, message):
    path = write(tmp_path / "corrupt-idx1-ubyte", data, gz)
    with pytest.raises(ValueError, match=message) as info:
        datasets.read_idx(path)
    assert "corrupt-idx1-ubyte" in str(info.value)


def test_read_idx_cut_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = write(tmp_path / "cut.gz", data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: corrupt gzip data"):
        datasets.read_idx(path)


# --------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_path(tmp_path, gz):
    images, labels = fake_mnist(tmp_path / "m", "train", gz=gz)
    data = datasets.load_mnist(tmp_path / "m", split="train", download=False)
    assert data.X.shape == (10, 28, 28) and data.X.dtype == np.float32
    assert data.y.dtype == np.int32
    np.testing.assert_allclose(data.X, images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y, labels)
    assert data.X.min() >= 0.0 and data.X.max() <= 1.0
    assert data.target_names == tuple("0123456789")


@pytest.mark.parametrize("where", ["env/mnist", "env", "cache/annjax/mnist"])
def test_load_mnist_search_order(tmp_path, monkeypatch, where):
    monkeypatch.setenv("ANNJAX_DATA_DIR", str(tmp_path / "env"))
    _, labels = fake_mnist(tmp_path / where)
    data = datasets.load_mnist(split="test", download=False)
    np.testing.assert_array_equal(data.y, labels)


def test_load_mnist_path_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNJAX_DATA_DIR", str(tmp_path / "env"))
    fake_mnist(tmp_path / "env" / "mnist", n=4)
    fake_mnist(tmp_path / "mine", n=6)
    assert len(datasets.load_mnist(tmp_path / "mine", "test").y) == 6


def test_load_mnist_missing_lists_places_and_names(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNJAX_DATA_DIR", str(tmp_path / "env"))
    fake_mnist(tmp_path / "env" / "mnist", "train", gz=False)
    (tmp_path / "env" / "mnist" / "train-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist(tmp_path / "mine", split="train")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "train-labels" not in message.split("looked in")[0]
    for place in ("mine", "env/mnist", "env", "cache/annjax/mnist"):
        assert str(tmp_path / place) in message
    assert "Download error: train-images-idx3-ubyte.gz" in message
    assert "offline (test)" in message and "load_mnist_test_split" in message


def test_load_mnist_bad_split_and_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="split: expected one of 'train', 'test'"):
        datasets.load_mnist(tmp_path, split="validation")
    fake_mnist(tmp_path, n=5)
    labels = idx_bytes(np.zeros(4, np.uint8))
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, gz=True)
    with pytest.raises(ValueError, match="MNIST labels: expected one label per image"):
        datasets.load_mnist(tmp_path, split="test")


def test_load_mnist_swapped_files_fail_on_magic(tmp_path):
    fake_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(data)
    with pytest.raises(ValueError, match=r"t10k-images.*bad magic number"):
        datasets.load_mnist(tmp_path, split="test")


class FakeServer:
    """Serves ``files`` (url suffix -> bytes); any other URL fails."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []

    def urlopen(self, url, timeout=None):
        self.requests.append((url, timeout))
        for name, data in self.files.items():
            if url.endswith(name):
                return io.BytesIO(data)
        raise urllib.error.URLError(f"no such file: {url}")


def test_load_mnist_downloads_into_cache(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "server")
    files = {p.name: p.read_bytes() for p in (tmp_path / "server").iterdir()}
    known = {n: (len(b), hashlib.sha256(b).hexdigest()) for n, b in files.items()}
    monkeypatch.setattr(_mnist, "_FILES", known)
    server = FakeServer(files)
    monkeypatch.setattr(urllib.request, "urlopen", server.urlopen)
    data = datasets.load_mnist(split="test")
    assert data.X.shape == (10, 28, 28)
    cached = sorted(os.listdir(tmp_path / "cache" / "annjax" / "mnist"))
    assert cached == sorted(files)  # no temporary file left behind
    assert all(0 < timeout <= 30 for _, timeout in server.requests)
    server.requests.clear()
    datasets.load_mnist(split="test")  # second time from the cache
    assert server.requests == []


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch):
    good, bad = b"the real bytes", b"the fake bytes"
    sha = hashlib.sha256(good).hexdigest()
    remote = _fetch.Remote(("https://a/bad", "https://b/good"), len(good), sha)
    monkeypatch.setattr(
        urllib.request, "urlopen", FakeServer({"/bad": bad, "/good": good}).urlopen
    )
    dest = tmp_path / "out" / "file.gz"
    assert _fetch.download(remote, dest) == dest and dest.read_bytes() == good
    wrong = _fetch.Remote(("https://a/bad",), len(good), sha)
    dest2 = tmp_path / "out" / "other.gz"
    with pytest.raises(OSError, match="https://a/bad: sha256 mismatch"):
        _fetch.download(wrong, dest2)
    short = _fetch.Remote(("https://a/bad",), 99, sha)
    with pytest.raises(OSError, match="expected 99 bytes, got 14"):
        _fetch.download(short, dest2)
    assert sorted(os.listdir(tmp_path / "out")) == ["file.gz"]


def test_load_mnist_test_split(tmp_path):
    images, _ = fake_mnist(tmp_path, n=10)
    train, val = datasets.load_mnist_test_split(tmp_path, val_fraction=0.3, seed=1)
    assert train.X.shape == (7, 28, 28) and val.X.shape == (3, 28, 28)
    together = np.concatenate([train.X, val.X]).reshape(10, -1)
    rows = {tuple(r) for r in together}
    assert rows == {tuple(r) for r in (images / np.float32(255)).reshape(10, -1)}
    again, _ = datasets.load_mnist_test_split(tmp_path, val_fraction=0.3, seed=1)
    np.testing.assert_array_equal(again.y, train.y)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="val_fraction: expected a number in"):
            datasets.load_mnist_test_split(tmp_path, val_fraction=bad)


# -------------------------------------------------------------------- tables

CSV = "a,b,color,label,value\n1.5,2,red,yes,10\n2.5,,blue,no,20\n\n3.5,4,,yes,30\n"


def test_load_csv_numeric_categorical_and_blank(tmp_path):
    path = write(tmp_path / "t.csv", CSV.encode())
    data = datasets.load_csv(path, "value", categorical=["color"], drop=["label"])
    assert data.feature_names == ("a", "b", "color=blue", "color=red")
    assert data.X.dtype == np.float32 and data.y.dtype == np.float32
    nan = np.nan
    expected = [[1.5, 2, 0, 1], [2.5, nan, 1, 0], [3.5, 4, nan, nan]]
    np.testing.assert_array_equal(data.X, np.array(expected, np.float32))
    np.testing.assert_array_equal(data.y, [10, 20, 30])
    assert data.target_names == ("value",)


def test_load_csv_classification_targets(tmp_path):
    path = write(tmp_path / "t.csv", CSV.encode())
    text = datasets.load_csv(path, "label", categorical=["color"])
    assert text.y.dtype == np.int32 and text.target_names == ("no", "yes")
    np.testing.assert_array_equal(text.y, [1, 0, 1])
    assert "value" in text.feature_names
    numeric = datasets.load_csv(path, "value", ["color", "label"], classification=True)
    assert numeric.target_names == ("10", "20", "30")
    np.testing.assert_array_equal(numeric.y, [0, 1, 2])


def test_load_csv_errors(tmp_path):
    path = write(tmp_path / "t.csv", CSV.encode())
    columns = "a, b, color, label, value"
    with pytest.raises(ValueError, match=f"target: expected a column of .*{columns}"):
        datasets.load_csv(path, "price")
    with pytest.raises(ValueError, match=r"categorical: expected a column .*'shade'"):
        datasets.load_csv(path, "value", categorical=["shade"])
    with pytest.raises(ValueError, match=r"drop: expected a column .*'x'"):
        datasets.load_csv(path, "value", categorical=["color"], drop=["x"])
    with pytest.raises(ValueError, match="column 'color', data row 1: expected a num"):
        datasets.load_csv(path, "value", drop=["label"])
    ragged = write(tmp_path / "r.csv", b"a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match=r"r\.csv, line 3: expected 2 fields, got 1"):
        datasets.load_csv(ragged, "a")
    empty = write(tmp_path / "e.csv", b"")
    with pytest.raises(ValueError, match="expected a header line"):
        datasets.load_csv(empty, "a")
    with pytest.raises(FileNotFoundError):
        datasets.load_csv(tmp_path / "none.csv", "a")


HOUSING_HEADER = (
    "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,"
    "population,households,median_income,median_house_value,ocean_proximity\n"
)
HOUSING_ROWS = [
    "-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0,NEAR BAY",
    "-118.30,34.26,43.0,1510.0,,1101.0,310.0,1.2375,14999.0,<1H OCEAN",
]


def housing_csv(folder: Path, name: str = "california_housing.csv") -> Path:
    return write(folder / name, (HOUSING_HEADER + "\n".join(HOUSING_ROWS)).encode())


def check_housing(data):
    assert data.X.shape == (2, 8) and data.X.dtype == np.float32
    assert data.feature_names[:3] == ("MedInc", "HouseAge", "AveRooms")
    by_hand = [8.3252, 41.0, 880 / 126, 129 / 126, 322.0, 322 / 126, 37.88, -122.23]
    np.testing.assert_allclose(data.X[0], by_hand, rtol=1e-6)
    assert np.isnan(data.X[1, 3]) and np.isnan(data.X).sum() == 1
    np.testing.assert_allclose(data.y, [4.526, 0.14999], rtol=1e-6)


def test_load_california_housing_csv_and_statlib(tmp_path):
    check_housing(datasets.load_california_housing(housing_csv(tmp_path)))
    statlib = [",".join(r.split(",")[:9]).replace(",,", ",nan,") for r in HOUSING_ROWS]
    path = write(tmp_path / "s" / "cal_housing.data", "\n".join(statlib).encode())
    check_housing(datasets.load_california_housing(path))
    check_housing(datasets.load_california_housing(tmp_path / "s"))  # a folder


def test_load_california_housing_from_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNJAX_DATA_DIR", str(tmp_path / "env"))
    housing_csv(tmp_path / "env")
    check_housing(datasets.load_california_housing())


def test_load_california_housing_sklearn_fallback(tmp_path, monkeypatch):
    import sklearn.datasets
    from sklearn.utils import Bunch

    calls = []

    def fetch(download_if_missing=True):
        calls.append(download_if_missing)
        return Bunch(data=np.ones((3, 8)), target=np.full(3, 2.5))

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing", fetch)
    data = datasets.load_california_housing(download=False)
    assert calls == [False] and data.X.shape == (3, 8) and data.y.dtype == np.float32

    def offline(download_if_missing=True):
        raise urllib.error.URLError("offline (sklearn)")

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing", offline)
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_california_housing(tmp_path / "nowhere.csv")
    message = str(info.value)
    assert str(tmp_path / "nowhere.csv") in message
    assert str(tmp_path / "cache" / "annjax" / "california_housing.csv") in message
    assert "offline (sklearn)" in message


def test_load_california_housing_bad_files(tmp_path):
    wrong = write(tmp_path / "w.data", b"1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="9 columns"):
        datasets.load_california_housing(wrong)
    other = write(tmp_path / "o.csv", b"x,y\n1,2\n")
    with pytest.raises(ValueError, match="expected the columns longitude"):
        datasets.load_california_housing(other)


PIMA = (
    "Pregnancies,Glucose,BloodPressure,SkinThickness,Insulin,BMI,"
    "DiabetesPedigreeFunction,Age,Outcome\n"
    "6,148,72,35,0,33.6,0.627,50,1\n"
    "1,0,66,29,94,0,0.351,31,0"  # no newline at the end, as the real file
)


def test_load_pima_diabetes(tmp_path):
    path = write(tmp_path / "diabetes.csv", PIMA.encode())
    data = datasets.load_pima_diabetes(tmp_path)
    assert data.X.shape == (2, 8) and data.y.dtype == np.int32
    np.testing.assert_array_equal(data.y, [1, 0])
    assert data.target_names == ("negative", "positive")
    assert data.X[1, 1] == 0 and not np.isnan(data.X).any()
    missing = datasets.load_pima_diabetes(path, zeros_as_missing=True)
    assert np.isnan(missing.X[1, [1, 5]]).all() and np.isnan(missing.X[0, 4])
    assert np.isnan(missing.X).sum() == 3  # Pregnancies = 0 is a real zero
    assert set(datasets.PIMA_ZERO_MEANS_MISSING) <= set(data.feature_names)


def test_load_pima_diabetes_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNJAX_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match=r"diabetes\.csv") as info:
        datasets.load_pima_diabetes(tmp_path / "mine")
    assert str(tmp_path / "env" / "diabetes.csv") in str(info.value)


# ------------------------------------------------------------------ imputer


def test_imputer_uses_training_statistics_only():
    train = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, np.nan]], np.float32)
    test = np.array([[np.nan, np.nan], [100.0, 200.0], [np.nan, 5.0]], np.float32)
    imputer = datasets.Imputer.fit(train)
    np.testing.assert_array_equal(imputer.fill, [2.0, 15.0])  # train means
    filled = imputer.transform(test)
    np.testing.assert_array_equal(filled, [[2, 15], [100, 200], [2, 5]])
    assert filled.dtype == np.float32
    assert np.isnan(test).sum() == 3  # the input is not modified
    np.testing.assert_array_equal(imputer.transform(train), [[1, 10], [2, 20], [3, 15]])


def test_imputer_median():
    train = np.array([[1.0], [2.0], [100.0], [np.nan]])
    imputer = datasets.Imputer.fit(train, strategy="median")
    assert imputer.fill.tolist() == [2.0] and imputer.strategy == "median"


def test_imputer_errors():
    with pytest.raises(ValueError, match="strategy: expected one of 'mean', 'median'"):
        datasets.Imputer.fit(np.ones((2, 2)), strategy="mode")
    with pytest.raises(ValueError, match="X: expected a 2-D array"):
        datasets.Imputer.fit(np.ones(3))
    with pytest.raises(ValueError, match=r"columns \[1\] entirely NaN"):
        datasets.Imputer.fit(np.array([[1.0, np.nan], [2.0, np.nan]]))
    imputer = datasets.Imputer.fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="X: expected 2 columns"):
        imputer.transform(np.ones((2, 3)))
