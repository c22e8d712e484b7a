r"""The pure training and evaluation steps, and the train state they carry.

The step is a pure function of ``(train_state, batch, key)``; everything else
(the compiled epoch of :mod:`annjax.training.epoch`, many models at once with
``jax.vmap``, a mesh of devices) reuses it unchanged. Users who write their
own loop take :func:`make_train_step` and :func:`make_eval_step` and jit them
as they like.

The train step, for a batch (x, y) with weights w and params θ:

.. math::

   L(θ) = \frac{Σ_i w_i\,ℓ(y_i, f_θ(x_i))}{Σ_i w_i} + λ_1 Σ|W| + λ_2 Σ W^2,
   \qquad θ ← θ + \mathrm{optimizer}(∇_θ L)

Examples:
  >>> import jax, numpy as np, annjax as ann
  >>> X = np.random.default_rng(0).normal(size=(32, 4)).astype("f4")
  >>> y = (X[:, 0] > 0).astype("i4")
  >>> model, opt = ann.mlp([8, 2]), ann.adam(1e-2)
  >>> ts, out_shape = ann.init_train_state(model, opt, jax.random.key(0), (4,))
  >>> step = jax.jit(ann.make_train_step(model, "softmax_cross_entropy", opt))
  >>> for i in range(0, 32, 8):
  ...     ts, logs = step(ts, (X[i : i + 8], y[i : i + 8]), jax.random.key(i))
  >>> out_shape, int(ts.step)
  ((2,), 4)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax import optim as _optim
from annjax import regularizers as _regularizers
from annjax._types import Array, Key, Layer, Shape, init_result, weights_kwarg
from annjax.training import measure as _profiler
from annjax.training import mesh as _mesh
from annjax.training.types import TrainState

__all__ = [
    "TrainState",
    "init_train_state",
    "make_eval_step",
    "make_train_step",
]


def init_train_state(
    model: Layer,
    optimizer: optax.GradientTransformation,
    key: Key,
    input_shape: Shape,
    *,
    dtype=None,
) -> tuple[TrainState, Shape]:
    """Returns a fresh ``TrainState`` and the model's output shape (one example).

    The params, state and optimizer state are made by ONE compiled call,
    cached per (model, optimizer, input shape): equal models (equal
    ``Layer.identity``) and equal optimizers (memoised by :mod:`annjax.optim`)
    share it, so a second ``fit`` compiles nothing for its initialisation.
    ``dtype`` (e.g. float64 for float64 data under x64) recasts the float32
    params and state; other dtypes (a layer's own ``param_dtype``) are kept.
    """
    shape = tuple(input_shape)
    impl = jax.random.key_impl(key)
    start = _jitted_start(model, optimizer, shape, impl, False, _dtype(dtype))
    ts, _ = start(jax.random.key_data(key))
    return ts, output_shape(model, shape)


def start_states(
    model: Layer,
    optimizer: optax.GradientTransformation,
    keys: Key,
    input_shape,
    *,
    dtype=None,
) -> tuple[TrainState, Key]:
    """Returns ``fit``'s initial train state and training key for each key.

    For a key k: ``init_key, train_key = split(k)``, the train state is
    initialised from ``init_key``. ``keys`` of shape () gives one model; of
    shape (models,) a leading model axis on both results. Every model runs the
    same compiled call (no ``vmap``: a vmapped init would compile a program of
    its own, slower to compile than the plain one); the states are stacked on
    the host.
    """
    impl = jax.random.key_impl(keys)
    start = _jitted_start(
        model, optimizer, tuple(input_shape), impl, True, _dtype(dtype)
    )
    raw = np.asarray(jax.random.key_data(keys))
    if raw.ndim == 1:
        ts, train = start(raw)
        return ts, jax.random.wrap_key_data(train, impl=impl)
    parts = jax.device_get([start(r) for r in raw])
    ts, train = jax.tree_util.tree_map(lambda *a: np.stack(a), *parts)
    ts = jax.device_put(ts)
    return ts, jax.random.wrap_key_data(train, impl=impl)


def _dtype(dtype):
    """Returns ``dtype`` as a hashable NumPy dtype, or None."""
    return None if dtype is None else np.dtype(dtype)


#: XLA options of the compiled initialisation: it runs once, so the speed of
#: its code does not matter; level 0 compiles it about twice as fast on CPU.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=64)
def _jitted_start(
    model: Layer, optimizer, input_shape: Shape, impl, split: bool, dtype
) -> Callable:
    """Returns ``raw key → (train_state, raw train key)``, jitted.

    With ``split``, the key is first split into (init key, train key) as
    ``fit`` does; without, it is the init key (and comes back unchanged).
    Cached per (model, optimizer, shape, key implementation, split); equal
    models and optimizers share the entry and its one compiled program.
    """

    def start(raw):
        key = jax.random.wrap_key_data(raw, impl=impl)
        init_key, train_key = jax.random.split(key) if split else (key, key)
        _, params, state = model.init(init_key, input_shape)
        if dtype is not None:  # float32 → the data's float64 (under x64)
            params, state = jax.tree_util.tree_map(
                lambda a: a.astype(dtype) if a.dtype == jnp.float32 else a,
                (params, state),
            )
        opt_state = optimizer.init(params)
        ts = TrainState(params, state, opt_state, jnp.zeros((), jnp.int32))
        return ts, jax.random.key_data(train_key)

    return jax.jit(start, compiler_options=_INIT_COMPILER_OPTIONS)


@functools.lru_cache(maxsize=256)
def abstract_init(model: Layer, input_shape: Shape):
    """Returns ``(output_shape, params, state)`` of ``model.init`` as shapes.

    Traced abstractly (``jax.eval_shape``): nothing compiles; params and
    state come back as ``jax.ShapeDtypeStruct`` trees.
    """
    shapes = []

    def trace(key):
        out = init_result(f"model {model.kind}", model.init(key, tuple(input_shape)))
        out_shape, params, state = out
        shapes.append(tuple(int(d) for d in out_shape))  # static, read at trace
        return params, state

    params, state = jax.eval_shape(trace, jax.random.key(0))
    return shapes[0], params, state


def output_shape(model: Layer, input_shape: Shape) -> Shape:
    """Returns the model's output shape for one example of ``input_shape``."""
    return abstract_init(model, tuple(input_shape))[0]


def weighted_mean(values: Array, weight: Array) -> Array:
    """Returns Σ wᵢ vᵢ / Σ wᵢ (0 when every weight is 0).

    Any non-negative weights: 0/1 padding, bootstrap counts, class weights.
    """
    total = jnp.sum(weight)
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, jnp.sum(values * weight) / safe, 0.0)


