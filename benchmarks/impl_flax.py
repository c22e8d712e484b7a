"""Flax with optax, written the way the Flax documentation trains an MLP.

A jitted train step called once per batch; batches are cut from a NumPy
permutation on the host (as the Flax examples do), the last partial batch
dropped.

* ``make_linen``: ``flax.linen`` with ``flax.training.train_state.TrainState``.
* ``make_nnx``: ``flax.nnx`` with ``nnx.Optimizer`` and ``nnx.jit``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import numpy as np
import optax
from flax import linen, nnx
from flax.training import train_state


class LinenMLP(linen.Module):
    sizes: Sequence[int]

    @linen.compact
    def __call__(self, x):
        for width in self.sizes[:-1]:
            x = linen.relu(linen.Dense(width)(x))
        return linen.Dense(self.sizes[-1])(x)


def _batches(rng, x, y, batch):
    perm = rng.permutation(x.shape[0])
    for i in range(x.shape[0] // batch):
        idx = perm[i * batch : (i + 1) * batch]
        yield x[idx], y[idx]


def make_linen(config, x, y):
    """Returns ``train(epochs) -> loss`` for a linen model."""
    model = LinenMLP(tuple(config["sizes"][1:]))
    params = model.init(jax.random.key(0), x[:1])["params"]
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.adam(config["learning_rate"])
    )

    @jax.jit
    def train_step(state, xb, yb):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    rng = np.random.default_rng(1)
    holder = {"state": state}

    def train(epochs: int) -> float:
        state = holder["state"]
        for _ in range(epochs):
            for xb, yb in _batches(rng, x, y, config["batch_size"]):
                state, loss = train_step(state, xb, yb)
        holder["state"] = jax.block_until_ready(state)
        return float(loss)

    return train


def make_nnx(config, x, y):
    """Returns ``train(epochs) -> loss`` for an nnx model."""
    sizes = config["sizes"]
    rngs = nnx.Rngs(0)
    layers = []
    for m, n in itertools.pairwise(sizes[:-1]):
        layers += [nnx.Linear(m, n, rngs=rngs), nnx.relu]
    model = nnx.Sequential(*layers, nnx.Linear(sizes[-2], sizes[-1], rngs=rngs))
    optimizer = nnx.Optimizer(model, optax.adam(config["learning_rate"]), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, xb, yb):
        def loss_fn(model):
            logits = model(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(1)

    def train(epochs: int) -> float:
        for _ in range(epochs):
            for xb, yb in _batches(rng, x, y, config["batch_size"]):
                loss = train_step(model, optimizer, xb, yb)
        jax.block_until_ready(nnx.state(model))
        return float(loss)

    return train


def runtime_info() -> dict:
    import flax

    return {"flax": flax.__version__, "devices": [str(d) for d in jax.devices()]}
