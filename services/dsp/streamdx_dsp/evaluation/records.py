"""Reading WFDB records and driving the streaming core over them (evaluation helpers)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import wfdb

from streamdx_dsp.core import Beat, ecg_stream_flush, ecg_stream_init, ecg_stream_process, ecg_stream_unemitted

__all__ = ["list_records", "read_ecg", "records_for_command", "rpeaks_from_beats", "stream_record"]


def list_records(
    data_dir: Path, only: Sequence[str] | None = None, need_atr: bool = True, annotator: str = "atr"
) -> list[str]:
    """Record names in ``data_dir`` (``*.hea``, with a ``.<annotator>`` file if required), sorted."""
    names = []
    for hea in sorted(data_dir.glob("*.hea")):
        name = hea.stem
        if need_atr and not (data_dir / f"{name}.{annotator}").exists():
            continue
        names.append(name)
    if only:
        wanted = [r.strip() for r in only if r.strip()]
        missing = [r for r in wanted if r not in names]
        if missing:
            raise FileNotFoundError(f"records not found in {data_dir}: {', '.join(missing)}")
        names = wanted
    return names


def read_ecg(data_dir: Path, name: str) -> tuple[npt.NDArray[np.float64], float]:
    """First channel of a WFDB record in mV (NaN gaps held at the last valid value), and fs."""
    rec = wfdb.rdrecord(str(data_dir / name), channels=[0])
    assert rec.p_signal is not None
    x = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        idx = np.where(bad, 0, np.arange(x.size))
        np.maximum.accumulate(idx, out=idx)
        x = x[idx]
        x[~np.isfinite(x)] = 0.0
    return x, float(rec.fs)


def stream_record(x_mv: npt.NDArray[np.float64], fs: float, chunk: int) -> tuple[list[Beat], list[int]]:
    """Run the streaming core over a signal in chunks of ``chunk`` samples, then flush.

    Returns the beats and the R peaks the detector accepted that never became beats
    (the first of the stream; with the fixed window, those too close to the end for a
    whole window; with the RR window, the last one), as absolute sample indices.
    """
    state = ecg_stream_init(fs)
    beats: list[Beat] = []
    for i in range(0, x_mv.size, chunk):
        state, b = ecg_stream_process(state, x_mv[i : i + chunk])
        beats.extend(b)
    state, b = ecg_stream_flush(state)
    beats.extend(b)
    return beats, ecg_stream_unemitted(state)


def rpeaks_from_beats(beats: Sequence[Beat], fs: float, unemitted: Sequence[int] = ()) -> npt.NDArray[np.int64]:
    """All detected R peaks: every beat's R, the first beat's predecessor and the accepted R
    peaks that did not become beats (see :func:`stream_record`)."""
    r = [b.r_sample for b in beats]
    if beats:
        r.append(beats[0].r_sample - round(beats[0].rr_prev_s * fs))
    r.extend(int(v) for v in unemitted)
    return np.unique(np.asarray(r, dtype=np.int64))


def records_for_command(
    data_dir: Path, records_arg: str | None, need_atr: bool = True, annotator: str = "atr"
) -> list[str] | None:
    """The records a command runs on (``--records a,b`` or all); prints a clear error and returns
    ``None`` when the folder is missing or holds no usable record."""
    only = [r for r in records_arg.split(",") if r.strip()] if records_arg else None
    try:
        names = list_records(data_dir, only, need_atr=need_atr, annotator=annotator)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if not names:
        what = f"WFDB records with .{annotator}" if need_atr else "WFDB records"
        print(f"error: no {what} in {data_dir}", file=sys.stderr)
        return None
    return names
