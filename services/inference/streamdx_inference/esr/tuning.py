"""Equal-budget hyper-parameter search for the ESR comparison (training-time only).

Every learned model of ``streamdx eval esr`` — GRU, Random Forest, FFNN, Wide & Deep — is tuned
the same way on the *training part* of a split, which is all :func:`tune` ever receives:

* the same number of candidate configurations (:data:`SEARCH_SIZE`, a full grid of
  :data:`SEARCH_SPACES` built with :class:`sklearn.model_selection.ParameterGrid`); each grid
  holds the model's former fixed setting;
* each candidate is trained on the ``fit`` tubes with the same seed and scored by the MAE of the
  60-minute height on the ``val`` tubes (the networks also use ``val`` for early stopping); the
  lowest MAE wins (ties: first in grid order);
* the winner is the model: the networks keep their early-stopped weights; the forest, which has
  no early stopping, is refitted with the winning setting on ``fit`` + ``val``;
* every model predicts the 60-minute height as the last observed height plus a predicted
  change (:func:`streamdx_inference.esr.features.change_target`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import ParameterGrid

from streamdx_inference.esr.features import (
    MAX_MINUTE,
    MinMaxScaler,
    Series,
    add_change,
    change_target,
    concat_series,
)

__all__ = [
    "LEARNED_MODELS",
    "SEARCH_SIZE",
    "SEARCH_SPACES",
    "FlatNetForecaster",
    "Forecaster",
    "ForestForecaster",
    "Tuned",
    "candidates",
    "flat_inputs",
    "params_label",
    "tune",
]

#: Candidate configurations per learned model (the same for every model).
SEARCH_SIZE = 4
#: Search grid per learned model: learning rate x width for the networks, feature subsampling
#: x leaf size for the forest. Each grid contains the model's former fixed setting.
SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "gru": {"lr": [3e-3, 1e-2], "hidden": [32, 64]},
    "rf": {"max_features": [1.0, 0.33], "min_samples_leaf": [1, 3]},
    "ffnn": {"lr": [3e-3, 1e-2], "widths": [(32, 16), (64, 32)]},
    "wdnn": {"lr": [3e-3, 1e-2], "widths": [(32, 16), (64, 32)]},
}
LEARNED_MODELS = tuple(SEARCH_SPACES)
#: Trees of every forest candidate.
FOREST_TREES = 200


class Forecaster(Protocol):
    """A fitted model: the forecast of the (unscaled) 60-minute height of a set of tubes."""

    def predict(self, s: Series) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class Tuned:
    """Result of one search: the chosen model, its setting and every candidate's validation MAE."""

    model: str
    params: dict[str, Any]
    val_mae: list[float]
    forecaster: Forecaster


def candidates(model: str) -> list[dict[str, Any]]:
    """The candidate configurations of ``model``, in grid order."""
    return list(ParameterGrid(SEARCH_SPACES[model]))


def params_label(params: dict[str, Any]) -> str:
    """Stable text label of a configuration (for counting choices in reports)."""
    return ", ".join(f"{k}={params[k]}" for k in sorted(params))


def flat_inputs(s: Series, scaler: MinMaxScaler) -> NDArray[np.float64]:
    """Scaled ``[heights 2..30, age, sex]`` rows of the flat models."""
    return np.concatenate([scaler.h(s.heights), scaler.static(s.age, s.sex)], axis=1)


@dataclass(frozen=True)
class ForestForecaster:
    """A random forest fitted on the change from the last height; forecast = last height + change."""

    forest: Any
    scaler: MinMaxScaler

    def predict(self, s: Series) -> NDArray[np.float64]:
        """Forecast of h60, shape (n,)."""
        return add_change(s, np.asarray(self.forest.predict(flat_inputs(s, self.scaler)), dtype=np.float64))


@dataclass(frozen=True)
class FlatNetForecaster:
    """A :class:`~streamdx_inference.esr.models.LastPlusChange` network on the flat inputs."""

    net: Any
    scaler: MinMaxScaler

    def predict(self, s: Series) -> NDArray[np.float64]:
        """Forecast of h60, shape (n,)."""
        from streamdx_inference.esr.models import predict_net

        return self.scaler.h_inv(predict_net(self.net, (flat_inputs(s, self.scaler),)))


def _forest(params: dict[str, Any], seed: int, s: Series, scaler: MinMaxScaler) -> ForestForecaster:
    rf = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1, **params)
    rf.fit(flat_inputs(s, scaler), change_target(s))
    return ForestForecaster(rf, scaler)


def _flat_net(
    model: str, params: dict[str, Any], seed: int, fit: Series, val: Series, scaler: MinMaxScaler
) -> FlatNetForecaster:
    import torch

    from streamdx_inference.esr.models import FFNN, LastPlusChange, TrainConfig, WideDeep, fit_net

    torch.manual_seed(seed)
    xf, xv = flat_inputs(fit, scaler), flat_inputs(val, scaler)
    inner = (FFNN if model == "ffnn" else WideDeep)(xf.shape[1], tuple(params["widths"]))
    net = LastPlusChange(inner, last_index=fit.heights.shape[1] - 1)
    cfg = TrainConfig(lr=float(params["lr"]))
    trained, _ = fit_net(net, (xf,), scaler.h(fit.h60), (xv,), scaler.h(val.h60), cfg, seed)
    return FlatNetForecaster(trained, scaler)


def _candidate(model: str, params: dict[str, Any], fit: Series, val: Series, seed: int) -> Forecaster:
    """One candidate trained on ``fit`` (networks: early stopping on ``val``)."""
    if model == "gru":
        from streamdx_inference.esr.training import fit_gru

        return fit_gru(fit, val, seed, last_minute=MAX_MINUTE, lr=float(params["lr"]), hidden=int(params["hidden"]))
    scaler = MinMaxScaler.fit(concat_series(fit, val))
    if model == "rf":
        return _forest(params, seed, fit, scaler)
    if model in ("ffnn", "wdnn"):
        return _flat_net(model, params, seed, fit, val, scaler)
    raise ValueError(f"unknown model {model!r}; expected one of {', '.join(LEARNED_MODELS)}")


def tune(model: str, fit: Series, val: Series, seed: int) -> Tuned:
    """Search :data:`SEARCH_SIZE` configurations of ``model`` on the training part of a split
    (``fit`` tubes to train, ``val`` tubes to choose) and return the chosen model."""
    if model not in SEARCH_SPACES:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(LEARNED_MODELS)}")
    grid = candidates(model)
    fitted = [_candidate(model, p, fit, val, seed) for p in grid]
    val_mae = [float(np.mean(np.abs(f.predict(val) - val.h60))) for f in fitted]
    best = int(np.argmin(val_mae))
    chosen = fitted[best]
    if model == "rf":
        both = concat_series(fit, val)
        chosen = _forest(grid[best], seed, both, MinMaxScaler.fit(both))
    return Tuned(model, grid[best], val_mae, chosen)
