"""Holter recording parsers: round trips through the reference writers and every rejection path."""

from __future__ import annotations

from pathlib import Path

import edfio
import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdx_ingest.recordings import (
    CSV_GAIN,
    MAX_LEADS,
    Recording,
    RecordingError,
    recording_parse_csv,
    recording_parse_edf,
    recording_parse_wfdb,
)

FS = 360.0
N = 3600  # 10 s


def _signal_mv(n: int = N, fs: float = FS) -> np.ndarray:
    """A 2-lead ECG-like signal in mV (sharp peaks plus a slow wave)."""
    t = np.arange(n) / fs
    peaks = np.exp(-(((t % 0.8) - 0.4) ** 2) / (2 * 0.01**2))
    lead1 = 1.2 * peaks + 0.1 * np.sin(2 * np.pi * 0.3 * t) - 0.2
    lead2 = -0.6 * peaks + 0.05 * np.cos(2 * np.pi * 1.1 * t) + 0.1
    return np.column_stack([lead1, lead2])


def _write_wfdb(tmp_path: Path, fmt: str, *, units: str = "mV", gain: float = 200.0) -> tuple[bytes, bytes]:
    mv = _signal_mv()
    scale = 1000.0 if units == "uV" else 1.0
    d_signal = np.rint(mv * scale * gain).astype(np.int64) + 17
    wfdb.wrsamp(
        "rec",
        fs=FS,
        units=[units, units],
        sig_name=["MLII", "V5"],
        d_signal=d_signal,
        fmt=[fmt, fmt],
        adc_gain=[gain, gain],
        baseline=[17, 17],
        write_dir=str(tmp_path),
    )
    return (tmp_path / "rec.hea").read_bytes(), (tmp_path / "rec.dat").read_bytes()


def _assert_close_mv(rec: Recording, mv: np.ndarray) -> None:
    assert rec.n_samples == mv.shape[0]
    assert rec.adc.shape == mv.shape
    assert rec.adc.dtype == np.int16
    step = 1.0 / np.asarray(rec.gain)
    assert np.all(np.abs(rec.to_mv() - mv) <= step + 1e-12)


# ------------------------------------------------------------------------------------ WFDB


@pytest.mark.parametrize("fmt", ["16", "212"])
def test_wfdb_round_trip(tmp_path: Path, fmt: str) -> None:
    header, data = _write_wfdb(tmp_path, fmt)
    rec = recording_parse_wfdb(header, data)
    ref = wfdb.rdrecord(str(tmp_path / "rec"), physical=False)
    assert rec.fs == FS
    assert rec.leads == ("MLII", "V5")
    assert rec.gain == (200.0, 200.0)
    assert rec.baseline == (17, 17)
    np.testing.assert_array_equal(rec.adc, ref.d_signal)
    _assert_close_mv(rec, _signal_mv())


def test_wfdb_format_80(tmp_path: Path) -> None:
    header, data = _write_wfdb(tmp_path, "80", gain=50.0)
    rec = recording_parse_wfdb(header, data)
    np.testing.assert_array_equal(rec.adc, wfdb.rdrecord(str(tmp_path / "rec"), physical=False).d_signal)


@pytest.mark.parametrize("fmt", ["61", "160"])
def test_wfdb_formats_61_and_160(tmp_path: Path, fmt: str) -> None:
    counts = np.array([[0, -1], [1000, -2000], [32767, -32767]], dtype=np.int16)
    big_endian = counts.astype(">i2").tobytes()
    offset_binary = (counts.astype(np.int32) + 32768).astype("<u2").tobytes()
    data = big_endian if fmt == "61" else offset_binary
    sums = [int(v) for v in (counts.astype(np.int64).sum(axis=0) + 32768) % 65536 - 32768]
    header = (
        f"r 2 250 3\nr.dat {fmt} 100(0)/mV 16 0 0 {sums[0]} 0 I\nr.dat {fmt} 100(0)/mV 16 0 0 {sums[1]} 0 II\n"
    ).encode()
    rec = recording_parse_wfdb(header, data)
    np.testing.assert_array_equal(rec.adc, counts)
    (tmp_path / "r.hea").write_bytes(header)
    (tmp_path / "r.dat").write_bytes(data)
    np.testing.assert_array_equal(wfdb.rdrecord(str(tmp_path / "r"), physical=False).d_signal, counts)


def test_wfdb_microvolt_units_become_counts_per_mv(tmp_path: Path) -> None:
    header, data = _write_wfdb(tmp_path, "16", units="uV", gain=1.0)
    rec = recording_parse_wfdb(header, data)
    assert rec.gain == (1000.0, 1000.0)
    _assert_close_mv(rec, _signal_mv())


