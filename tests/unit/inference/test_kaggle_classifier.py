"""The single-beat (Kaggle layout) classifier: input validation, and the shipped model on onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamdx_inference.ecg.kaggle_classifier import (
    BEAT_LEN,
    CLASSES,
    MODEL_NAME,
    KaggleBeatClassifier,
    check_beats,
)
from streamdx_inference.settings import default_models_dir

MODEL_DIR = default_models_dir() / MODEL_NAME


def _beats(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, BEAT_LEN)).astype(np.float32)


def test_valid_rows_pass_unchanged() -> None:
    x = _beats(4)
    beats, valid, problems = check_beats(x)
    assert beats.dtype == np.float32 and beats.shape == (4, BEAT_LEN)
    assert valid.all() and problems == []
    np.testing.assert_array_equal(beats, x)


def test_bad_rows_are_reported_by_row_not_raised() -> None:
    x = _beats(6).astype(np.float64)
    x[1, 10] = np.nan
    x[2, 0] = np.inf
    x[3, 186] = 1.5
    x[4, 5] = -0.2
    x[4, 6] = 2.0
    x[5, 7] = 1.0 + 1e-9  # text rounding: clipped, not refused
    beats, valid, problems = check_beats(x)
    assert valid.tolist() == [True, False, False, False, False, True]
    reasons = {p.row: p.reason for p in problems}
    assert set(reasons) == {1, 2, 3, 4}
    assert reasons[1] == "value 11 is not a number (NaN)"
    assert reasons[2] == "value 1 is infinite"
    assert reasons[3] == "value 187 is 1.5, outside [0, 1]"
    assert reasons[4] == "value 6 is -0.2, outside [0, 1] (2 such values in the row)"
    assert beats[5, 7] == 1.0
    assert not beats[~valid].any()  # invalid rows are zeroed, never fed as they are


@pytest.mark.parametrize("shape", [(3, 186), (3, 188), (2, 3, BEAT_LEN), (10,)])
def test_wrong_shape_is_a_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"shape \(n, {BEAT_LEN}\)"):
        check_beats(np.zeros(shape))


def test_non_numeric_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="numbers"):
        check_beats([["a"] * BEAT_LEN])


def test_one_beat_is_one_row() -> None:
    beats, valid, _ = check_beats(np.full(BEAT_LEN, 0.5))
    assert beats.shape == (1, BEAT_LEN) and valid.all()


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="streamdx train kaggle-beats"):
        KaggleBeatClassifier(tmp_path)


@pytest.mark.skipif(not (MODEL_DIR / "model.onnx").exists(), reason="models/ecg_kaggle_beats not trained")
def test_shipped_model_classifies_and_skips_bad_rows() -> None:
    clf = KaggleBeatClassifier.from_models_dir(default_models_dir())
    meta = json.loads((MODEL_DIR / "model.json").read_text())
    assert clf.classes == CLASSES == tuple(meta["classes"])
    assert "intra-patient" in meta["split"]["protocol"]
    x = _beats(5)
    x[2, 3] = np.nan
    res = clf.classify(x)
    assert res.valid.tolist() == [True, True, False, True, True]
    assert res.classes[2] is None and np.isnan(res.probs[2]).all()
    assert [p.row for p in res.problems] == [2]
    ok = res.probs[res.valid]
    np.testing.assert_allclose(ok.sum(axis=1), 1.0, atol=1e-5)
    assert all(c in CLASSES for i, c in enumerate(res.classes) if i != 2)
    assert res.class_index.tolist()[2] == -1
    empty = clf.classify(np.zeros((0, BEAT_LEN), np.float32))
    assert empty.classes == [] and empty.probs.shape == (0, len(CLASSES))
