"""The cross-validation commands of the training recipes: argument checks (pure, no training)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streamdx_inference.ecg.training import af_cv, sveb_cv


def test_af_cv_weight_average_argument() -> None:
    assert af_cv._ema("none") is None and af_cv._ema("0.995") == 0.995
    for bad in ("1.0", "0", "-0.1", "x"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            af_cv._ema(bad)


def test_cv_commands_refuse_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert af_cv.main(["--cinc", str(tmp_path / "nope"), "--mitdb", str(tmp_path), "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert sveb_cv.main(["--mitdb", str(tmp_path), "--out", str(out)]) == 2
    assert "fewer than 4 DS1 records" in capsys.readouterr().err
    assert not out.exists()
