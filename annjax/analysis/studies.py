"""The lecture's bias–variance studies, each ONE ``fit_many`` over example weights.

Every protocol that retrains a model on parts of one data set is a weighting
of it (:mod:`.resampling`), so all its models train together in one compiled
call per epoch, ``fit_many(sample_weight=W)`` with one row of ``W`` per model:

* :func:`bias_variance`: ``rounds`` bootstrap replicas (counts as weights),
  their test predictions decomposed into bias² and variance (:mod:`.biasvar`);
* :func:`complexity_curve`: the same at every value of a complexity parameter
  (one call for a swept ``l1``/``l2``/``lr_scale``; one call per architecture);
* :func:`learning_curve`: nested random training subsets of growing size
  (0/1 masks), scored on their own subset and on validation data;
* :func:`cross_validate`: k folds, each model training on k − 1 folds and
  validating on its own held-out fold (``val_weight=``).

Each model of the call equals a separate ``fit`` with the same key on its own
weighting ``(X, y, w)``; examples of weight 0 are never drawn into a batch, so
a model trained on m of n examples takes ⌈m / batch_size⌉ steps per epoch, as
a ``fit`` on those m examples would.

Examples:
  >>> import jax, numpy as np, annjax as ann
  >>> X = np.linspace(-1, 1, 64, dtype="f4")[:, None]
  >>> y = X[:, 0] ** 2
  >>> d = ann.analysis.bias_variance(
  ...     ann.mlp([8, 1]), (X, y), (X[::4], y[::4]), rounds=4,
  ...     key=jax.random.key(0), optimizer=ann.adam(1e-2), epochs=3)
  >>> d.predictions.shape
  (4, 16, 1)
  >>> bool(abs(d.expected_loss - d.bias - d.variance) < 1e-5)
  True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Layer
from annjax.analysis.biasvar import LOSSES, BiasVariance, decompose
from annjax.analysis.curves import ComplexityCurve, LearningCurve
from annjax.analysis.resampling import (
    Folds,
    bootstrap_weights,
    kfold_weights,
    subset_sizes,
    subset_weights,
)
from annjax.training.arguments import fit_targets
from annjax.training.fitting import fit_many
from annjax.training.inputs import host_array
from annjax.training.step import losses_and_metrics
from annjax.training.types import ManyResult

__all__ = [
    "SWEEPABLE",
    "CrossValidation",
    "bias_variance",
    "complexity_curve",
    "cross_validate",
    "evaluate_ensemble",
    "learning_curve",
]

#: The hyper-parameters ``fit_many`` sweeps in one call: a complexity curve
#: over one of them trains every value × round together.
SWEEPABLE = ("l1", "l2", "lr_scale")


def _pair(name: str, data: Any) -> tuple[Any, Any]:
    """Returns ``(X, y)`` from a pair (the studies draw their own weights)."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise _checks.fail(name, "a pair (X, y)", type(data).__name__)
    return data[0], data[1]


def _training_loss(loss: str, fit_kwargs: dict) -> dict:
    """Returns ``fit_kwargs`` with fit_many's defaults for a study: no progress
    bar and, for the MSE decomposition, the MSE loss unless one is given."""
    out = {"progress": False, **fit_kwargs}
    if loss == "mse":
        out.setdefault("loss", "mse")
    for name in ("keys", "sample_weight"):
        if name in out:
            raise _checks.fail(
                name, "no value (the study draws its own)", type(out[name]).__name__
            )
    return out


def _threshold(fit_kwargs: dict) -> float:
    """Returns the class-1 threshold of a single output: 0 for a logit (the
    model trains with sigmoid cross-entropy on logits), else 0.5."""
    loss = fit_kwargs.get("loss", "softmax_cross_entropy")
    return 0.0 if _losses.name_of(loss) == "sigmoid_binary_cross_entropy" else 0.5


def _scores(fit_kwargs: dict, y: Any, predictions: Any, weights: Any) -> dict:
    """Returns name → (models,) weighted loss and metrics of every model's
    predictions (models, n, ...) on ``y``, weights (models, n) or (n,)."""
    loss = fit_kwargs.get("loss", "softmax_cross_entropy")
    metrics = tuple(fit_kwargs.get("metrics", ()))
    w = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), predictions.shape[:2])
    y = fit_targets("y", host_array("y", y, labels=True), loss, predictions.shape[2:])

    def one(pred, wi):
        return losses_and_metrics(loss, metrics, jnp.asarray(y), pred, wi)

    return {k: np.asarray(v) for k, v in jax.vmap(one)(predictions, w).items()}


