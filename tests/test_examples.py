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
import re
from pathlib import Path
from types import ModuleType

import jax.numpy as jnp
import numpy as np
import optax
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
    assert_report_matches(name, Path(result["report"]))
    return result


def printed(report: str) -> list[str]:
    """The lines a script printed, from its report (examples/out/<name>.md)."""
    return report.split("```text\n", 1)[1].rsplit("\n```", 1)[0].splitlines()


def shape(report: str) -> dict:
    """What a report prints regardless of the numbers: its command (less
    ``--quick``), each table's header and row names, or its ``== section``
    names."""
    lines = printed(report)
    tables = []
    for i, line in enumerate(lines):
        if i and re.fullmatch(r"-+( +-+)+", line.strip()):
            rows = []
            for row in lines[i + 1 :]:
                cells = re.split(r"\s{2,}", row.strip())
                if len(cells) < 2:  # a blank line or prose ends the table
                    break
                rows.append(cells[0])
            tables.append((lines[i - 1].split(), rows))
    command = re.search(r"`(python examples/[^`]*)`", report).group(1)
    # A report without a table prints one "== <model>: ..." section per model; a
    # report with tables may list findings under "== <model>" for some models
    # only (which ones depends on the run), so its tables are its shape.
    sections = [ln.split(":")[0] for ln in lines if ln.startswith("== ")]
    return {
        "command": command.replace(" --quick", ""),
        "tables": tables,
        "sections": [] if tables else sections,
    }


def assert_report_matches(name: str, quick: Path) -> None:
    """The report the docs include (examples/out/<name>.md, written by the script)
    has the shape of what the script prints now, in --quick mode: same command,
    same tables (headers and row names), same sections. A script whose output
    changed without its committed report being rewritten fails here."""
    committed = EXAMPLES / "out" / f"{name}.md"
    assert committed.is_file(), f"run `python examples/{name}.py` to write {committed}"
    text = committed.read_text()
    assert f"written by examples/{name}.py" in text
    assert shape(quick.read_text()) == shape(text), (
        f"examples/out/{name}.md is stale: rerun `python examples/{name}.py`"
    )


