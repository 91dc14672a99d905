"""``streamdx eval beats --protocol ds1ds2`` scores the labels as the service serves them when no
shipped model was trained on a DS2 record (each model's ``model.json`` says which MITDB records it
read), and the classifier alone, saying so, when one was or does not say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb

from streamdx_devkit.sim import ecg_synthesize
from streamdx_inference.ecg.datasets import DS1, DS2
from streamdx_inference.ecg.evaluation.beats_eval import UNREADABLE, ds2_records_in
from streamdx_inference.ecg.evaluation.beats_eval import main as beats_main
from streamdx_inference.ecg.labeler import EcgModel

REPO = Path(__file__).resolve().parents[3]
FS = 360


def _model(data: Any) -> EcgModel:
    return EcgModel("ecg_af", None, {"data": data} if data is not None else {})


def test_ds2_records_are_read_from_the_model_json() -> None:
    assert ds2_records_in(_model({"mitdb_records": list(DS1)})) == []
    assert ds2_records_in(_model({"mitdb_records": ["101", "232", "100"]})) == ["100", "232"]  # in DS2's order
    assert ds2_records_in(_model({"train_records": list(DS1), "test_records": list(DS2)})) == []
    assert ds2_records_in(_model({"groups": {"mitdb": 10}})) is None  # does not say
    assert ds2_records_in(_model(None)) is None
    assert ds2_records_in(_model({"mitdb_records": "100"})) is None  # malformed: not a list


def _write_record(folder: Path, name: str, scenario: str, seed: int) -> None:
    ecg = ecg_synthesize(90.0, FS, seed=seed, scenario=scenario)
    x = ecg.signal_mv.copy()
    wfdb.wrsamp(name, fs=FS, units=["mV"], sig_name=["MLII"], p_signal=x[:, None], fmt=["212"],
                adc_gain=[200.0], baseline=[0], write_dir=str(folder))  # fmt: skip
    wfdb.wrann(name, "atr", ecg.r_samples.astype(np.int64), symbol=list(ecg.beat_symbols), write_dir=str(folder))


@pytest.fixture(scope="module")
def ds2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ds2")
    _write_record(d, "100", "sinus", seed=11)
    _write_record(d, "103", "ectopy", seed=12)
    return d


def _models(tmp: Path, af_records: list[str] | None, af_window: str | None = None) -> Path:
    """A copy of the shipped models whose AF model.json lists ``af_records`` (None: no list) and,
    when given, names another beat window."""
    models = tmp / "models"
    shutil.copytree(REPO / "models", models, ignore=shutil.ignore_patterns("esr_*", "slides_*", "ecg_kaggle_*"))
    meta_path = models / "ecg_af" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["data"].pop("mitdb_records", None)
    if af_records is not None:
        meta["data"]["mitdb_records"] = af_records
    if af_window is not None:
        meta["window"] = af_window
    meta_path.write_text(json.dumps(meta))
    return models


def _run(data: Path, models: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    out = tmp / "beats.json"
    rc = beats_main(["--data", str(data), "--protocol", "ds1ds2", "--models", str(models), "--cache",
                     str(tmp / "cache"), "--out", str(out)])  # fmt: skip
    assert rc == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_labels_as_served_when_no_model_saw_ds2(
    ds2_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep, out = _run(ds2_folder, _models(tmp_path, [*DS1, "217"]), tmp_path, capsys)
    assert rep["protocol"]["labels"] == "as served" and "labels: as served" in out
    assert rep["protocol"]["test_records"] == ["100", "103"]
    assert rep["confusion_cols"] == ["N", "S", "V", "F", "Q", UNREADABLE]
    # a stream's first beats are unreadable (the gate's start-up): no class, false negatives of their class
    n_row = rep["confusion"][rep["confusion_rows"].index("N")]
    assert n_row[-1] >= 2 and rep["as_served_unreadable"]["N"] == n_row[-1]
    assert rep["classes"]["N"]["fn"] >= n_row[-1]
    # the classifier alone labels every beat: its N Se is at least the served one's
    assert rep["classifier_classes"]["N"]["se"] >= rep["classes"]["N"]["se"]
    assert rep["as_served_af_model"].startswith("ecg_af ") and "(trained without DS2)" in rep["as_served_af_model"]
    # per record, the served labels
    assert set(rep["records"]) == {"100", "103"}


@pytest.mark.parametrize("af_records", [[*DS1, "100"], None])
def test_the_classifier_alone_when_a_model_saw_ds2_or_does_not_say(
    af_records: list[str] | None, ds2_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep, out = _run(ds2_folder, _models(tmp_path, af_records), tmp_path, capsys)
    assert rep["protocol"]["labels"] == "classifier"
    assert "scoring the classifier alone" in out
    assert ("trained on DS2 records 100" if af_records else "does not list its MITDB training records") in out
    assert rep["confusion_cols"] == ["N", "S", "V", "F", "Q"]
    assert "as_served_af_model" not in rep and "classifier_classes" not in rep


def test_the_classifier_alone_when_the_models_disagree_on_the_beat_window(
    ds2_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep, out = _run(ds2_folder, _models(tmp_path, list(DS1), af_window="rr"), tmp_path, capsys)
    assert rep["protocol"]["labels"] == "classifier"
    assert "different beat windows (fixed, rr)" in out
