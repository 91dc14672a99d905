"""Damaged WFDB records: the readers raise a RecordError naming the record, and the commands that
read WFDB folders (evaluations, benchmarks, the record simulator) exit 2 with that message, never
with a traceback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import wfdb
from dsp_synth import synth_ecg

from streamdx.cli import main as streamdx_main
from streamdx.input_errors import InputFileError
from streamdx_dsp.evaluation.records import RecordError, read_annotations, read_ecg, read_header

FS = 360


def _write(folder: Path, name: str = "r1", seconds: float = 30.0) -> int:
    x, r = synth_ecg(seconds, FS, seed=3)
    # format 212 (MITDB's): a truncated file then fails to decode instead of reading short
    wfdb.wrsamp(name, fs=FS, units=["mV"], sig_name=["MLII"], p_signal=x[:, None], fmt=["212"], adc_gain=[200.0],
                baseline=[0], write_dir=str(folder))  # fmt: skip
    # a rhythm annotation first (eval episodes only scores records with AF)
    wfdb.wrann(name, "atr", np.asarray([0, *r], dtype=np.int64), symbol=["+"] + ["N"] * len(r),
               aux_note=["(AFIB"] + [""] * len(r), write_dir=str(folder))  # fmt: skip
    return int(x.size)


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def test_intact_record_reads(tmp_path: Path) -> None:
    n = _write(tmp_path)
    x, fs = read_ecg(tmp_path, "r1")
    assert fs == FS and x.size == n and np.isfinite(x).all()
    ann = read_annotations(tmp_path, "r1", "atr", n)
    assert len(ann.symbol) > 20
    assert read_header(tmp_path, "r1").sig_name == ["MLII"]


def test_truncated_signal_is_a_record_error(tmp_path: Path) -> None:
    _write(tmp_path)
    _truncate(tmp_path / "r1.dat", 1000)
    with pytest.raises(RecordError, match=r"record r1 in .*: cannot read its signal"):
        read_ecg(tmp_path, "r1")


def _garbage(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, 300, dtype=np.uint8).tobytes()


def test_garbage_annotations_are_a_record_error(tmp_path: Path) -> None:
    n = _write(tmp_path)
    (tmp_path / "r1.atr").write_bytes(_garbage(1))  # wfdb fails to parse these bytes
    with pytest.raises(RecordError, match=r"record r1 in .*: cannot read its annotations \(\.atr\)"):
        read_annotations(tmp_path, "r1")
    # these parse, into codes that are not strings and times far past the signal
    (tmp_path / "r1.atr").write_bytes(_garbage(0))
    with pytest.raises(RecordError, match=r"annotations without a code"):
        read_annotations(tmp_path, "r1", "atr", n)
    (tmp_path / "r1.atr").write_bytes(_garbage(2))  # negative times
    with pytest.raises(RecordError, match=r"negative sample indices"):
        read_annotations(tmp_path, "r1", "atr", n)


def test_annotations_out_of_time_order_are_a_record_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # wfdb refuses to write such a file; a hand-made one reads like this
    import streamdx_dsp.evaluation.records as records

    monkeypatch.setattr(records.wfdb, "rdann", lambda *a, **k: SimpleNamespace(sample=[10, 50, 40], symbol=list("NNN")))
    with pytest.raises(RecordError, match=r"not in time order"):
        read_annotations(tmp_path, "r1", "atr", 100)


def test_bad_header_is_a_record_error(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "r1.hea").write_text("r1 1 360 garbage\nxx\n")
    with pytest.raises(RecordError, match=r"cannot read its header"):
        read_header(tmp_path, "r1")
    with pytest.raises(RecordError, match=r"cannot read its signal"):
        read_ecg(tmp_path, "r1")
    assert issubclass(RecordError, InputFileError) and issubclass(RecordError, ValueError)


def test_missing_signal_file_is_a_record_error(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "r1.dat").unlink()
    with pytest.raises(RecordError, match=r"record r1"):
        read_ecg(tmp_path, "r1")


@pytest.mark.parametrize("damage", ["signal", "annotations", "header"])
@pytest.mark.parametrize("command", [["eval", "rpeaks"], ["bench", "dsp"], ["eval", "episodes"]])
def test_commands_exit_2_naming_the_damaged_record(
    tmp_path: Path, damage: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "r0")
    _write(tmp_path, "r1")
    if damage == "signal":
        _truncate(tmp_path / "r1.dat", 1000)
    elif damage == "annotations":
        (tmp_path / "r1.atr").write_bytes(_garbage(1))
    else:
        (tmp_path / "r1.hea").write_text("r1 1 360 garbage\nxx\n")
    argv = [*command, "--data", str(tmp_path), "--out", str(tmp_path / "out.json")]
    if command == ["eval", "episodes"]:
        argv += ["--cache", str(tmp_path / "cache")]  # not the user's cache
    rc = streamdx_main(argv)
    err = capsys.readouterr().err
    if command == ["bench", "dsp"] and damage == "annotations":
        assert rc == 0  # the DSP benchmark does not read annotations
        return
    assert rc == 2
    assert "record r1 in" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_eval_episodes_rule_bounds_are_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "r0")
    rc = streamdx_main(["eval", "episodes", "--data", str(tmp_path), "--out", str(tmp_path / "o.json"),
                        "--min-duration", "-1", "--cache", str(tmp_path / "cache")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "min_duration_s" in err and "Traceback" not in err


def test_eval_rpeaks_with_nothing_to_score_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "r0")  # 30 s
    rc = streamdx_main(["eval", "rpeaks", "--data", str(tmp_path), "--out", str(tmp_path / "o.json"),
                        "--start-s", "60"])  # fmt: skip
    assert rc == 2 and "nothing to score" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
    assert streamdx_main(["eval", "rpeaks", "--data", str(tmp_path), "--out", str(tmp_path / "o.json"),
                          "--start-s", "0"]) == 0  # fmt: skip


def test_eval_af_cross_validation_needs_two_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "r0")
    rc = streamdx_main(["eval", "af", "--data", str(tmp_path), "--out", str(tmp_path / "o.json"),
                        "--cache", str(tmp_path / "cache")])  # fmt: skip
    assert rc == 2 and "at least 2 records" in capsys.readouterr().err


def test_eval_af_without_its_cinc_pack_says_how_to_go_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The folds train on the CinC training part by default (the shipped recipe's data): a missing
    pack is an error that names both ways out, before any work; ``--train-on`` needs the pack."""
    _write(tmp_path, "r0")
    _write(tmp_path, "r1")
    args = ["eval", "af", "--data", str(tmp_path), "--out", str(tmp_path / "o.json"), "--cache", str(tmp_path / "c")]
    assert streamdx_main([*args, "--cinc", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "not a CinC 2017 pack folder" in err and "--cinc DIR" in err and "--no-cinc" in err
    assert streamdx_main([*args, "--train-on", "cinc2017", "--no-cinc"]) == 2
    assert "--train-on cinc2017 needs the CinC pack" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "c").exists()
