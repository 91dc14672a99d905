"""Parsers for uploaded Holter recordings (WFDB, EDF/EDF+, CSV) — the pure core of the upload endpoint.

Every parser takes the uploaded bytes and returns one :class:`Recording`: int16 ADC counts plus,
per lead, the gain (counts per mV) and baseline needed to get millivolts back, which is exactly
what an ``ecg.samples`` chunk carries. Nothing here touches the network, the filesystem (no temp
files), Kafka or HTTP.

The parsers validate everything and never truncate, pad or resample silently. Any problem —
malformed header, a data file shorter or longer than its header says, NaN or WFDB
"invalid sample" markers, an unsupported format, a sampling frequency outside
[:data:`MIN_FS`, :data:`MAX_FS`], more than :data:`MAX_LEADS` leads, more than
:data:`MAX_SAMPLES` samples per lead, an empty recording — raises :class:`RecordingError` with a
message that can be shown to the uploader as is.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CSV_GAIN",
    "MAX_FS",
    "MAX_GAIN",
    "MAX_LEADS",
    "MAX_SAMPLES",
    "MIN_FS",
    "TIME_COLUMN_NAMES",
    "WFDB_FORMATS",
    "Recording",
    "RecordingError",
    "recording_parse_csv",
    "recording_parse_edf",
    "recording_parse_wfdb",
]

#: Lowest accepted sampling frequency (Hz). Recordings are rejected, never resampled.
MIN_FS = 125.0
#: Highest accepted sampling frequency (Hz).
MAX_FS = 1000.0
#: Most leads one recording may carry.
MAX_LEADS = 16
#: Most samples per lead: 24 h at 1000 Hz.
MAX_SAMPLES = 24 * 3600 * 1000
#: WFDB storage formats the WFDB parser decodes.
WFDB_FORMATS = ("16", "61", "80", "160", "212")
#: Largest gain (ADC counts per mV) a recording may declare, as ``ecg.samples`` allows.
MAX_GAIN = 1e6
#: ADC counts per mV used for CSV input (1 µV resolution, ±32.767 mV range).
CSV_GAIN = 1000.0
#: Header names (case-insensitive) recognised as a CSV time column in seconds.
TIME_COLUMN_NAMES = frozenset(
    {"time", "t", "time_s", "time(s)", "time (s)", "time [s]", "seconds", "sec", "elapsed time"}
)

_INT16_MIN = -32768
_INT16_MAX = 32767
#: Counts left unused at each end of the int16 range when a gain is chosen (headroom).
_HEADROOM = 16
#: Physical unit → mV per unit. Keys are lower-cased.
_MV_PER_UNIT = {"v": 1000.0, "mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6}
#: WFDB sample value meaning "no sample" per format.
_WFDB_INVALID = {"16": -32768, "61": -32768, "80": -128, "160": -32768, "212": -2048}
#: Bits per stored sample per format.
_WFDB_BITS = {"16": 16, "61": 16, "80": 8, "160": 16, "212": 12}
_WFDB_FORMAT_RE = re.compile(r"^(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?$")
_WFDB_GAIN_RE = re.compile(r"^(?P<gain>[^()/]+)(?:\((?P<baseline>[^()]*)\))?(?:/(?P<units>.*))?$")
_WFDB_DEFAULT_GAIN = 200.0
_WFDB_DEFAULT_FS = 250.0


class RecordingError(ValueError):
    """The uploaded recording cannot be used; the message says why, in terms the uploader knows."""


@dataclass(frozen=True)
class Recording:
    """A multi-lead recording as int16 ADC counts with per-lead calibration.

    Millivolts are ``(adc[:, i] - baseline[i]) / gain[i]`` (see :meth:`to_mv`).

    Parameters
    ----------
    fs : float
        Sampling frequency in Hz, within [:data:`MIN_FS`, :data:`MAX_FS`].
    leads : tuple of str
        Lead names, unique and non-empty, one per column of ``adc``.
    adc : numpy.ndarray
        ``int16`` array of shape ``(n_samples, n_leads)``.
    gain : tuple of float
        ADC counts per mV, per lead, in (0, :data:`MAX_GAIN`].
    baseline : tuple of int
        ADC count corresponding to 0 mV, per lead, within the int16 range (as ``ecg.samples``
        requires).
    n_samples : int
        Samples per lead (``adc.shape[0]``), at least 1.

    Raises
    ------
    RecordingError
        When the fields are inconsistent with each other.
    """

    fs: float
    leads: tuple[str, ...]
    adc: npt.NDArray[np.int16]
    gain: tuple[float, ...]
    baseline: tuple[int, ...]
    n_samples: int

    def __post_init__(self) -> None:
        if not isinstance(self.adc, np.ndarray) or self.adc.dtype != np.int16 or self.adc.ndim != 2:
            raise RecordingError("adc must be a 2-D int16 array of shape (n_samples, n_leads)")
        n_leads = len(self.leads)
        if self.adc.shape != (self.n_samples, n_leads):
            raise RecordingError(f"adc has shape {self.adc.shape}, expected ({self.n_samples}, {n_leads})")
        if len(self.gain) != n_leads or len(self.baseline) != n_leads:
            raise RecordingError("gain and baseline need one value per lead")
        if not all(math.isfinite(g) and 0 < g <= MAX_GAIN for g in self.gain):
            raise RecordingError(f"gain must be positive and at most {MAX_GAIN:g} counts/mV, got {self.gain}")
        if not all(_INT16_MIN <= b <= _INT16_MAX for b in self.baseline):
            raise RecordingError(f"baseline must lie in the int16 range, got {self.baseline}")
        _check_shape(self.fs, self.leads, self.n_samples)

    @property
    def n_leads(self) -> int:
        """Number of leads."""
        return len(self.leads)

    @property
    def duration_s(self) -> float:
        """Duration in seconds (``n_samples / fs``)."""
        return self.n_samples / self.fs

    def to_mv(self) -> npt.NDArray[np.float64]:
        """Return the signal in millivolts, shape ``(n_samples, n_leads)``."""
        base = np.asarray(self.baseline, dtype=np.float64)
        gain = np.asarray(self.gain, dtype=np.float64)
        mv: npt.NDArray[np.float64] = (self.adc.astype(np.float64) - base) / gain
        return mv


# --------------------------------------------------------------------------------------- checks


def _check_fs(fs: float) -> None:
    if not math.isfinite(fs) or not MIN_FS <= fs <= MAX_FS:
        raise RecordingError(
            f"sampling frequency {fs:g} Hz is outside the supported {MIN_FS:g}–{MAX_FS:g} Hz; "
            "recordings are not resampled, export the recording at a supported rate"
        )


def _check_leads(leads: Sequence[str]) -> None:
    if len(leads) == 0:
        raise RecordingError("the recording has no signals")
    if len(leads) > MAX_LEADS:
        raise RecordingError(f"the recording has {len(leads)} signals; at most {MAX_LEADS} are supported")
    if any(not name for name in leads):
        raise RecordingError("every lead needs a non-empty name")
    dupes = sorted(name for name, count in Counter(leads).items() if count > 1)
    if dupes:
        raise RecordingError(f"lead names must be unique; repeated: {', '.join(dupes)}")


def _check_n_samples(n_samples: int, fs: float) -> None:
    if n_samples <= 0:
        raise RecordingError("the recording is empty (0 samples)")
    if n_samples > MAX_SAMPLES:
        raise RecordingError(
            f"the recording has {n_samples} samples per lead ({n_samples / fs / 3600:.1f} h at {fs:g} Hz); "
            f"at most {MAX_SAMPLES} (24 h at 1000 Hz) are accepted — split it into shorter files"
        )


def _check_shape(fs: float, leads: Sequence[str], n_samples: int) -> None:
    _check_fs(fs)
    _check_leads(leads)
    _check_n_samples(n_samples, fs)


def _mv_per_unit(unit: str, what: str) -> float:
    factor = _MV_PER_UNIT.get(unit.strip().lower())
    if factor is None:
        raise RecordingError(
            f"{what} has physical unit {unit.strip()!r}; only voltage units (V, mV, uV, nV) are supported"
        )
    return factor


def _quantize(
    mv: npt.NDArray[np.float64], preferred_gain: float, lead: str
) -> tuple[npt.NDArray[np.int16], float, int]:
    """Quantize one lead in mV to int16 counts, keeping ``preferred_gain`` unless the data do not fit.

    The baseline is placed at the middle of the range spanned by the data and 0 mV, so that the
    full int16 span is available and the baseline itself is a valid int16 count; the gain is
    lowered only when that range spans more than 16 bits (and capped at :data:`MAX_GAIN`).
    """
    if not np.all(np.isfinite(mv)):
        raise RecordingError(f"lead {lead!r} contains NaN or infinite values")
    lo, hi = min(float(mv.min()), 0.0), max(float(mv.max()), 0.0)
    usable = float(_INT16_MAX - _INT16_MIN - 2 * _HEADROOM)
    gain = preferred_gain if math.isfinite(preferred_gain) and preferred_gain > 0 else CSV_GAIN
    gain = min(gain, MAX_GAIN)
    if (hi - lo) * gain > usable:
        gain = usable / (hi - lo)
    baseline = -round((lo + hi) / 2.0 * gain)
    counts = np.rint(mv * gain) + baseline
    if counts.min() < _INT16_MIN or counts.max() > _INT16_MAX:  # pragma: no cover - guarded above
        raise RecordingError(f"lead {lead!r} does not fit in 16 bits")
    return counts.astype(np.int16), gain, int(baseline)


# ------------------------------------------------------------------------------------------ WFDB


@dataclass(frozen=True)
class _WfdbSignal:
    file_name: str
    fmt: str
    offset: int
    gain: float  # counts per mV
    baseline: int
    checksum: int | None
    name: str


def _decode_header_text(header: bytes) -> str:
    try:
        return header.decode("utf-8")
    except UnicodeDecodeError:
        return header.decode("latin-1")


def _parse_int(token: str, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise RecordingError(f"malformed WFDB header: {what} {token!r} is not an integer") from None


def _parse_wfdb_signal_line(line: str, index: int) -> _WfdbSignal:
    tokens = line.split()
    where = f"signal line {index + 1}"
    if len(tokens) < 2:
        raise RecordingError(f"malformed WFDB header: {where} needs at least a file name and a format")
    file_name, fmt_spec = tokens[0], tokens[1]
    m = _WFDB_FORMAT_RE.match(fmt_spec)
    if m is None:
        raise RecordingError(f"malformed WFDB header: {where} has format {fmt_spec!r}")
    fmt = m["fmt"]
    if fmt not in WFDB_FORMATS:
        raise RecordingError(
            f"WFDB format {fmt} ({where}) is not supported; supported formats: {', '.join(WFDB_FORMATS)}"
        )
    if m["spf"] is not None and int(m["spf"]) != 1:
        raise RecordingError(f"{where}: multi-frequency records (samples per frame {m['spf']}) are not supported")
    if m["skew"] is not None and int(m["skew"]) != 0:
        raise RecordingError(f"{where}: skewed signals are not supported")
    offset = int(m["offset"] or 0)

    gain, baseline_text, units = _WFDB_DEFAULT_GAIN, None, "mV"
    if len(tokens) > 2:
        g = _WFDB_GAIN_RE.match(tokens[2])
        if g is None:
            raise RecordingError(f"malformed WFDB header: {where} has gain field {tokens[2]!r}")
        try:
            gain = float(g["gain"])
        except ValueError:
            raise RecordingError(f"malformed WFDB header: {where} has gain {g['gain']!r}") from None
        baseline_text = g["baseline"]
        if g["units"] is not None:
            units = g["units"]
    if not math.isfinite(gain) or gain < 0:
        raise RecordingError(f"{where}: gain {gain:g} is not supported (must be positive)")
    if gain == 0:  # WFDB: 0 means "uncalibrated", read as the default gain
        gain = _WFDB_DEFAULT_GAIN
    adc_zero = _parse_int(tokens[4], f"{where} ADC zero") if len(tokens) > 4 else 0
    baseline = _parse_int(baseline_text, f"{where} baseline") if baseline_text is not None else adc_zero
    checksum = _parse_int(tokens[6], f"{where} checksum") if len(tokens) > 6 else None
    name = " ".join(tokens[8:]) if len(tokens) > 8 else f"sig{index}"
    gain_per_mv = gain / _mv_per_unit(units, where)
    return _WfdbSignal(file_name, fmt, offset, gain_per_mv, baseline, checksum, name)


def _parse_wfdb_header(header: bytes) -> tuple[float, int | None, list[_WfdbSignal]]:
    lines = [
        stripped
        for raw in _decode_header_text(header).splitlines()
        if (stripped := raw.strip()) and not stripped.startswith("#")
    ]
    if not lines:
        raise RecordingError("malformed WFDB header: no record line (the .hea file is empty)")
    record = lines[0].split()
    if len(record) < 2:
        raise RecordingError("malformed WFDB header: the record line must be '<name> <n_signals> [<fs> [<n_samples>]]'")
    if "/" in record[0]:
        raise RecordingError("multi-segment WFDB records are not supported; upload a single-segment record")
    n_sig = _parse_int(record[1], "number of signals")
    if n_sig <= 0:
        raise RecordingError("the recording has no signals")
    if n_sig > MAX_LEADS:
        raise RecordingError(f"the recording has {n_sig} signals; at most {MAX_LEADS} are supported")
    fs = _WFDB_DEFAULT_FS
    if len(record) > 2:
        fs_text = record[2].split("/", 1)[0]
        try:
            fs = float(fs_text)
        except ValueError:
            raise RecordingError(f"malformed WFDB header: sampling frequency {record[2]!r}") from None
    _check_fs(fs)
    n_samples: int | None = None
    if len(record) > 3:
        n_samples = _parse_int(record[3], "number of samples")
        if n_samples < 0:
            raise RecordingError(f"malformed WFDB header: negative number of samples {n_samples}")
        if n_samples == 0:
            n_samples = None  # WFDB: 0 means "not stated"
        else:
            _check_n_samples(n_samples, fs)
    signal_lines = lines[1:]
    if len(signal_lines) != n_sig:
        raise RecordingError(
            f"malformed WFDB header: the record line declares {n_sig} signals "
            f"but there are {len(signal_lines)} signal lines"
        )
    signals = [_parse_wfdb_signal_line(line, i) for i, line in enumerate(signal_lines)]
    files = {s.file_name for s in signals}
    if len(files) != 1:
        raise RecordingError(
            f"the header spreads the signals over {len(files)} data files ({', '.join(sorted(files))}); "
            "only single-file records can be uploaded"
        )
    if "~" in files:
        raise RecordingError("the header declares no data file ('~'); there is nothing to read")
    if len({s.fmt for s in signals}) != 1 or len({s.offset for s in signals}) != 1:
        raise RecordingError("all signals of the data file must share one format and byte offset")
    _check_leads([s.name for s in signals])
    return fs, n_samples, signals


def _wfdb_total_from_bytes(n_bytes: int, fmt: str, n_sig: int) -> int:
    if fmt == "212":
        total, rest = divmod(n_bytes, 3)
        total *= 2
        if rest == 2:
            total += 1
        elif rest == 1:
            raise RecordingError("the .dat file length is not a whole number of format-212 samples")
    else:
        width = _WFDB_BITS[fmt] // 8
        total, rest = divmod(n_bytes, width)
        if rest:
            raise RecordingError(f"the .dat file length is not a whole number of format-{fmt} samples")
    if total % n_sig:
        raise RecordingError(f"the .dat file holds {total} values, not a whole number of {n_sig}-signal frames")
    return total


def _wfdb_decode(raw: memoryview, fmt: str, total: int) -> npt.NDArray[np.int16]:
    buf = np.frombuffer(raw, dtype=np.uint8)
    if fmt == "16":
        return np.frombuffer(raw, dtype="<i2", count=total).astype(np.int16)
    if fmt == "61":
        return np.frombuffer(raw, dtype=">i2", count=total).astype(np.int16)
    if fmt == "160":
        return (np.frombuffer(raw, dtype="<u2", count=total).astype(np.int32) - 32768).astype(np.int16)
    if fmt == "80":
        return (buf[:total].astype(np.int16) - 128).astype(np.int16)
    # 212: two 12-bit two's-complement samples in three bytes
    n_pairs = (total + 1) // 2
    padded = np.zeros(n_pairs * 3, dtype=np.uint8)
    used = min(buf.size, n_pairs * 3)
    padded[:used] = buf[:used]
    trip = padded.reshape(-1, 3).astype(np.int16)
    out = np.empty(n_pairs * 2, dtype=np.int16)
    out[0::2] = trip[:, 0] | ((trip[:, 1] & 0x0F) << 8)
    out[1::2] = trip[:, 2] | ((trip[:, 1] & 0xF0) << 4)
    out[out > 2047] -= 4096
    return out[:total]


def recording_parse_wfdb(header: bytes, data: bytes) -> Recording:
    """Parse a single-segment WFDB record from its ``.hea`` and ``.dat`` bytes.

    Parameters
    ----------
    header : bytes
        Content of the ``.hea`` file.
    data : bytes
        Content of the one ``.dat`` file the header names.

    Returns
    -------
    Recording
        ADC counts as stored, with the header's gains (converted to counts per mV from mV, uV,
        V or nV) and baselines. Lead names come from the description fields (``sig<i>`` when
        absent).

    Raises
    ------
    RecordingError
        Malformed header; unsupported format (supported: :data:`WFDB_FORMATS`, one sample per
        frame, no skew, one data file); non-voltage units; a ``.dat`` whose length differs from
        what the header declares (truncated or with trailing bytes); WFDB invalid-sample markers
        (the format's NaN); a checksum mismatch; or a recording outside the limits.

    Notes
    -----
    The decoder is implemented here with numpy rather than through ``wfdb.rdrecord`` so that
    no files are written and so that length mismatches are errors instead of silent truncation.
    """
    fs, n_samples, signals = _parse_wfdb_header(header)
    n_sig = len(signals)
    fmt, offset = signals[0].fmt, signals[0].offset
    raw = memoryview(data)
    if len(raw) < offset:
        raise RecordingError(f"the .dat file has {len(raw)} bytes, less than the header's byte offset {offset}")
    raw = raw[offset:]
    if n_samples is None:
        total = _wfdb_total_from_bytes(len(raw), fmt, n_sig)
        n_samples = total // n_sig
        _check_n_samples(n_samples, fs)
    total = n_samples * n_sig
    expected = (total * 3 + 1) // 2 if fmt == "212" else total * _WFDB_BITS[fmt] // 8
    if len(raw) != expected:
        have = len(raw) * 8 // _WFDB_BITS[fmt] // n_sig
        problem = "truncated" if len(raw) < expected else "longer than declared"
        raise RecordingError(
            f"the .dat file is {problem}: the header declares {n_samples} samples × {n_sig} signals "
            f"({expected} bytes in format {fmt}) but the file holds {len(raw)} bytes (~{have} samples)"
        )
    flat = _wfdb_decode(raw, fmt, total)
    adc = flat.reshape(n_samples, n_sig)
    invalid = _WFDB_INVALID[fmt]
    for i, sig in enumerate(signals):
        column = adc[:, i]
        n_invalid = int(np.count_nonzero(column == invalid))
        if n_invalid:
            raise RecordingError(
                f"lead {sig.name!r} has {n_invalid} invalid (missing) samples — the WFDB equivalent of NaN"
            )
        if sig.checksum is not None:
            # a 16-bit sum; writers store it signed (WFDB C library) or unsigned (wfdb-python)
            checksum = (int(column.sum(dtype=np.int64)) + 32768) % 65536 - 32768
            if (checksum - sig.checksum) % 65536:
                raise RecordingError(
                    f"lead {sig.name!r}: checksum {checksum} does not match the header's {sig.checksum}; "
                    "the .dat file does not belong to this header or is corrupted"
                )
    return Recording(
        fs=fs,
        leads=tuple(s.name for s in signals),
        adc=np.ascontiguousarray(adc),
        gain=tuple(s.gain for s in signals),
        baseline=tuple(s.baseline for s in signals),
        n_samples=n_samples,
    )


# ------------------------------------------------------------------------------------------- EDF


_EDF_DATA_WARNINGS = ("truncated", "header indicates", "uncalibrated")


@dataclass(frozen=True)
class _EdfHeader:
    label: str
    fs: float
    unit: str
    physical_span: float
    digital_span: int
    n_samples: int


def _raise_on_edf_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        text = str(w.message)
        if any(key in text for key in _EDF_DATA_WARNINGS):
            raise RecordingError(f"the EDF file is inconsistent: {text}")


def recording_parse_edf(data: bytes) -> Recording:
    """Parse an EDF or EDF+ (continuous) file with ``edfio``.

    Parameters
    ----------
    data : bytes
        Content of the ``.edf`` file.

    Returns
    -------
    Recording
        Physical values converted to int16 counts per lead. The gain is the file's own digital
        resolution (``(dmax - dmin) / (pmax - pmin)`` in counts per mV), lowered only if the data
        would not fit in 16 bits; the baseline is centred on the data range. Values therefore
        round-trip to within half an ADC step. EDF+ annotation signals are not leads.

    Raises
    ------
    RecordingError
        Not an EDF file; truncated or over-long data records; EDF+D (discontinuous) files;
        signals at different sampling frequencies; non-voltage signals; uncalibrated signals;
        NaN; or a recording outside the limits.
    """
    import edfio  # local: only this parser needs it

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # edfio decodes header fields lazily, so every access to them can raise on a corrupt file
        try:
            edf = edfio.read_edf(bytes(data), lazy_load_data=False)
            continuous = edf.is_continuous
            headers = [
                _EdfHeader(
                    label=s.label.strip(),
                    fs=float(s.sampling_frequency),
                    unit=s.physical_dimension,
                    physical_span=abs(float(s.physical_max) - float(s.physical_min)),
                    digital_span=int(s.digital_max) - int(s.digital_min),
                    n_samples=len(s.digital),
                )
                for s in edf.signals
            ]
        except Exception as exc:  # edfio raises ValueError, IndexError, UnicodeDecodeError, ...
            raise RecordingError(f"not a readable EDF/EDF+ file: {exc}") from exc
        _raise_on_edf_warnings(caught)
        if not continuous:
            raise RecordingError("EDF+D (discontinuous) recordings are not supported; gaps cannot be streamed")
        if not headers:
            raise RecordingError("the EDF file has no signals (annotations only)")
        leads = [h.label for h in headers]
        _check_leads(leads)
        if len({h.fs for h in headers}) != 1:
            raise RecordingError(
                "all signals must share one sampling frequency; found "
                + ", ".join(f"{h.label}={h.fs:g} Hz" for h in headers)
            )
        fs = headers[0].fs
        _check_fs(fs)
        factors = [_mv_per_unit(h.unit, f"signal {h.label!r}") for h in headers]
        n_samples = headers[0].n_samples
        _check_n_samples(n_samples, fs)
        adc = np.empty((n_samples, len(headers)), dtype=np.int16)
        gains: list[float] = []
        baselines: list[int] = []
        for i, (h, factor) in enumerate(zip(headers, factors, strict=True)):
            try:
                physical = np.asarray(edf.signals[i].data, dtype=np.float64)
            except Exception as exc:
                raise RecordingError(f"signal {h.label!r} cannot be read: {exc}") from exc
            _raise_on_edf_warnings(caught)
            span_mv = h.physical_span * factor
            native = h.digital_span / span_mv if span_mv > 0 else math.nan
            counts, gain, baseline = _quantize(physical * factor, native, h.label)
            adc[:, i] = counts
            gains.append(gain)
            baselines.append(baseline)
    return Recording(
        fs=fs, leads=tuple(leads), adc=adc, gain=tuple(gains), baseline=tuple(baselines), n_samples=n_samples
    )


# ------------------------------------------------------------------------------------------- CSV


def _csv_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"the CSV file is not UTF-8 text: {exc}") from None


def _csv_fs_from_time(t: npt.NDArray[np.float64]) -> float:
    if t.size < 2:
        raise RecordingError("a time column needs at least two rows to give a sampling frequency; pass fs")
    span = float(t[-1] - t[0])
    if not span > 0:
        raise RecordingError("the time column must increase")
    fs_est = (t.size - 1) / span
    steps = np.diff(t) * fs_est
    bad = np.flatnonzero((steps < 0.5) | (steps > 1.5))
    if bad.size:
        row = int(bad[0]) + 3  # 1-based, after the header row
        raise RecordingError(
            f"the time column is not uniformly sampled (row {row}: step {float(t[bad[0] + 1] - t[bad[0]]):g} s "
            f"where {1 / fs_est:g} s is expected); gaps and jitter are not supported"
        )
    nearest = round(fs_est)
    return float(nearest) if abs(fs_est - nearest) <= 1e-3 * fs_est else fs_est


_LOADTXT_CONVERT_RE = re.compile(
    r"could not convert string (?P<value>.*) to float64 at row (?P<row>\d+), column (?P<col>\d+)"
)
_LOADTXT_COLUMNS_RE = re.compile(r"number of columns changed from (?P<old>\d+) to (?P<new>\d+) at row (?P<row>\d+)")


def _csv_loadtxt_message(message: str, body: str, names: Sequence[str]) -> str:
    """Rewrite a ``numpy.loadtxt`` error with file line numbers and column names."""
    # numpy counts non-blank rows: 0-based in conversion errors, 1-based in column-count errors
    nonblank = [i for i, line in enumerate(body.split("\n")) if line.strip()]

    def file_line(index: int) -> str:
        return f"line {nonblank[index] + 2}" if 0 <= index < len(nonblank) else "a data row"

    if m := _LOADTXT_CONVERT_RE.search(message):
        col = int(m["col"]) - 1
        name = repr(names[col]) if 0 <= col < len(names) else f"number {col + 1}"
        return f"malformed CSV data at {file_line(int(m['row']))}: {m['value']} in column {name} is not a number"
    if m := _LOADTXT_COLUMNS_RE.search(message):
        return (
            f"malformed CSV data at {file_line(int(m['row']) - 1)}: {m['new']} values "
            f"where the previous rows have {m['old']}"
        )
    return f"malformed CSV data: {message}"


def recording_parse_csv(data: bytes, *, fs: float | None = None) -> Recording:
    """Parse a CSV recording: one header row, then one row per sample, values in mV.

    Parameters
    ----------
    data : bytes
        UTF-8 text; comma-, semicolon- or tab-separated (detected from the header row).
    fs : float, optional
        Sampling frequency in Hz. Required unless a time column (seconds; a header named one of
        :data:`TIME_COLUMN_NAMES`) is present; when both are given they must agree within 1 %.

    Returns
    -------
    Recording
        Counts at :data:`CSV_GAIN` counts per mV (1 µV steps), baseline 0. Every column other
        than the time column is a lead, named by its header.

    Raises
    ------
    RecordingError
        Any malformed input: no header, duplicate or empty names, ragged rows, non-numeric or
        NaN values, values beyond ±32.767 mV (probably µV, not mV), an irregular time column,
        no fs, or a recording outside the limits.
    """
    text = _csv_text(data)
    first, _, body = text.partition("\n")
    first = first.rstrip("\r")
    if not first.strip():
        raise RecordingError("the CSV file is empty or lacks a header row naming the columns")
    delimiter = next((d for d in (",", "\t", ";") if d in first), ",")
    try:
        names = [name.strip().strip("'").strip() for name in next(csv.reader([first], delimiter=delimiter))]
    except csv.Error as exc:
        raise RecordingError(f"malformed CSV header row: {exc}") from None
    for name in names:
        try:
            float(name)
        except ValueError:
            continue
        raise RecordingError(f"the first row must name the columns; {name!r} is a number")
    time_cols = [i for i, name in enumerate(names) if name.lower() in TIME_COLUMN_NAMES]
    if len(time_cols) > 1:
        raise RecordingError("more than one time column: " + ", ".join(names[i] for i in time_cols))
    leads = [name for i, name in enumerate(names) if i not in time_cols]
    _check_leads(leads)
    if fs is None and not time_cols:
        raise RecordingError("no time column (named e.g. 'time' in seconds) and no sampling frequency given; pass fs")
    if fs is not None:
        _check_fs(float(fs))
    if not body.strip():
        raise RecordingError("the CSV file has a header row but no data rows (0 samples)")
    n_rows_max = body.count("\n") + 1
    if n_rows_max > MAX_SAMPLES + 1:
        raise RecordingError(f"the CSV file has more than {MAX_SAMPLES} rows (24 h at 1000 Hz)")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.loadtxt(
                io.StringIO(body),
                delimiter=delimiter,
                dtype=np.float64,
                ndmin=2,
                comments=None,
                quotechar='"',
            )
    except (ValueError, UserWarning, IndexError, TypeError) as exc:
        raise RecordingError(_csv_loadtxt_message(str(exc), body, names)) from None
    if values.size == 0:
        raise RecordingError("the recording is empty (0 samples)")
    if values.shape[1] != len(names):
        raise RecordingError(f"the header names {len(names)} columns but the rows have {values.shape[1]}")
    if not np.all(np.isfinite(values)):
        row, col = (int(v) for v in np.argwhere(~np.isfinite(values))[0])
        raise RecordingError(f"NaN or infinite value in column {names[col]!r}, data row {row + 1}")

    if time_cols:
        fs_time = _csv_fs_from_time(values[:, time_cols[0]])
        if fs is not None and abs(fs_time - fs) > 0.01 * fs:
            raise RecordingError(f"fs={fs:g} Hz disagrees with the time column ({fs_time:g} Hz)")
        rate = float(fs) if fs is not None else fs_time
        if not MIN_FS <= fs_time <= MAX_FS:
            raise RecordingError(
                f"the time column gives {fs_time:g} Hz, outside the supported {MIN_FS:g}–{MAX_FS:g} Hz "
                f"(the time column {names[time_cols[0]]!r} must be in seconds)"
            )
    else:
        assert fs is not None
        rate = float(fs)
    _check_fs(rate)
    mv = np.delete(values, time_cols, axis=1) if time_cols else values
    n_samples = mv.shape[0]
    _check_n_samples(n_samples, rate)
    limit = _INT16_MAX / CSV_GAIN
    peak = float(np.abs(mv).max())
    if peak > limit:
        col = int(np.argmax(np.abs(mv).max(axis=0)))
        raise RecordingError(
            f"column {leads[col]!r} reaches {peak:g}, beyond ±{limit:g} mV; CSV values must be in mV "
            "(values this large are usually µV)"
        )
    adc = np.rint(mv * CSV_GAIN).astype(np.int16)
    return Recording(
        fs=rate,
        leads=tuple(leads),
        adc=np.ascontiguousarray(adc),
        gain=(CSV_GAIN,) * len(leads),
        baseline=(0,) * len(leads),
        n_samples=n_samples,
    )