def default_optimizer() -> optax.GradientTransformation:
    """Returns the optimizer used when none is given: ``ann.sgd(0.01)``."""
    return _optim.sgd(0.01)


def metric_input(loss: str | Callable) -> Callable[[Array], Array]:
    """Returns the map from model outputs to what the metrics read.

    A model trained with ``sigmoid_binary_cross_entropy`` outputs logits; the
    metrics threshold probabilities at 0.5, so they see σ(z). Softmax logits
    need nothing (argmax is the same), nor do other losses.
    """
    if _losses.name_of(loss) == "sigmoid_binary_cross_entropy":
        return jax.nn.sigmoid
    return lambda pred: pred


def _active(strength) -> bool:
    """Returns whether a penalty strength is present (traced values always are)."""
    return strength is not None and not (
        isinstance(strength, float | int) and strength == 0
    )


def _metric_logger(loss, metrics) -> Callable:
    """Returns ``log(y, pred, w)``: the statistics of each registered metric
    under ``stats``; with custom metric functions, also ``y`` and the metric
    input ``pred`` (the epoch gives those functions all predictions at once)."""
    streams = {_metrics.name_of(m): _metrics.streaming_of(m) for m in metrics}
    custom = any(s is None for s in streams.values())
    to_metric = metric_input(loss)

    def log(y, pred, w):
        m_pred = to_metric(pred)
        out = {
            "stats": {name: s.stats(y, m_pred, w) for name, s in streams.items() if s}
        }
        if custom:
            out["y"], out["pred"] = y, m_pred
        return out

    return log


