"""Hand-written JAX + optax: the loops a JAX expert writes for this MLP.

Both keep the data on the device, draw the epoch's permutation on the device
and gather each batch inside the compiled code; both drop the last partial
batch (every step has one shape).

* ``make_loop``: one ``jax.jit`` call per step, driven from Python.
* ``make_scan``: one ``jax.jit`` call per epoch, ``lax.scan`` over the steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


def init_mlp(key, sizes):
    """Returns ``[(w, b), …]`` with w of shape (in, out), He-normal, b zero."""
    he = jax.nn.initializers.he_normal()
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (he(k, (m, n), jnp.float32), jnp.zeros((n,), jnp.float32))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp_logits(params, x):
    """Returns the logits of a ReLU MLP; the last layer is linear."""
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def mean_cross_entropy(params, x, y):
    logits = mlp_logits(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def adam_step(optimizer):
    """Returns ``step(params, opt_state, x, y) -> (params, opt_state, loss)``."""

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(mean_cross_entropy)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _setup(config, x, y):
    optimizer = optax.adam(config["learning_rate"])
    # One jitted init: one compilation instead of one per random draw.
    params = jax.jit(init_mlp, static_argnums=1)(
        jax.random.key(0), tuple(config["sizes"])
    )
    data = (jnp.asarray(x), jnp.asarray(y))
    steps = x.shape[0] // config["batch_size"]
    return optimizer, params, optimizer.init(params), data, steps


def make_loop(config, x, y):
    """Returns ``train(epochs) -> loss``: a jitted step called once per batch."""
    optimizer, params, opt_state, (xd, yd), steps = _setup(config, x, y)
    batch, n = config["batch_size"], x.shape[0]
    step = adam_step(optimizer)
    permutation = jax.jit(lambda key: jax.random.permutation(key, n))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step_at(params, opt_state, xd, yd, perm, i):
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
        return step(params, opt_state, xd[idx], yd[idx])

    state = {"params": params, "opt": opt_state, "key": jax.random.key(1)}

    def train(epochs: int) -> float:
        p, o, key = state["params"], state["opt"], state["key"]
        for _ in range(epochs):
            key, sub = jax.random.split(key)
            perm = permutation(sub)
            for i in range(steps):
                p, o, loss = step_at(p, o, xd, yd, perm, i)
        state.update(params=p, opt=o, key=key)
        jax.block_until_ready((p, o))
        return float(loss)

    return train


def make_scan(config, x, y):
    """Returns ``train(epochs) -> loss``: one jitted ``lax.scan`` per epoch."""
    optimizer, params, opt_state, (xd, yd), steps = _setup(config, x, y)
    batch, n = config["batch_size"], x.shape[0]
    step = adam_step(optimizer)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def epoch(params, opt_state, key, xd, yd):
        perm = jax.random.permutation(key, n)[: steps * batch].reshape(steps, batch)

        def body(carry, idx):
            p, o, loss = step(*carry, xd[idx], yd[idx])
            return (p, o), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), perm)
        return params, opt_state, losses[-1]

    state = {"params": params, "opt": opt_state, "key": jax.random.key(1)}

    def train(epochs: int) -> float:
        p, o, key = state["params"], state["opt"], state["key"]
        for _ in range(epochs):
            key, sub = jax.random.split(key)
            p, o, loss = epoch(p, o, sub, xd, yd)
        state.update(params=p, opt=o, key=key)
        jax.block_until_ready((p, o))
        return float(loss)

    return train


def runtime_info() -> dict:
    return {"devices": [str(d) for d in jax.devices()]}
