"""What ``fit`` and ``fit_many`` return, built from the loop's progress.

The history stacked per epoch (and model), each model's best epoch of the
monitored value, and the params returned: the best epoch's when early
stopping restores them, else the last finite ones (:mod:`.loop`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from annjax import optim as _optim
from annjax.training.types import EarlyStopping, FitResult, ManyResult, TrainState

if TYPE_CHECKING:
    from annjax.training.loop import Progress

__all__ = ["fit_result", "learning_rate_logged", "many_result"]


def best_epochs(history, es: EarlyStopping | None, n: int) -> np.ndarray:
    """Returns each model's best epoch of the monitored value (−1: none)."""
    monitor = (
        es.monitor
        if es is not None
        else ("val_loss" if "val_loss" in history else "loss")
    )
    values = np.asarray(history.get(monitor, []), np.float32).reshape(-1, n)
    if es is not None:  # the tracker's epoch (min_delta included)
        return np.array([es.replay(values[:, i]).best_epoch for i in range(n)], int)
    values = np.where(np.isfinite(values), values, np.nan)
    return np.array(
        [int(np.nanargmin(c)) if not np.isnan(c).all() else -1 for c in values.T], int
    )


def stacked_history(history: dict[str, list]) -> dict[str, np.ndarray]:
    """Returns name → (epochs, models) arrays; ``step_loss`` → (steps, models)."""
    return {
        k: np.concatenate(v) if k == "step_loss" else np.stack(v)
        for k, v in history.items()
    }


def fit_result(ts, p: Progress, es: EarlyStopping | None) -> FitResult:
    """Returns one model's :class:`FitResult` from the loop's progress."""
    hist = {k: v[:, 0] for k, v in stacked_history(p.history).items()}
    params, state, ema = _kept(ts, p)
    best = best_epochs(p.history, es, 1)
    at = _params_epoch(p, best)
    return FitResult(
        params, state, hist, int(best[0]), p.reasons[0], ts, p.done, int(at[0]), ema
    )


def _kept(ts, p: Progress) -> tuple:
    """Returns the (params, state, ema) a result holds: the best epoch's, or
    the last finite ones."""
    return p.best if p.best is not None else (ts.params, ts.state, ts.ema)


def many_result(ts, p: Progress, es, hyper, model=None) -> ManyResult:
    """Returns ``fit_many``'s :class:`ManyResult` from the loop's progress."""
    n = len(p.active)
    params, state, ema = _kept(ts, p)
    swept = {k: np.asarray(v) for k, v in hyper.items()}
    best = best_epochs(p.history, es, n)
    return ManyResult(
        params,
        state,
        stacked_history(p.history),
        best,
        list(p.reasons),
        swept,
        ts,
        p.done,
        p.ran.copy(),
        _params_epoch(p, best),
        ema,
        model,
    )


def _params_epoch(p: Progress, best: np.ndarray) -> np.ndarray:
    """Returns the epoch of each model's returned params: best, or last kept."""
    if p.best is None:
        return p.kept_epoch.copy()
    return np.where(best >= 0, best, -1)


def learning_rate_logged(ts: TrainState) -> bool:
    """Returns whether the history will hold ``lr`` (an injected learning rate)."""
    return _optim.learning_rate(ts.opt_state) is not None
