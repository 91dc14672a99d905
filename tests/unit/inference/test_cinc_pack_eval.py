"""``streamdx eval cinc2017`` on a folder in the CinC 2017 pack format that is not the project's.

The held-back part of CinC 2017 comes in the same format, so the command has to score any such
folder and refuse malformed ones with a message. The packs here are built from simulated
recordings (300 Hz, gain 1000 adu/mV, first differences of int16, xz), so no data is needed.
"""

from __future__ import annotations

import csv
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from streamdx_devkit.sim import ecg_synthesize
from streamdx_inference.ecg.datasets import cinc_pack_problem, cinc_records
from streamdx_inference.ecg.evaluation.beats_eval import main as beats_main
from streamdx_inference.ecg.evaluation.cinc_eval import main
from streamdx_inference.settings import default_models_dir


def _write_pack(folder: Path, recordings: list[tuple[str, str, np.ndarray]], index_extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sig = np.concatenate([x for _, _, x in recordings]).astype(np.int32)
    diff = np.diff(sig, prepend=0).astype("<i2")
    (folder / "signals_int16_diff.xz").write_bytes(lzma.compress(diff.tobytes()))
    with (folder / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record", "label_v1", "label_v3", "start", "length", "mat_sha256"])
        start = 0
        for name, label, x in recordings:
            w.writerow([name, label, label, start, x.size, ""])
            start += x.size
    if index_extra:
        with (folder / "index.csv").open("a") as f:
            f.write(index_extra)
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{lab}\r\n" for n, lab, _ in recordings))
    return folder


def _adu(scenario: str, seconds: float, seed: int) -> np.ndarray:
    mv = np.asarray(ecg_synthesize(seconds, 300.0, seed=seed, scenario=scenario).signal_mv)
    return np.clip(np.round(mv * 1000.0), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def recordings() -> list[tuple[str, str, np.ndarray]]:
    return [
        ("Z001", "N", _adu("sinus", 30.0, 1)),
        ("Z002", "A", _adu("af", 30.0, 2)),
        ("Z003", "~", np.zeros(9000, np.int16)),  # 30 s of a disconnected lead
        ("Z004", "N", _adu("sinus", 2.0, 3)),  # too short for a rhythm class
    ]


def _run(pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = tmp_path / "report.json"
    rc = main(["--data", str(pack), "--out", str(out), "--models", str(default_models_dir()),
               "--cache", str(tmp_path / "cache")])  # fmt: skip
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_scores_every_labelled_recording_of_a_foreign_pack(
    recordings: list[tuple[str, str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = _write_pack(tmp_path / "pack", recordings)
    (pack / "REFERENCE.csv").write_text("Z001,N\r\nZ002,A\r\nZ003,~\r\n")  # Z004 unlabelled
    rc, out, _ = _run(pack, tmp_path, capsys)
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_records"] == 3 and report["excluded_training_records"] == 0
    assert report["unlabelled_records"] == ["Z004"]
    conf = report["confusion"]["matrix"]  # rows N, A, O, ~ (reference), columns the prediction
    assert conf[3][3] == 1, "a flat recording is too noisy (~), never a rhythm"
    assert conf[1][1] == 1, "the simulated AF recording is A"
    assert conf[0][1] == 0, "the sinus recording is not A"
    assert set(report["af"]) == {"se", "ppv", "f1"} and 0.0 <= report["challenge_f1"] <= 1.0
    # the simulated AF recording has the highest mean AF probability of the three
    assert report["af_binary"]["roc_auc"] == 1.0 and "ROC AUC" in out
    assert "Z004" in out and "challenge F1" in out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_signals", "no signals_int16_diff.xz"),
        ("no_reference", "no REFERENCE.csv"),
        ("past_the_end", "past the signal's"),
        ("twice", "listed twice"),
        ("not_a_number", "must be integers"),
        ("not_xz", "not an xz stream"),
    ],
)
def test_a_malformed_pack_is_an_error_with_a_message(
    recordings: list[tuple[str, str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    damage: str, message: str,
) -> None:  # fmt: skip
    extra = {"past_the_end": "Z009,N,N,10000000,9000,\n", "twice": "Z001,N,N,0,9000,\n",
             "not_a_number": "Z009,N,N,zero,9000,\n"}.get(damage, "")  # fmt: skip
    pack = _write_pack(tmp_path / "pack", recordings[:2], extra)
    if damage == "no_signals":
        (pack / "signals_int16_diff.xz").unlink()
    elif damage == "no_reference":
        (pack / "REFERENCE.csv").unlink()
    elif damage == "not_xz":
        (pack / "signals_int16_diff.xz").write_bytes(b"not xz at all")
    rc, _, err = _run(pack, tmp_path, capsys)
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_index_rows_are_read_and_checked(recordings: list[tuple[str, str, np.ndarray]], tmp_path: Path) -> None:
    pack = _write_pack(tmp_path / "pack", recordings[:2])
    n = sum(x.size for _, _, x in recordings[:2])
    assert cinc_records(pack, n) == [("Z001", 0, 9000), ("Z002", 9000, 9000)]
    with pytest.raises(ValueError, match="past the signal"):
        cinc_records(pack, n - 1)


@pytest.mark.parametrize(
    ("extra", "not_xz", "message"),
    [
        ("Z001,N,N,0,9000,\n", False, "listed twice"),
        ("Z009,N,N,zero,9000,\n", False, "must be integers"),
        ("", True, "not an xz stream"),
    ],
)
def test_commands_that_train_on_a_pack_refuse_a_malformed_one_before_any_work(
    recordings: list[tuple[str, str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    extra: str, not_xz: bool, message: str,
) -> None:  # fmt: skip
    pack = _write_pack(tmp_path / "pack", recordings[:2], extra)
    if not_xz:
        (pack / "signals_int16_diff.xz").write_bytes(b"not xz at all")
    assert message in cinc_pack_problem(pack)
    assert cinc_pack_problem(_write_pack(tmp_path / "good", recordings[:2])) == ""
    empty = tmp_path / "mitdb"
    empty.mkdir()
    out = tmp_path / "r.json"
    rc = beats_main(["--data", str(empty), "--protocol", "ds1ds2", "--cinc", str(pack), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