def bias_variance(
    model: Layer,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    loss: str = "mse",
    rounds: int = 50,
    key: jax.Array,
    threshold: float | None = None,
    weights: Any = None,
    **fit_kwargs: Any,
) -> BiasVariance:
    """Returns the bias–variance decomposition of ``rounds`` bootstrap replicas.

    Draws ``rounds`` bootstrap samples of the training set as counts
    (:func:`annjax.analysis.bootstrap_weights`), trains one replica on each in
    ONE ``fit_many(sample_weight=counts)``, predicts the test set with all of
    them in one vmapped call and decomposes (:func:`annjax.analysis.decompose`):
    ``expected_loss``, ``bias`` (squared for ``"mse"``) and ``variance`` as
    ``mlxtend.evaluate.bias_variance_decomp`` defines them, per test point
    too, and the replicas' ``predictions`` (rounds, n_test, ...).

    Args:
      model: the Layer to train.
      train, test: ``(X, y)`` pairs.
      loss: the decomposition's loss, ``"mse"`` (the training loss defaults
        to it) or ``"0-1"`` (labels; the training loss is ``fit_many``'s).
      rounds: the number of bootstrap replicas (mlxtend's ``num_rounds``).
      key: a ``jax.random.key``: the draws and the replicas' keys.
      threshold: the class-1 threshold of a single output for ``"0-1"``
        (default: 0 for ``sigmoid_binary_cross_entropy``'s logits, else 0.5).
      weights: bootstrap counts (rounds, n) to train on instead of drawing
        them (e.g. the draws of another library, to compare on the same
        samples); ``key`` still gives the replicas' keys.
      **fit_kwargs: ``fit_many``'s arguments (optimizer, epochs, …).

    Returns:
      A :class:`annjax.analysis.BiasVariance`; its ``weights`` are the counts
      and ``models`` the :class:`annjax.ManyResult` (e.g. for its ensemble).

    Raises:
      ValueError: an unknown loss, rounds < 1, or fit_many's errors.
    """
    loss = _checks.one_of("loss", loss, LOSSES)
    rounds = _checks.integer("rounds", rounds, minimum=1)
    (X, y), (X_test, y_test) = _pair("train", train), _pair("test", test)
    fit_kwargs = _training_loss(loss, fit_kwargs)
    draw_key, fit_key = jax.random.split(_checks.random_key("key", key))
    if weights is None:
        counts = bootstrap_weights(len(y), rounds, key=draw_key)
    else:
        counts = jnp.asarray(weights, jnp.float32)
        if counts.shape != (rounds, len(y)):
            raise _checks.fail("weights", f"shape ({rounds}, {len(y)})", counts.shape)
    keys = jax.random.split(fit_key, rounds)
    many = fit_many(model, (X, y), keys=keys, sample_weight=counts, **fit_kwargs)
    threshold = _threshold(fit_kwargs) if threshold is None else threshold
    result = decompose(many.predict(X_test), y_test, loss=loss, threshold=threshold)
    return result._replace(weights=counts, models=many)


