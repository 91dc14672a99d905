"""The one lookup of ../shared/data for evaluation tests: skip locally, fail loudly in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.conftest as conftest


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    monkeypatch.delenv("CI", raising=False)
    return tmp_path


def test_present_dataset_is_returned(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (data_root / "mitdb").mkdir()
    (data_root / "mitdb" / "100.hea").write_text("100 2 360 650000\n")
    monkeypatch.setenv("CI", "true")
    assert conftest.shared_dataset("mitdb", "100.hea") == data_root / "mitdb"


@pytest.mark.parametrize("ci", [None, "false", "0", ""])
def test_missing_dataset_skips_with_the_path_outside_ci(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="not found") as info:
        conftest.shared_dataset("mitdb", "100.hea")
    assert str(data_root / "mitdb" / "100.hea") in str(info.value)


@pytest.mark.parametrize("ci", ["true", "TRUE", "1", "yes"])
def test_missing_dataset_fails_in_ci(data_root: Path, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    (data_root / "mitdb").mkdir()  # a folder without the record is still missing data
    with pytest.raises(pytest.fail.Exception, match="CI=true") as info:
        conftest.shared_dataset("mitdb", "100.hea")
    assert str(data_root / "mitdb" / "100.hea") in str(info.value)
