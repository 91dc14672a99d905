"""Shared argument types: bad seeds, epochs, threads and report paths are usage errors (exit 2)
before a command starts its work."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streamdx.cli import main as streamdx_main
from streamdx.cli_args import (
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    report_path,
    write_report,
)


def test_integer_types() -> None:
    assert non_negative_int("0") == 0 and positive_int("3") == 3
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_int(bad)
    for bad in ("0", "-2", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    assert positive_float("0.5") == 0.5 and non_negative_float("0") == 0.0
    for bad in ("0", "-1", "inf", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        non_negative_float("-0.1")
    assert int_at_least(2)("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match=">= 2"):
        int_at_least(2)("1")


def test_report_path_makes_its_folder_and_leaves_no_probe(tmp_path: Path) -> None:
    p = report_path(str(tmp_path / "a" / "b" / "r.json"))
    assert p.parent.is_dir() and list(p.parent.iterdir()) == []


def test_report_path_refuses_a_folder_and_an_unwritable_place(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        report_path(str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="cannot write"):
        report_path(str(blocker / "r.json"))  # its "folder" is a file
    with pytest.raises(argparse.ArgumentTypeError, match="cannot write"):
        report_path("/proc/streamdx-nope/r.json")  # even root cannot make a folder in /proc


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "af", "--data", "{d}", "--out", "{d}/r.json", "--seed", "-1"],
        ["eval", "af", "--data", "{d}", "--out", "{d}/r.json", "--epochs", "0"],
        ["eval", "af", "--data", "{d}", "--out", "{d}/r.json", "--folds", "1"],
        ["eval", "beats", "--data", "{d}", "--out", "{d}", "--protocol", "ds1ds2"],
        ["eval", "rpeaks", "--data", "{d}", "--out", "/proc/streamdx-nope/r.json"],
        ["train", "beats", "--mitdb", "{d}", "--epochs", "-1"],
        ["train", "quality", "--mitdb", "{d}", "--threads", "0"],
        ["eval", "esr", "--out", "{d}/r.json", "--n", "0"],
        ["bench", "dsp", "--data", "{d}", "--out", "{d}/r.json", "--chunk-s", "-1"],
        ["bench", "dsp", "--data", "{d}", "--out", "{d}/r.json", "--seconds", "nan"],
        ["eval", "quality", "--out", "{d}/r.json", "--max-records", "-3"],
        ["bench", "inference", "--out", "{d}/r.json", "--max-records", "-1"],
        ["train", "kaggle-beats", "--data", "{d}", "--max-train-n", "-1"],
        ["eval", "rpeaks", "--data", "{d}", "--out", "{d}/r.json", "--window-ms", "0"],
        ["eval", "esr", "--out", "{d}/r.json", "--boundary-tubes", "0"],
        ["eval", "esr", "--out", "{d}/r.json", "--large-n", "2"],
    ],
)
def test_commands_refuse_bad_options_before_work(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        streamdx_main([a.replace("{d}", str(tmp_path)) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and ("argument" in err or "--large-n" in err) and "Traceback" not in err


def test_train_esr_with_a_bad_csv_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "lab.csv"
    bad.write_text("a,b\n1,2\n")
    assert streamdx_main(["train", "esr", "--csv", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert "lacks column" in capsys.readouterr().err
    assert streamdx_main(["train", "esr", "--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_write_report_creates_the_folder_and_writes_numpy_scalars(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import numpy as np

    out = tmp_path / "new" / "r.json"
    write_report(out, {"f1": np.float64(0.5), "n": 3, "rows": [np.float32(0.25)]})
    assert json.loads(out.read_text()) == {"f1": 0.5, "n": 3, "rows": [0.25]}
    assert out.read_text().endswith("}\n") and f"report written to {out}" in capsys.readouterr().out


def test_reports_are_strict_json_with_undefined_values_as_null(tmp_path: Path) -> None:
    import json
    import math

    import numpy as np

    from streamdx.json_values import json_safe

    rep = {"ppv": math.nan, "auc": np.float32("nan"), "rows": (1, np.int64(2), np.bool_(True), math.inf),
           "m": np.array([[0.5, np.nan]]), "ok": True, "name": "x", "none": None}  # fmt: skip
    want = {"ppv": None, "auc": None, "rows": [1, 2, True, None], "m": [[0.5, None]], "ok": True, "name": "x",
            "none": None}  # fmt: skip
    assert json_safe(rep) == want and type(json_safe(rep)["rows"][1]) is int
    out = tmp_path / "r.json"
    write_report(out, rep)
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}")) == want
