"""The ``sweep`` workloads: many models of one network, as a researcher trains them.

``sweep``: 8 configurations of the W2 MLP (64-32-32-10 ReLU, batch 32, the
digits 80/20), one Adam learning rate each (``learning_rates``). ``sweep-cnn``:
4 seeds of a small CNN (conv 3×3×32 – batch norm – ReLU – max pool 2 – conv
3×3×64 – batch norm – ReLU – max pool 2 – dense 128 – ReLU – dense 10) on
MNIST-sized synthetic images (28×28×1, labels from a fixed random linear
teacher), batch 64. Every model is scored on the validation split after every
epoch (a user choosing among them needs that).

Each ``run_*`` function trains all the models once and returns their final
validation accuracies; ``worker.py`` calls it twice in a fresh process: the
first call (``cold``) imports the framework and compiles, the second
(``warm``) runs the same sweep with everything compiled that the framework
keeps. Models, steps and optimizers are built once per process (module
cache) so that a framework's own compiled-function cache can serve the warm
call. The frameworks are imported inside the functions: importing this
module costs nothing.

* ``run_annjax_many``: one ``ann.fit_many`` call (``lr_scale`` or ``keys``);
* ``run_annjax_loop``: a loop of ``ann.fit`` calls, one per configuration;
* ``run_keras``: a loop of Keras 3 ``model.fit`` (JAX backend), a new model
  per configuration (as Keras users write it);
* ``run_flax``: a loop over the configurations of a ``flax.linen`` +
  ``TrainState`` jitted train step (NumPy batches, as the Flax docs); the
  learning rate through ``optax.inject_hyperparams`` so one step serves all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_CACHE: dict[str, Any] = {}


def _once(name: str, build):
    if name not in _CACHE:
        _CACHE[name] = build()
    return _CACHE[name]


def data(config: dict[str, Any]):
    """Returns ``(x, y, x_val, y_val)`` for the workload's model."""
    rng = np.random.default_rng(0)
    if config["model"] == "mlp":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    else:
        n = config["n_samples"]
        x = rng.random((n, 28, 28, 1), dtype=np.float32)
        teacher = rng.standard_normal((28 * 28, 10), dtype=np.float32)
        y = np.argmax((x.reshape(n, -1) - 0.5) @ teacher, axis=1).astype(np.int32)
    order = rng.permutation(len(y))
    cut = round(len(y) * (1.0 - config["val"]))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def _runs(config: dict[str, Any]) -> list[tuple[int, float]]:
    """Returns one (seed, learning rate) per model."""
    if config["model"] == "mlp":
        return [(0, lr) for lr in config["learning_rates"]]
    return [(s, config["learning_rate"]) for s in range(config["seeds"])]


# ----------------------------------------------------------------------- annjax
def annjax_cnn(pool=None):
    """Returns the ``sweep-cnn`` network in annjax layers, ``pool(2)`` its
    max pooling (``ann.max_pool`` unless given; ``max_pool.py`` passes
    another, ``floor.py`` trains this network too)."""
    import annjax as ann

    pool = ann.max_pool if pool is None else pool
    return ann.serial(
        ann.conv2d(32, 3),
        ann.batch_norm(),
        ann.activation("relu"),
        pool(2),
        ann.conv2d(64, 3),
        ann.batch_norm(),
        ann.activation("relu"),
        pool(2),
        ann.flatten(),
        ann.dense(128, activation="relu"),
        ann.dense(10),
    )


def _annjax_model(config):
    import annjax as ann

    def build():
        if config["model"] == "mlp":
            return ann.mlp(list(config["sizes"][1:]), activation="relu")
        return annjax_cnn()

    return _once("annjax_model", build)


def _annjax_kwargs(config, x_val, y_val) -> dict:
    return {
        "val_data": (x_val, y_val),
        "epochs": config["epochs"],
        "batch_size": config["batch_size"],
        "metrics": ("accuracy",),
        "progress": False,
    }


def run_annjax_many(config: dict[str, Any], vectorize: str = "auto") -> list[float]:
    """Returns the accuracies: one ``ann.fit_many`` over every configuration
    (``vectorize``: how it runs the models; ``"auto"``, its default, unless
    an implementation of the registry names another)."""
    import jax

    import annjax as ann

    x, y, xv, yv = data(config)
    runs = _runs(config)
    base = runs[0][1]
    result = ann.fit_many(
        _annjax_model(config),
        (x, y),
        keys=[jax.random.key(s) for s, _ in runs],
        lr_scale=[lr / base for _, lr in runs],
        optimizer=_once("annjax_opt", lambda: ann.adam(base)),
        vectorize=vectorize,
        **_annjax_kwargs(config, xv, yv),
    )
    return [float(a) for a in np.asarray(result.history["val_accuracy"][-1])]


