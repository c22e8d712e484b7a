"""Tests of annjax.perceptron: scalar and vector forms, the delta rule, Rosenblatt."""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from annjax import activations, perceptron

# Implicit int → float or float32 → float64 promotions fail loudly here.
pytestmark = pytest.mark.usefixtures("strict_promotion")

GATES = {
    "and": lambda bits: all(bits),
    "or": lambda bits: any(bits),
    "xor": lambda bits: sum(bits) % 2 == 1,
}


def truth_table(gate: str, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the 2ⁿ input rows (in binary order) and the gate's 0/1 outputs."""
    X = np.array(list(itertools.product([0, 1], repeat=n_inputs)), np.float32)
    y = np.array([GATES[gate](row) for row in X.astype(bool)], np.float32)
    return X, y


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- #
# neuron and layer.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("f", ["sigmoid", "tanh", "relu", "heaviside", "sign"])
def test_neuron_is_the_scalar_formula(f, rng):
    w = rng.normal(size=5).astype(np.float32)
    x = rng.normal(size=5).astype(np.float32)
    b = 0.3
    z = sum(w[i] * x[i] for i in range(5)) + b  # Σᵢ wᵢ xᵢ + b
    got = perceptron.neuron(w, x, f, b)
    assert got.shape == ()
    np.testing.assert_allclose(got, activations.get(f)(z), rtol=1e-5, atol=1e-6)


def test_neuron_takes_a_batch(rng):
    w = rng.normal(size=3)
    X = rng.normal(size=(7, 3))
    got = perceptron.neuron(w, X, "sigmoid", -0.2)
    assert got.shape == (7,)
    expected = [perceptron.neuron(w, x, "sigmoid", -0.2) for x in X]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("f", ["identity", "sigmoid", "relu", "heaviside"])
@pytest.mark.parametrize("batched", [False, True])
def test_layer_is_the_neuron_applied_to_each_row_of_W(f, batched, rng):
    m, n = 4, 3
    W = rng.normal(size=(m, n)).astype(np.float32)
    b = rng.normal(size=m).astype(np.float32)
    x = rng.normal(size=(6, n) if batched else n).astype(np.float32)
    vector = perceptron.layer(W, x, f, b)
    assert vector.shape == ((6, m) if batched else (m,))
    scalar = jnp.stack([perceptron.neuron(W[j], x, f, b[j]) for j in range(m)], -1)
    np.testing.assert_allclose(vector, scalar, rtol=1e-5, atol=1e-6)


def test_layer_is_the_vector_formula(rng):
    W, x, b = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=4)
    expected = np.tanh(W @ x + b)  # f(Wx + b)
    np.testing.assert_allclose(perceptron.layer(W, x, "tanh", b), expected, rtol=1e-5)


def test_layer_without_bias_and_with_a_callable(rng):
    W, X = rng.normal(size=(2, 3)), rng.normal(size=(5, 3))

    def cube(z):
        return z**3

    np.testing.assert_allclose(
        perceptron.layer(W, X, cube), (X @ W.T) ** 3, rtol=1e-4, atol=1e-5
    )


def test_integer_inputs_become_floats():
    y = perceptron.layer(np.array([[1, -1]]), np.array([3, 2]), "identity")
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, [1.0])


def test_mixed_float_widths_become_the_widest(x64):
    W = jnp.ones((2, 3), jnp.float32)
    y = perceptron.layer(W, np.ones(3, np.float64), "relu", np.array([1, 2]))
    assert y.dtype == jnp.float64
    np.testing.assert_array_equal(y, [4.0, 5.0])


def test_jitted_and_plain_calls_agree(rng):
    W, X, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), rng.normal(size=4)
    plain = perceptron.layer(W, X, "sigmoid", b)
    jitted = jax.jit(perceptron.layer, static_argnames="f")(W, X, "sigmoid", b)
    np.testing.assert_allclose(jitted, plain, rtol=1e-6)
    w = W[0]
    neuron = jax.jit(lambda w, x: perceptron.neuron(w, x, "tanh"))
    np.testing.assert_allclose(neuron(w, X), perceptron.neuron(w, X, "tanh"), rtol=1e-6)


