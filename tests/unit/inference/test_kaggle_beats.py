"""Kaggle-style beat extraction (Kachuee et al. 2018) on a synthetic WFDB record, and a tiny run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from streamdx_inference.ecg.kaggle import BEAT_LEN, CLASSES, evaluate_kaggle, kaggle_beats, window_segments

FS = 360.0
RR_S = 0.8
DURATION_S = 60.0
V_EVERY = 5  # every 5th beat is a V beat (wide QRS)


def _gauss(t: np.ndarray, mu: float, sigma: float, amp: float) -> np.ndarray:
    return amp * np.exp(-0.5 * ((t - mu) / sigma) ** 2)


def _write_record(tmp: Path, name: str = "900", unannotated: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A 60-s two-channel 360-Hz record (V5 = slow sine, MLII = ECG) with its ``.atr``.

    Returns the R times (s) and symbols of every beat in the signal; the beats whose index is in
    ``unannotated`` are left out of the annotation file.
    """
    t = np.arange(round(DURATION_S * FS)) / FS
    r_times = np.arange(0.5, DURATION_S - 0.5, RR_S)
    symbols = np.array(["V" if i % V_EVERY == V_EVERY - 1 else "N" for i in range(r_times.size)])
    ecg = np.zeros_like(t)
    for r, s in zip(r_times, symbols, strict=True):
        ecg += _gauss(t, r - 0.18, 0.025, 0.12)  # P
        ecg += _gauss(t, r, 0.012 if s == "N" else 0.035, 1.2)  # QRS: V beats are wide
        ecg += _gauss(t, r + 0.28, 0.05, 0.3)  # T
    v5 = 0.5 * np.sin(2 * np.pi * t / 10.0)  # one maximum per 10-s window: no beats from this lead
    wfdb.wrsamp(
        name, fs=FS, units=["mV", "mV"], sig_name=["V5", "MLII"], p_signal=np.column_stack([v5, ecg]),
        fmt=["16", "16"], write_dir=str(tmp),
    )  # fmt: skip
    keep = np.array([i not in unannotated for i in range(r_times.size)])
    wfdb.wrann(
        name, "atr", np.round(r_times[keep] * FS).astype(np.int64), symbol=list(symbols[keep]), write_dir=str(tmp)
    )
    return r_times, symbols


def test_beats_are_187_samples_in_unit_range_zero_padded(tmp_path: Path) -> None:
    _write_record(tmp_path)
    X, _, rec = kaggle_beats(tmp_path, ["900"])
    assert X.dtype == np.float32 and X.ndim == 2 and X.shape[1] == BEAT_LEN
    assert X.min() >= 0.0 and X.max() <= 1.0
    # Each beat starts at its R peak (normalised value > 0.9) ...
    assert np.all(X[:, 0] > 0.9)
    # ... and spans 1.2 T = 1.2 * 0.8 s * 125 Hz = 120 samples, then zeros.
    assert np.all(X[:, 121:] == 0.0)
    assert np.all(X[:, :100].max(axis=1) > 0.0)
    assert set(rec.tolist()) == {"900"}


def test_count_and_labels_match_the_annotations(tmp_path: Path) -> None:
    r_times, symbols = _write_record(tmp_path)
    X, y, _ = kaggle_beats(tmp_path, ["900"])
    # Every annotated beat but possibly one cut at the record's end is extracted once.
    assert r_times.size - 1 <= y.size <= r_times.size
    assert int(np.sum(y == "V")) == int(np.sum(symbols == "V"))
    assert set(y.tolist()) == {"N", "V"}
    # The labels belong to the right segments: V beats are wide, so still high 5 samples (40 ms) later.
    assert np.all(X[y == "V", 5] > 0.5)
    assert np.all(X[y == "N", 5] < 0.2)


def test_lead_is_mlii_and_unannotated_beats_are_dropped(tmp_path: Path) -> None:
    r_times, symbols = _write_record(tmp_path, unannotated=(3, 4, 10))
    _, y, _ = kaggle_beats(tmp_path, ["900"])
    assert r_times.size - 4 <= y.size <= r_times.size - 3
    assert int(np.sum(y == "V")) == int(np.sum(symbols == "V")) - 1  # beat 4 was a V beat


def test_annotation_anchored_variant(tmp_path: Path) -> None:
    r_times, _ = _write_record(tmp_path)
    X, y, _ = kaggle_beats(tmp_path, ["900"], peaks="annotations")
    assert y.size == r_times.size
    assert np.all(X[:, 0] > 0.9)
    with pytest.raises(ValueError):
        kaggle_beats(tmp_path, ["900"], peaks="nope")


def test_window_segments_flat_and_single_peak() -> None:
    p, s = window_segments(np.zeros(1250))
    assert p.size == 0 and s.shape == (0, BEAT_LEN)
    one = np.zeros(1250)
    one[600] = 1.0
    p, s = window_segments(one)  # one candidate: no RR interval, no beat
    assert p.size == 0 and s.shape == (0, BEAT_LEN)
    two = np.zeros(1250)
    two[[100, 400]] = 1.0  # T = 300 samples → 360 > 187: truncated to 187
    p, s = window_segments(two)
    assert p.tolist() == [100, 400] and s.shape == (2, BEAT_LEN) and s[0, 0] == 1.0


def test_tiny_training_run_reports_the_contract(tmp_path: Path) -> None:
    _write_record(tmp_path)
    report = evaluate_kaggle(tmp_path, epochs=1, seed=0, progress=False)
    assert report["protocol"] == "kaggle"
    assert "intra-patient" in report["split"]
    assert report["n_train"] + report["n_val"] + report["n_test"] == report["extraction"]["n_beats"]
    assert report["n_test"] > 0 and report["n_train"] > report["n_test"]
    assert set(report["classes"]) == set(CLASSES)
    assert {"se", "ppv"} <= set(report["classes"]["V"])
    b = report["binary"]
    assert {"accuracy", "precision", "recall", "f1", "kappa", "roc_auc", "confusion"} <= set(b)
    assert sum(map(sum, b["confusion"])) == report["n_test"]
    assert 0.0 <= b["accuracy"] <= 1.0
    mc = report["multiclass"]
    assert {"accuracy", "macro_f1", "confusion"} <= set(mc)
    assert sum(map(sum, mc["confusion"])) == report["n_test"]
