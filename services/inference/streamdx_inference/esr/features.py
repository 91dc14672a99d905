"""Feature preparation shared by ESR training, evaluation and the runtime forecaster (numpy only).

Inputs follow seed 000's study: the normalised boundary heights of minutes ``2..T`` (``T`` = 30
in the headline comparison; 10..30 accepted) plus age and sex, min-max scaled with parameters
fitted on the training split only. The target is the normalised height at minute 60; every
learned model predicts it as the last observed height plus a predicted change
(:func:`change_target` / :func:`add_change`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FIRST_MINUTE",
    "LENGTHS_REPORTED",
    "MAX_MINUTE",
    "MIN_MINUTE",
    "TARGET_MINUTE",
    "MinMaxScaler",
    "Series",
    "linear_extrapolation",
    "series_from_mapping",
]

#: First input minute (minutes 0 and 1 carry no information: h(0) = 1 by definition).
FIRST_MINUTE = 2
#: Shortest and longest last-input minute supported.
MIN_MINUTE = 10
MAX_MINUTE = 30
#: Forecast horizon (minutes).
TARGET_MINUTE = 60
#: Input lengths (last minute) reported in ``mae_vs_minutes``.
LENGTHS_REPORTED = (10, 15, 20, 24, 30)
#: Minutes used by the linear-extrapolation baseline (the last ``LINEAR_WINDOW`` minutes).
LINEAR_WINDOW = 10


@dataclass(frozen=True)
class Series:
    """Model-ready arrays of a set of tubes.

    Attributes
    ----------
    heights : ndarray, shape (n, 29)
        Normalised heights of minutes 2..30.
    age : ndarray, shape (n,)
        Age (years).
    sex : ndarray, shape (n,)
        1.0 for female, 0.0 for male.
    h60 : ndarray, shape (n,)
        Normalised height at minute 60 (target; NaN when unknown).
    """

    heights: NDArray[np.float64]
    age: NDArray[np.float64]
    sex: NDArray[np.float64]
    h60: NDArray[np.float64]

    def take(self, idx: NDArray[np.int64]) -> Series:
        """Subset of tubes."""
        return Series(self.heights[idx], self.age[idx], self.sex[idx], self.h60[idx])

    def __len__(self) -> int:
        return int(self.heights.shape[0])


@dataclass(frozen=True)
class MinMaxScaler:
    """Min-max scaling of heights (one range for all minutes and the target), age and sex."""

    h_min: float
    h_max: float
    age_min: float
    age_max: float

    @classmethod
    def fit(cls, s: Series) -> MinMaxScaler:
        """Fit on a training split."""
        h = np.concatenate([s.heights.ravel(), s.h60[np.isfinite(s.h60)]])
        return cls(float(h.min()), float(h.max()), float(s.age.min()), float(s.age.max()))

    def h(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scale heights."""
        return (x - self.h_min) / max(self.h_max - self.h_min, 1e-6)

    def h_inv(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Unscale heights."""
        return x * max(self.h_max - self.h_min, 1e-6) + self.h_min

    def static(self, age: NDArray[np.float64], sex: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scaled ``[age, sex]`` columns, shape (n, 2)."""
        a = (age - self.age_min) / max(self.age_max - self.age_min, 1e-6)
        return np.stack([a, sex], axis=1).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary."""
        return asdict(self)


def series_from_mapping(heights: Mapping[int, float], last_minute: int) -> NDArray[np.float64]:
    """Heights on integer minutes ``2..last_minute`` from a sparse minute → height mapping.

    Missing minutes are linearly interpolated; minute 0 is taken as 1.0 (the normalisation)
    when absent.

    Raises
    ------
    ValueError
        If ``last_minute`` is not covered by the mapping.
    """
    pts = {int(m): float(h) for m, h in heights.items() if np.isfinite(h)}
    pts.setdefault(0, 1.0)
    ms = np.array(sorted(pts), dtype=np.float64)
    if ms[-1] < last_minute:
        raise ValueError(f"no height at or after minute {last_minute}")
    hs = np.array([pts[int(m)] for m in ms])
    return np.interp(np.arange(FIRST_MINUTE, last_minute + 1, dtype=np.float64), ms, hs)


def linear_extrapolation(
    heights_2_to_T: NDArray[np.float64], window: int = LINEAR_WINDOW, target: int = TARGET_MINUTE
) -> NDArray[np.float64]:
    """Baseline: least-squares line through the last ``window`` minutes, extrapolated to ``target``.

    Parameters
    ----------
    heights_2_to_T : ndarray, shape (n, T - 1)
        Heights of minutes 2..T.
    """
    T = FIRST_MINUTE + heights_2_to_T.shape[1] - 1
    w = min(window, heights_2_to_T.shape[1])
    t = np.arange(T - w + 1, T + 1, dtype=np.float64)
    y = heights_2_to_T[:, -w:]
    tc = t - t.mean()
    slope = (y * tc).sum(axis=1) / (tc**2).sum()
    return np.asarray(y.mean(axis=1) + slope * (target - t.mean()), dtype=np.float64)


def change_target(s: Series) -> NDArray[np.float64]:
    """Training target of every learned model: ``h60`` minus the last observed height."""
    return np.asarray(s.h60 - s.heights[:, -1], dtype=np.float64)


def add_change(s: Series, change: NDArray[np.float64]) -> NDArray[np.float64]:
    """Forecast of ``h60`` from a predicted change: the last observed height plus ``change``."""
    return np.asarray(s.heights[:, -1] + change, dtype=np.float64)


def concat_series(*parts: Series) -> Series:
    """The tubes of several :class:`Series`, in order."""
    return Series(
        heights=np.concatenate([p.heights for p in parts]),
        age=np.concatenate([p.age for p in parts]),
        sex=np.concatenate([p.sex for p in parts]),
        h60=np.concatenate([p.h60 for p in parts]),
    )


def sex_code(sex: Literal["F", "M"] | str) -> float:
    """1.0 for female, 0.0 for male."""
    if sex not in ("F", "M"):
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")
    return 1.0 if sex == "F" else 0.0


def series_from_tubes(tubes: Sequence[Any], observed: bool = True) -> Series:
    """Build a :class:`Series` from simulated tubes (``streamdx_devkit.sim.esr.SimulatedTube``)."""
    rows = [np.asarray(t.heights_observed if observed else t.heights, dtype=np.float64) for t in tubes]
    H = np.stack(rows) if rows else np.zeros((0, TARGET_MINUTE + 1))
    return Series(
        heights=H[:, FIRST_MINUTE : MAX_MINUTE + 1],
        age=np.array([t.age for t in tubes], dtype=np.float64),
        sex=np.array([sex_code(t.sex) for t in tubes], dtype=np.float64),
        h60=H[:, TARGET_MINUTE],
    )


__all__ += ["LINEAR_WINDOW", "add_change", "change_target", "concat_series", "series_from_tubes", "sex_code"]