def test_wfdb_odd_sample_count_in_212(tmp_path: Path) -> None:
    wfdb.wrsamp(
        "odd",
        fs=250,
        units=["mV"],
        sig_name=["I"],
        d_signal=np.array([[1], [-2], [2047]]),
        fmt=["212"],
        adc_gain=[200.0],
        baseline=[0],
        write_dir=str(tmp_path),
    )
    rec = recording_parse_wfdb((tmp_path / "odd.hea").read_bytes(), (tmp_path / "odd.dat").read_bytes())
    assert rec.adc[:, 0].tolist() == [1, -2, 2047]


def test_wfdb_without_sample_count_uses_data_length(tmp_path: Path) -> None:
    header, data = _write_wfdb(tmp_path, "16")
    lines = header.decode().splitlines()
    lines[0] = "rec 2 360"
    rec = recording_parse_wfdb("\n".join(lines).encode(), data)
    assert rec.n_samples == N


@pytest.mark.parametrize("cut", [1, 3, 300])
def test_wfdb_truncated_dat_is_an_error(tmp_path: Path, cut: int) -> None:
    header, data = _write_wfdb(tmp_path, "212")
    with pytest.raises(RecordingError, match="truncated"):
        recording_parse_wfdb(header, data[:-cut])


def test_wfdb_trailing_bytes_are_an_error(tmp_path: Path) -> None:
    header, data = _write_wfdb(tmp_path, "16")
    with pytest.raises(RecordingError, match="longer than declared"):
        recording_parse_wfdb(header, data + b"\0\0\0\0")


def test_wfdb_checksum_mismatch(tmp_path: Path) -> None:
    header, data = _write_wfdb(tmp_path, "16")
    corrupted = bytearray(data)
    corrupted[10] ^= 0x01
    with pytest.raises(RecordingError, match="checksum"):
        recording_parse_wfdb(header, bytes(corrupted))


