"""``streamdx train af|beats|quality`` writes a model only when training succeeds: the files go to a
fresh folder first and are then moved into ``--out``; a failure leaves the previous model whole."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import streamdx_inference.ecg.training.train as train


def _old_model(models: Path) -> Path:
    out = models / "ecg_beats"
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(b"old onnx")
    (out / "model.json").write_text('{"version": "old"}')
    return out


def _argv(tmp_path: Path, out: Path) -> list[str]:
    (tmp_path / "mit").mkdir(exist_ok=True)
    return ["--mitdb", str(tmp_path / "mit"), "--out", str(out)]


def test_failed_training_leaves_the_previous_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = _old_model(tmp_path / "models")

    def crash(a: argparse.Namespace, work: Path, models_dir: Path, command: str) -> int:
        (work / "model.onnx").write_bytes(b"half written")
        raise RuntimeError("export failed")

    monkeypatch.setattr(train, "_train", crash)
    with pytest.raises(RuntimeError, match="export failed"):
        train.run("beats", _argv(tmp_path, out))
    assert (out / "model.onnx").read_bytes() == b"old onnx"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ecg_beats"]  # no temporary folder left


def test_refused_training_leaves_the_previous_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = _old_model(tmp_path / "models")

    def refuse(a: argparse.Namespace, work: Path, models_dir: Path, command: str) -> int:
        (work / "model.onnx").write_bytes(b"partial")
        return 2

    monkeypatch.setattr(train, "_train", refuse)
    assert train.run("beats", _argv(tmp_path, out)) == 2
    assert (out / "model.onnx").read_bytes() == b"old onnx"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ecg_beats"]


def test_successful_training_replaces_the_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _old_model(tmp_path / "models")
    (out / "NOTES.txt").write_text("kept")

    def ok(a: argparse.Namespace, work: Path, models_dir: Path, command: str) -> int:
        assert work != out and work.parent == out.parent and models_dir == out.parent
        (work / "model.onnx").write_bytes(b"new onnx")
        (work / "model.json").write_text('{"version": "new"}')
        return 0

    monkeypatch.setattr(train, "_train", ok)
    assert train.run("beats", _argv(tmp_path, out)) == 0
    assert (out / "model.onnx").read_bytes() == b"new onnx" and "new" in (out / "model.json").read_text()
    assert (out / "NOTES.txt").read_text() == "kept"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ecg_beats"]
    assert f"model written to {out}" in capsys.readouterr().out


def test_train_af_checks_the_models_of_its_recording_rules_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "elsewhere" / "ecg_af"
    assert train.run("af", _argv(tmp_path, out)) == 2
    err = capsys.readouterr().err
    assert "ecg_quality" in err and "--models" in err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ecg_beats"
    f.write_text("x")
    assert train.run("beats", _argv(tmp_path, f)) == 2
    assert "is a file" in capsys.readouterr().err
