"""The loaders of annjax.datasets on the real files of shared/datasets.

Runs only when ANNJAX_DATA_DIR is set (CI sets it to ../shared/datasets); a
value that names no such folder fails rather than skips. The expected numbers
come from shared/datasets/README.md. Downloads are switched off and the cache
is a temporary folder, so these tests read exactly the shared files.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from annjax import datasets

DATA_DIR = os.environ.get("ANNJAX_DATA_DIR")
pytestmark = pytest.mark.skipif(
    not DATA_DIR,
    reason="ANNJAX_DATA_DIR is not set (set it to shared/datasets to run the "
    "real-data tests)",
)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist_test() -> datasets.Dataset:
    return datasets.load_mnist(split="test", download=False)


def test_mnist_test_set(mnist_test):
    X, y = mnist_test.X, mnist_test.y
    assert X.shape == (10_000, 28, 28) and X.dtype == np.float32
    assert y.shape == (10_000,) and y.dtype == np.int32
    assert y[0] == 7
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(np.bincount(y), counts)
    assert X.min() == 0.0 and X.max() == 1.0
    assert abs(X.mean(dtype=np.float64) - 33.7912 / 255) < 1e-4


def test_mnist_train_labels_load_but_images_are_missing():
    labels = datasets.read_idx(
        Path(DATA_DIR, "mnist", "train-labels-idx1-ubyte.gz"), expected_magic=0x801
    )
    assert labels.shape == (60_000,)
    np.testing.assert_array_equal(labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist(split="train", download=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert str(Path(DATA_DIR, "mnist")) in message
    assert "load_mnist_test_split" in message


def test_mnist_test_split_offline():
    train, val = datasets.load_mnist_test_split(val_fraction=0.2, download=False)
    assert train.X.shape == (8_000, 28, 28) and val.X.shape == (2_000, 28, 28)
    assert set(np.unique(val.y)) == set(range(10))


def test_california_housing():
    data = datasets.load_california_housing(download=False)
    assert data.X.shape == (20_640, 8) and data.X.dtype == np.float32
    assert data.y.shape == (20_640,) and data.y.dtype == np.float32
    assert np.isnan(data.X).sum() == 207 and np.isnan(data.X[:, 3]).sum() == 207
    assert data.y.min() == pytest.approx(0.14999) and data.y.max() == pytest.approx(
        5.00001
    )
    # The first row, computed by hand from the CSV.
    with open(Path(DATA_DIR, "california_housing.csv"), newline="") as f:
        row = next(csv.DictReader(f))
    households = float(row["households"])
    assert data.X[0, 0] == pytest.approx(float(row["median_income"]))
    assert data.X[0, 2] == pytest.approx(float(row["total_rooms"]) / households)
    assert data.X[0, 3] == pytest.approx(float(row["total_bedrooms"]) / households)
    assert data.X[0, 5] == pytest.approx(float(row["population"]) / households)
    assert data.y[0] == pytest.approx(float(row["median_house_value"]) / 1e5)
    # Impute with statistics of a training split only.
    order = np.random.default_rng(0).permutation(len(data.y))
    train, test = data.X[order[:16_000]], data.X[order[16_000:]]
    imputer = datasets.Imputer.fit(train)
    assert imputer.fill[3] == pytest.approx(np.nanmean(train[:, 3]), rel=1e-6)
    assert not np.isnan(imputer.transform(train)).any()
    filled = imputer.transform(test)
    assert not np.isnan(filled).any()
    holes = np.isnan(test[:, 3])
    assert holes.any() and (filled[holes, 3] == imputer.fill[3]).all()


def test_california_housing_as_a_generic_csv():
    data = datasets.load_csv(
        Path(DATA_DIR, "california_housing.csv"),
        target="median_house_value",
        categorical=["ocean_proximity"],
    )
    assert data.X.shape == (20_640, 13)
    ocean = data.X[:, data.feature_names.index("ocean_proximity=INLAND")]
    assert ocean.sum() == 6551
    assert data.X[:, -5:].sum() == 20_640  # exactly one category per row


def test_pima_diabetes():
    data = datasets.load_pima_diabetes()
    assert data.X.shape == (768, 8) and data.X.dtype == np.float32
    assert data.y.dtype == np.int32 and data.y.sum() == 268
    columns = list(data.feature_names)
    assert data.X[:, columns.index("Glucose")].mean() == pytest.approx(
        120.8945, abs=1e-4
    )
    assert data.X[:, columns.index("BMI")].mean() == pytest.approx(31.9926, abs=1e-4)
    missing = datasets.load_pima_diabetes(zeros_as_missing=True)
    zeros = {"Glucose": 5, "BloodPressure": 35, "SkinThickness": 227, "Insulin": 374}
    for column, count in (zeros | {"BMI": 11}).items():
        assert np.isnan(missing.X[:, columns.index(column)]).sum() == count
