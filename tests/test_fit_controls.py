"""The controls of ``fit``: start from given params, freeze, smooth the labels,
average the weights, and optimizers that read the loss (issue 23).

Oracles are hand-written loops over the same steps with jax.grad and optax.
The data are one full batch (``batch_size`` = n), so each epoch is one step
on all examples whatever the permutation: the reference needs no knowledge
of fit's shuffling, only float summation order differs (hence rtol 1e-5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 3)).astype("f4")
Y = (X[:, 0] + X[:, 1] > 0).astype("i4")
N = X.shape[0]
RTOL, ATOL = 1e-5, 1e-6  # float32, another summation order than the reference


def _close(a, b, rtol=RTOL, atol=ATOL):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _fit(model, **kw):
    kw.setdefault("epochs", 3)
    kw.setdefault("batch_size", N)
    return ann.fit(model, (X, Y), progress=False, **kw)


def _steps(model, params, state, opt, n, opt_state=None, loss=None, on_step=None):
    """The reference: ``n`` full-batch steps of ``opt`` on the mean loss."""
    loss = loss or (lambda y, z: optax.softmax_cross_entropy_with_integer_labels(z, y))

    def objective(p, s):
        z, s = model.apply(p, s, jnp.asarray(X), train=True)
        return jnp.mean(loss(jnp.asarray(Y), z)), s

    opt_state = opt.init(params) if opt_state is None else opt_state
    for _ in range(n):
        (value, state), g = jax.value_and_grad(objective, has_aux=True)(params, state)
        updates, opt_state = opt.update(g, opt_state, params, value=value)
        params = optax.apply_updates(params, updates)
        if on_step is not None:
            on_step(params, opt_state)
    return params, state, opt_state


# ------------------------------------------------ params= and state=


def test_fit_from_params_equals_a_restarted_optimizer():
    """3 epochs, then 3 from the result: 6 steps with momentum reset at 3."""
    model, opt = ann.mlp([5, 2], batch_norm=True), optax.sgd(0.1, momentum=0.9)
    start = _fit(model, optimizer=opt, epochs=0)
    first = _fit(model, optimizer=opt)
    second = _fit(model, optimizer=opt, params=first.params, state=first.state)
    p, s, _ = _steps(model, start.params, start.state, opt, 3)
    _close((first.params, first.state), (p, s))
    p, s, _ = _steps(model, p, s, opt, 3)  # a fresh optimizer state
    _close((second.params, second.state), (p, s))
    straight = _fit(model, optimizer=opt, epochs=6)  # momentum kept: differs
    assert not np.allclose(straight.params["dense_3"]["w"], p["dense_3"]["w"])


def test_fit_many_from_params_broadcast_and_stacked():
    model, opt = ann.mlp([4, 2]), ann.sgd(0.1)
    keys = jax.random.split(jax.random.key(1), 2)
    one = _fit(model, optimizer=opt)
    kw = {"keys": keys, "optimizer": opt, "epochs": 2, "batch_size": N}
    broadcast = ann.fit_many(model, (X, Y), params=one.params, progress=False, **kw)
    for i in range(2):
        alone = _fit(model, optimizer=opt, epochs=2, key=keys[i], params=one.params)
        _close(broadcast.select(i).params, alone.params)
    stacked = ann.fit_many(model, (X, Y), params=broadcast.params, progress=False, **kw)
    alone = _fit(model, optimizer=opt, epochs=2, params=broadcast.select(1).params)
    _close(stacked.select(1).params, alone.params)


def test_params_of_another_model_are_named_before_compiling():
    params = ann.init_train_state(
        ann.mlp([4, 3]), ann.sgd(0.1), jax.random.key(0), (3,)
    )
    with pytest.raises(ValueError, match=r"params: .*reshaped \['dense_2/b"):
        _fit(ann.mlp([4, 2]), params=params[0].params)
    wrong = {"dense_0": params[0].params["dense_0"], "extra": {"w": jnp.ones(2)}}
    with pytest.raises(ValueError, match=r"missing \['dense_2/b'.*extra \['extra/w'"):
        _fit(ann.mlp([4, 2]), params=wrong)
    with pytest.raises(ValueError, match="state: "):
        _fit(ann.mlp([4, 2], batch_norm=True), state={})


def test_params_with_resume_or_a_wrong_model_count_are_refused(tmp_path):
    model = ann.mlp([4, 2])
    r = _fit(model, epochs=1, checkpoint=tmp_path / "c")
    with pytest.raises(ValueError, match=r"params/state: .*resume="):
        _fit(model, epochs=1, resume=tmp_path / "c", params=r.params)
    three = jax.tree.map(lambda a: jnp.stack([a] * 3), r.params)
    with pytest.raises(ValueError, match=r"params: expected .*2 models"):
        ann.fit_many(
            model,
            (X, Y),
            keys=jax.random.split(jax.random.key(0), 2),
            params=three,
            epochs=1,
            progress=False,
        )


# ------------------------------------------------ trainable=


def _frozen_reference(model, start, state, opt, l1, l2, n):
    """dense_0 held as a constant: jax.grad and the optimizer see dense_2 only."""
    frozen = start["dense_0"]

    def loss(y, z):
        return optax.softmax_cross_entropy_with_integer_labels(z, y)

    def objective(p, s):
        full = {**start, "dense_2": p}
        z, s = model.apply(full, s, jnp.asarray(X), train=True)
        w = p["w"]
        penalty = l1 * jnp.sum(jnp.abs(w)) + l2 * jnp.sum(jnp.square(w))
        return jnp.mean(loss(jnp.asarray(Y), z)) + penalty, s

    p, opt_state = start["dense_2"], opt.init(start["dense_2"])
    for _ in range(n):
        g = jax.grad(lambda p: objective(p, state)[0])(p)
        updates, opt_state = opt.update(g, opt_state, p)
        p = optax.apply_updates(p, updates)
    return {**start, "dense_0": frozen, "dense_2": p}


@pytest.mark.parametrize(
    "trainable",
    [
        lambda path: not path.startswith("dense_0"),
        {"dense_0": False, "relu_1": True, "dense_2": True},
    ],
    ids=["predicate", "pytree"],
)
def test_frozen_params_get_no_update_decay_or_penalty(trainable):
    model, opt = ann.mlp([4, 2]), ann.adam(0.05, weight_decay=0.1)
    init = _fit(model, optimizer=opt, epochs=0)
    start = init.params
    r = _fit(model, optimizer=opt, l1=0.01, l2=0.01, trainable=trainable)
    np.testing.assert_array_equal(r.params["dense_0"]["w"], start["dense_0"]["w"])
    np.testing.assert_array_equal(r.params["dense_0"]["b"], start["dense_0"]["b"])
    _close(r.params, _frozen_reference(model, start, init.state, opt, 0.01, 0.01, 3))


def test_frozen_layers_are_marked_and_not_diagnosed_as_vanishing():
    r = _fit(
        ann.mlp([4, 4, 2]),
        track_gradients=True,
        track_every=1,
        trainable=lambda path: "dense_0" not in path,
    )
    assert set(ann.analysis.findings.per_layer(r.history, "frozen")) == {"dense_0"}
    history = {
        "grad_norm/dense_0": np.full(3, 1e-9),
        "grad_norm/dense_2": np.full(3, 1.0),
        "grad_norm/dense_4": np.full(3, 1.0),
    }
    kinds = {(f.kind, f.layer) for f in ann.diagnose(history)}
    assert ("vanishing_gradients", "dense_0") in kinds
    history["frozen/dense_0"] = np.ones(3)
    found = ann.diagnose(history)
    assert not [f for f in found if f.kind == "vanishing_gradients"]


def test_trainable_errors():
    model = ann.mlp([4, 2])
    with pytest.raises(ValueError, match=r"trainable: expected .*structure"):
        _fit(model, trainable={"dense_0": False})
    with pytest.raises(TypeError, match="trainable: expected True or False"):
        _fit(model, trainable=lambda path: "yes")
    with pytest.raises(ValueError, match="trainable: expected at least one"):
        _fit(model, trainable=lambda path: False)
    with pytest.raises(TypeError, match="trainable: expected a function"):
        _fit(model, trainable=3)


# ------------------------------------------------ optimizers that read the loss


def test_reduce_on_plateau_reads_the_loss_and_lr_shows_it():
    plateau = optax.contrib.reduce_on_plateau(
        factor=0.5, patience=1, rtol=0.5, accumulation_size=1
    )
    opt = optax.chain(ann.sgd(0.01), plateau)
    model = ann.mlp([4, 2])
    r = _fit(model, optimizer=opt, epochs=4)
    start = _fit(model, optimizer=opt, epochs=0)
    scales = []
    _steps(
        model,
        start.params,
        start.state,
        opt,
        4,
        on_step=lambda p, s: scales.append(float(s[1].scale)),
    )
    np.testing.assert_allclose(r.history["lr"], 0.01 * np.array(scales), rtol=1e-6)
    assert r.history["lr"][-1] < r.history["lr"][0]


def test_an_optimizer_without_extra_args_still_trains():
    base = optax.sgd(0.1)
    plain = optax.GradientTransformation(
        base.init, lambda u, s, p=None: base.update(u, s, p)
    )
    assert np.isfinite(_fit(ann.mlp([4, 2]), optimizer=plain).history["loss"]).all()


# ------------------------------------------------ label_smoothing=


def _smoothed(y, z, alpha=0.1):
    k = z.shape[-1]
    return optax.softmax_cross_entropy(
        z, optax.smooth_labels(jax.nn.one_hot(y, k), alpha)
    )


def test_label_smoothing_equals_optax_smooth_labels():
    model, opt = ann.mlp([4, 2]), ann.sgd(0.5)
    start = _fit(model, optimizer=opt, epochs=0)
    r = _fit(model, optimizer=opt, label_smoothing=0.1, val_data=(X, Y))
    p, _, _ = _steps(model, start.params, start.state, opt, 3, loss=_smoothed)
    _close(r.params, p)
    z = ann.predict(model, r.params, r.state, X)
    want = float(jnp.mean(_smoothed(Y, z)))
    got = ann.evaluate(model, r.params, r.state, (X, Y), label_smoothing=0.1)
    np.testing.assert_allclose(got["loss"], want, rtol=RTOL)
    np.testing.assert_allclose(r.history["val_loss"][-1], want, rtol=RTOL)
    many = ann.fit_many(
        model,
        (X, Y),
        keys=jax.random.key(0)[None],
        optimizer=opt,
        label_smoothing=0.1,
        epochs=3,
        batch_size=N,
        progress=False,
    )
    _close(many.select(0).params, r.params)


def test_label_smoothing_errors():
    with pytest.raises(ValueError, match="label_smoothing: expected"):
        _fit(ann.mlp([4, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"label_smoothing: expected .*softmax_cross"):
        ann.fit(
            ann.mlp([4, 1]),
            (X, Y.astype("f4")),
            loss="mse",
            label_smoothing=0.1,
            progress=False,
        )


# ------------------------------------------------ ema=


def test_ema_equals_a_hand_written_average():
    model, opt, decay = ann.mlp([4, 2]), ann.sgd(0.5), 0.8
    start = _fit(model, optimizer=opt, epochs=0)
    r = _fit(model, optimizer=opt, ema=decay, epochs=4)
    average = [start.params]

    def on_step(p, _):
        average[0] = jax.tree.map(
            lambda e, q: decay * e + (1 - decay) * q, average[0], p
        )

    p, _, _ = _steps(model, start.params, start.state, opt, 4, on_step=on_step)
    _close(r.params, p)
    _close(r.ema_params, average[0])


def test_validate_on_ema_validates_and_restores_the_average():
    model, opt = ann.mlp([4, 2]), ann.sgd(0.5)
    kw = {"optimizer": opt, "ema": 0.8, "val_data": (X, Y), "epochs": 4}
    r = _fit(model, validate_on="ema", **kw)
    on_ema = ann.evaluate(model, r.ema_params, r.state, (X, Y))["loss"]
    on_params = ann.evaluate(model, r.params, r.state, (X, Y))["loss"]
    np.testing.assert_allclose(r.history["val_loss"][-1], on_ema, rtol=RTOL)
    assert abs(on_ema - on_params) > 1e-3  # the two are told apart
    es = ann.EarlyStopping(patience=1, restore_best=True)
    best = _fit(model, validate_on="ema", early_stopping=es, **kw)
    at = ann.evaluate(model, best.ema_params, best.state, (X, Y))["loss"]
    np.testing.assert_allclose(best.history["val_loss"][best.best_epoch], at, rtol=RTOL)


def test_fit_many_ema_per_model_and_resume(tmp_path):
    model, opt = ann.mlp([4, 2]), ann.sgd(0.5)
    keys = jax.random.split(jax.random.key(0), 2)
    many = ann.fit_many(
        model,
        (X, Y),
        keys=keys,
        optimizer=opt,
        ema=0.8,
        epochs=3,
        batch_size=N,
        progress=False,
    )
    alone = _fit(model, optimizer=opt, ema=0.8, key=keys[1])
    _close(many.select(1).ema_params, alone.ema_params)
    path = tmp_path / "run.ckpt"
    _fit(model, optimizer=opt, ema=0.8, epochs=1, key=keys[1], checkpoint=path)
    resumed = _fit(model, optimizer=opt, ema=0.8, epochs=2, key=keys[1], resume=path)
    _close(resumed.ema_params, alone.ema_params)
    _fit(model, optimizer=opt, epochs=1, checkpoint=tmp_path / "plain")
    with pytest.raises(ValueError, match="resume: expected a checkpoint with a moving"):
        _fit(model, optimizer=opt, ema=0.8, epochs=1, resume=tmp_path / "plain")


def test_ema_errors():
    with pytest.raises(ValueError, match="ema: expected"):
        _fit(ann.mlp([4, 2]), ema=1.0)
    with pytest.raises(ValueError, match="validate_on: expected"):
        _fit(ann.mlp([4, 2]), validate_on="best")
    with pytest.raises(ValueError, match=r"validate_on: expected .*ema="):
        _fit(ann.mlp([4, 2]), validate_on="ema", val_data=(X, Y))