def test_wfdb_invalid_sample_marker_is_nan(tmp_path: Path) -> None:
    header, data = _write_wfdb(tmp_path, "16")
    lines = [
        " ".join(line.split()[:2]) + " 200(17)/mV 16 0 0 0 0 " + line.split()[-1]
        for line in header.decode().splitlines()[1:]
    ]
    header = ("rec 2 360 3600\n" + "\n".join(lines)).encode()  # no checksums
    corrupted = bytearray(data)
    corrupted[0:2] = np.int16(-32768).tobytes()
    with pytest.raises(RecordingError, match="invalid"):
        recording_parse_wfdb(header, bytes(corrupted))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"", "empty"),
        (b"# only a comment\n", "no record line"),
        (b"rec\n", "record line"),
        (b"rec two 360 10\n", "not an integer"),
        (b"rec 1 360 10\n", "1 signals but there are 0"),
        (b"rec 1 abc 10\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "sampling frequency"),
        (b"rec 1 100 10\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "outside the supported"),
        (b"rec 1 2000 10\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "outside the supported"),
        (b"rec 1 360 10\nrec.dat 24 200/mV 16 0 0 0 0 I\n", "not supported"),
        (b"rec 1 360 10\nrec.dat 212x2 200/mV 16 0 0 0 0 I\n", "multi-frequency"),
        (b"rec 1 360 10\nrec.dat 16 200/mmHg 16 0 0 0 0 BP\n", "voltage"),
        (b"rec 1 360 10\nrec.dat 16 abc/mV 16 0 0 0 0 I\n", "gain"),
        (b"rec/2 1 360 10\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "multi-segment"),
        (b"rec 2 360 10\na.dat 16 200/mV 16 0 0 0 0 I\nb.dat 16 200/mV 16 0 0 0 0 II\n", "data files"),
        (b"rec 2 360 10\na.dat 16 200/mV 16 0 0 0 0 I\na.dat 16 200/mV 16 0 0 0 0 I\n", "unique"),
        (b"rec 0 360 10\n", "no signals"),
        (b"rec 17 360 10\n", f"at most {MAX_LEADS}"),
        (b"rec 1 360 99999999999\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "24 h"),
    ],
)
def test_wfdb_header_errors(header: bytes, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        recording_parse_wfdb(header, b"\0" * 20)


def test_wfdb_empty_data_is_an_error() -> None:
    with pytest.raises(RecordingError, match="empty"):
        recording_parse_wfdb(b"rec 1 360\nrec.dat 16 200/mV 16 0 0 0 0 I\n", b"")


@pytest.mark.evaluation
def test_wfdb_matches_wfdb_reader_on_mitdb_100(mitdb: Path) -> None:
    rec = recording_parse_wfdb((mitdb / "100.hea").read_bytes(), (mitdb / "100.dat").read_bytes())
    ref = wfdb.rdrecord(str(mitdb / "100"), physical=False)
    assert rec.leads == ("MLII", "V5")
    assert rec.baseline == (1024, 1024)
    np.testing.assert_array_equal(rec.adc, ref.d_signal)


# ------------------------------------------------------------------------------------- EDF


def _edf_bytes(
    mv: np.ndarray,
    *,
    fs: float = FS,
    units: str = "mV",
    labels: tuple[str, ...] = ("MLII", "V5"),
    physical_range: tuple[float, float] = (-5.0, 5.0),
) -> bytes:
    scale = {"mV": 1.0, "uV": 1000.0}.get(units, 1.0)
    signals = [
        edfio.EdfSignal(
            mv[:, i] * scale,
            sampling_frequency=fs,
            label=label,
            physical_dimension=units,
            physical_range=(physical_range[0] * scale, physical_range[1] * scale),
        )
        for i, label in enumerate(labels)
    ]
    return edfio.Edf(signals).to_bytes()


@pytest.mark.parametrize("units", ["mV", "uV"])
def test_edf_round_trip(units: str) -> None:
    mv = _signal_mv()
    rec = recording_parse_edf(_edf_bytes(mv, units=units))
    assert rec.fs == FS
    assert rec.leads == ("MLII", "V5")
    _assert_close_mv(rec, mv)
    # the file's own resolution (65535 counts over 10 mV) is kept
    assert rec.gain == pytest.approx((6553.5, 6553.5))


def test_edf_plus_annotations_are_not_leads() -> None:
    mv = _signal_mv()
    signals = [edfio.EdfSignal(mv[:, 0], sampling_frequency=FS, label="MLII", physical_dimension="mV")]
    edf = edfio.Edf(signals, annotations=[edfio.EdfAnnotation(1.0, None, "start")])
    rec = recording_parse_edf(edf.to_bytes())
    assert rec.leads == ("MLII",)
    _assert_close_mv(rec, mv[:, :1])


def test_edf_gain_lowered_when_values_do_not_fit() -> None:
    mv = _signal_mv() * 100.0  # ±120 mV peaks in a ±500 mV physical range
    data = _edf_bytes(mv, physical_range=(-500.0, 500.0))
    rec = recording_parse_edf(data)
    _assert_close_mv(rec, mv)
    assert rec.to_mv().max() == pytest.approx(mv.max(), abs=0.1)


def test_edf_offset_signal_keeps_baseline_in_int16() -> None:
    mv = _signal_mv()[:, :1] + 40.0  # a DC offset far from 0 mV, tiny physical range
    data = edfio.Edf(
        [
            edfio.EdfSignal(
                mv[:, 0], sampling_frequency=FS, label="I", physical_dimension="mV", physical_range=(38.0, 42.0)
            )
        ]
    ).to_bytes()
    rec = recording_parse_edf(data)
    assert -32768 <= rec.baseline[0] <= 32767
    _assert_close_mv(rec, mv)


def test_edf_truncated_is_an_error() -> None:
    data = _edf_bytes(_signal_mv())
    with pytest.raises(RecordingError, match="inconsistent"):
        recording_parse_edf(data[:-100])


def test_edf_errors() -> None:
    mv = _signal_mv()
    with pytest.raises(RecordingError, match="not a readable EDF"):
        recording_parse_edf(b"this is not an EDF file" * 20)
    with pytest.raises(RecordingError, match="not a readable EDF"):
        recording_parse_edf(b"")
    with pytest.raises(RecordingError, match="voltage"):
        recording_parse_edf(_edf_bytes(mv, units="degC"))
    with pytest.raises(RecordingError, match="outside the supported"):
        recording_parse_edf(_edf_bytes(_signal_mv(n=1000, fs=100.0), fs=100.0))
    with pytest.raises(RecordingError, match="unique"):
        recording_parse_edf(_edf_bytes(mv, labels=("ECG", "ECG")))
    mixed = edfio.Edf(
        [
            edfio.EdfSignal(mv[:, 0], sampling_frequency=360, label="I", physical_dimension="mV"),
            edfio.EdfSignal(mv[::2, 1], sampling_frequency=180, label="II", physical_dimension="mV"),
        ]
    ).to_bytes()
    with pytest.raises(RecordingError, match="one sampling frequency"):
        recording_parse_edf(mixed)


# ------------------------------------------------------------------------------------- CSV


def _csv_bytes(mv: np.ndarray, *, time: bool, fs: float = FS) -> bytes:
    header = (["time"] if time else []) + ["MLII", "V5"]
    rows = [",".join(header)]
    for i, row in enumerate(mv):
        cells = ([f"{i / fs:.6f}"] if time else []) + [f"{v:.4f}" for v in row]
        rows.append(",".join(cells))
    return ("\n".join(rows) + "\n").encode()


@pytest.mark.parametrize("time", [True, False])
def test_csv_round_trip(time: bool) -> None:
    mv = _signal_mv(n=1800)
    rec = recording_parse_csv(_csv_bytes(mv, time=time), fs=None if time else FS)
    assert rec.fs == FS
    assert rec.leads == ("MLII", "V5")
    assert rec.gain == (CSV_GAIN, CSV_GAIN)
    _assert_close_mv(rec, mv)


def test_csv_millisecond_timestamps_give_integer_fs() -> None:
    mv = _signal_mv(n=3600)
    lines = ["time;I"] + [f"{i / FS:.3f};{v:.3f}" for i, v in enumerate(mv[:, 0])]
    rec = recording_parse_csv(("\r\n".join(lines)).encode())
    assert rec.fs == FS
    assert rec.leads == ("I",)


@pytest.mark.parametrize(
    ("data", "fs", "message"),
    [
        (b"", 250.0, "empty"),
        (b"I,II\n", 250.0, "no data rows"),
        (b"I,II\n1,2\n", None, "pass fs"),
        (b"1,2\n3,4\n", 250.0, "name the columns"),
        (b"I,I\n1,2\n", 250.0, "unique"),
        (b"I,\n1,2\n", 250.0, "non-empty"),
        (b"I,II\n1,2\n3\n", 250.0, "at line 3: 1 values where the previous rows have 2"),
        (b"I,II\n1,2\n\n1,abc\n", 250.0, "at line 4: 'abc' in column 'II' is not a number"),
        (b"I,II\n1,\n", 250.0, "at line 2: '' in column 'II'"),
        (b"I,II\n1,nan\n", 250.0, "NaN"),
        (b"I,II\n1,inf\n", 250.0, "NaN"),
        (b"I\n1500\n", 250.0, "µV"),
        (b"I\n1\n", 100.0, "outside the supported"),
        (b"I\n1\n", 5000.0, "outside the supported"),
        (b"time,I\n0,1\n", None, "two rows"),
        (b"time,I\n0,1\n0.004,1\n0.016,1\n0.020,1\n", None, "uniformly"),
        (b"time,I\n0,1\n0.01,1\n0.02,1\n", None, "outside the supported"),
        (b"time,I\n0,1\n0.004,1\n0.008,1\n", 500.0, "disagrees"),
        (b"time,I\n1,1\n1,1\n", None, "increase"),
        (b"\xff\xfe\x00", 250.0, "UTF-8"),
        ((",".join(f"L{i}" for i in range(17)) + "\n" + ",".join("0" * 17) + "\n").encode(), 250.0, "at most 16"),
    ],
)
def test_csv_errors(data: bytes, fs: float | None, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        recording_parse_csv(data, fs=fs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(alphabet=st.sampled_from(list("0123456789.,;\t\n\r-+eE \"'abtimnfNa#")), max_size=200).map(str.encode),
    ),
    fs=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([250.0, 360.0])),
)
def test_csv_junk_raises_only_recording_error(data: bytes, fs: float | None) -> None:
    try:
        rec = recording_parse_csv(data, fs=fs)
    except RecordingError:
        return
    assert rec.adc.dtype == np.int16
    assert rec.adc.shape == (rec.n_samples, len(rec.leads))


# -------------------------------------------------------------------------------- Recording


def test_recording_validates_its_fields() -> None:
    adc = np.zeros((10, 2), dtype=np.int16)
    with pytest.raises(RecordingError, match="shape"):
        Recording(fs=250.0, leads=("I",), adc=adc, gain=(1.0,), baseline=(0,), n_samples=10)
    with pytest.raises(RecordingError, match="int16"):
        Recording(
            fs=250.0, leads=("I", "II"), adc=adc.astype(np.float32), gain=(1.0, 1.0), baseline=(0, 0), n_samples=10
        )
    with pytest.raises(RecordingError, match="positive"):
        Recording(fs=250.0, leads=("I", "II"), adc=adc, gain=(1.0, 0.0), baseline=(0, 0), n_samples=10)
    with pytest.raises(RecordingError, match="int16"):
        Recording(fs=250.0, leads=("I", "II"), adc=adc, gain=(1.0, 1.0), baseline=(0, 40000), n_samples=10)
    rec = Recording(fs=250.0, leads=("I", "II"), adc=adc, gain=(1.0, 2.0), baseline=(0, 0), n_samples=10)
    assert rec.duration_s == pytest.approx(0.04)
    assert rec.n_leads == 2
