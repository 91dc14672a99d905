"""The training cache of the DSP's beats is keyed by the DSP's sources as well as by the data."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdx_inference.ecg import datasets


def test_cache_key_follows_the_data_and_the_dsp_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "100.dat"
    f.write_bytes(b"0123")
    key = datasets._file_key(f)
    assert key == datasets._file_key(f) and len(datasets._dsp_digest()) == 12
    monkeypatch.setattr(datasets, "_dsp_digest", lambda: "another-dsp")
    assert datasets._file_key(f) != key  # a DSP change invalidates the cached beats
    monkeypatch.undo()
    f.write_bytes(b"01234")
    assert datasets._file_key(f) != key  # so does a data change
