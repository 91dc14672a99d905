"""Reading WFDB records and driving the streaming core over them (evaluation helpers)."""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import wfdb

from streamdx.input_errors import InputFileError
from streamdx_dsp.core import Beat, ecg_stream_flush, ecg_stream_init, ecg_stream_process, ecg_stream_unemitted

__all__ = [
    "RecordError",
    "list_records",
    "read_annotations",
    "read_ecg",
    "read_header",
    "read_record",
    "read_wfdb_file",
    "records_for_command",
    "rpeaks_from_beats",
    "stream_record",
]

_T = TypeVar("_T")
#: What the wfdb package raises on a damaged header, signal or annotation file.
_WFDB_ERRORS = (OSError, ValueError, IndexError, KeyError, TypeError, EOFError, struct.error)


class RecordError(InputFileError):
    """A WFDB record (header, signal or annotation file) that cannot be read or is inconsistent."""


def read_wfdb_file(data_dir: Path, name: str, what: str, read: Callable[[], _T]) -> _T:
    """``read()`` (a wfdb call on record ``name`` of ``data_dir``), with wfdb's errors on a damaged
    file turned into a :class:`RecordError` naming the record and ``what`` was being read."""
    try:
        return read()
    except _WFDB_ERRORS as exc:
        raise RecordError(f"record {name} in {data_dir}: cannot read its {what} ({type(exc).__name__}: {exc})") \
            from exc  # fmt: skip


def read_header(data_dir: Path, name: str) -> Any:
    """The header of a WFDB record, with a positive finite sampling frequency.

    Raises
    ------
    RecordError
        When the header is missing, unreadable or has no usable sampling frequency.
    """
    hdr = read_wfdb_file(data_dir, name, "header (.hea)", lambda: wfdb.rdheader(str(data_dir / name)))
    fs = float(hdr.fs) if hdr.fs is not None else math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise RecordError(f"record {name} in {data_dir}: the header gives no positive sampling frequency ({hdr.fs})")
    return hdr


def read_annotations(data_dir: Path, name: str, annotator: str = "atr", n_samples: int | None = None) -> Any:
    """The annotations of a WFDB record, checked: every annotation has a code, the sample
    indices are non-negative and in time order and, when ``n_samples`` is given, inside the signal.

    Raises
    ------
    RecordError
        When the annotation file is missing, unreadable or inconsistent with the signal
        (e.g. a truncated signal file).
    """
    ann = read_wfdb_file(data_dir, name, f"annotations (.{annotator})",
                         lambda: wfdb.rdann(str(data_dir / name), annotator))
    samples = np.asarray(ann.sample, dtype=np.int64)
    if samples.size and samples.min() < 0:
        raise RecordError(f"record {name} in {data_dir}: .{annotator} has negative sample indices")
    if samples.size > 1 and np.any(np.diff(samples) < 0):
        raise RecordError(f"record {name} in {data_dir}: .{annotator} is not in time order")
    if not all(isinstance(s, str) for s in ann.symbol):
        raise RecordError(f"record {name} in {data_dir}: .{annotator} has annotations without a code")
    if n_samples is not None and samples.size and samples.max() >= n_samples:
        late = int(np.sum(samples >= n_samples))
        raise RecordError(f"record {name} in {data_dir}: {late} annotations of .{annotator} lie after the end of the "
                          f"signal ({n_samples} samples); is the signal file truncated?")  # fmt: skip
    return ann


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


def read_record(data_dir: Path, name: str, channels: Sequence[int] | None = None) -> Any:
    """A WFDB record (``wfdb.Record`` with ``p_signal`` in physical units), checked: a
    non-empty signal and a positive finite sampling frequency.

    Raises
    ------
    RecordError
        When the record is missing, unreadable (e.g. a truncated signal file), empty or has
        no usable sampling frequency.
    """
    chans = list(channels) if channels is not None else None
    rec = read_wfdb_file(data_dir, name, "signal", lambda: wfdb.rdrecord(str(data_dir / name), channels=chans))
    fs = float(rec.fs) if rec.fs is not None else math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise RecordError(f"record {name} in {data_dir}: the header gives no positive sampling frequency ({rec.fs})")
    if rec.p_signal is None or rec.p_signal.size == 0:
        raise RecordError(f"record {name} in {data_dir}: the signal is empty")
    return rec


def read_ecg(data_dir: Path, name: str) -> tuple[npt.NDArray[np.float64], float]:
    """First channel of a WFDB record in mV (NaN gaps held at the last valid value), and fs.

    Raises
    ------
    RecordError
        As :func:`read_record`.
    """
    rec = read_record(data_dir, name, channels=[0])
    fs = float(rec.fs)
    x = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        idx = np.where(bad, 0, np.arange(x.size))
        np.maximum.accumulate(idx, out=idx)
        x = x[idx]
        x[~np.isfinite(x)] = 0.0
    return x, fs


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
