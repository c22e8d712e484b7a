"""Equinox with optax, as its documentation trains an MLP.

``eqx.nn.MLP`` (vmapped over the batch), ``eqx.filter_jit`` step called once
per batch, batches cut from a NumPy permutation, the last partial one dropped.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import optax


def make(config, x, y):
    """Returns ``train(epochs) -> loss``."""
    sizes = config["sizes"]
    widths = set(sizes[1:-1])
    if len(widths) != 1:
        raise ValueError(f"eqx.nn.MLP needs equal hidden widths, got {sizes}.")
    model = eqx.nn.MLP(
        sizes[0],
        sizes[-1],
        width_size=sizes[1],
        depth=len(sizes) - 2,
        activation=jax.nn.relu,
        key=jax.random.key(0),
    )
    optimizer = optax.adam(config["learning_rate"])
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))

    def loss_fn(model, xb, yb):
        logits = jax.vmap(model)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @eqx.filter_jit
    def step(model, opt_state, xb, yb):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, xb, yb)
        updates, opt_state = optimizer.update(
            grads, opt_state, eqx.filter(model, eqx.is_array)
        )
        return eqx.apply_updates(model, updates), opt_state, loss

    rng = np.random.default_rng(1)
    batch, steps = config["batch_size"], x.shape[0] // config["batch_size"]
    holder = {"model": model, "opt": opt_state}

    def train(epochs: int) -> float:
        model, opt_state = holder["model"], holder["opt"]
        for _ in range(epochs):
            perm = rng.permutation(x.shape[0])
            for i in range(steps):
                idx = perm[i * batch : (i + 1) * batch]
                model, opt_state, loss = step(model, opt_state, x[idx], y[idx])
        holder.update(model=model, opt=opt_state)
        jax.block_until_ready(eqx.filter(model, eqx.is_array))
        return float(loss)

    return train


def runtime_info() -> dict:
    return {"equinox": eqx.__version__, "devices": [str(d) for d in jax.devices()]}
