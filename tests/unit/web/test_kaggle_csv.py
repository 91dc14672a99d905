"""The console's single-beat (Kaggle layout) CSV: recognition, parsing, refusals with row numbers,
metrics of a labelled file, the stored result and its exports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from streamdx_inference.ecg.kaggle_classifier import MODEL_NAME
from streamdx_inference.settings import default_models_dir
from streamdx_web.kaggle_beats import (
    CLASSES,
    KaggleCsvError,
    classify_and_store,
    kaggle_candidate,
    load_arrays,
    load_summary,
    metrics,
    metrics_view,
    parse_kaggle_csv,
    predictions_csv,
    predictions_json,
    row_page,
)

MODELS = default_models_dir()


def _row(values: np.ndarray, label: float | None = None, fmt: str = "{:.18e}") -> str:
    vals = [fmt.format(float(v)) for v in values]
    if label is not None:
        vals.append(fmt.format(label))
    return ",".join(vals)


def _csv(n: int = 6, labels: bool = True, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 187)).astype(np.float32)
    x[:, 150:] = 0.0  # zero padding as in the published files
    y = np.arange(n) % 5
    lines = [_row(x[i], float(y[i]) if labels else None) for i in range(n)]
    return ("\n".join(lines) + "\n").encode(), x, y


def test_candidate_is_a_headerless_row_of_many_numbers() -> None:
    data, _, _ = _csv()
    assert kaggle_candidate(data)
    assert kaggle_candidate(("\ufeff" + ",".join(["0.5"] * 150) + "\n").encode())  # wrong length: still told why
    assert not kaggle_candidate(b"time,ECG\n0,0.1\n0.004,0.2\n")
    assert not kaggle_candidate((",".join(f"c{i}" for i in range(187)) + "\n").encode())  # a header row
    assert not kaggle_candidate(b"0.1,0.2,0.3\n")


def test_published_layout_with_labels() -> None:
    data, x, y = _csv(7)
    parsed = parse_kaggle_csv(data)
    assert parsed.beats.dtype == np.float32 and parsed.beats.shape == (7, 187)
    np.testing.assert_allclose(parsed.beats, x, atol=1e-7)
    assert parsed.labels is not None and parsed.labels.tolist() == y.tolist()


def test_without_labels_crlf_bom_semicolons_and_blank_lines() -> None:
    _, x, _ = _csv(3, labels=False)
    text = "\ufeff" + "\r\n".join(_row(v, fmt="{:.6f}").replace(",", ";") for v in x) + "\r\n\r\n"
    parsed = parse_kaggle_csv(text.encode())
    assert parsed.labels is None and parsed.beats.shape == (3, 187)


def _refusal(data: bytes, **kw: int) -> str:
    with pytest.raises(KaggleCsvError) as exc:
        parse_kaggle_csv(data, **kw)
    return str(exc.value)


def test_wrong_row_length_names_the_rows() -> None:
    data, _, _ = _csv(6)
    lines = data.decode().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:-2])  # row 3: 186 values
    lines[4] = lines[4] + ",0.5"  # row 5: 189 values
    msg = _refusal(("\n".join(lines) + "\n").encode())
    assert "2 rows have the wrong length: rows 3, 5 (row 3 has 186 values)" in msg
    assert "Every row must have 188 values like the first (187 samples and the class)" in msg
    msg = _refusal((",".join(["0.5"] * 150) + "\n").encode())
    assert msg.startswith("Row 1 has 150 values; a Kaggle-layout row has 187 (one beat at 125 Hz) or 188")


def test_values_outside_unit_range_or_not_numbers() -> None:
    data, _, _ = _csv(8)
    lines = data.decode().splitlines()
    vals = lines[6].split(",")
    vals[9] = "1.25"
    lines[6] = ",".join(vals)
    msg = _refusal(("\n".join(lines) + "\n").encode())
    assert "1 row is not a Kaggle-layout beat: row 7. Row 7: value 10 is 1.25, outside [0, 1]" in msg
    vals[9] = "abc"
    lines[6] = ",".join(vals)
    assert _refusal(("\n".join(lines) + "\n").encode()) == "Row 7, value 10: 'abc' is not a number."
    vals[9] = "nan"
    lines[6] = ",".join(vals)
    assert "Row 7: value 10 is not a number (NaN)" in _refusal(("\n".join(lines) + "\n").encode())


def test_many_bad_rows_are_summarised() -> None:
    rows = [_row(np.full(187, 2.0), fmt="{:g}") for _ in range(9)]
    msg = _refusal(("\n".join(rows)).encode())
    assert "9 rows are not a Kaggle-layout beat: rows 1, 2, 3, 4, 5 and 4 more" in msg


def test_label_must_be_a_class_index() -> None:
    data, _, _ = _csv(4)
    lines = data.decode().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",7"
    msg = _refusal(("\n".join(lines)).encode())
    assert "The class column (value 188) must be 0–4 (N, S, V, F, Q): row 4 (row 4 has 7)" in msg
    lines[3] = lines[3].rsplit(",", 1)[0] + ",1.5"
    assert "(row 4 has 1.5)" in _refusal(("\n".join(lines)).encode())


def test_limits_and_encoding() -> None:
    data, _, _ = _csv(5)
    assert "The CSV has 5 beats; the console classifies at most 4 per upload" in _refusal(data, max_rows=4)
    assert _refusal(b"\n\n") == "The CSV is empty."
    assert "not UTF-8" in _refusal(b"\xff\xfe0.1,0.2")


def test_metrics_match_a_direct_count() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    pred = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 5, 400))
    pred[labels == 3] = 0  # class F never predicted right
    probs = np.eye(5, dtype=np.float32)[pred]
    m = metrics(labels, pred, probs)
    for i in range(5):
        for j in range(5):
            assert m["confusion"][i][j] == int(np.sum((labels == i) & (pred == j)))
    assert m["accuracy"] == pytest.approx(np.mean(labels == pred))
    f1 = []
    for i, c in enumerate(CLASSES):
        tp = np.sum((labels == i) & (pred == i))
        p = tp / max(1, np.sum(pred == i))
        r = tp / np.sum(labels == i)
        assert m["per_class"][c]["precision"] == pytest.approx(p)
        assert m["per_class"][c]["recall"] == pytest.approx(r)
        f1.append(0.0 if tp == 0 else 2 * p * r / (p + r))
        assert m["per_class"][c]["f1"] == pytest.approx(f1[-1])
    assert m["macro"]["f1"] == pytest.approx(np.mean(f1))
    tables, conf = metrics_view(m)
    assert conf.counts == m["confusion"] and conf.rows == list(CLASSES)
    assert tables[0].rows[-1][0] == "macro average"
    assert m["binary"]["confusion"][1][1] == int(np.sum((labels != 0) & (pred != 0)))


@pytest.mark.skipif(not (MODELS / MODEL_NAME / "model.onnx").exists(), reason="models/ecg_kaggle_beats not trained")
def test_classify_store_page_and_export(tmp_path: Path) -> None:
    data, _, y = _csv(60)
    parsed = parse_kaggle_csv(data)
    rid = classify_and_store(parsed, MODELS, tmp_path, "alice")
    s = load_summary(tmp_path, rid)
    a = load_arrays(tmp_path, rid)
    assert s is not None and a is not None
    assert s["n"] == 60 and s["has_labels"] and s["model"]["name"] == MODEL_NAME
    assert sum(s["counts"].values()) == 60
    assert s["reference_counts"] == {c: int(np.sum(y == i)) for i, c in enumerate(CLASSES)}
    rows, pages, matching = row_page(a, 2, "all", per_page=25)
    assert pages == 3 and matching == 60 and rows[0]["row"] == 26
    errors, _, n_err = row_page(a, 1, "errors", per_page=100)
    assert n_err == 60 - s["metrics"]["confusion"][0][0] - sum(s["metrics"]["confusion"][i][i] for i in range(1, 5))
    assert all(r["ok"] is False for r in errors)
    out = list(csv.DictReader(io.StringIO(predictions_csv(a))))
    assert len(out) == 60 and out[0]["row"] == "1" and out[0]["class"] in CLASSES and "label_class" in out[0]
    js = predictions_json(a, s)
    assert len(js["rows"]) == 60 and "user" not in js
    json.dumps(js)
    assert load_summary(tmp_path, "../etc") is None and load_summary(tmp_path, "nosuchid") is None
