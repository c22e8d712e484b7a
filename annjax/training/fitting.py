r"""``fit`` and ``fit_many``: the lecture's training, one model or many at once.

Train on the training set, tune on the validation set, judge once on the
test set, W ← W − α ∂L/∂W. Both check every argument (:mod:`.arguments`),
initialise, and hand over to the ONE loop of :mod:`.loop`; ``fit`` is its
one-model case, ``fit_many`` runs the same compiled epoch over a leading
model axis (keys and hyper-parameters per model, the data shared), vmapped,
unrolled or mapped, or ``fit``'s own epoch once per model, the models side
by side on threads (:mod:`.vectorize`).

The objective, for params θ and the training set's n examples:

.. math::

   \min_θ\ \frac{1}{n} Σ_i ℓ(y_i, f_θ(x_i)) + λ_1 Σ|W| + λ_2 Σ W^2,
   \qquad θ ← θ − α\,∂L/∂θ \text{ per mini-batch}

Examples:
  >>> import jax, numpy as np, annjax as ann
  >>> X = np.random.default_rng(0).normal(size=(64, 4)).astype("f4")
  >>> y = (X[:, 0] > 0).astype("i4")
  >>> s = ann.data.split(X, y, val=0.25, key=jax.random.key(0))
  >>> result = ann.fit(ann.mlp([8, 2]), s.train, val_data=s.val,
  ...     optimizer=ann.adam(1e-2), epochs=3, batch_size=16,
  ...     metrics=("accuracy",), progress=False)
  >>> result.history["val_accuracy"].shape
  (3,)
  >>> many = ann.fit_many(ann.mlp([8, 2]), s.train, val_data=s.val,
  ...     keys=jax.random.split(jax.random.key(0), 4), l2=[0, 1e-4, 1e-3, 1e-2],
  ...     epochs=3, progress=False)
  >>> many.history["val_loss"].shape                   # (epochs, models)
  (3, 4)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from annjax import optim as _optim
from annjax._types import Key, Layer
from annjax.hyperparams import Hyper
from annjax.training import checkpoint as _ckpt
from annjax.training import loop as _loop
from annjax.training import mesh as _mesh
from annjax.training import results as _results
from annjax.training import streamed as _streamed
from annjax.training import trees as _trees
from annjax.training.inputs import params_dtype
from annjax.training.record import Run, resolve
from annjax.training.step import start_states
from annjax.training.types import EarlyStopping, FitResult, ManyResult

__all__ = ["fit", "fit_many", "train"]


def fit(
    model: Layer,
    train_data: tuple[Any, Any],
    val_data: tuple[Any, Any] | None = None,
    *,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    metrics: Sequence[str | Callable] = (),
    l1: float = 0.0,
    l2: float = 0.0,
    early_stopping: EarlyStopping | None = None,
    augment: Callable | None = None,
    track_gradients: bool = False,
    track_every: int = 10,
    key: Key | None = None,
    progress: bool = True,
    resume: str | None = None,
    checkpoint: str | None = None,
    eval_batch_size: int = 1024,
    steps_per_call: int | str | None = "auto",
    callbacks: Sequence[Callable] = (),
    log_steps: bool = False,
    mesh: Mesh | None = None,
    params: Any = None,
    state: Any = None,
    trainable: Callable[[str], bool] | Any = None,
    label_smoothing: float | Hyper = 0.0,
    ema: float | Hyper | None = None,
    validate_on: str = "params",
    class_weight: Mapping[Any, float] | None = None,
    track_sharpness: int | None = 0,
    hyper: dict[str, float] | None = None,
    steps_per_epoch: int | None = None,
) -> FitResult:
    r"""Returns the trained model and its history; each epoch ONE training call.

    Minimises the mean ``loss`` (+ λ₁Σ|W| + λ₂ΣW² when ``l1``/``l2`` are set;
    the history's ``loss`` is the data loss alone, comparable to ``val_loss``)
    with ``optimizer`` over mini-batches of a fresh permutation every epoch.
    The data goes to the device once; shuffling, the steps, the NaN guard and
    the validation pass all run inside one jitted call per epoch, compiled
    once per (model, optimizer, loss, shapes), so a second ``fit`` reuses it.

    The last batch of an epoch is filled up with examples from the start of
    the permutation, weighted 0, so every example counts exactly once per
    epoch and every step has the same shape. ``batch_size`` larger than the
    data is reduced to it. History metrics are those of the epoch's
    (training-mode) predictions, computed from statistics summed over its
    steps, padding excluded: the same value as the metric on all of them.

    The NaN guard: an epoch whose loss, or whose params or state after its
    last step, are not finite is undone, and training stops with
    ``stop_reason`` saying so; the params returned are the last finite ones.

    An optimizer that reads the loss (``optax.contrib.reduce_on_plateau``,
    any ``optax.GradientTransformationExtraArgs`` such as an ``optax.chain``)
    gets the step's objective as ``update(..., value=loss)``; the history's
    ``lr`` includes the plateau's scale.

    Args:
      model: an annjax Layer (``ann.mlp``, ``ann.serial``, ``ann.from_flax``).
      train_data: ``(X, y)`` or ``(X, y, w)``; X of shape ``(n, *input_shape)``;
        y integer labels, one-hot rows, or targets of the model's output
        shape ((n,) is taken as (n, 1) for a one-output model); w (n,)
        example weights ≥ 0: the loss is Σ wᵢ ℓᵢ / Σ wᵢ per batch and the
        metrics are scikit-learn's ``sample_weight`` results; an example of
        weight 0 is never drawn (see :mod:`annjax.training.weights`).
      val_data: ``(X_val, y_val)`` or ``(X_val, y_val, w_val)``, evaluated
        (weighted) after every epoch.
      loss: a name from :func:`annjax.losses.get` or a function
        ``(y_true, y_pred, reduction)``. A custom loss gets ``y`` as given:
        integer labels of shape ``(n, *output[:-1])`` stay int32, other targets
        are float32 of the output's shape.
      optimizer: any optax transformation; default ``ann.sgd(0.01)``.
      epochs: epochs to run in this call (on resume: more epochs).
      batch_size: examples per step.
      metrics: names from :func:`annjax.metrics.names` or functions
        ``(y_true, y_pred) -> scalar`` (keyed by ``__name__``; in the training
        history they see all of the epoch's predictions at once).
      l1, l2: penalty strengths λ ≥ 0 on the weights (biases and norm params
        spared); ``weight_decay`` in the optimizer is the decoupled form.
      early_stopping: an :class:`EarlyStopping`, or None.
      augment: ``fn(key, x) -> x`` applied to each training batch inside the
        compiled step (never to validation data); see :mod:`annjax.data.augment`.
      track_gradients: record the profiler's per-layer measurements.
      track_every: measure them in one step out of this many (every step
        with 1); the steps between run untouched, which keeps the profiler's
        cost small (measured in ``benchmarks/README.md``).
      key: the random key for init, shuffling, dropout and augmentation;
        default ``jax.random.key(0)``, so runs are reproducible.
      progress: show a tqdm bar (only on a terminal).
      resume: a checkpoint path written by :func:`annjax.save` or
        ``checkpoint=``; training continues from its last state, with the
        same metrics, validation data and profiler setting (else ValueError).
      checkpoint: a path to save the result to (atomically) after every epoch.
      eval_batch_size: batch size of the validation pass.
      steps_per_call: None runs each epoch as one compiled call (a
        ``lax.scan`` over its steps); an integer k runs k steps per call (1:
        one jitted step per batch, as Keras' ``steps_per_execution``), on
        the same batches and keys, so the results are the same (up to float
        rounding where XLA compiles the step otherwise). ``"auto"``
        (default): 1 for a model with a convolution on the CPU, where XLA
        runs it many times slower inside the epoch's loop, else None (see
        :func:`annjax.training.record.calls_of`).
      callbacks: functions ``callback(epoch, logs) -> None | bool`` called
        on the host after every epoch, after early stopping and before the
        checkpoint; True (or a true NumPy/JAX bool scalar) stops training
        (``stop_reason`` names it). An exception in one is re-raised after
        the checkpoint is written. One with ``wants_train_state = True`` is
        called ``callback(epoch, logs, train_state)``
        (``ann.callbacks.TensorBoard`` reads the params so).
      log_steps: record every step's training loss as ``step_loss``.
      hyper: values of named hyper-parameters, name → number: each
        ``ann.hyper(name)`` in the model's layers (``ann.dropout(ann.hyper(
        "p"))`` with ``hyper={"p": 0.3}``), and each hyper-parameter the
        optimizer injects with ``optax.inject_hyperparams`` (learning rate,
        betas, weight decay, momentum …). A sweep is written alike
        (:func:`fit_many`'s ``hyper=`` takes one value per model).
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis of D devices
        for data parallelism (None: one device). Each batch is split along
        its batch axis over the D devices; params, state and optimizer state
        are replicated and XLA inserts the collectives, so batch-norm
        statistics are those of the whole batch and the result equals one
        device's up to float summation order. ``batch_size`` must be a
        multiple of D. Data the user laid over the mesh (``jax.device_put``
        with a ``NamedSharding``, or ``jax.make_array_from_process_local_data``
        on several hosts) is used where it lies; other data is copied to
        every device. See :mod:`annjax.training.mesh`.
      params, state: start from these params and layer state (a previous
        result's, pretrained weights) instead of the initialisation; each
        checked against the model before anything compiles (the error names
        the arrays missing, extra or reshaped). The optimizer state starts
        fresh, and the epochs count from 0 again (``resume=`` continues a
        run instead, optimizer state included).
      trainable: which parameters train: a function of the parameter path
        (``lambda path: not path.startswith("dense_0")``; paths read
        ``dense_0/w``) returning True or False, or a pytree of bools shaped
        as the params (or a prefix: one bool per layer). Frozen parameters
        get no update, no weight decay and no ``l1``/``l2`` penalty (through
        ``optax.multi_transform`` with ``optax.set_to_zero``, see
        :func:`annjax.optim.freeze`); with ``track_gradients`` the history
        marks each frozen layer ``frozen/<layer>`` and ``diagnose`` leaves it
        out of its gradient findings.
      label_smoothing: α in [0, 1] for ``softmax_cross_entropy``: the
        targets become (1 − α) y + α / K (``optax.smooth_labels``), in
        training and in the ``val_`` loss; or ``ann.hyper(name)``, its value
        from ``hyper=``.
      ema: a decay d in [0, 1): keep the moving average
        ē ← d ē + (1 − d) θ of the params, updated after every step inside
        the compiled epoch (from ē = θ at the start, no bias correction),
        returned as ``result.ema_params``. None (default): none. Or
        ``ann.hyper(name)``, the decay from ``hyper=``.
      validate_on: ``"params"`` (default), or ``"ema"``: the ``val_`` values,
        and so early stopping and the best epoch, are those of the moving
        average (needs ``ema=``).

      class_weight: ``{label: weight}`` multiplying the training weight of
        every example of that label (1 for labels not named), as Keras' and
        scikit-learn's ``class_weight``; validation is not reweighted.
      track_sharpness: every this many epochs (epochs 0, N, 2N, …; 0 or
        None: never) record ``sharpness``, the top eigenvalue λ_max of the
        loss's Hessian at the epoch's final params, on a fixed batch: the
        first ``batch_size`` training examples, the loss of the
        evaluation-mode outputs without the l1/l2 penalty. Lanczos with
        ``annjax.curvature.SHARPNESS_ITERATIONS`` (20) Hessian-vector
        products from ``jax.random.key(annjax.curvature.SHARPNESS_SEED)``
        (0), inside the compiled epoch; the other epochs hold NaN. It equals
        ``ann.analysis.hessian(model, params, state, (X[:b], y[:b]),
        loss=loss, top_k=1, iterations=20, key=jax.random.key(0))``. For
        plain gradient descent (an optimizer without momentum or moments,
        whose learning rate is injected, as ``ann.sgd(lr)``) the history
        also holds ``sharpness_limit`` = 2/lr every epoch, which
        ``ann.diagnose`` compares with it (edge of stability). What one
        measurement costs in training steps: ``benchmarks/README.md``
        (``benchmarks/sharpness_cost.py``).

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError, TypeError: for any invalid argument or data, before
        anything compiles.
    """
    options = locals()  # the arguments as given: forwarded, never re-listed
    with _cache_named_on_failure():
        return train(resolve(**options))


def fit_many(
    model: Layer,
    train_data: tuple[Any, Any],
    val_data: tuple[Any, Any] | None = None,
    *,
    keys: Key | Sequence[Key] | None = None,
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    lr_scale: float | Sequence[float] = 1.0,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    metrics: Sequence[str | Callable] = (),
    early_stopping: EarlyStopping | None = None,
    augment: Callable | None = None,
    track_gradients: bool = False,
    track_every: int = 10,
    progress: bool = True,
    resume: str | None = None,
    checkpoint: str | None = None,
    eval_batch_size: int = 1024,
    steps_per_call: int | str | None = "auto",
    callbacks: Sequence[Callable] = (),
    log_steps: bool = False,
    mesh: Mesh | None = None,
    params: Any = None,
    state: Any = None,
    trainable: Callable[[str], bool] | Any = None,
    label_smoothing: float | Hyper = 0.0,
    ema: float | Hyper | None = None,
    validate_on: str = "params",
    sample_weight: Any = None,
    val_weight: Any = None,
    class_weight: Mapping[Any, float] | None = None,
    track_sharpness: int | None = 0,
    vectorize: str = "auto",
    hyper: dict[str, Any] | None = None,
    steps_per_epoch: int | None = None,
) -> ManyResult:
    """Returns many models trained at once: ``fit`` over keys and hyper-parameters.

    The number of models is the length of ``keys`` or of any sequence among
    ``l1``, ``l2``, ``lr_scale`` (numbers broadcast to every model; sequences
    must agree in length). Build grids with ``itertools.product`` or
    ``np.meshgrid`` and pass the flattened columns.

    Each model trains exactly as ``fit`` would with the same key and
    hyper-parameters (same permutations, same dropout masks), through the
    same loop, so a sweep's model i equals a separate ``fit`` of it (best
    epoch and params included) up to floating-point reassociation. A model
    that stops (early stopping, a non-finite epoch) is frozen: its later
    epochs leave it unchanged and their history entries are NaN; training
    ends when every model has stopped.

    The arguments not listed below are those of :func:`fit`.

    Args:
      keys: a key array of shape (models,) or a list of keys; default: split
        from ``jax.random.key(0)``.
      l1, l2: penalty strengths, one per model or one for all (≥ 0).
      lr_scale: multiplies the learning rate, one per model or one for all
        (> 0): with ``optimizer=ann.sgd(0.1)``, ``lr_scale=[0.1, 1, 10]``
        trains at learning rates 0.01, 0.1 and 1. A constant learning rate
        injected with ``optax.inject_hyperparams`` (every annjax optimizer's)
        is scaled in the optimizer state; a schedule α(t) becomes s·α(t) by
        scaling the updates, exact for every optimizer whose update is α(t)
        times a direction (annjax's and optax's); the history's ``lr`` then
        shows the unscaled α(t).
      hyper: named hyper-parameters, name → one value per model (or one
        for all), as :func:`fit`'s ``hyper=``: ``hyper={"p": [0.1, 0.3,
        0.5]}`` trains three models with ``ann.dropout(ann.hyper("p"))`` at
        those rates; optimizer names (``"b1"``, ``"weight_decay"``) set
        ``optax.inject_hyperparams`` arguments per model. Checked before
        anything compiles: an unknown name, lists of different lengths, a
        value of the wrong type or out of its layer's range raise.
      callbacks: as :func:`fit`'s; their logs hold one value per model
        (NaN for a model that has stopped, as in the history).
      mesh: as :func:`fit`'s, and/or a ``"model"`` axis over which the
        models are split (the number of models a multiple of its size): 8
        models on a ``"model"`` axis of 8 devices each train on their own
        device; with both axes each model's batches are split over ``"data"``.
      params, state: one set for every model, or stacked with a leading
        axis of one set per model.
      ema: as :func:`fit`'s; ``result.ema_params`` is stacked per model;
        ``ema=ann.hyper("d")`` with ``hyper={"d": [0.9, 0.99]}`` gives each
        model its own decay (``label_smoothing=`` and batch norm's momentum
        likewise).
      sample_weight: example weights per model, shape (models, n) (one
        weighting of the training data per model: bootstrap counts, fold
        masks, subsets; see :mod:`annjax.analysis.resampling`), or (n,) for
        all; multiplied with the data's own w and ``class_weight``.
      val_weight: validation weights per model, (models, n_val) or
        (n_val,): each model validates (and early-stops) on its own part of
        ``val_data``, e.g. its held-out fold.
      vectorize: how the models run: in one compiled epoch, ``"vmap"``
        (batched), ``"unroll"`` (the single-model program once per model,
        side by side) or ``"map"`` (``lax.map``: once, in a loop); or
        ``"sequential"``: ``fit``'s one-model epoch, compiled once and
        called per model (on one device, the models side by side on
        threads, one per core); or ``"auto"``: sequential for a model with a
        convolution on the CPU (a vmapped convolution runs several times
        slower than one per model there, and an unrolled one compiles N
        copies), else vmap (measured by ``benchmarks/vectorize.py`` and the
        ``sweep-cnn`` benchmark; see :mod:`annjax.training.vectorize`).
        Every way gives the same models.

    Raises:
      ValueError: as ``fit``, and for per-model sequences of different lengths.
    """
    options = locals()  # the arguments as given: forwarded, never re-listed
    with _cache_named_on_failure():
        return train(resolve(many=True, **options))


def train(run: Run) -> FitResult | ManyResult:
    """Returns the result of ``run``: initialised (or resumed), then looped.

    The one path of ``fit`` and ``fit_many``: the record's keys are split
    into (init keys, training keys) and the train state made in one
    compiled call (:func:`annjax.training.step.start_states`); ``fit_many``'s
    ``lr_scale`` scales each model's injected learning rate; a resumed run
    takes its train state and progress from the checkpoint
    (:func:`annjax.training.checkpoint.resume`); everything is placed on
    the mesh; the loop runs (:func:`annjax.training.loop.train`).
    """
    spec, x, mesh = run.spec, run.x, run.spec.mesh
    ts, train_keys = start_states(
        spec.model, spec.optimizer, run.keys, x.shape[1:], dtype=params_dtype(x)
    )
    ts = _start(run, ts)
    if run.lr_scale is not None:
        scaled = jax.vmap(_optim.scale_learning_rate)(ts.opt_state, run.lr_scale)
        ts = ts._replace(opt_state=scaled)
    if run.optimizer_hyper:
        opt_state = _optim.set_hyperparams(ts.opt_state, run.optimizer_hyper)
        ts = ts._replace(opt_state=opt_state)
    if run.resume is None:
        ts = _mesh.place_state(ts, mesh, run.many)
        progress = _loop.Progress.fresh(run, ts)
    else:
        ts, progress = _ckpt.resume(run, ts, train_keys)
        _streamed.restore(run.stream, lambda: _ckpt.data_state(run.resume))
        ts = _mesh.place_state(ts, mesh, run.many)
        progress.best = _mesh.place_state(progress.best, mesh, run.many)
    train_keys = _mesh.place_state(train_keys, mesh, run.many)
    es = run.early_stopping
    if run.many:

        def finish(ts, progress):
            return _results.many_result(ts, progress, es, run.swept, spec.model)
    else:

        def finish(ts, progress):
            return _results.fit_result(ts, progress, es)

    path = run.checkpoint
    save = None
    if path is not None:

        def save(result):
            _ckpt.save(path, result, data_state=_streamed.state(run.stream))

    return _loop.train(run, ts, train_keys, progress, save=save, finish=finish)


@contextlib.contextmanager
def _cache_named_on_failure():
    """Adds the fix to an AssertionError from JAX while a persistent
    compilation cache is on: JAX does not check that a cache entry belongs
    to the program it is read for, so entries swapped or copied between
    programs fail as JAX's bare ``AssertionError`` of a shape."""
    try:
        yield
    except AssertionError as exc:
        folder = jax.config.jax_compilation_cache_dir
        if folder:
            exc.add_note(
                f"annjax: JAX's persistent compilation cache ({folder}) may hold "
                "an entry of another program (JAX does not check). Clear it "
                f"(rm -rf {folder}) and run again."
            )
        raise


def _start(run: Run, ts):
    """Returns ``ts`` started from the run's given params and state (cast to
    the initialisation's dtypes, the optimizer state made afresh for them)
    and, with ``ema=``, the moving average starting at the params."""
    if run.params is not None or run.state is not None:
        cast = functools.partial(jax.tree_util.tree_map, _like)
        params = ts.params if run.params is None else cast(ts.params, run.params)
        state = ts.state if run.state is None else cast(ts.state, run.state)
        opt_init = jax.vmap(run.spec.optimizer.init) if run.many else None
        opt_init = opt_init or run.spec.optimizer.init
        ts = ts._replace(params=params, state=state, opt_state=opt_init(params))
    if "ema" in run.hyper:  # its own buffers: the train state is donated
        ts = ts._replace(ema=_trees.copy(ts.params))
    return ts


def _like(fresh, given):
    """Returns ``given`` as an array of ``fresh``'s dtype."""
    return jnp.asarray(given, dtype=fresh.dtype)
