"""End to end: every example script's ``main(["--quick", ...])`` runs and returns
sensible figures, and writes its figure where ``--out`` says.

The scripts are loaded by path (``examples/`` is not a package). They read
their data from ``$ANNJAX_DATA_DIR`` when it is set (CI points it at
``shared/datasets``) and fall back to scikit-learn's bundled sets otherwise, so
every threshold below holds for both.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):
    """Returns ``load(name)``: the example module ``examples/<name>.py``."""
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the scripts `import _common`

    def _load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            f"example_{name}", EXAMPLES / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return _load


def run(load, name: str, out: Path) -> dict:
    result = load(name).main(["--quick", "--out", str(out)])
    figure = Path(result["figure"])
    assert figure.resolve() == (out / f"{name}.png").resolve()
    assert figure.is_file() and figure.stat().st_size > 0
    return result


def test_compare_models(load, tmp_path, capsys):
    result = run(load, "compare_models", tmp_path)
    rows = result["results"]
    assert list(rows) == [
        "no hidden layer",
        "3 x tanh",
        "3 x ReLU",
        "3 x linear",
        "ReLU+dropout",
        "ReLU+batchnorm",
    ]
    assert result["seeds"] == 2  # --quick: fit_many over 2 seeds
    assert rows["no hidden layer"]["params"] == 64 * 10 + 10  # y = f(Wx + b)
    assert rows["3 x ReLU"]["params"] == 3 * (64 * 64 + 64) + 64 * 10 + 10
    assert rows["3 x linear"]["params"] == rows["3 x tanh"]["params"]
    for row in rows.values():
        assert 1 <= row["epochs"] <= 4
        assert 0.0 <= row["test acc"] <= 1.0
        assert 0.0 <= row["± std"] <= 0.5
    # The best model is chosen on validation accuracy, never on the test set.
    assert rows[result["best"]]["val acc"] == max(r["val acc"] for r in rows.values())
    assert result["best_test_accuracy"] > 0.8
    out = capsys.readouterr().out
    assert "best model" in out and "no hidden layer" in out and "±" in out


def test_california_housing(load, tmp_path):
    result = run(load, "california_housing", tmp_path)
    rows = result["results"]
    assert list(rows) == ["linear", "MLP", "MLP + L2 0.001"]
    for row in rows.values():
        assert row["test R2"] > 0.0
        assert 0.0 < row["test MAE"] <= row["test RMSE"]  # MAE ≤ RMSE always
    assert rows["MLP"]["params"] == rows["MLP + L2 0.001"]["params"]


def test_dropout_mnist(load, tmp_path):
    result = run(load, "dropout_mnist", tmp_path)
    assert sorted(result["gaps"]) == [0.0, 0.2, 0.5]
    assert all(math.isfinite(g) for g in result["gaps"].values())
    no_dropout = result["results"][0.0]
    assert no_dropout["gap"] > 0.0  # the big model fits its subset better than val
    assert no_dropout["train acc"] >= no_dropout["val acc"]


def test_diabetes(load, tmp_path):
    result = run(load, "diabetes", tmp_path)
    rows = result["results"]
    assert list(rows) == ["logistic regression", "MLP 16 ReLU + dropout"]
    for row in rows.values():
        assert row["accuracy"] > 0.65
        p, r = row["precision"], row["recall"]
        assert row["f1"] == pytest.approx(2 * p * r / (p + r), abs=1e-5)


def test_perceptron_gates(load, tmp_path):
    result = run(load, "perceptron_gates", tmp_path)
    for gate, accuracy in result["perceptron"].items():
        if gate.startswith("xor"):
            assert accuracy < 1.0, gate  # not linearly separable
        else:
            assert accuracy == 1.0, gate
    assert result["xor_mlp_accuracy"] == 1.0


def test_gradient_problems(load, tmp_path):
    result = run(load, "gradient_problems", tmp_path)
    rows = result["results"]
    sigmoid, relu, residual = rows.values()
    # the lecture's diagnosis: sigmoid + U(-0.5, 0.5) vanishes, the remedies don't
    assert "vanishing_gradients" in sigmoid["kinds"]
    assert sigmoid["ratio"] < 1e-3
    for remedy in (relu, residual):
        assert "vanishing_gradients" not in remedy["kinds"]
        assert remedy["ratio"] > 1e-2
    assert all(Path(f).is_file() for f in result["figures"])


def test_watch_runs(load, tmp_path):
    pytest.importorskip("tensorboardX")
    result = run(load, "watch_runs", tmp_path)
    logdir = Path(result["logdir"])
    for name, fit in result["results"].items():
        assert list((logdir / name).glob("events.out.tfevents.*"))
        rows = (logdir / f"{name}.csv").read_text().splitlines()
        assert len(rows) == 1 + fit.epochs
    assert result["export_diff"] <= 1e-6


def test_residual_mnist(load, tmp_path, capsys):
    result = run(load, "residual_mnist", tmp_path)
    rows = result["results"]
    assert list(rows) == ["plain CNN", "ResNet + batch norm"]
    # the same convolutions; the ResNet adds batch norm and one 1×1 projection
    assert rows["ResNet + batch norm"]["params"] > rows["plain CNN"]["params"]
    for row in rows.values():
        assert 0.0 <= row["test acc"] <= 1.0 and 0.0 <= row["val acc"] <= 1.0
        assert 0.0 < row["first/last grad"] < math.inf
    assert [Path(f).name for f in result["figures"]] == [
        "residual_mnist_plain.png",
        "residual_mnist_resnet.png",
    ]
    assert all(Path(f).stat().st_size > 0 for f in result["figures"])
    assert set(result["findings"]) == set(rows)
    out = capsys.readouterr().out
    assert "augmentation: random shifts" in out and "ann.diagnose" in out


def test_regularization(load, tmp_path, capsys):
    result = run(load, "regularization", tmp_path)
    rows = result["results"]
    assert list(rows) == [
        "nothing",
        "L1",
        "L2",
        "weight decay",
        "dropout",
        "batch norm",
        "augmentation",
        "early stopping",
        "all combined",
    ]
    module = load("regularization")
    assert float(rows["L1"]["setting"].split("=")[1]) in module.L1S
    assert float(rows["L2"]["setting"].split("=")[1]) in module.L2S
    for row in rows.values():
        assert row["gap"] == pytest.approx(row["train acc"] - row["test acc"])
        assert 1 <= row["epochs"] <= 3
        assert row["diagnose"]
    assert rows["nothing"]["test acc"] > 0.3  # well above chance (0.1)
    assert "fit_many sweep" in capsys.readouterr().out


def test_stream_mnist(load, tmp_path, capsys):
    result = load("stream_mnist").main(
        ["--quick", "--out", str(tmp_path), "--cache-dir", str(tmp_path)]
    )
    assert Path(result["figure"]).is_file()
    rows = result["results"]
    assert {"in memory", "memmap"} <= set(rows)
    assert result["identical"]  # the memmap trains bit for bit as in memory
    assert rows["memmap"]["test acc"] == rows["in memory"]["test acc"]
    assert "bit-identical to the in-memory run: True" in capsys.readouterr().out