def train_step_with_stats(
    model: Layer,
    loss: str | Callable,
    optimizer: optax.GradientTransformation,
    *,
    metrics: Sequence[str | Callable] = (),
    l1=None,
    l2=None,
    track_gradients: bool = False,
    augment: Callable | None = None,
    frozen: tuple[str, ...] = (),
    ema=None,
    skip_empty: bool = False,
    lr_scale=None,
) -> Callable:
    """Returns the step behind :func:`make_train_step`, logging statistics.

    Its logs hold ``loss`` and ``weight`` as :func:`make_train_step`'s, the
    summable statistics of every registered metric under ``stats`` (see
    :func:`annjax.metrics.streaming`), and, for custom metric functions, the
    batch's ``y`` and metric input ``pred``; the compiled epoch combines them
    into the epoch's exact metrics. With ``skip_empty`` (example weights), a
    batch of total weight 0 leaves the train state as it was: no optimizer
    step (Adam's moments would move the params without a gradient), no step
    count, so a model trained on m of n examples takes only its own steps.
    ``lr_scale`` (an array, or None)
    multiplies the optimizer's updates: a learning rate α(t) scaled to s·α(t),
    exact for every optimizer whose update is α(t) times a direction (every
    annjax and optax optimizer with α as its last factor).
    """
    loss_fn = _losses.get(loss)
    log_metrics = _metric_logger(loss, metrics)
    update = _update_of(optimizer)

    def objective(params, state, x, y, w, key):
        # the example weights reach batch statistics: padding never counts
        if track_gradients:
            pred, new_state, probe = _profiler.probe_apply(
                model, params, state, x, key=key, train=True, weights=w
            )
        else:
            pred, new_state = model.apply(
                params, state, x, key=key, train=True, **weights_kwarg(model, w)
            )
            probe = {}
        data_loss = weighted_mean(loss_fn(y, pred, reduction="none"), w)
        total = data_loss
        mask = penalty_mask(params, frozen)
        if _active(l1):
            total = total + _regularizers.l1(params, l1, mask)
        if _active(l2):
            total = total + _regularizers.l2(params, l2, mask)
        health = _profiler.activation_stats(probe) if track_gradients else {}
        return total, (data_loss, pred, new_state, health)

    def step(ts: TrainState, batch, key: Key):
        x, y, *rest = batch
        w = rest[0] if rest else jnp.ones((x.shape[0],), jnp.float32)
        aug_key, model_key = jax.random.split(key)
        if augment is not None:
            x = augment(aug_key, x)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (total, (data_loss, pred, new_state, health)), grads = grad_fn(
            ts.params, ts.state, x, y, w, model_key
        )
        updates, opt_state = update(grads, ts.opt_state, ts.params, total)
        if lr_scale is not None:  # a swept schedule: α(t)·s, as α is the last factor
            updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
        params = optax.apply_updates(ts.params, updates)
        logs = {"loss": data_loss, "weight": jnp.sum(w), **log_metrics(y, pred, w)}
        if track_gradients:
            # the new params: reading the old ones would keep a copy alive
            logs.update(_profiler.layer_stats(grads, params, updates))
            logs.update(health)
        average = None if ts.ema is None else ema_update(ts.ema, params, ema)
        new = ts._replace(
            params=params,
            state=new_state,
            opt_state=opt_state,
            step=ts.step + 1,
            ema=average,
        )
        if skip_empty:
            live = jnp.sum(w) > 0
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), new, ts)
        return new, logs

    return step