def test_layer_is_differentiable(rng):
    W, X = rng.normal(size=(2, 3)), rng.normal(size=(5, 3))
    grad = jax.grad(lambda W: perceptron.layer(W, X, "sigmoid").sum())(W)
    s = 1 / (1 + np.exp(-(X @ W.T)))
    np.testing.assert_allclose(grad, (s * (1 - s)).T @ X, rtol=1e-4)


@pytest.mark.parametrize("x_shape", [(5,), (2, 5), (2, 3, 4)])
def test_layer_shape_error_names_both_shapes(x_shape):
    W = jnp.zeros((3, 4))
    pattern = re.escape("(3, 4)") + ".*" + re.escape(str(x_shape))
    with pytest.raises(ValueError, match=pattern):
        perceptron.layer(W, jnp.zeros(x_shape), "relu")


def test_neuron_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(4,)") + ".*" + re.escape("(3,)")):
        perceptron.neuron(jnp.zeros(4), jnp.zeros(3), "relu")
    with pytest.raises(ValueError, match="w: expected a weight vector"):
        perceptron.neuron(jnp.zeros((2, 2)), jnp.zeros(2), "relu")
    with pytest.raises(ValueError, match="b: expected a scalar bias"):
        perceptron.neuron(jnp.zeros(2), jnp.zeros(2), "relu", jnp.zeros(2))


def test_layer_rejects_bad_weights_and_bias():
    with pytest.raises(ValueError, match=r"W: expected a matrix"):
        perceptron.layer(jnp.zeros(3), jnp.zeros(3), "relu")
    with pytest.raises(ValueError, match=r"b: expected a scalar or shape \(2,\)"):
        perceptron.layer(jnp.zeros((2, 3)), jnp.zeros(3), "relu", jnp.zeros(3))


@pytest.mark.parametrize(
    "call",
    [
        lambda: perceptron.neuron(["a", "b"], [1.0, 2.0], "relu"),
        lambda: perceptron.layer(np.zeros((2, 2)), np.array(["x", "y"]), "relu"),
        lambda: perceptron.delta_rule(np.zeros((1, 2)), np.zeros(1), "ab", [1], 0.1),
        lambda: perceptron.train([["a", "b"]], [1], key=jax.random.key(0)),
    ],
)
def test_non_numeric_input_is_a_type_error(call):
    with pytest.raises(TypeError, match="expected a numeric array"):
        call()


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"activation: expected one of .*relu"):
        perceptron.layer(jnp.zeros((2, 2)), jnp.zeros(2), "rectifier")


# --------------------------------------------------------------------------- #
# The delta rule.
# --------------------------------------------------------------------------- #


def _numpy_delta_rule(W, b, X, Y, lr):
    """ΔW = α (Y − Ŷ)ᵀ X, Δb = α Σᵢ (yᵢ − ŷᵢ), Ŷ = heaviside(X Wᵀ + b), in NumPy."""
    Y_hat = (X @ W.T + b >= 0).astype(np.float64)
    error = Y - Y_hat
    return W + lr * error.T @ X, b + lr * error.sum(axis=0)


@pytest.mark.parametrize("m", [1, 3])
def test_delta_rule_is_the_formula(m, rng):
    n, batch, lr = 4, 10, 0.25
    W, b = rng.normal(size=(m, n)), rng.normal(size=m)
    X = rng.normal(size=(batch, n))
    Y = rng.integers(0, 2, (batch, m)).astype(np.float64)
    W_new, b_new = perceptron.delta_rule(W, b, X, Y, lr)
    W_ref, b_ref = _numpy_delta_rule(W, b, X, Y, lr)
    assert W_new.shape == (m, n) and b_new.shape == (m,)
    np.testing.assert_allclose(W_new, W_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b_new, b_ref, rtol=1e-5, atol=1e-6)


def test_delta_rule_accepts_vector_targets_for_one_output(rng):
    W, b, X = rng.normal(size=(1, 3)), rng.normal(size=1), rng.normal(size=(8, 3))
    y = rng.integers(0, 2, 8).astype(np.float64)
    by_vector = perceptron.delta_rule(W, b, X, y, 0.1)
    by_column = perceptron.delta_rule(W, b, X, y[:, None], 0.1)
    for a, c in zip(by_vector, by_column, strict=True):
        np.testing.assert_array_equal(a, c)


