"""The epoch's program, compiled in a background thread while the init runs.

A cold ``fit`` compiles two programs: the initialisation and the epoch. The
epoch's needs only the SHAPES of the train state (``start_states(...,
abstract=True)`` of :mod:`annjax.training.step`), so it is lowered and compiled
in one background thread while the caller compiles and runs the initialisation:
tracing holds Python's lock, XLA's compiler releases it.
``jit`` keeps the compiled program in its cache, so the first epoch's call
finds it and compiles nothing. One thread suffices: XLA's CPU compiler
already spreads each compilation over the cores.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import jax
import numpy as np

from annjax.training.epoch import COMPILED

__all__ = ["compile_ahead"]

_COMPILER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annjax-compile")


def compile_ahead(engine, ts) -> Future | None:
    """Returns the background compilation of ``engine``'s whole-epoch program.

    ``engine`` is a :class:`annjax.training.loop.Engine` whose ``keys``, like
    ``ts``, may be ``jax.ShapeDtypeStruct`` trees. None (nothing to do) under
    ``steps_per_call`` or on a mesh, whose placed inputs the abstract shapes
    do not describe. The thread compiles nothing when the caller runs under a
    thread-local JAX setting that keys compiled programs (``jax.enable_x64``,
    a dtype promotion, ...), which it would not see: the first epoch then
    compiles as before. ``jax.log_compiles`` and ``jax.explain_cache_misses``
    carry over. A failure is left to the first epoch's call, which meets it
    again and raises it.
    """
    if engine.steps_per_call is not None or engine.spec.mesh is not None:
        return None
    context = _trace_context()
    if context is None:
        return None
    args = (engine.spec, ts, engine.keys, np.int32(0), engine.hyper)
    args += (engine.x, engine.y, engine.val)
    run = COMPILED["run_epoch", engine.many]
    log = jax.config.jax_log_compiles
    explain = jax.config.jax_explain_cache_misses

    def compile_epoch() -> None:
        if _trace_context() != context:
            return
        with jax.log_compiles(log), jax.explain_cache_misses(explain):
            run.lower(*args).compile()

    return _COMPILER.submit(compile_epoch)


def _trace_context():
    """Returns JAX's thread-local settings that key its compiled programs, or
    None where this JAX version does not expose them (then nothing is
    compiled ahead)."""
    from jax._src import config

    context = getattr(config, "trace_context", None)
    return None if context is None else context()
