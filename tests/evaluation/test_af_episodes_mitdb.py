"""``streamdx eval episodes`` on two real MIT-BIH records: DSP → ECG models → rhythm engine → epicmp scoring.

Data come from the ``mitdb`` fixture (tests/conftest.py): skipped locally without ../shared/data,
a failure when CI=true. Uses the shipped models (their AF model was trained on MITDB: this checks
the chain and the report, not inter-patient accuracy). A few seconds with the DSP cache warm.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdx_alerts.evaluation.episodes_eval import main

pytestmark = pytest.mark.evaluation


def test_af_episodes_on_mitdb_records(mitdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "episodes.json"
    # 201: three AF episodes (one across the 5-minute learning period); 100: sinus rhythm, no AF
    rc = main(["--data", str(mitdb), "--out", str(out), "--records", "201,100"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["records_with_af"] == ["201"]
    assert report["skipped"]["100"]["reason"].startswith("no (AFIB")
    assert report["skipped"]["100"]["false_episodes"] == 0
    assert "NOT inter-patient" in report["models"]["split"]
    rec = report["records"]["201"]
    assert len(rec["reference_episodes"]) == 3
    assert rec["episode"]["tp_se"] + rec["episode"]["fn"] == 3  # all three are >= 30 s after 5:00
    assert report["episode"]["se"] == 100.0 and report["episode"]["ppv"] == 100.0
    # the shipped AF model of 2026-12-05 measures duration Se/+P 96.5/84.3 on 201: each of its episodes ends
    # 14-21 s after the reference one, in the nodal rhythm that follows every AF episode there (the former
    # model: 94.8/90.0)
    assert report["duration"]["se"] >= 85.0 and report["duration"]["ppv"] >= 80.0
    assert abs(rec["burden"]["error_pp"]) < 5.0
    printed = capsys.readouterr().out
    assert "ESe %" in printed and "gross" in printed


def test_folder_without_af_is_an_error(mitdb: Path, tmp_path: Path) -> None:
    assert main(["--data", str(mitdb), "--out", str(tmp_path / "x.json"), "--records", "100"]) == 2