def run_annjax_loop(config: dict[str, Any]) -> list[float]:
    """Returns the accuracies: one ``ann.fit`` per configuration."""
    import jax

    import annjax as ann

    x, y, xv, yv = data(config)
    out = []
    for seed, lr in _runs(config):
        result = ann.fit(
            _annjax_model(config),
            (x, y),
            key=jax.random.key(seed),
            optimizer=ann.adam(lr),
            **_annjax_kwargs(config, xv, yv),
        )
        out.append(float(result.history["val_accuracy"][-1]))
    return out


# ----------------------------------------------------------------------- keras
def run_keras(config: dict[str, Any]) -> list[float]:
    """Returns the accuracies: Keras 3 ``model.fit`` per configuration."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    x, y, xv, yv = data(config)
    L = keras.layers
    out = []
    for seed, lr in _runs(config):
        keras.utils.set_random_seed(seed)
        if config["model"] == "mlp":
            sizes = config["sizes"]
            layers = [keras.Input((sizes[0],))]
            layers += [L.Dense(n, activation="relu") for n in sizes[1:-1]]
        else:
            layers = [keras.Input((28, 28, 1))]
            for width in (32, 64):
                layers += [
                    L.Conv2D(width, 3, padding="same"),
                    L.BatchNormalization(),
                    L.ReLU(),
                    L.MaxPooling2D(2),
                ]
            layers += [L.Flatten(), L.Dense(128, activation="relu")]
        model = keras.Sequential([*layers, L.Dense(10)])
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
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
        out.append(float(history.history["val_accuracy"][-1]))
    return out


# ----------------------------------------------------------------------- flax
def _flax_parts(config):
    """Returns ``(module, tx, train_step, eval_step)``, built once per process."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class MLP(nn.Module):
        sizes: tuple

        @nn.compact
        def __call__(self, x, train: bool = False):
            for n in self.sizes[1:-1]:
                x = nn.relu(nn.Dense(n)(x))
            return nn.Dense(self.sizes[-1])(x)

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            for width in (32, 64):
                x = nn.Conv(width, (3, 3), padding="SAME")(x)
                x = nn.BatchNorm(use_running_average=not train)(x)
                x = nn.max_pool(nn.relu(x), (2, 2), (2, 2))
            x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
            return nn.Dense(10)(x)

    module = MLP(tuple(config["sizes"])) if config["model"] == "mlp" else CNN()
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def variables(state):
        return {"params": state["params"], **state["rest"]}

    @jax.jit
    def train_step(state, x, y):
        def loss(params):
            logits, updates = module.apply(
                {"params": params, **state["rest"]},
                x,
                train=True,
                mutable=list(state["rest"]),
            )
            return optax.softmax_cross_entropy_with_integer_labels(
                logits, y
            ).mean(), updates

        grads, rest = jax.grad(loss, has_aux=True)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "rest": rest, "opt": opt}

    @jax.jit
    def accuracy(state, x, y):
        logits = module.apply(variables(state), x, train=False)
        return jnp.mean(jnp.argmax(logits, -1) == y)

    return module, tx, train_step, accuracy


def run_flax(config: dict[str, Any]) -> list[float]:
    """Returns the accuracies: a flax linen jitted step, looped per configuration."""
    import jax

    x, y, xv, yv = data(config)
    module, tx, train_step, accuracy = _once("flax", lambda: _flax_parts(config))
    bs = config["batch_size"]
    out = []
    for seed, lr in _runs(config):
        key = jax.random.key(seed)
        variables = dict(module.init(key, x[:1]))
        params = variables.pop("params")
        opt = tx.init(params)
        opt.hyperparams["learning_rate"] = np.float32(lr)
        state = {"params": params, "rest": variables, "opt": opt}
        rng = np.random.default_rng(seed)
        for _ in range(config["epochs"]):
            order = rng.permutation(len(y))
            for i in range(len(y) // bs):
                idx = order[i * bs : (i + 1) * bs]
                state = train_step(state, x[idx], y[idx])
            acc = accuracy(state, xv, yv)
        out.append(float(acc))
    return out
