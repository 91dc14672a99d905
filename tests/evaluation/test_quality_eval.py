"""``streamdx eval quality`` with the shipped models on real NSTDB noise: report shape and gross behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdx_inference.ecg.evaluation.quality_eval import ARTEFACTS, NON_ECG, main

pytestmark = pytest.mark.evaluation


def test_eval_quality_reports_leaks_and_the_noise_curve(mitdb: Path, tmp_path: Path) -> None:
    nstdb = mitdb.parent / "nstdb"
    if not (nstdb / "ma.hea").exists():
        pytest.skip("no NSTDB beside MITDB")
    out = tmp_path / "q.json"
    assert main(["--out", str(out), "--seeds", "1", "--mitdb", str(mitdb), "--nstdb", str(nstdb),
                 "--max-records", "2"]) == 0  # fmt: skip
    r = json.loads(out.read_text())
    assert set(r["artefacts"]) == set(ARTEFACTS) and set(r["non_ecg"]) == set(NON_ECG)
    assert r["artefacts"]["noise"]["beats_inside"] > 20
    assert r["leaks_total"] == sum(v["leaks"] for v in (*r["artefacts"].values(), *r["non_ecg"].values()))
    assert all(v["readable"] >= 0.95 for v in r["clean"].values())
    for kind in ("ma", "bw"):
        curve = r["nstdb"][kind]
        assert curve["-6"]["unreadable"] >= 0.9 > 0.2 >= curve["24"]["unreadable"]
    # real ECG as recorded: the gate must not blank the PVC-rich records (F2 threshold: 6.9 % / 17.1 %)
    rec = r["mitdb_as_recorded"]
    assert len(rec["records"]) >= 20 and rec["unreadable"] < 0.06 and rec["v_unreadable"] < 0.12


def test_eval_quality_refuses_half_the_noise_arguments(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "q.json"), "--mitdb", str(tmp_path)]) == 2
    assert main(["--out", str(tmp_path / "q.json"), "--seeds", "0"]) == 2
