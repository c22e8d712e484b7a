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


def make(config, x, y, track_gradients: bool = False, log_steps: bool = False):
    """Returns ``train(epochs) -> loss`` running ``ann.fit`` on ``(x, y)``."""
    ann.enable_compilation_cache()  # as a user's script does (process-wide)
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
            progress=False,
        )
        jax.block_until_ready(result.params)
        return float(result.history["loss"][-1])

    return train


def runtime_info() -> dict:
    return {"annjax": ann.__version__, "devices": [str(d) for d in jax.devices()]}
