"""CNN epochs on a CPU: one ``lax.scan`` per epoch against one call per step.

Trains the 14-layer plain CNN and ResNet of ``examples/residual_mnist.py``
for 2 epochs on 1,024 MNIST images, once with ``steps_per_call=None`` (the
epoch as one compiled ``lax.scan``) and once with ``steps_per_call=1`` (one
compiled call per step; the same results), and prints the wall time of each
(compilation included) and that both give the same accuracy. Needs MNIST under
``$ANNJAX_DATA_DIR``.

Run (on a quiet machine):
  ANNJAX_DATA_DIR=shared/datasets python benchmarks/conv_steps_per_call.py
"""

from __future__ import annotations

import time

import jax
import numpy as np

import annjax as ann


def main(n: int = 1024, epochs: int = 2) -> None:
    d = ann.datasets.load_mnist(None, "test", download=False)
    x = (d.X.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)[:n]
    y = d.y[:n]
    augment = ann.augment.random_crop(28, padding=2)
    models = {
        "plain CNN": ann.resnet(
            (8, 16), 3, residual=False, batch_norm=False, stem_stride=2
        ),
        "ResNet": ann.resnet((8, 16), 3, stem_stride=2),
    }
    for name, model in models.items():
        for steps_per_call in (None, 1):
            start = time.perf_counter()
            result = ann.fit(
                model,
                (x, y),
                optimizer=ann.sgd(0.05, momentum=0.9),
                epochs=epochs,
                batch_size=64,
                metrics=("accuracy",),
                augment=augment,
                track_gradients=True,
                steps_per_call=steps_per_call,
                progress=False,
                key=jax.random.key(0),
            )
            seconds = time.perf_counter() - start
            accuracy = result.history["accuracy"][-1]
            print(
                f"{name:10s} steps_per_call={steps_per_call!s:5s} {seconds:6.1f} s "
                f"(compilation included), last-epoch accuracy {accuracy:.3f}"
            )


if __name__ == "__main__":
    main()
