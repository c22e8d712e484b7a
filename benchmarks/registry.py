"""What the benchmark runs: workloads × implementations, as plain data.

A workload says what work is done (model sizes, batch, data, how long each
measurement lasts); an implementation says who does it (a module and a
factory in ``benchmarks/``, run in a process of its own by ``worker.py``).
``run.py`` crosses the two. To add a workload (a many-models sweep, another
device) or an implementation, add an entry here and, for a new
implementation, an ``impl_*.py`` module with the factory; nothing else
changes.

This module imports no framework, so the parent process stays light and its
memory out of the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Implementation:
    """One way of doing a workload's work.

    Attributes:
      name: the name in tables, JSON and ``--only``.
      group: ``annjax``, ``hand`` (hand-written JAX), ``peer`` (another
        framework) or ``ceiling`` (the machine's GEMM speed).
      module, factory: ``impl_*.py`` module and the function that builds the
        runner (see ``worker.py`` for the protocol).
      requires: import names that must be installed; else it is skipped.
      options: keyword arguments passed to the factory.
      env: environment variables set for its process.
      quick: part of the ``--quick`` smoke run (project venv only).
    """

    name: str
    group: str
    module: str
    factory: str
    requires: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    quick: bool = False


@dataclass(frozen=True)
class Workload:
    """One piece of work, done by each of ``implementations`` in turn.

    Attributes:
      name: the name in tables, JSON and ``--only``.
      kind: ``train`` (an MLP trained with Adam), ``gemm``, ``cold`` (a
        whole program in a fresh process), ``landscape``
        (:mod:`impl_landscape`) or ``sweep`` (many models, cold then warm); it
        selects the measurement protocol in ``worker.py``.
      title: one line for the report.
      config: the full run's settings.
      quick: the settings ``--quick`` overrides.
      implementations: names from :data:`IMPLEMENTATIONS`, in report order.
      in_quick: part of the ``--quick`` smoke run unless named in ``--only``
        (every process compiles for seconds, so the smoke run stays small).
    """

    name: str
    kind: str
    title: str
    config: dict[str, Any]
    quick: dict[str, Any]
    implementations: tuple[str, ...]
    in_quick: bool = True

    def settings(self, quick: bool) -> dict[str, Any]:
        """Returns the config, with the quick overrides when ``quick``."""
        return {**self.config, **(self.quick if quick else {})}


_JAX = ("jax", "optax")
_KERAS_ENV = {"KERAS_BACKEND": "jax"}

IMPLEMENTATIONS: dict[str, Implementation] = {
    impl.name: impl
    for impl in (
        Implementation(
            "annjax", "annjax", "impl_annjax", "make", ("annjax",), quick=True
        ),
        Implementation(
            "annjax-track",
            "annjax",
            "impl_annjax",
            "make",
            ("annjax",),
            options={"track_gradients": True},
            quick=True,
        ),
        Implementation(
            "annjax-steps",
            "annjax",
            "impl_annjax",
            "make",
            ("annjax",),
            options={"log_steps": True},
            quick=True,
        ),
        Implementation(
            "annjax-ema",
            "annjax",
            "impl_annjax",
            "make",
            ("annjax",),
            options={"ema": 0.999},
        ),
        Implementation(
            "annjax-flax",
            "annjax",
            "impl_annjax",
            "make",
            ("annjax", "flax"),
            options={"flax": True},
        ),
        Implementation(
            "annjax-flax-track",
            "annjax",
            "impl_annjax",
            "make",
            ("annjax", "flax"),
            options={"flax": True, "track_gradients": True},
        ),
        Implementation("jax-scan", "hand", "impl_jax", "make_scan", _JAX, quick=True),
        Implementation("jax-loop", "hand", "impl_jax", "make_loop", _JAX, quick=True),
        Implementation(
            "flax-linen", "peer", "impl_flax", "make_linen", ("flax", *_JAX), quick=True
        ),
        Implementation("flax-nnx", "peer", "impl_flax", "make_nnx", ("flax", *_JAX)),
        Implementation("equinox", "peer", "impl_equinox", "make", ("equinox", *_JAX)),
        Implementation("torch", "peer", "impl_torch", "make", ("torch",)),
        Implementation(
            "keras", "peer", "impl_keras", "make", ("keras", "jax"), env=_KERAS_ENV
        ),
        Implementation(
            "annjax-cold",
            "annjax",
            "impl_cold",
            "run_annjax",
            ("annjax", "sklearn"),
            options={"cache": "empty"},
            quick=True,
        ),
        Implementation(
            "annjax-warm",
            "annjax",
            "impl_cold",
            "run_annjax",
            ("annjax", "sklearn"),
            options={"cache": "warm"},
            quick=True,
        ),
        Implementation(
            "jax-cold", "hand", "impl_cold", "run_jax", (*_JAX, "sklearn"), quick=True
        ),
        Implementation(
            "keras-cold",
            "peer",
            "impl_cold",
            "run_keras",
            ("keras", "jax", "sklearn"),
            env=_KERAS_ENV,
        ),
        Implementation(
            "annjax-landscape",
            "annjax",
            "impl_landscape",
            "make_annjax",
            ("annjax",),
            quick=True,
        ),
        Implementation(
            "torch-landscape",
            "peer",
            "impl_landscape",
            "make_torch",
            ("torch", "loss_landscapes", "pyhessian"),
        ),
        Implementation(
            "annjax-many",
            "annjax",
            "impl_sweep",
            "run_annjax_many",
            ("annjax", "sklearn"),
            quick=True,
        ),
        Implementation(
            "annjax-loop",
            "annjax",
            "impl_sweep",
            "run_annjax_loop",
            ("annjax", "sklearn"),
            quick=True,
        ),
        Implementation(
            "flax-loop",
            "peer",
            "impl_sweep",
            "run_flax",
            ("flax", *_JAX, "sklearn"),
            quick=True,
        ),
        Implementation(
            "keras-loop",
            "peer",
            "impl_sweep",
            "run_keras",
            ("keras", "jax", "sklearn"),
            env=_KERAS_ENV,
        ),
        Implementation(
            "numpy-gemm", "ceiling", "impl_gemm", "make_numpy", ("numpy",), quick=True
        ),
        Implementation(
            "jnp-gemm", "ceiling", "impl_gemm", "make_jnp", ("jax",), quick=True
        ),
    )
}

_W1 = {
    "sizes": (784, 256, 256, 10),
    "batch_size": 128,
    "n_samples": 60_000,
    "data": "synthetic",
    "learning_rate": 1e-3,
    # fit's per-call work (checking X, copying it to the device, init) is
    # amortised over the epochs of one call, as in real use.
    "epochs_per_repeat": 5,
    "repeats": 5,
}
_W1_QUICK = {"n_samples": 1024, "epochs_per_repeat": 1, "repeats": 2}

_TRAINERS = (
    "annjax",
    "jax-scan",
    "jax-loop",
    "flax-linen",
    "flax-nnx",
    "equinox",
    "torch",
    "keras",
)

#: 8 learning rates, log-spaced from 1e-4 to 1e-2.
_LOG_RATES = tuple(round(10 ** (-4 + 2 * i / 7), 8) for i in range(8))
_SWEEPERS = ("annjax-many", "annjax-loop", "flax-loop", "keras-loop")

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "w1",
            "train",
            "W1: 784-256-256-10 ReLU MLP, Adam(1e-3), batch 128, 60,000 synthetic "
            "samples",
            _W1,
            _W1_QUICK,
            _TRAINERS,
        ),
        Workload(
            "w2",
            "train",
            "W2: 64-32-32-10 ReLU MLP, Adam(1e-3), batch 32, the digits data "
            "(1,797 samples)",
            {
                "sizes": (64, 32, 32, 10),
                "batch_size": 32,
                "n_samples": 1797,
                "data": "digits",
                "learning_rate": 1e-3,
                "epochs_per_repeat": 50,
                "repeats": 5,
            },
            {"n_samples": 256, "epochs_per_repeat": 2, "repeats": 2},
            _TRAINERS,
            in_quick=False,  # the same code paths as w1, at other sizes
        ),
        Workload(
            "track",
            "train",
            "Gradient tracking: W1 with fit(track_gradients=True) against False",
            _W1,
            _W1_QUICK,
            ("annjax", "annjax-track"),
        ),
        Workload(
            "steps",
            "train",
            "Per-step losses: W1 with fit(log_steps=True) against False",
            _W1,
            _W1_QUICK,
            ("annjax", "annjax-steps"),
        ),
        Workload(
            "ema",
            "train",
            "Moving average of the params: W1 with fit(ema=0.999) against without",
            _W1,
            _W1_QUICK,
            ("annjax", "annjax-ema"),
            in_quick=False,  # w1's code path plus one tree update per step
        ),
        Workload(
            "flax-track",
            "train",
            "The profiler inside a flax model: W1's MLP as a flax.linen module "
            "through ann.from_flax, fit(track_gradients=True) against False "
            "(annjax's own MLP alongside)",
            _W1,
            _W1_QUICK,
            ("annjax", "annjax-track", "annjax-flax", "annjax-flax-track"),
            in_quick=False,  # two more processes of w1's size
        ),
        Workload(
            "cold",
            "cold",
            "Cold start: the compare-models exercise (no hidden layer; 3 hidden "
            "layers of 64 tanh, ReLU, linear units) × 5 seeds × 30 epochs, "
            "Adam(1e-3), batch 32, digits 80/20; wall time of a fresh process",
            {
                "architectures": ("none", "tanh", "relu", "linear"),
                "hidden": 64,
                "seeds": 5,
                "epochs": 30,
                "batch_size": 32,
                "learning_rate": 1e-3,
                "val": 0.2,
            },
            {"architectures": ("none", "relu"), "seeds": 2, "epochs": 2},
            ("annjax-cold", "annjax-warm", "jax-cold", "keras-cold"),
        ),
        Workload(
            "landscape",
            "landscape",
            "Loss landscape and curvature: a 41×41 filter-normalised slice and "
            "λ_max by 100 power iterations, 64-32-32-10 ReLU MLP, digits (1,797)",
            {
                "sizes": (64, 32, 32, 10),
                "n_samples": 1797,
                "data": "digits",
                "resolution": 41,
                "span": 1.0,
                "chunk": 64,
                "iterations": 100,
                "repeats": 3,
            },
            {"n_samples": 256, "resolution": 9, "iterations": 10, "repeats": 1},
            ("annjax-landscape", "torch-landscape"),
            in_quick=False,  # its peer needs torch; run it with --only landscape
        ),
        Workload(
            "sweep",
            "sweep",
            "Sweep: 8 Adam learning rates (1e-4 … 1e-2) of the W2 MLP, batch 32, "
            "digits 80/20, 20 epochs, validation accuracy every epoch; a fresh "
            "process, cold then warm",
            {
                "model": "mlp",
                "sizes": (64, 32, 32, 10),
                "learning_rates": _LOG_RATES,
                "epochs": 20,
                "batch_size": 32,
                "val": 0.2,
            },
            {"learning_rates": (1e-3, 3e-3), "epochs": 2},
            _SWEEPERS,
            in_quick=False,  # seconds of compiling per process, twice
        ),
        Workload(
            "sweep-cnn",
            "sweep",
            "Sweep: 4 seeds of a small CNN (conv32-BN-pool-conv64-BN-pool-dense128), "
            "Adam(1e-3), batch 64, 2,048 synthetic 28×28×1 images 80/20, 2 epochs; "
            "a fresh process, cold then warm",
            {
                "model": "cnn",
                "seeds": 4,
                "learning_rate": 1e-3,
                "n_samples": 2048,
                "epochs": 2,
                "batch_size": 64,
                "val": 0.2,
            },
            {"seeds": 2, "n_samples": 256, "epochs": 1},
            _SWEEPERS,
            in_quick=False,
        ),
        Workload(
            "gemm",
            "gemm",
            "float32 GEMM C = A·B, 2048³, the machine's ceiling",
            {"n": 2048, "repeats": 7},
            {"n": 256, "repeats": 2},
            ("numpy-gemm", "jnp-gemm"),
        ),
    )
}

#: Groups whose implementations count as peers in the "× best peer" column.
PEER_GROUP = "peer"
#: The reference of the "× scan" column.
REFERENCE = "jax-scan"
