"""The ``cold`` workload: the compare-models exercise, as a fresh process runs it.

Each ``run_*`` function is the WHOLE program a student runs: import the
framework, load the digits (80/20 train/validation), and train each
architecture (no hidden layer; 3 hidden layers of tanh, ReLU, linear units)
over several seeds for a fixed number of epochs with Adam, evaluating the
validation accuracy after every epoch. ``worker.py`` starts it in a new
interpreter (``python -c``) and times the process from start to exit, so
imports and every compilation count. It returns each architecture's mean
final validation accuracy over the seeds (a broken run shows).

The frameworks are imported inside the functions: importing this module
costs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def digits(config: dict[str, Any]):
    """Returns ``(x, y, x_val, y_val)``: scikit-learn's digits in [0, 1], 80/20."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(y))
    cut = round(len(y) * (1.0 - config["val"]))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _widths(config: dict[str, Any], arch: str) -> list[int]:
    return [10] if arch == "none" else [config["hidden"]] * 3 + [10]


def run_annjax(config: dict[str, Any]) -> dict[str, float]:
    """Returns the accuracies: ``ann.fit_many`` over the seeds, per architecture."""
    import jax

    import annjax as ann

    ann.enable_compilation_cache()  # ANNJAX_CACHE_DIR=off (worker.py) keeps it off
    x, y, xv, yv = digits(config)
    keys = jax.random.split(jax.random.key(0), config["seeds"])
    out = {}
    for arch in config["architectures"]:
        widths = _widths(config, arch)
        model = ann.dense(10) if arch == "none" else ann.mlp(widths, activation=arch)
        result = ann.fit_many(
            model,
            (x, y),
            val_data=(xv, yv),
            keys=keys,
            optimizer=ann.adam(config["learning_rate"]),
            epochs=config["epochs"],
            batch_size=config["batch_size"],
            metrics=("accuracy",),
            progress=False,
        )
        out[arch] = float(np.mean(result.history["val_accuracy"][-1]))
    return out


def run_keras(config: dict[str, Any]) -> dict[str, float]:
    """Returns the accuracies: Keras 3 ``model.fit`` per seed (JAX backend)."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    x, y, xv, yv = digits(config)
    out = {}
    for arch in config["architectures"]:
        accs = []
        for seed in range(config["seeds"]):
            keras.utils.set_random_seed(seed)
            act = "linear" if arch == "none" else arch
            widths = _widths(config, arch)
            model = keras.Sequential(
                [keras.Input((x.shape[1],))]
                + [keras.layers.Dense(n, activation=act) for n in widths[:-1]]
                + [keras.layers.Dense(10)]
            )
            model.compile(
                optimizer=keras.optimizers.Adam(config["learning_rate"]),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            history = model.fit(
                x,
                y,
                validation_data=(xv, yv),
                batch_size=config["batch_size"],
                epochs=config["epochs"],
                shuffle=True,
                verbose=0,
            )
            accs.append(history.history["val_accuracy"][-1])
        out[arch] = float(np.mean(accs))
    return out


def run_jax(config: dict[str, Any]) -> dict[str, float]:
    """Returns the accuracies: hand-written JAX, one jitted call per seed.

    Per architecture one ``jax.jit`` of the whole training (init, ``lax.scan``
    over the epochs, each a ``lax.scan`` over the steps of a fresh
    permutation, the last partial batch dropped, then the validation
    accuracy), called once per seed: it compiles once per architecture.
    """
    import jax
    import jax.numpy as jnp
    import optax

    x, y, xv, yv = digits(config)
    data = tuple(jnp.asarray(a) for a in (x, y, xv, yv))
    out = {}
    for arch in config["architectures"]:
        train = jax.jit(_jax_trainer(config, arch, jax, jnp, optax))
        accs = [train(jax.random.key(s), *data) for s in range(config["seeds"])]
        out[arch] = float(np.mean([a[-1] for a in jax.device_get(accs)]))
    return out


def _jax_trainer(config, arch, jax, jnp, optax):
    """Returns ``train(key, x, y, xv, yv) -> validation accuracy per epoch``."""
    sizes = [64, *_widths(config, arch)]
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}.get(arch, lambda z: z)
    opt = optax.adam(config["learning_rate"])
    bs, epochs = config["batch_size"], config["epochs"]
    init = jax.nn.initializers.glorot_uniform()

    def logits(params, a):
        for w, b in params[:-1]:
            a = act(a @ w + b)
        w, b = params[-1]
        return a @ w + b

    def loss(params, a, t):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, a), t)

    def train(key, x, y, xv, yv):
        keys = jax.random.split(key, len(sizes))
        params = [
            (init(k, (m, n), jnp.float32), jnp.zeros((n,), jnp.float32))
            for k, m, n in zip(keys[1:], sizes[:-1], sizes[1:], strict=True)
        ]
        steps = x.shape[0] // bs

        def step(carry, idx):
            params, opt_state = carry
            grads = jax.grad(lambda p: loss(p, x[idx], y[idx]).mean())(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def epoch(carry, k):
            perm = jax.random.permutation(k, x.shape[0])[: steps * bs]
            carry, _ = jax.lax.scan(step, carry, perm.reshape(steps, bs))
            acc = jnp.mean(jnp.argmax(logits(carry[0], xv), -1) == yv)
            return carry, acc

        carry = (params, opt.init(params))
        _, accs = jax.lax.scan(epoch, carry, jax.random.split(keys[0], epochs))
        return accs

    return train
