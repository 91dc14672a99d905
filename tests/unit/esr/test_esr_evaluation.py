"""Evaluation command: paired statistics and an end-to-end smoke run of `streamdx eval esr`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamdx_inference.esr.evaluation import paired_vs_gru


def test_paired_vs_gru() -> None:
    out = paired_vs_gru({"gru": [0.01, 0.02, 0.03, 0.04], "rf": [0.02, 0.01, 0.05, 0.04]})
    d = [0.01, -0.01, 0.02, 0.0]  # MAE(rf) - MAE(gru) per split
    rf = out["rf"]
    assert rf["gru_wins"] == 2 and rf["model_wins"] == 1 and rf["runs"] == 4  # one tie
    assert rf["model_minus_gru_mean"] == pytest.approx(sum(d) / 4)
    assert rf["model_minus_gru_sd"] == pytest.approx(float(np.std(d, ddof=1)))
    assert rf["model_minus_gru_se"] == pytest.approx(rf["model_minus_gru_sd"] / 2)
    assert "gru" not in out


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
    # every learned model was tuned on each split with the same budget, and the choices are reported
    assert r["tuning"]["search_size"] == 4
    assert set(r["chosen_settings"]) == {"gru", "rf", "ffnn", "wdnn"}
    assert all(sum(c.values()) == 2 for c in r["chosen_settings"].values())
    assert r["paired_vs_gru"]["rf"]["gru_wins"] + r["paired_vs_gru"]["rf"]["model_wins"] <= 2
    # the last observed height is a poor forecast of the 60-minute height
    assert r["models"]["gru"]["mae_mean"] < r["models"]["last_value"]["mae_mean"]
    assert r["boundary_error_px"]["median"] <= 1.0


def test_model_card_names_the_winner_with_its_paired_difference() -> None:
    from streamdx_inference.esr.training import _winner

    per_run = {"gru": [0.02, 0.03, 0.02], "rf": [0.01, 0.02, 0.03]}
    models = {m: {"mae_mean": float(np.mean(v))} for m, v in per_run.items()}
    text = _winner(models, paired_vs_gru(per_run))
    assert "**rf**, not the GRU" in text and "-0.0033" in text and "lower in 2/3 splits" in text
    models["gru"]["mae_mean"] = 0.001
    assert _winner(models, paired_vs_gru(per_run)) == "Lowest mean MAE: **gru**."
