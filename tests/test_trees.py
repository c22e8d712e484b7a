"""annjax.training.trees: whole-tree copy, per-model select and slice, each
one compiled program, and the in-memory epoch's chunks compiling once."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from conftest import compiles

import annjax as ann
from annjax.training import trees
from annjax.training.epoch import Plan


def _tree():
    return {
        "w": jnp.arange(12.0).reshape(3, 4),
        "b": jnp.arange(3, dtype=jnp.int32),
        "key": jax.random.split(jax.random.key(0), 3),
        "none": None,
    }


def _pointer(a):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a = jax.random.key_data(a)
    return a.unsafe_buffer_pointer()


def test_copy_equals_the_tree_in_fresh_buffers():
    tree = _tree()
    out = trees.copy(tree)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(tree)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(tree), leaves(out), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
        assert _pointer(a) != _pointer(b)


def test_copy_survives_donating_the_original():
    tree = {"w": jnp.ones((4, 4))}
    kept = trees.copy(tree)
    jax.jit(lambda t: jax.tree_util.tree_map(lambda a: a * 0, t), donate_argnums=0)(
        tree
    )
    np.testing.assert_array_equal(kept["w"], np.ones((4, 4)))


def test_where_picks_each_models_rows():
    new, old = _tree(), jax.tree_util.tree_map(lambda a: a, _tree())
    old = {**old, "w": -old["w"], "b": -old["b"]}
    mask = np.array([True, False, True])
    out = trees.where(jnp.asarray(mask), new, old)
    np.testing.assert_array_equal(
        out["w"], np.where(mask[:, None], np.asarray(new["w"]), np.asarray(old["w"]))
    )
    np.testing.assert_array_equal(out["b"], np.where(mask, new["b"], old["b"]))


def test_take_equals_slicing_along_either_axis_with_one_program():
    plan = Plan(
        jnp.arange(2 * 7 * 3).reshape(2, 7, 3),
        jnp.ones((2, 7, 3)),
        jax.random.split(jax.random.key(1), (2, 7)),
    )
    for axis in (0, 1):
        trees.take(plan, 0, size=2, axis=axis)  # compiles once per axis
        for start in range(plan.idx.shape[axis] - 1):
            assert compiles(functools.partial(_take, plan, start, axis)) == 0
            got = _take(plan, start, axis)
            want = Plan(
                *(jax.lax.slice_in_dim(a, start, start + 2, axis=axis) for a in plan)
            )
            np.testing.assert_array_equal(got.idx, want.idx)
            np.testing.assert_array_equal(
                jax.random.key_data(got.keys), jax.random.key_data(want.keys)
            )


def _take(plan, start, axis):
    return trees.take(plan, start, size=2, axis=axis)


def test_an_in_memory_epoch_compiles_the_same_programs_for_any_number_of_chunks():
    def fit(rows: int):
        rng = np.random.default_rng(rows)
        x = rng.normal(size=(rows, 5)).astype(np.float32)
        y = (np.arange(rows) % 3).astype(np.int32)
        ann.fit(
            ann.mlp([8, 3], activation="relu"),
            (x, y),
            epochs=1,
            batch_size=8,
            steps_per_call=2,
            progress=False,
            key=jax.random.key(0),
        )

    # Counted from empty caches (JAX's in memory, and no persistent cache), so
    # that no program an earlier test compiled goes uncounted: 8 and 16
    # chunks compile the same programs, never one per chunk (before: three
    # slices compiled per chunk).
    persistent = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        jax.clear_caches()
        eight = compiles(lambda: fit(128))
        jax.clear_caches()
        sixteen = compiles(lambda: fit(256))
    finally:
        jax.config.update("jax_enable_compilation_cache", persistent)
    assert eight == sixteen
