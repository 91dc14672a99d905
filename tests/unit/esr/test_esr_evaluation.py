"""Evaluation command: paired statistics and an end-to-end smoke run of `streamdx eval esr`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdx_inference.esr.evaluation import paired_vs_gru


def test_paired_vs_gru() -> None:
    out = paired_vs_gru({"gru": [0.01, 0.02, 0.03], "rf": [0.02, 0.01, 0.05]})
    assert out["rf"]["gru_better_runs"] == 2 and out["rf"]["runs"] == 3
    assert out["rf"]["mean_diff"] == pytest.approx((-0.01 + 0.01 - 0.02) / 3)
    assert out["rf"]["se"] > 0 and "gru" not in out


@pytest.mark.slow
def test_eval_command_writes_report(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from streamdx_inference.esr.evaluation import main

    out = tmp_path / "esr.json"
    argv = ["--out", str(out), "--runs", "2", "--length-runs", "1", "--n", "40", "--large-n", "0"]
    assert main([*argv, "--boundary-tubes", "1"]) == 0
    r = json.loads(out.read_text())
    assert r["simulated"] is True and r["cohort"]["n"] == 40 and r["runs"] == 2
    for m in ("gru", "rf", "ffnn", "wdnn", "last_value", "linear"):
        assert r["models"][m]["mae_mean"] > 0 and r["models"][m]["runs"] == 2
    assert set(r["mae_vs_minutes"]) == {"10", "15", "20", "24", "30"}
    assert r["mae_vs_minutes"]["10"]["gru"]["runs"] == 1
    # the last observed height is a poor forecast of the 60-minute height
    assert r["models"]["gru"]["mae_mean"] < r["models"]["last_value"]["mae_mean"]
    assert r["boundary_error_px"]["median"] <= 1.0
