"""annjax.nn.tracing.primitives: what a model's forward pass computes."""

from __future__ import annotations

import flax.linen as nn
import jax

import annjax as ann
from annjax._types import Layer
from annjax.nn.tracing import primitives

CONV = "conv_general_dilated"


def test_a_flax_convolution_is_found():
    assert CONV in primitives(ann.from_flax(nn.Conv(4, (3, 3))), (6, 6, 2))


def test_an_mlp_has_matmuls_and_no_convolution():
    found = primitives(ann.mlp([8, 2], batch_norm=True, dropout=0.1), (3,))
    assert "dot_general" in found
    assert CONV not in found


def test_a_convolution_nested_in_jit_and_scan_is_found():
    conv = ann.from_flax(nn.Conv(2, (3, 3)))

    def apply(params, state, x, *, key=None, train=False):
        def body(h, _):
            return jax.jit(lambda h: conv.apply(params, state, h)[0])(h), None

        return jax.lax.scan(body, x, None, length=2)[0], state

    nested = Layer(conv.init, apply, "nested", None, None)
    assert CONV in primitives(nested, (5, 5, 2))


def test_a_model_that_cannot_be_traced_gives_the_empty_set():
    def init(key, shape):
        raise ValueError("no")

    broken = Layer(init, lambda *a, **k: None, "broken", None, None)
    assert primitives(broken, (3,)) == frozenset()