def test_delta_rule_sign_convention():
    # Output too low (ŷ = 0, y = 1): the weights move towards the input.
    W, b, X = np.array([[-1.0, -1.0]]), np.array([0.0]), np.array([[1.0, 2.0]])
    W_new, b_new = perceptron.delta_rule(W, b, X, [1.0], 0.5)
    np.testing.assert_allclose(W_new, [[-0.5, 0.0]])
    np.testing.assert_allclose(b_new, [0.5])
    # A correct output leaves them alone.
    W_same, b_same = perceptron.delta_rule(W_new, b_new, X, [1.0], 0.5)
    np.testing.assert_allclose(W_same, W_new)
    np.testing.assert_allclose(b_same, b_new)


def test_delta_rule_with_identity_is_the_lms_gradient_step(rng):
    # With a linear unit, ΔW = α (Y − XWᵀ − b)ᵀ X is −α ∂/∂W of ½ Σ (y − ŷ)².
    W, b, X = rng.normal(size=(2, 3)), rng.normal(size=2), rng.normal(size=(6, 3))
    Y = rng.normal(size=(6, 2))

    def half_sse(params):
        W, b = params
        return 0.5 * jnp.sum((Y - (X @ W.T + b)) ** 2)

    gW, gb = jax.grad(half_sse)((W, b))
    W_new, b_new = perceptron.delta_rule(W, b, X, Y, 0.1, activation="identity")
    np.testing.assert_allclose(W_new, W - 0.1 * gW, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b_new, b - 0.1 * gb, rtol=1e-5, atol=1e-6)


def test_delta_rule_shape_errors():
    W, b = np.zeros((2, 3)), np.zeros(2)
    with pytest.raises(
        ValueError, match=re.escape("(2, 3)") + ".*" + re.escape("(5, 4)")
    ):
        perceptron.delta_rule(W, b, np.zeros((5, 4)), np.zeros((5, 2)), 0.1)
    with pytest.raises(ValueError, match=r"X: expected a batch of shape \(batch, 3\)"):
        perceptron.delta_rule(W, b, np.zeros(3), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match=r"b: expected shape \(2,\)"):
        perceptron.delta_rule(W, np.zeros(3), np.zeros((5, 3)), np.zeros((5, 2)), 0.1)
    with pytest.raises(ValueError, match=r"y: expected shape \(5, 2\), one target"):
        perceptron.delta_rule(W, b, np.zeros((5, 3)), np.zeros(5), 0.1)
    with pytest.raises(ValueError, match="lr: expected a number > 0"):
        perceptron.delta_rule(W, b, np.zeros((5, 3)), np.zeros((5, 2)), -0.1)


# --------------------------------------------------------------------------- #
# Rosenblatt's perceptron.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("gate", ["and", "or"])
@pytest.mark.parametrize("n_inputs", [2, 3])
@pytest.mark.parametrize("activation", ["heaviside", "bipolar_step", "sign"])
def test_learns_linearly_separable_gates(gate, n_inputs, activation, key):
    X, y = truth_table(gate, n_inputs)
    if activation in ("bipolar_step", "sign"):
        y = 2 * y - 1  # bipolar labels ±1
    result = perceptron.train(X, y, epochs=30, lr=0.1, key=key, activation=activation)
    assert result.W.shape == (1, n_inputs) and result.b.shape == (1,)
    assert result.accuracy.shape == (30,)
    assert float(result.accuracy[-1]) == 1.0
    predictions = perceptron.layer(result.W, X, activation, result.b)[:, 0]
    np.testing.assert_array_equal(predictions, y)


@pytest.mark.parametrize("activation", ["heaviside", "bipolar_step", "sign"])
@pytest.mark.parametrize("w_init", ["zeros", "lecture_uniform"])
def test_never_learns_xor(activation, w_init, key):
    # XOR is not linearly separable: no epoch ever classifies all four inputs.
    X, y = truth_table("xor", 2)
    if activation in ("bipolar_step", "sign"):
        y = 2 * y - 1
    result = perceptron.train(
        X, y, epochs=100, lr=0.1, key=key, activation=activation, w_init=w_init
    )
    assert bool(jnp.all(result.accuracy < 1.0))
    assert float(result.accuracy.max()) <= 0.75


