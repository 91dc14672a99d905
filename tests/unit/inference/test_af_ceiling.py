"""The recording-level AF diagnostic (``af_ceiling``): its features and argument checks (pure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamdx_inference.ecg.training import af_ceiling
from streamdx_inference.ecg.training.af_ceiling import RR_FEATURES, median_beat_features, recording_rr_features


def test_rr_features_tell_regular_from_irregular() -> None:
    rng = np.random.default_rng(0)
    regular = recording_rr_features(np.full(40, 0.8), np.ones(40, bool))
    irregular = recording_rr_features(rng.uniform(0.4, 1.2, 40), np.ones(40, bool))
    f = dict(zip(RR_FEATURES, regular, strict=True))
    g = dict(zip(RR_FEATURES, irregular, strict=True))
    assert f["n_readable"] == 40 and f["readable_fraction"] == 1.0 and f["mean_rr_s"] == pytest.approx(0.8)
    assert f["cv"] == 0.0 and f["pnn50"] == 0.0 and f["near_median"] == 1.0
    assert g["cv"] > 0.15 and g["pnn_rel10"] > 0.5 and g["near_median"] < 0.5 and g["histogram_entropy"] > 1.0


def test_rr_features_use_readable_beats_only_and_need_four() -> None:
    rr = np.array([0.8, 0.8, 3.0, 0.8, 0.8, 0.8])
    ok = np.array([True, True, False, True, True, True])
    f = dict(zip(RR_FEATURES, recording_rr_features(rr, ok), strict=True))
    assert f["n_readable"] == 5 and f["readable_fraction"] == pytest.approx(5 / 6) and f["cv"] == 0.0
    few = recording_rr_features(rr[:3], np.ones(3, bool))
    assert few[0] == 3 and np.isnan(few[2:]).all()


def test_median_beat_features_are_scaled_by_the_r_wave_and_sign_free() -> None:
    t = np.arange(300)
    beat = np.exp(-0.5 * ((t - 100) / 4.0) ** 2) + 0.15 * np.exp(-0.5 * ((t - 60) / 8.0) ** 2)  # QRS + P wave
    waves = np.tile(beat, (8, 1))
    up, down, big = (median_beat_features(w) for w in (waves, -waves, 3.0 * waves))
    np.testing.assert_allclose(up, down, atol=1e-9)
    np.testing.assert_allclose(up, big, atol=1e-9)
    assert up.shape == (100,) and up[30] > 0.1 and up[-1] == pytest.approx(0.0, abs=1e-9)  # P wave, no spread
    assert np.isnan(median_beat_features(waves[:3])).all()


def test_refuses_a_folder_that_is_not_a_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert af_ceiling.main(["--cinc", str(tmp_path / "nope"), "--out", str(out), "--cnn-epochs", "0"]) == 2
    assert "error" in capsys.readouterr().err and not out.exists()


def test_recording_cnn_reads_any_length() -> None:
    import torch

    from streamdx_inference.ecg.training.nets import RecordingCnn

    torch.manual_seed(0)
    net = RecordingCnn().eval()
    with torch.no_grad():
        out = [net(torch.randn(2, 1, n)) for n in (1350, 4500, 9150)]  # 9, 30 and 61 s at 150 Hz
    assert all(o.shape == (2,) and torch.isfinite(o).all() for o in out)


def test_runs_end_to_end_on_any_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole diagnostic on a simulated pack: the parts come from a copy of the shipped models
    whose AF training lists name the pack's recordings; one epoch of the raw-signal network."""
    import json
    import shutil

    from streamdx_inference.settings import default_models_dir
    from tests.unit.inference.test_cinc_pack_eval import _adu, _write_pack

    recs = [(f"Y{i:03d}", "A" if i % 2 else "N", _adu("af" if i % 2 else "sinus", 20.0, 100 + i)) for i in range(24)]
    pack = _write_pack(tmp_path / "pack", recs)
    models = tmp_path / "models"
    for name in ("ecg_quality", "ecg_af", "ecg_beats", "ecg_af_beats", "ecg_quality_paired"):
        shutil.copytree(default_models_dir() / name, models / name)
    names = [n for n, _, _ in recs]
    train, fit = names[:12], names[12:18]  # held: the last 6 (3 AF)
    (models / "ecg_af" / "cinc_train_records.json").write_text(json.dumps(train + fit))
    meta = json.loads((models / "ecg_af" / "model.json").read_text())
    meta["training"]["val_records"] = fit
    (models / "ecg_af" / "model.json").write_text(json.dumps(meta))
    out = tmp_path / "r.json"
    argv = ["--cinc", str(pack), "--models", str(models), "--out", str(out), "--cache", str(tmp_path / "cache"),
            "--cnn-epochs", "1", "--threads", "1"]
    assert af_ceiling.main(argv) == 0
    rep = json.loads(out.read_text())
    assert rep["n"] == {"train": 12, "fit": 6, "held": 6} and rep["n_af"] == {"train": 6, "fit": 3, "held": 3}
    assert set(rep["models"]) == {"served", "mean_af_prob", "gbm_rr", "gbm_rr_median_beat", "blend_gbm_mean_af_prob",
                                  "cnn_raw", "blend_cnn_mean_af_prob"}
    assert all(0.0 <= m["f1"] <= 1.0 for m in rep["models"].values()) and len(rep["cnn_history"]) == 1
    assert "held-out recordings 6 (3 AF)" in capsys.readouterr().out
    # a pack whose recordings the AF model's lists do not name has no validation recordings: an error
    (models / "ecg_af" / "cinc_train_records.json").write_text("[]")
    assert af_ceiling.main(argv) == 2 and "no held-out or no validation AF recording" in capsys.readouterr().err