def test_docs_include_every_report_and_quote_none():
    """The docs show the scripts' outputs by including their reports, and every
    report they include belongs to a script."""
    docs = EXAMPLES.parent / "docs"
    pages = [*docs.glob("*.md"), *docs.glob("guide/*.md")]
    included = set()
    for page in pages:
        for target in re.findall(r"```\{include\} (\S+)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.name} includes {target}, which is missing"
            assert path.parent == (EXAMPLES / "out").resolve()
            assert (EXAMPLES / f"{path.stem}.py").is_file()
            included.add(path.stem)
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert included == scripts
    readme = (EXAMPLES.parent / "README.md").read_text()
    for report in (EXAMPLES / "out").glob("*.md"):
        tables = [ln for ln in printed(report.read_text()) if "  " in ln.strip()]
        assert not any(ln in readme for ln in tables), f"README quotes {report.name}"


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
    names = list(rows)
    assert names[:3] == ["linear", "MLP", "MLP + L2 0.001"]
    assert names[3].startswith("recipe: best of 6") and names[4].startswith(
        "recipe: ensemble"
    )
    assert names[5:] == ["HistGradientBoosting (scikit-learn)"]
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
    module = load("residual_mnist")
    rows = result["results"]
    assert list(rows) == list(module.NETWORKS)
    deep, shallow, resnet = (rows[name] for name in module.NETWORKS)
    # the same convolutions; the ResNet adds batch norm (and 1×1 projections)
    assert resnet["params"] > deep["params"] > shallow["params"]
    for name, row in rows.items():
        assert 0.0 <= row["test acc"] <= 1.0 and 0.0 <= row["val acc"] <= 1.0
        assert 0.0 <= row["train err"] <= 1.0
        assert 0.0 < row["first/last grad"] < math.inf
        # each network trains at the configuration its sweep scored best
        sweep = result["sweep"][name]
        assert sorted(r["model"] for r in sweep) == list(range(len(module.GRID)))
        assert row["val acc"] == max(r["val_accuracy"] for r in sweep)
        opt, lr = module.GRID[sweep[0]["model"]]
        assert row["optimizer"] == f"{opt} {lr:.4g}"
    assert [Path(f).name for f in result["figures"]] == [
        "residual_mnist_plain.png",
        "residual_mnist_shallow.png",
        "residual_mnist_resnet.png",
    ]
    assert all(Path(f).stat().st_size > 0 for f in result["figures"])
    assert set(result["findings"]) == set(rows)
    out = capsys.readouterr().out
    assert "augmentation: random shifts" in out and "ann.diagnose" in out
    assert "depth, each plain network at its best" in out


@pytest.mark.parametrize(
    ("adam", "reference"),
    [(0.0, lambda lr: optax.sgd(lr, momentum=0.9)), (1.0, optax.adam)],
)
def test_residual_mnist_sgd_or_adam_is_the_chosen_optimizer(load, adam, reference):
    """The example sweeps the optimizer as a hyper-parameter: each choice's
    updates equal optax's own optimizer's (oracle), step after step."""
    module = load("residual_mnist")
    swept = optax.inject_hyperparams(module.sgd_or_adam)(learning_rate=0.1, adam=adam)
    oracle = reference(0.1)
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    s_swept, s_oracle = swept.init(params), oracle.init(params)
    for step in range(3):
        grads = {"w": jnp.array([0.5, -1.0, 2.0]) * (step + 1)}
        u_swept, s_swept = swept.update(grads, s_swept, params)
        u_oracle, s_oracle = oracle.update(grads, s_oracle, params)
        np.testing.assert_allclose(u_swept["w"], u_oracle["w"], rtol=1e-6)


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


def test_loss_landscape(load, tmp_path, capsys):
    result = run(load, "loss_landscape", tmp_path)
    rows = result["results"]
    assert list(rows) == ["plain", "residual"]
    for row in rows.values():
        assert row["λ1"] >= row["λ2"] >= row["λ3"]
        assert row["plane: max loss"] >= row["train loss"] * 0.99
    # the claim shown: the residual twin trains further on a smoother plane
    assert rows["residual"]["train loss"] < rows["plain"]["train loss"]
    assert rows["residual"]["plane: max loss"] < rows["plain"]["plane: max loss"]
    assert all(len(v) == 7 for v in result["sharpness"].values())  # steps 0..120
    assert all(Path(f).is_file() for f in result["figures"])
    assert "2/η" in capsys.readouterr().out and "λ_max" in result["table"]


def test_bias_variance(load, tmp_path):
    result = run(load, "bias_variance", tmp_path)
    curve = result["curve"]
    assert list(curve.values) == [1, 8]  # --quick: two widths, two rounds
    # MSE: expected loss = bias² + variance at every width
    for e, b, v in zip(curve.expected_loss, curve.bias, curve.variance, strict=True):
        assert math.isclose(e, b + v, rel_tol=1e-4)
    # the ensemble's MSE is the bias² term, never above one replica's (Jensen)
    assert result["ensemble_mse"] <= result["single_mse"] + 1e-6
    report = (tmp_path / "bias_variance.md").read_text()
    assert "expected test MSE" in report and "narrowest" in report
    assert (tmp_path / "bias_variance_learning_curve.png").stat().st_size > 0


def test_stream_mnist(load, tmp_path, capsys):
    result = load("stream_mnist").main(
        ["--quick", "--out", str(tmp_path), "--cache-dir", str(tmp_path)]
    )
    assert Path(result["figure"]).is_file()
    assert_report_matches("stream_mnist", Path(result["report"]))
    rows = result["results"]
    assert {"in memory", "memmap"} <= set(rows)
    assert result["identical"]  # the memmap trains bit for bit as in memory
    assert rows["memmap"]["test acc"] == rows["in memory"]["test acc"]
    assert "bit-identical to the in-memory run: True" in capsys.readouterr().out


def test_stream_mnist_rewrites_a_memmap_file_of_another_split(load, tmp_path):
    # a file of the right size left by an earlier run with another split once
    # made the memmap run train on stale images (test accuracy 0.16)
    write = load("stream_mnist").write_memmap
    path = tmp_path / "x.f32"
    stale, fresh = np.zeros((4, 3), np.float32), np.ones((4, 3), np.float32)
    write(path, stale)
    np.testing.assert_array_equal(write(path, fresh), fresh)
    mtime = path.stat().st_mtime_ns
    np.testing.assert_array_equal(write(path, fresh), fresh)  # kept: the same
    assert path.stat().st_mtime_ns == mtime