def _update_of(optimizer: optax.GradientTransformation) -> Callable:
    """Returns ``update(grads, opt_state, params, loss)`` for ``optimizer``.

    An optimizer that reads the loss (``optax.contrib.reduce_on_plateau``;
    any ``GradientTransformationExtraArgs``, such as an ``optax.chain``, or
    an ``update`` with a ``value`` parameter) gets it as ``value=``, the
    objective the step minimises (penalties included); others are called
    without it.
    """
    takes_value = isinstance(optimizer, optax.GradientTransformationExtraArgs)
    if not takes_value:
        try:
            takes_value = "value" in inspect.signature(optimizer.update).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            takes_value = False
    if takes_value:
        return lambda g, s, p, loss: optimizer.update(g, s, p, value=loss)
    return lambda g, s, p, loss: optimizer.update(g, s, p)


def penalty_mask(params, frozen: tuple[str, ...] = ()):
    """Returns the leaves ``l1``/``l2`` penalise: the weights
    (:func:`annjax.regularizers.default_mask`) that are not ``frozen``
    (paths such as ``"dense_0/w"``)."""
    weights = _regularizers.default_mask(params)
    if not frozen:
        return weights
    return jax.tree_util.tree_map_with_path(
        lambda path, weight: weight and leaf_path(path) not in frozen, weights
    )


