"""``streamdx bench dsp`` on real MIT-BIH records: the report's latency and agreement sections.

Beat delays are counted in samples received, so they do not depend on the machine's speed;
throughput is only checked for presence (speed is a benchmark, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdx_dsp.evaluation.bench import main

pytestmark = pytest.mark.evaluation


def test_bench_reports_beat_delays_stages_and_denoiser_agreement(
    mitdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    rc = main(["--data", str(mitdb), "--out", str(out), "--records", "100,119,208", "--seconds", "120",
               "--fs-list", "250,360", "--latency-seconds", "60", "--repeat", "2"])  # fmt: skip
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["beat_window"] == "fixed" and r["latency_chunk_s"] == 0.1
    d = r["beat_delay_s"]
    assert d["beats"] > 300
    assert 0.56 < d["p50"] <= d["p99"] <= d["max"]
    assert d["p99"] <= 0.8 and d["max"] <= 1.0  # the DSP v2 budget at 360 Hz
    assert set(r["beat_delay_by_fs"]) == {"250", "360"}
    assert r["beat_delay_by_fs"]["360"]["beat_delay_s"]["p99"] <= 0.8
    st = r["stages"]
    assert st["wavelet_lag_samples"][0] >= 24 and st["wavelet_lag_samples"][1] <= 48
    assert st["detector_lookahead_s"] == pytest.approx(0.25, abs=0.01)
    agree = r["denoise_agreement"]["summary"]
    # closer to the whole-record DWT than no denoising at all, on every record
    for rec in r["denoise_agreement"]["records"].values():
        assert rec["stream_v2"] < rec["no_denoising"]
    assert agree["stream_v2"]["median"] < 0.05
    assert r["state_bytes_per_stream"] <= 64 * 1024
    assert r["samples_per_s"] > 0 and r["neurokit2_samples_per_s"] > 0
    assert r["repeat"] == 2 and len(r["core_runs_samples_per_s"]) == len(r["neurokit2_runs_samples_per_s"]) == 2
    assert r["samples_per_s"] == max(r["core_runs_samples_per_s"])
    assert r["ratio"] == pytest.approx(r["samples_per_s"] / r["neurokit2_samples_per_s"])
    assert "beat delay" in capsys.readouterr().out
