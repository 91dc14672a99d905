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


def test_concurrent_cache_writers_never_clash(tmp_path: Path) -> None:
    """Two evaluations filling the cache at once: each writes its own temporary file, then
    renames it; with one shared temporary name, the second rename failed (FileNotFoundError)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from streamdx_inference.ecg.datasets import save_npz_atomic

    path = tmp_path / "cache" / "all.npz"
    data = np.arange(200_000, dtype=np.float64)  # large enough for the writes to overlap
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: save_npz_atomic(path, x=data + k), range(16)))
    with np.load(path) as z:
        assert z["x"].size == data.size and float(z["x"][0]) in range(16)
    assert [p.name for p in path.parent.iterdir()] == ["all.npz"]  # no temporary file left
