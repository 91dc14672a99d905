"""``streamdx bench e2e`` refuses impossible arguments before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdx_devkit.bench_e2e import main


@pytest.mark.parametrize(
    "argv",
    [["--streams", "abc"], ["--streams", "0"], ["--streams", "10,-1"], ["--gateway-size", "300"], ["--seconds", "2"]],
)
def test_bad_arguments_exit_2(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    assert "need --streams" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
