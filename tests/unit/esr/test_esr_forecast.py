"""Features, runtime forecaster (onnxruntime only) and the lab-CSV training path."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamdx_devkit.sim.esr import esr_cohort_simulate
from streamdx_inference.esr.features import (
    MinMaxScaler,
    linear_extrapolation,
    series_from_mapping,
    series_from_tubes,
)
from streamdx_inference.esr.forecaster import EsrForecaster
from streamdx_inference.esr.training import load_csv_series, split_indices

MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "esr_gru"


def test_series_from_mapping_interpolates_and_assumes_one_at_zero() -> None:
    s = series_from_mapping({4: 0.9, 12: 0.5}, 12)
    assert s.shape == (11,)
    assert s[0] == pytest.approx(1.0 - 0.1 * 2 / 4)  # minute 2 between (0, 1.0) and (4, 0.9)
    assert s[-1] == 0.5 and s[6] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        series_from_mapping({4: 0.9}, 10)


def test_linear_extrapolation_exact_on_lines() -> None:
    minutes = np.arange(2, 31, dtype=float)
    h = np.stack([1 - 0.004 * minutes, 1 - 0.001 * minutes])
    np.testing.assert_allclose(linear_extrapolation(h), [1 - 0.24, 1 - 0.06])


def test_scaler_roundtrip_and_split_disjoint() -> None:
    s = series_from_tubes(esr_cohort_simulate(50, seed=1))
    sc = MinMaxScaler.fit(s)
    np.testing.assert_allclose(sc.h_inv(sc.h(s.heights)), s.heights)
    assert sc.h(s.heights).min() >= 0 and sc.h(s.heights).max() <= 1
    fit, val, test = split_indices(130, seed=7)
    assert (len(fit), len(val), len(test)) == (83, 21, 26)
    assert len(set(fit) | set(val) | set(test)) == 130


class _FakeSession:
    def __init__(self, T: int) -> None:
        self.T = T
        self.calls: list[dict[str, np.ndarray]] = []

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(feeds)
        return [feeds["heights"][:, -1] - 0.1]


def _meta() -> dict[str, Any]:
    return {
        "scaler": {"h_min": 0.0, "h_max": 1.0, "age_min": 20.0, "age_max": 80.0},
        "lengths": {str(T): {"file": f"model_T{T}.onnx", "q05": -0.02, "q95": 0.03} for T in (10, 15, 20, 24, 30)},
    }


def test_forecaster_picks_longest_usable_length() -> None:
    sessions = {T: _FakeSession(T) for T in (10, 15, 20, 24, 30)}
    f = EsrForecaster(sessions, _meta())
    heights = {m: 1.0 - 0.01 * m for m in range(0, 28)}
    h60, lo, hi = f.forecast(heights, 50.0, "F")
    assert sessions[24].calls and not sessions[30].calls
    feeds = sessions[24].calls[0]
    assert feeds["heights"].shape == (1, 23) and feeds["static"].tolist() == [[0.5, 1.0]]
    assert h60 == pytest.approx(0.76 - 0.1, abs=1e-6)
    assert lo == pytest.approx(h60 - 0.02) and hi == pytest.approx(h60 + 0.03)
    f.forecast({m: 1.0 - 0.01 * m for m in range(0, 61)}, 50.0, "M")
    assert sessions[30].calls[0]["heights"].shape == (1, 29)
    with pytest.raises(ValueError):
        f.forecast({m: 1.0 for m in range(0, 10)}, 50.0, "M")
    with pytest.raises(ValueError):
        f.forecast(heights, 50.0, "X")  # type: ignore[arg-type]


def test_shipped_model_forecasts_simulated_tubes() -> None:
    meta = json.loads((MODEL_DIR / "esr_gru.json").read_text())
    assert meta["simulated"] is True
    f = EsrForecaster.load(MODEL_DIR)
    tubes = esr_cohort_simulate(40, seed=777)
    errs: dict[int, list[float]] = {10: [], 30: []}
    last: list[float] = []
    for t in tubes:
        obs = dict(enumerate(t.heights_observed))
        for T in errs:
            h60, lo, hi = f.forecast({m: obs[m] for m in range(T + 1)}, t.age, t.sex)
            assert lo <= h60 <= hi
            errs[T].append(abs(h60 - obs[60]))
        last.append(abs(obs[30] - obs[60]))
    assert np.mean(errs[30]) < 0.03
    assert np.mean(errs[30]) < 0.5 * np.mean(last)
    assert np.mean(errs[30]) < np.mean(errs[10])


def _write_csv(path: Path, n: int, in_mm: bool) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["tube", "minute", "mm" if in_mm else "height", "age", "sex", "ESR60"])
        for t in esr_cohort_simulate(n, seed=5):
            for m, h in enumerate(t.heights_observed):
                v = h * t.geometry.column_mm if in_mm else h
                w.writerow([t.tube_id, m, f"{v:.5f}", t.age, t.sex, f"{t.esr_mm_h:.1f}"])


@pytest.mark.parametrize("in_mm", [False, True])
def test_load_csv_series(tmp_path: Path, in_mm: bool) -> None:
    p = tmp_path / "lab.csv"
    _write_csv(p, 12, in_mm)
    s, ids, esr = load_csv_series(p)
    ref = series_from_tubes(esr_cohort_simulate(12, seed=5))
    assert len(ids) == 12 and np.all(np.isfinite(esr))
    np.testing.assert_allclose(s.heights, ref.heights, atol=1e-4)
    np.testing.assert_allclose(s.h60, ref.h60, atol=1e-4)
    bad = tmp_path / "bad.csv"
    bad.write_text("tube,minute,age,sex\n")
    with pytest.raises(ValueError):
        load_csv_series(bad)


def test_train_from_csv_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from streamdx_inference.esr.training import main

    p = tmp_path / "lab.csv"
    _write_csv(p, 30, in_mm=False)
    out = tmp_path / "model"
    assert main(["--csv", str(p), "--out", str(out)]) == 0
    meta = json.loads((out / "esr_gru.json").read_text())
    assert meta["simulated"] is False and set(meta["lengths"]) == {"10", "15", "20", "24", "30"}
    assert "lab CSV" in (out / "MODEL_CARD.md").read_text()
    f = EsrForecaster.load(out)
    h60, lo, hi = f.forecast({m: 1.0 - 0.005 * m for m in range(31)}, 60.0, "F")
    assert np.isfinite(h60) and lo <= h60 <= hi
