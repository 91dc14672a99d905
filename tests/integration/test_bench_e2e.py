"""``streamdx bench e2e`` as a user runs it, at a small scale: every service in its own process on
its own embedded stack, simulated devices through gateway batches, a subscribed webhook receiver.

It checks what the report must say (no lost or duplicated beat, latencies measured through the
trace header, every service's CPU), not how fast this machine is: speed is the benchmark's job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdx_devkit.bench_e2e import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_e2e_small_run_loses_nothing_and_measures_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    rc = main(["--streams", "12", "--seconds", "20", "--out", str(out), "--gateway-size", "5",
               "--warmup-s", "3", "--drain-s", "30", "--partitions", "2"])  # fmt: skip
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["streams"] == 12 and r["gateway"]["chunks_sent"] == 12 * 20 and r["gateway"]["chunk_errors"] == 0
    assert r["gateway"]["batches"] >= 20  # three gateways, batches every 0.25 s while chunks fall due
    assert r["expected_beats"] > 12 * 10
    assert r["lost_beats"] == 0 and r["duplicate_labels"] == 0
    assert r["labels"] == r["beats_published"] == r["expected_beats"]
    assert 0 < r["p50_label_latency_s"] <= r["p99_label_latency_s"] < 10
    st = r["stages"]
    assert st["dsp"]["n"] > 0 and st["inference"]["n"] > 0 and st["label"]["n"] > 0
    assert st["dsp"]["p50"] < st["label"]["p50"]  # a label comes after its beat
    assert set(r["cpu_cores_used"]) >= {"ingest", "dsp", "inference", "alerts", "redis", "tansu"}
    assert all(v >= 0 for v in r["cpu_cores_used"].values())
    assert r["largest_sustained_streams"] in (0, 12)