def leaf_path(path) -> str:
    """Returns a pytree path as annjax names it: ``"dense_0/w"``."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def ema_update(average, params, decay):
    r"""Returns the moving average after a step, ē ← d ē + (1 − d) θ.

    .. math:: \bar θ_t = d\,\bar θ_{t-1} + (1 - d)\,θ_t, \qquad \bar θ_0 = θ_0

    No bias correction (Keras' and flax's convention): the average starts at
    the initial params, not at 0.
    """
    return jax.tree_util.tree_map(
        lambda e, p: (decay * e + (1 - decay) * p).astype(e.dtype), average, params
    )


def make_train_step(
    model: Layer,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer: optax.GradientTransformation | None = None,
    *,
    metrics: Sequence[str | Callable] = (),
    l1: float | Array | None = None,
    l2: float | Array | None = None,
    track_gradients: bool = False,
    augment: Callable | None = None,
) -> Callable:
    r"""Returns ``step(train_state, batch, key) -> (train_state, logs)``, pure.

    One step of the lecture's gradient descent on the regularised objective

    .. math:: J(\theta) = \frac{\sum_i w_i L(y_i, f_\theta(x_i))}{\sum_i w_i}
              + \lambda_1 \sum |W| + \lambda_2 \sum W^2,
              \qquad \theta \leftarrow \text{optimizer}(\nabla_\theta J)

    ``batch`` is ``(x, y)`` or ``(x, y, w)`` with per-example weights ``w``
    (0 for padding, so a short last batch counts each example once). ``key``
    feeds dropout and ``augment`` (applied to ``x`` only). ``logs`` holds the
    data loss (without the penalty) as ``loss``, the batch's total weight as
    ``weight``, each metric on the training-mode outputs (names or
    ``(y_true, y_pred)`` functions, keyed by name), and, with
    ``track_gradients``, the per-layer measurements of
    :mod:`annjax.training.measure`.

    ``l1`` and ``l2`` may be traced arrays, so hyper-parameter sweeps vmap over
    them; None or a Python 0 leaves the penalty out of the compiled step.
    """
    optimizer = optimizer if optimizer is not None else default_optimizer()
    inner = train_step_with_stats(
        model,
        loss,
        optimizer,
        metrics=metrics,
        l1=l1,
        l2=l2,
        track_gradients=track_gradients,
        augment=augment,
    )
    fns = {
        _metrics.name_of(m): (_metrics.get(m), _metrics.streaming_of(m))
        for m in metrics
    }

    def step(ts: TrainState, batch, key: Key):
        ts, logs = inner(ts, batch, key)
        stats = logs.pop("stats")
        y, pred = logs.pop("y", None), logs.pop("pred", None)
        for name, (fn, s) in fns.items():
            logs[name] = fn(y, pred) if s is None else s.finish(stats[name])
        return ts, logs

    return step


def make_eval_step(
    model: Layer,
    loss: str | Callable = "softmax_cross_entropy",
    *,
    metrics: Sequence[str | Callable] = (),
) -> Callable:
    """Returns ``eval_step(params, state, batch) -> logs``: loss and metrics, pure.

    The model runs in evaluation mode (no dropout, running batch-norm
    statistics); ``logs`` holds ``loss`` and each metric over the whole batch.
    """

    def eval_step(params, state, batch):
        x, y = batch[0], batch[1]
        pred, _ = model.apply(params, state, x, train=False)
        return losses_and_metrics(loss, metrics, y, pred)

    return eval_step


def losses_and_metrics(loss, metrics, y, pred, w=None) -> dict[str, Array]:
    """Returns the mean ``loss`` and every metric of predictions ``pred`` on ``y``.

    With example weights ``w`` (n,), the loss is Σ wᵢ ℓᵢ / Σ wᵢ and every
    metric gets ``sample_weight=w`` (scikit-learn's weighted metrics).
    """
    if w is None:
        out = {"loss": _losses.get(loss)(y, pred)}
    else:
        out = {"loss": weighted_mean(_losses.get(loss)(y, pred, reduction="none"), w)}
    m_pred = metric_input(loss)(pred)
    weight = {} if w is None else {"sample_weight": w}
    for m in metrics:
        out[_metrics.name_of(m)] = _metrics.get(m)(y, m_pred, **weight)
    return out


# ------------------------------------------------ a whole data set, batched
# Shared by the compiled epoch's validation pass and by evaluate/predict, so
# val_loss in the history and evaluate on the same data agree. On a mesh with
# a "data" axis every batch is split over its devices.


def predict_batched(
    model: Layer, params, state, x: Array, batch_size: int, mesh=None
) -> Array:
    """Returns the model's evaluation-mode outputs on ``x``, ``batch_size`` at a time.

    ``jax.lax.map`` with ``batch_size`` runs the batches one after another (the
    remainder as one smaller batch); traceable (call it inside jit). On a
    ``mesh`` with a ``"data"`` axis of D devices each batch is split over
    them: the batch size is rounded up to a multiple of D and ``x`` padded
    with zeros to whole batches (the padding's outputs are dropped).
    """
    d = _mesh.size(mesh, _mesh.DATA)
    if d > 1:
        return _predict_split(model, params, state, x, batch_size, mesh, d)
    bs = max(1, min(batch_size, x.shape[0]))
    if bs == x.shape[0]:  # one batch: no loop to compile
        return model.apply(params, state, x, train=False)[0]

    def one(xi):
        return model.apply(params, state, xi[None], train=False)[0][0]

    return jax.lax.map(one, x, batch_size=bs)


def _predict_split(model: Layer, params, state, x, batch_size: int, mesh, d: int):
    """Returns :func:`predict_batched` on a mesh: batches split over ``"data"``."""
    n = x.shape[0]
    bs = -(-max(1, min(batch_size, n)) // d) * d
    pad = -n % bs
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    out = predict_steps(model, params, state, x.reshape(-1, bs, *x.shape[1:]), mesh)
    return out.reshape(-1, *out.shape[2:])[:n]


def predict_steps(model: Layer, params, state, batches: Array, mesh=None) -> Array:
    """Returns the evaluation-mode outputs of each batch of ``batches``
    ``(steps, B, ...)``, one batch after another, each split over the
    ``"data"`` devices of ``mesh`` (streamed chunks arrive so); traceable."""

    def one(batch):
        batch = _mesh.constrain_batch(batch, mesh)
        return model.apply(params, state, batch, train=False)[0]

    return jax.lax.map(one, batches)


def evaluate_arrays(
    model: Layer,
    loss,
    metrics: tuple,
    batch_size: int,
    params,
    state,
    x,
    y,
    mesh=None,
    w=None,
) -> dict[str, Array]:
    """Returns the loss and metrics of the whole of ``(x, y)``; traceable.

    Metrics see every prediction at once, so F1, R² and the like are exact,
    not averages of per-batch values; ``w`` weights the examples.
    """
    pred = predict_batched(model, params, state, x, batch_size, mesh)
    return losses_and_metrics(loss, metrics, y, pred, w)
