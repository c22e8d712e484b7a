"""Keras 3 on the JAX backend: ``model.fit`` as its guides call it.

``KERAS_BACKEND=jax`` is set by the runner before Keras is imported. Keras
shuffles every epoch and keeps the last partial batch (one extra compiled
shape, paid in the warm-up).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # after KERAS_BACKEND: the backend is chosen at import


def make(config, x, y):
    """Returns ``train(epochs) -> loss``."""
    keras.utils.set_random_seed(0)
    sizes = config["sizes"]
    model = keras.Sequential(
        [keras.Input((sizes[0],))]
        + [keras.layers.Dense(n, activation="relu") for n in sizes[1:-1]]
        + [keras.layers.Dense(sizes[-1])]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    def train(epochs: int) -> float:
        history = model.fit(
            x,
            y,
            batch_size=config["batch_size"],
            epochs=epochs,
            shuffle=True,
            verbose=0,
        )
        return float(history.history["loss"][-1])

    return train


def runtime_info() -> dict:
    return {"keras": keras.__version__, "backend": keras.backend.backend()}