def complexity_curve(
    build: Callable[[Any], Layer] | str,
    values: Sequence[Any],
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    model: Layer | None = None,
    loss: str = "mse",
    rounds: int = 20,
    key: jax.Array,
    name: str | None = None,
    **fit_kwargs: Any,
) -> ComplexityCurve:
    """Returns bias², variance and expected loss against a complexity parameter.

    At every value, ``rounds`` bootstrap replicas are decomposed as by
    :func:`bias_variance`, on the SAME draws and keys for every value (so the
    curve moves with the parameter, not with the draws):

    * ``build`` a function value → Layer (a width, a depth): one
      ``fit_many`` per value, each architecture compiled once for its rounds;
    * ``build`` one of :data:`SWEEPABLE` (``"l1"``, ``"l2"``, ``"lr_scale"``)
      with ``model=``: every value × round in ONE ``fit_many``.

    Args:
      build: a function of the value returning the model, or the name of a
        swept hyper-parameter.
      values: the parameter's values, in order of complexity.
      train, test: ``(X, y)`` pairs.
      model: the Layer, when ``build`` names a hyper-parameter.
      loss, rounds, key: as :func:`bias_variance`.
      **fit_kwargs: as :func:`bias_variance`.
      name: the parameter's name for the plot (default: ``build``'s name).

    Returns:
      A :class:`annjax.analysis.ComplexityCurve` (``ann.plot.bias_variance``
      draws it) with each value's :class:`BiasVariance` in ``results`` (its
      ``models``: the value's ``fit_many``, all values' for a swept one).

    Raises:
      ValueError: no values, an unknown hyper-parameter name, a name without
        ``model=`` (or a function with it), and :func:`bias_variance`'s errors.
    """
    values = list(values)
    if not values:
        raise _checks.fail("values", "at least one value", values)
    rounds = _checks.integer("rounds", rounds, minimum=1)
    loss = _checks.one_of("loss", loss, LOSSES)
    (X, y), test = _pair("train", train), _pair("test", test)
    fit_kwargs = _training_loss(loss, fit_kwargs)
    draw_key, fit_key = jax.random.split(_checks.random_key("key", key))
    counts = bootstrap_weights(len(y), rounds, key=draw_key)
    keys = jax.random.split(fit_key, rounds)
    threshold = _threshold(fit_kwargs)
    if isinstance(build, str):
        build = _checks.one_of("build", build, SWEEPABLE)
        if model is None:
            raise _checks.fail("model", "the Layer whose " + build + " is swept", None)
        name = name or build
        reps = len(values)
        many = fit_many(
            model,
            (X, y),
            keys=jnp.tile(keys, reps),
            sample_weight=jnp.tile(counts, (reps, 1)),
            **{build: np.repeat(np.asarray(values, np.float32), rounds)},
            **fit_kwargs,
        )
        preds = many.predict(test[0])
        preds = preds.reshape(reps, rounds, *preds.shape[1:])
        results = [
            decompose(p, test[1], loss=loss, threshold=threshold)._replace(
                weights=counts, models=many
            )
            for p in preds
        ]
    else:
        if model is not None:
            raise _checks.fail(
                "model", "None when build makes the model", type(model).__name__
            )
        name = name or getattr(build, "__name__", "complexity")
        results = []
        for value in values:
            many = fit_many(
                build(value), (X, y), keys=keys, sample_weight=counts, **fit_kwargs
            )
            preds = many.predict(test[0])
            result = decompose(preds, test[1], loss=loss, threshold=threshold)
            results.append(result._replace(weights=counts, models=many))
    terms = {
        t: np.array([float(getattr(r, t)) for r in results])
        for t in ("expected_loss", "bias", "variance")
    }
    return ComplexityCurve(name, np.asarray(values), **terms, results=results)


def learning_curve(
    model: Layer,
    data: tuple[Any, Any],
    *,
    val_data: tuple[Any, Any],
    sizes: Sequence[float] = (0.1, 0.325, 0.55, 0.775, 1.0),
    rounds: int = 5,
    key: jax.Array,
    **fit_kwargs: Any,
) -> LearningCurve:
    """Returns training and validation scores against the training-set size.

    Every size × round is one model of ONE ``fit_many``: round r draws a
    random order of the training examples and size m trains on its first m
    (:func:`annjax.analysis.subset_weights`: nested subsets, 0/1 weights).
    After training, each model is scored on its own training subset and on
    ``val_data``, loss and ``metrics`` alike (evaluation mode).

    Args:
      model: the Layer to train.
      data: the training pair ``(X, y)`` the subsets are drawn from.
      val_data: the validation pair ``(X_val, y_val)``.
      sizes: fractions in (0, 1] of the training set, or counts.
      rounds: random subsets per size.
      key: a ``jax.random.key``.
      **fit_kwargs: ``fit_many``'s arguments (loss, optimizer, epochs, …).

    Returns:
      A :class:`annjax.analysis.LearningCurve` (``ann.plot.learning_curve``
      draws it): ``train[name]`` and ``val[name]`` of shape (sizes, rounds).

    Raises:
      ValueError: bad sizes or rounds, and fit_many's errors.
    """
    (X, y), (X_val, y_val) = _pair("data", data), _pair("val_data", val_data)
    rounds = _checks.integer("rounds", rounds, minimum=1)
    fit_kwargs = _training_loss("", fit_kwargs)
    absolute = subset_sizes(len(y), sizes)
    draw_key, fit_key = jax.random.split(_checks.random_key("key", key))
    masks = subset_weights(len(y), sizes, rounds, key=draw_key)
    keys = jax.random.split(fit_key, len(masks))
    many = fit_many(model, (X, y), keys=keys, sample_weight=masks, **fit_kwargs)
    shape = (len(absolute), rounds)
    train = _scores(fit_kwargs, y, many.predict(X), masks)
    val = _scores(fit_kwargs, y_val, many.predict(X_val), 1.0)
    return LearningCurve(
        absolute,
        {k: v.reshape(shape) for k, v in train.items()},
        {k: v.reshape(shape) for k, v in val.items()},
        masks,
        many,
    )


