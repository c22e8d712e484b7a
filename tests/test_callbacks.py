"""Tests of annjax.callbacks: TensorBoard and CSV files read back equal the history.

The event files are read with the ``tensorboard`` package's own reader
(``EventAccumulator``), an independent implementation of the format the
writer (tensorboardX) produces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann
from annjax.callbacks import read_csv, tag_of

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator"
)

N, BATCH, EPOCHS = 40, 16, 3
STEPS = -(-N // BATCH)
X = jax.random.normal(jax.random.key(0), (N, 3))
Y = (X[:, 0] > 0).astype(jnp.int32)
MODEL = ann.mlp([8, 8, 2])
COMMON = {
    "optimizer": ann.adam(1e-2),
    "batch_size": BATCH,
    "epochs": EPOCHS,
    "metrics": ("accuracy",),
    "track_gradients": True,
    "track_every": 1,
    "log_steps": True,
    "progress": False,
}


def _read(logdir):
    acc = event_accumulator.EventAccumulator(
        str(logdir),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0},
    )
    acc.Reload()
    return acc


def _scalars(acc, tag):
    events = acc.Scalars(tag)
    return [e.step for e in events], np.asarray([e.value for e in events], np.float32)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb")
    with ann.callbacks.TensorBoard(folder / "run", histograms=True) as tb:
        log = ann.callbacks.CSVLogger(folder / "run.csv")
        result = ann.fit(MODEL, (X, Y), val_data=(X, Y), callbacks=[tb, log], **COMMON)
    return folder, result


def test_tensorboard_scalars_equal_the_history(single):
    folder, result = single
    acc = _read(folder / "run")
    history = {k: v for k, v in result.history.items() if k != "step_loss"}
    assert {"loss", "val_accuracy", "lr", "grad_norm/dense_0"} <= set(history)
    assert "layer/dead_fraction/relu_1" in acc.Tags()["scalars"]
    scalars = set(acc.Tags()["scalars"]) - {"step_loss"}
    assert scalars == {tag_of(k) for k in history}
    for name, values in history.items():
        steps, got = _scalars(acc, tag_of(name))
        assert steps == list(range(EPOCHS))
        np.testing.assert_array_equal(got, values)


def test_tensorboard_step_loss_is_written_per_step(single):
    folder, result = single
    steps, got = _scalars(_read(folder / "run"), "step_loss")
    assert steps == list(range(EPOCHS * STEPS))
    np.testing.assert_array_equal(got, result.history["step_loss"])


def test_tensorboard_histograms_of_each_parameter(single):
    folder, result = single
    acc = _read(folder / "run")
    names = {"params/dense_0/w", "params/dense_0/b", "params/dense_2/w"}
    assert names <= set(acc.Tags()["histograms"])
    last = acc.Histograms("params/dense_0/w")[-1]
    w = np.asarray(result.train_state.params["dense_0"]["w"])
    assert last.step == EPOCHS - 1
    assert last.histogram_value.num == w.size
    np.testing.assert_allclose(last.histogram_value.sum, w.sum(), rtol=1e-5)
    np.testing.assert_allclose(last.histogram_value.min, w.min(), rtol=1e-6)


def test_csv_reads_back_equal_to_the_history(single):
    folder, result = single
    table = read_csv(folder / "run.csv")
    history = {k: v for k, v in result.history.items() if k != "step_loss"}
    assert set(table) == {"epoch", *history}
    np.testing.assert_array_equal(table["epoch"], np.arange(EPOCHS))
    for name, values in history.items():
        np.testing.assert_array_equal(table[name], values)


def test_fit_many_writes_one_run_per_model(tmp_path):
    tb = ann.callbacks.TensorBoard(tmp_path / "sweep", histograms=True)
    log = ann.callbacks.CSVLogger(tmp_path / "sweep.csv")
    es = ann.EarlyStopping(monitor="loss", patience=1, min_delta=0.05)
    many = ann.fit_many(
        MODEL,
        (X, Y),
        keys=jax.random.split(jax.random.key(1), 2),
        lr_scale=[1.0, 0.01],  # the slow one stops early: NaN after it
        early_stopping=es,
        callbacks=[tb, log],
        **{**COMMON, "epochs": 5},
    )
    tb.close()
    assert np.isnan(many.history["loss"]).any()
    table = read_csv(tmp_path / "sweep.csv")
    epochs = many.epochs
    np.testing.assert_array_equal(table["model"], np.tile([0, 1], epochs))
    for i in range(2):
        acc = _read(tmp_path / "sweep" / f"model_{i}")
        for name, values in many.history.items():
            if name == "step_loss":
                continue
            _, got = _scalars(acc, tag_of(name))
            np.testing.assert_array_equal(got, values[:, i])
            np.testing.assert_array_equal(
                table[name].reshape(epochs, 2)[:, i], values[:, i]
            )
        _, steps = _scalars(acc, "step_loss")
        np.testing.assert_array_equal(steps, many.history["step_loss"][:, i])
        first = acc.Histograms("params/dense_0/w")[0].histogram_value
        assert first.num == 3 * 8  # one model's weights, not the stack


def test_csv_appends_on_resume(tmp_path):
    path, ckpt = tmp_path / "log.csv", tmp_path / "run.ckpt"
    kw = {**COMMON, "track_gradients": False, "log_steps": False, "epochs": 2}
    ann.fit(
        MODEL,
        (X, Y),
        callbacks=[ann.callbacks.CSVLogger(path)],
        checkpoint=str(ckpt),
        **kw,
    )
    more = ann.fit(
        MODEL, (X, Y), callbacks=[ann.callbacks.CSVLogger(path)], resume=str(ckpt), **kw
    )
    table = read_csv(path)
    np.testing.assert_array_equal(table["epoch"], np.arange(4))
    np.testing.assert_array_equal(table["loss"], more.history["loss"])


def test_callbacks_check_their_arguments():
    with pytest.raises(TypeError, match="TensorBoard logdir"):
        ann.callbacks.TensorBoard(3)
    with pytest.raises(TypeError, match="TensorBoard histograms"):
        ann.callbacks.TensorBoard("x", histograms="yes")
    with pytest.raises(TypeError, match="CSVLogger path"):
        ann.callbacks.CSVLogger(None)


def test_csv_logger_reused_with_other_metrics_starts_afresh(tmp_path):
    # issue 21, case 5: the second fit appended 6-field rows under a 3-field
    # header and read_csv failed with "zip() argument 3 is longer"
    path = tmp_path / "log.csv"
    log = ann.callbacks.CSVLogger(path)
    kw = {"batch_size": BATCH, "epochs": 2, "progress": False, "callbacks": [log]}
    ann.fit(MODEL, (X, Y), **kw)
    assert list(read_csv(path)) == ["epoch", "loss", "lr"]
    second = ann.fit(MODEL, (X, Y), val_data=(X, Y), metrics=("accuracy",), **kw)
    table = read_csv(path)
    assert list(table) == ["epoch", *second.history]
    np.testing.assert_array_equal(table["epoch"], [0, 1])
    for name, values in second.history.items():
        np.testing.assert_array_equal(table[name], values)


def test_csv_logger_refuses_to_append_other_columns(tmp_path):
    path = tmp_path / "log.csv"
    log = ann.callbacks.CSVLogger(path)
    log(0, {"loss": np.float32(1.0)})
    with pytest.raises(
        ValueError,
        match=r"CSVLogger: expected the columns .*"
        r"\['epoch', 'loss'\], got this run's \['epoch', 'loss', "
        r"'accuracy'\]",
    ):
        log(1, {"loss": np.float32(1.0), "accuracy": np.float32(0.5)})
    assert read_csv(path)["loss"].tolist() == [1.0]


def test_read_csv_refuses_rows_that_do_not_fit_the_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("epoch,loss\n0,1.0,2.0\n")
    with pytest.raises(
        ValueError,
        match=r"read_csv: expected 2 fields per row "
        r".* got 3 on line 2",
    ):
        read_csv(path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="read_csv: expected a header row"):
        read_csv(tmp_path / "empty.csv")
