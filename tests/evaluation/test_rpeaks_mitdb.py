"""EC57-style R-peak evaluation of the streaming core on real MIT-BIH records.

Data come from the ``mitdb`` fixture (tests/conftest.py): skipped locally without ../shared/data,
a failure when CI=true."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdx_dsp.evaluation.rpeaks import main

pytestmark = pytest.mark.evaluation


def test_streaming_rpeaks_on_mitdb_records(mitdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rpeaks.json"
    # 100: clean sinus rhythm; 119: ventricular bigeminy; 208: frequent PVCs and fusion beats
    rc = main(["--data", str(mitdb), "--out", str(out), "--records", "100,119,208", "--chunk-s", "1.0"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["window_ms"] == 150
    protocol = report["protocol"]
    assert protocol["records_by_lead"] == {"MLII": ["100", "119", "208"]} and protocol["scored_from"] == "5:00"
    assert capsys.readouterr().out.startswith("Protocol (EC57 style)")
    assert set(report["records"]) == {"100", "119", "208"}
    for rec in report["records"].values():
        assert rec["tp"] + rec["fn"] > 1000  # the scored references are really there
    assert report["records"]["100"]["f1"] >= 99.9
    assert report["gross"]["se"] >= 99.5
    assert report["gross"]["ppv"] >= 99.5
    assert report["gross"]["f1"] >= 99.6
    # R peaks are placed on the R wave, not merely inside the window
    assert abs(report["timing_ms"]["median_det_minus_ref"]) <= 15


def test_detector_restarted_on_short_segments(mitdb: Path, tmp_path: Path) -> None:
    """Short recordings (wearables, CinC 2017) are all start-up: the detector restarted on 20-s
    segments must not take T or P waves for QRS complexes while its levels settle. 113 has
    tall P and T waves; with the signal level started at a third of the learning period's
    maximum (Pan & Tompkins) the four records gave +P 84.5 (seconds 1-6) and 89.5 (6-18.5)."""
    out = tmp_path / "rpeaks.json"
    assert main(["--data", str(mitdb), "--out", str(out), "--records", "100,113,119,208"]) == 0
    su = json.loads(out.read_text())["startup"]
    assert su["n_segments"] == 48 and su["spans_s"] == {"early": [1.0, 6.0], "late": [6.0, 18.5]}
    assert su["early"]["tp"] > 250 and su["late"]["tp"] > 600
    for span in ("early", "late"):
        assert su[span]["se"] >= 99.5
        assert su[span]["ppv"] >= 97.5


def test_eval_rejects_unknown_record_and_missing_noise(mitdb: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.json")
    assert main(["--data", str(mitdb), "--out", out, "--records", "999"]) == 2
    args = ["--data", str(mitdb), "--out", out, "--records", "100", "--snr", "6"]
    assert main([*args, "--noise-dir", str(tmp_path), "--noise", "em"]) == 2
    with pytest.raises(SystemExit):  # too short for the start-up spans
        main(["--data", str(mitdb), "--out", out, "--records", "100", "--restart-segment-s", "5"])