class CrossValidation(NamedTuple):
    """What :func:`cross_validate` returns.

    Attributes:
      scores: name → (folds,): each fold's model on its held-out fold (the
        loss and every metric, evaluation mode, the params ``fit`` returns).
      mean: name → the mean of ``scores``.
      std: name → the standard deviation of ``scores``.
      histories: one history per fold (``val_*`` on its held-out fold).
      folds: the :class:`annjax.analysis.Folds` masks.
      models: the :class:`annjax.ManyResult` of the one ``fit_many``.
    """

    scores: dict[str, np.ndarray]
    mean: dict[str, float]
    std: dict[str, float]
    histories: list[dict[str, np.ndarray]]
    folds: Folds
    models: ManyResult


def cross_validate(
    model: Layer,
    data: tuple[Any, Any],
    *,
    folds: int = 5,
    stratify: bool = False,
    seed: int | None = None,
    key: jax.Array,
    **fit_kwargs: Any,
) -> CrossValidation:
    """Returns k-fold cross-validation scores, all folds in ONE ``fit_many``.

    The folds are scikit-learn's ``KFold`` (``StratifiedKFold`` with
    ``stratify``) for the same ``seed`` (:func:`annjax.analysis.kfold_weights`).
    Model k trains on the other k − 1 folds (``sample_weight``) and validates
    on fold k (``val_weight``), so its history's ``val_*`` values, and early
    stopping on them, are its own fold's.

    Args:
      model: the Layer to train.
      data: ``(X, y)``, all the examples.
      folds: k >= 2.
      stratify: keep the class shares in every fold (labels y).
      seed: NumPy seed of scikit-learn's shuffle; None keeps the data order.
      key: a ``jax.random.key`` for the models' keys.
      **fit_kwargs: ``fit_many``'s arguments (loss, metrics, epochs, …).

    Returns:
      A :class:`CrossValidation`: ``scores[name]`` of shape (folds,), mean ± std.

    Raises:
      ValueError: bad folds, and fit_many's errors.
    """
    X, y = _pair("data", data)
    fit_kwargs = _training_loss("", fit_kwargs)
    if "val_data" in fit_kwargs:
        raise _checks.fail("val_data", "no value (each fold validates on itself)", 1)
    split = kfold_weights(
        y if stratify else len(y), folds, stratify=stratify, seed=seed
    )
    keys = jax.random.split(_checks.random_key("key", key), folds)
    many = fit_many(
        model,
        (X, y),
        (X, y),
        keys=keys,
        sample_weight=split.train,
        val_weight=split.held_out,
        **fit_kwargs,
    )
    scores = _scores(fit_kwargs, y, many.predict(X), split.held_out)
    return CrossValidation(
        scores,
        {k: float(v.mean()) for k, v in scores.items()},
        {k: float(v.std()) for k, v in scores.items()},
        [many.select(i).history for i in range(folds)],
        split,
        many,
    )


def evaluate_ensemble(
    models: ManyResult,
    data: tuple[Any, ...],
    *,
    loss: str | Callable = "softmax_cross_entropy",
    metrics: Sequence[str | Callable] = (),
) -> dict[str, float]:
    """Returns the loss and metrics of the ensemble's averaged prediction.

    The ensemble predicts ȳ = mean over the models of their outputs
    (``models.ensemble(X)``); it is scored as one model would be by
    ``ann.evaluate``: ``{"loss": …, metric: …}`` on ``data = (X, y)`` or
    ``(X, y, w)`` (weighted). For MSE its loss is the bias² term of the
    models' decomposition: averaging removes the variance.

    Raises:
      ValueError: data that is not (X, y) or (X, y, w).
    """
    if not isinstance(data, tuple | list) or len(data) not in (2, 3):
        raise _checks.fail("data", "(X, y) or (X, y, w)", type(data).__name__)
    w = data[2] if len(data) == 3 else 1.0
    pred = models.ensemble(data[0])[None]
    kwargs = {"loss": loss, "metrics": tuple(metrics)}
    return {k: float(v[0]) for k, v in _scores(kwargs, data[1], pred, w).items()}