def _numpy_rosenblatt(W, b, X, Y, lr, epochs):
    """The textbook loop: for each epoch, for each example in order, update."""
    accuracy = []
    for _ in range(epochs):
        for x, t in zip(X, Y, strict=True):
            y_hat = (W @ x + b >= 0).astype(np.float64)
            W = W + lr * np.outer(t - y_hat, x)
            b = b + lr * (t - y_hat)
        accuracy.append(np.mean(np.all((X @ W.T + b >= 0) == Y, axis=-1)))
    return W, b, np.array(accuracy)


def test_train_is_the_textbook_loop(key):
    # From W = 0 both runs are deterministic and must agree update for update;
    # two outputs (AND and OR) check the outer product's orientation.
    X, y_and = truth_table("and", 3)
    _, y_or = truth_table("or", 3)
    Y = np.stack([y_and, y_or], axis=-1)
    result = perceptron.train(X, Y, epochs=6, lr=0.3, w_init="zeros")
    W, b, accuracy = _numpy_rosenblatt(np.zeros((2, 3)), np.zeros(2), X, Y, 0.3, 6)
    np.testing.assert_allclose(result.W, W, atol=1e-6)
    np.testing.assert_allclose(result.b, b, atol=1e-6)
    np.testing.assert_allclose(result.accuracy, accuracy)


def test_train_uses_the_key(key):
    X, y = truth_table("or", 2)
    a = perceptron.train(X, y, epochs=1, key=key)
    b = perceptron.train(X, y, epochs=1, key=key)
    c = perceptron.train(X, y, epochs=1, key=jax.random.fold_in(key, 1))
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, c.W)


def test_train_returns_a_named_tuple(key):
    X, y = truth_table("and", 2)
    result = perceptron.train(X, y, epochs=3, key=key)
    assert isinstance(result, perceptron.PerceptronResult)
    W, b, accuracy = result
    assert W is result.W and b is result.b and accuracy is result.accuracy


def test_train_compiles_once_per_shape(key):
    X, y = truth_table("and", 2)
    perceptron.train(X, y, epochs=4, key=key)
    size = perceptron._rosenblatt._cache_size()
    perceptron.train(X, 1 - y, epochs=4, lr=0.2, key=key)  # new data and rate
    assert perceptron._rosenblatt._cache_size() == size


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"activation": "sign"},
            ValueError,
            r"y: expected labels -1 or 1 for activation='sign'",
        ),
        ({"activation": "sigmoid"}, ValueError, r"activation: expected one of"),
        ({"epochs": 0}, ValueError, r"epochs: expected an integer >= 1"),
        ({"epochs": 2.5}, TypeError, r"epochs: expected an integer"),
        ({"lr": 0.0}, ValueError, r"lr: expected a number > 0"),
        ({"w_init": "he_norml"}, ValueError, r"initializer: expected one of"),
    ],
)
def test_train_rejects_bad_arguments(kwargs, error, pattern, key):
    X, y = truth_table("and", 2)  # 0/1 labels
    with pytest.raises(error, match=pattern):
        perceptron.train(X, y, key=key, **kwargs)


def test_train_rejects_labels_outside_the_heaviside_range(key):
    X, y = truth_table("and", 2)
    with pytest.raises(
        ValueError, match=r"y: expected labels 0 or 1 for activation='heaviside'"
    ):
        perceptron.train(X, 2 * y - 1, key=key)


def test_train_needs_a_key_for_random_weights():
    X, y = truth_table("and", 2)
    with pytest.raises(
        ValueError, match=r"key: expected a jax\.random\.key.*w_init='zeros'"
    ):
        perceptron.train(X, y)


def test_train_shape_errors(key):
    X, y = truth_table("and", 2)
    with pytest.raises(ValueError, match=r"X: expected a batch of shape"):
        perceptron.train(X[0], y, key=key)
    with pytest.raises(ValueError, match=r"y: expected shape \(4, 1\) or \(4,\)"):
        perceptron.train(X, y[:3], key=key)
