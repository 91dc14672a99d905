"""Damaged model folders: a clear EcgModelError naming the model (the CLI exits 2 with it); a
damaged fused graph is ignored, the separate models serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamdx.cli import main as streamdx_main
from streamdx.input_errors import InputFileError
from streamdx_inference.ecg.labeler import (
    FUSED_DIR,
    PAIRED_QUALITY_DIR,
    EcgLabeler,
    EcgModelError,
    EcgModelNotFound,
    load_ecg_model,
    load_fused_af_beats,
    load_paired_quality,
)

REPO_MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    for name in ("ecg_quality", "ecg_af", "ecg_beats", FUSED_DIR, PAIRED_QUALITY_DIR):
        shutil.copytree(REPO_MODELS / name, tmp_path / name)
    return tmp_path


def test_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(EcgModelNotFound, match="'ecg_af' not found") as exc:
        load_ecg_model(tmp_path, "ecg_af")
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, InputFileError)


def test_damaged_metadata_and_onnx_are_model_errors(models: Path) -> None:
    (models / "ecg_af" / "model.json").write_text("{not json")
    with pytest.raises(EcgModelError, match=r"'ecg_af'.*unreadable model\.json"):
        load_ecg_model(models, "ecg_af")
    (models / "ecg_af" / "model.json").write_text("[1, 2]")
    with pytest.raises(EcgModelError, match="not a JSON object"):
        load_ecg_model(models, "ecg_af")
    (models / "ecg_beats" / "model.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(EcgModelError, match="onnxruntime cannot load"):
        load_ecg_model(models, "ecg_beats")


def test_damaged_fused_graph_is_ignored(models: Path) -> None:
    assert load_fused_af_beats(models) is not None
    (models / FUSED_DIR / "model.json").write_text("{not json")
    assert load_fused_af_beats(models) is None
    (models / FUSED_DIR / "model.json").write_text('{"derived_from": {"ecg_af": "x"}}')
    assert load_fused_af_beats(models) is None
    lab = EcgLabeler.from_dir(models)
    assert lab.fused is None


def test_damaged_pair_folded_graph_is_ignored(models: Path) -> None:
    plain = load_ecg_model(models, "ecg_quality")
    assert load_paired_quality(plain, models) is not plain
    int8 = EcgLabeler.from_dir(models, int8=True)  # the INT8 models run one by one, unfolded
    assert int8.fused is None and "pair_folded" not in int8.quality.session.get_modelmeta().graph_name
    (models / PAIRED_QUALITY_DIR / "model.onnx").write_bytes(b"garbage")
    assert load_paired_quality(plain, models) is plain
    shutil.copytree(REPO_MODELS / PAIRED_QUALITY_DIR, models / PAIRED_QUALITY_DIR, dirs_exist_ok=True)
    assert load_paired_quality(plain, models) is not plain
    (models / PAIRED_QUALITY_DIR / "model.json").write_text("[]")
    assert load_paired_quality(plain, models) is plain


def test_bench_with_a_damaged_model_exits_2(models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (models / "ecg_quality" / "model.onnx").write_bytes(b"garbage")
    rc = streamdx_main(["bench", "inference", "--models", str(models), "--out", str(tmp_path / "r.json"),
                        "--seconds", "0.1"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "ecg_quality" in err and "Traceback" not in err


def test_the_bench_report_says_which_graphs_ran(models: Path, tmp_path: Path) -> None:
    """With the derived graphs the profile names them; without the pair-folded one (its folder
    removed) the quality model itself runs and the report says so."""
    args = ["bench", "inference", "--models", str(models), "--no-int8", "--batches", "8", "--beats-per-stream", "1",
            "--seconds", "0.05", "--out"]  # fmt: skip
    assert streamdx_main([*args, str(tmp_path / "a.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["fused_af_beats"] and a["pair_folded_quality"] and a["beats_per_s"] > 0
    assert "ecg_quality (pair-folded)_us" in a["profile_us_per_beat"]["fp32/1_per_stream"]
    shutil.rmtree(models / PAIRED_QUALITY_DIR)
    assert streamdx_main([*args, str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["fused_af_beats"] and not b["pair_folded_quality"]
    assert "ecg_quality_us" in b["profile_us_per_beat"]["fp32/1_per_stream"]
