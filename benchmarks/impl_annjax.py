"""annjax: ``ann.fit`` as a user calls it (no validation, no progress bar).

Each timed call is a whole ``fit(epochs=E)``: checking the data, putting it on
the device, initialising the model and running E compiled epochs. The warm-up
``fit`` of the same model object, optimizer and shapes compiles everything, so
the timed calls hit the compiled-function cache and measure what a user's
second ``fit`` costs; nothing is subtracted.
"""

from __future__ import annotations

import jax

import annjax as ann


def make(
    config,
    x,
    y,
    track_gradients: bool = False,
    log_steps: bool = False,
    ema: float | None = None,
    flax: bool = False,
):
    """Returns ``train(epochs) -> loss`` running ``ann.fit`` on ``(x, y)``.

    With ``flax``, the model is the flax-linen peer's MLP (``impl_flax``)
    wrapped by ``ann.from_flax``, so ``track_gradients=True`` also measures
    the activations the bridge taps inside the module.
    """
    ann.enable_compilation_cache()  # as a user's script does (process-wide)
    if flax:
        from impl_flax import LinenMLP

        model = ann.from_flax(LinenMLP(tuple(config["sizes"][1:])))
    else:
        model = ann.mlp(list(config["sizes"][1:]), activation="relu")
    optimizer = ann.adam(config["learning_rate"])

    def train(epochs: int) -> float:
        result = ann.fit(
            model,
            (x, y),
            loss="softmax_cross_entropy",
            optimizer=optimizer,
            epochs=epochs,
            batch_size=config["batch_size"],
            track_gradients=track_gradients,
            log_steps=log_steps,
            ema=ema,
            progress=False,
        )
        jax.block_until_ready(result.params)
        return float(result.history["loss"][-1])

    return train


def runtime_info() -> dict:
    return {"annjax": ann.__version__, "devices": [str(d) for d in jax.devices()]}
