"""`streamdx eval rpeaks` prints its protocol above the table and stores the same block in its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb
from dsp_synth import synth_ecg

from streamdx_dsp.evaluation.protocol import protocol_lines, rpeaks_protocol
from streamdx_dsp.evaluation.rpeaks import main

MITDB_LEADS = {f"{n}": ("V5" if n in (102, 104) else "MLII") for n in range(100, 148)}


def _protocol(start_s: float = 300.0, noise: dict[str, object] | None = None) -> dict[str, Any]:
    return rpeaks_protocol(
        data=Path("data/mitdb"),
        leads=MITDB_LEADS,
        beat_symbols="NV",
        annotator="atr",
        start_s=start_s,
        window_ms=150.0,
        chunk_s=1.0,
        noise=noise,
    )


def test_protocol_states_records_lead_start_window_chunks_and_noise() -> None:
    p = _protocol()
    text = "\n".join(protocol_lines(p))
    assert p["n_records"] == 48 and p["scored_from"] == "5:00" and p["window_ms"] == 150.0
    assert "48 records: 100, 101, 102" in text and "147" in text
    assert "MLII on 46 records; V5 on 102, 104" in text
    assert "from 5:00 to the end of each record (EC57/bxb" in text
    assert "150 ms window; one-to-one" in text
    assert "1-s chunks" in text
    assert "beat annotations NV of .atr" in text
    assert "noise      none" in text
    noisy = "\n".join(protocol_lines(_protocol(noise={"kind": "ma", "snr_db": 6.0, "dir": "nstdb"}, start_s=90.0)))
    assert "NSTDB 'ma' at 6 dB SNR" in noisy and "from nstdb" in noisy
    assert "from 1:30 to the end" in noisy and "EC57/bxb" not in noisy


def _write_record(folder: Path, name: str, lead: str, seed: int) -> None:
    x, r = synth_ecg(360.0, 40.0, seed=seed)
    wfdb.wrsamp(name, fs=360, units=["mV"], sig_name=[lead], p_signal=x[:, None], fmt=["16"], write_dir=str(folder))
    wfdb.wrann(name, "atr", np.asarray(r, dtype=np.int64), symbol=["N"] * len(r), write_dir=str(folder))


def test_eval_rpeaks_prints_the_protocol_above_the_table_and_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_record(tmp_path, "s1", "MLII", seed=1)
    _write_record(tmp_path, "s2", "V5", seed=2)
    out = tmp_path / "r.json"
    assert main(["--data", str(tmp_path), "--out", str(out), "--start-s", "10", "--chunk-s", "0.5"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    block = "\n".join(protocol_lines(report["protocol"]))
    assert printed.startswith(block + "\n")
    assert printed.index("Protocol") < printed.index("record") < printed.index("gross")
    assert report["protocol"]["records_by_lead"] == {"MLII": ["s1"], "V5": ["s2"]}
    assert "from 0:10 to the end" in block and "150 ms window" in block and "0.5-s chunks" in block
    assert report["records"]["s1"]["tp"] > 30  # the records were really scored
