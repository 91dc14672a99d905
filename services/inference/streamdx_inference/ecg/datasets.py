"""Beat datasets for the ECG models: the DSP's own beats on MITDB and CinC 2017 recordings.

Every record is run through the streaming DSP core (:mod:`streamdx_dsp.core`) exactly as
the dsp service runs it, so the models see at training time the beats they see in
service (same conditioning, detector, beat window, RR values and quality statistics).
Each emitted beat then gets its reference labels:

- **MITDB**: the annotated beat within 150 ms of the detected R peak (AAMI class via
  :func:`streamdx.aami.aami_class`; ``""`` for a detection that matches no annotated
  beat) and the rhythm annotation in force at the R peak (``"(AFIB"``, ``"(N"``, ...).
  Annotated beats the detector missed are counted per record (``missed``) so that
  evaluations can charge them as errors.
- **CinC 2017** (pack format of ``../shared/data/cinc2017``: ``index.csv`` with
  ``record,…,start,length`` rows, ``REFERENCE.csv``, ``signals_int16_diff.xz``): the
  recording's label (``N``, ``A``, ``O``, ``~``) on every beat.

Records are processed once per beat window and cached as ``.npz`` files (derived data:
the cache directory lives outside the repository).
"""

from __future__ import annotations

import csv
import hashlib
import lzma
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.aami import AAMI_CLASSES
from streamdx_dsp.core import Beat, BeatWindow, ecg_stream_flush, ecg_stream_init, ecg_stream_process
from streamdx_dsp.evaluation.records import read_annotations, read_ecg
from streamdx_dsp.evaluation.rpeaks import match_beats

__all__ = [
    "CINC_FS",
    "CINC_GAIN",
    "CINC_PACK_FILES",
    "DEFAULT_CACHE",
    "DS1",
    "DS2",
    "MITDB_AF_RECORDS",
    "PACED_RECORDS",
    "SHARED_CINC",
    "RecordBeats",
    "beat_arrays",
    "beats_of_signal",
    "cinc_labels",
    "cinc_pack_problem",
    "cinc_records",
    "cinc_signals",
    "load_cinc",
    "load_mitdb",
    "mitdb_record_beats",
    "save_npz_atomic",
]

#: de Chazal et al. 2004 inter-patient split (paced records 102, 104, 107, 217 excluded).
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203",
       "205", "207", "208", "209", "215", "220", "223", "230")  # fmt: skip
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212", "213", "214",
       "219", "221", "222", "228", "231", "232", "233", "234")  # fmt: skip
PACED_RECORDS = ("102", "104", "107", "217")
#: MITDB records with atrial fibrillation episodes.
MITDB_AF_RECORDS = ("201", "202", "203", "210", "217", "219", "221", "222")
CINC_FS = 300.0
CINC_GAIN = 1000.0
#: The files of a CinC 2017 pack folder that the loaders read (``headers.tar.xz`` is not needed).
CINC_PACK_FILES = ("index.csv", "REFERENCE.csv", "signals_int16_diff.xz")
_XZ_MAGIC = b"\xfd7zXZ\x00"
DEFAULT_CACHE = Path.home() / ".cache" / "streamdx" / "ecg-beats"
#: The CinC 2017 pack beside the repository (``../shared/data``): the AF recipe's second source,
#: the default of the commands that train it.
SHARED_CINC = Path("../shared/data/cinc2017")
_MATCH_S = 0.150
_CHUNK_S = 10.0
_CACHE_VERSION = 3  # 3: DSP v2 (bounded-delay denoiser, 5-10 Hz QRS band, +-250 ms candidates, bounded search-back)


def save_npz_atomic(path: Path, **arrays: Any) -> None:
    """``np.savez`` to ``path`` through a temporary file of this process, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class RecordBeats:
    """The DSP's beats of one record with their reference labels.

    Attributes
    ----------
    record : str
        Record name.
    fs : float
        Sampling frequency (Hz).
    r_sample : ndarray of int64, shape (n,)
    waves : ndarray of float32, shape (n, 300)
        Beat waveforms (mV) as the DSP emits them.
    rr_prev_s, rr_next_s : ndarray of float64, shape (n,)
    quality : ndarray of float32, shape (n, 5)
        ``flat, saturated, hf_noise, baseline_excursion_mv, score``.
    beat_class : ndarray of str, shape (n,)
        AAMI class of the matched annotated beat, ``""`` if none (MITDB), else ``""``.
    rhythm : ndarray of str, shape (n,)
        Rhythm in force at the R peak (MITDB aux note such as ``"(AFIB"``) or the
        recording label (CinC: ``"N"``, ``"A"``, ``"O"``, ``"~"``).
    missed : dict of str to int
        Annotated beats per AAMI class that the detector missed (MITDB).
    """

    record: str
    fs: float
    r_sample: npt.NDArray[np.int64]
    waves: npt.NDArray[np.float32]
    rr_prev_s: npt.NDArray[np.float64]
    rr_next_s: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float32]
    beat_class: npt.NDArray[np.str_]
    rhythm: npt.NDArray[np.str_]
    missed: dict[str, int]

    @property
    def af(self) -> npt.NDArray[np.bool_]:
        """Reference AF per beat: inside ``(AFIB`` (MITDB) or an ``A`` recording (CinC)."""
        return (self.rhythm == "(AFIB") | (self.rhythm == "A")

    def __len__(self) -> int:
        return int(self.r_sample.size)

    def save(self, path: Path) -> None:
        """Write atomically: concurrent writers (two evaluations filling the cache) never clash."""
        save_npz_atomic(
            path, version=_CACHE_VERSION, record=self.record, fs=self.fs, r_sample=self.r_sample, waves=self.waves,
            rr_prev_s=self.rr_prev_s, rr_next_s=self.rr_next_s, quality=self.quality, beat_class=self.beat_class,
            rhythm=self.rhythm, missed_keys=np.array(list(self.missed), dtype=str),
            missed_values=np.array(list(self.missed.values()), dtype=np.int64),
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> RecordBeats | None:
        """The cached beats, or ``None`` when the file is missing or of another cache version."""
        if not path.exists():
            return None
        with np.load(path) as z:
            if int(z["version"]) != _CACHE_VERSION:
                return None
            return cls(
                record=str(z["record"]), fs=float(z["fs"]), r_sample=z["r_sample"], waves=z["waves"],
                rr_prev_s=z["rr_prev_s"], rr_next_s=z["rr_next_s"], quality=z["quality"],
                beat_class=z["beat_class"], rhythm=z["rhythm"],
                missed=dict(zip(z["missed_keys"].tolist(), z["missed_values"].tolist(), strict=True)),
            )  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[RecordBeats], record: str = "*") -> RecordBeats:
        """All beats of ``parts`` in one object (``fs`` of the first part)."""
        missed: dict[str, int] = {}
        for p in parts:
            for k, v in p.missed.items():
                missed[k] = missed.get(k, 0) + v
        return cls(
            record=record, fs=parts[0].fs if parts else 0.0,
            r_sample=np.concatenate([p.r_sample for p in parts]) if parts else np.zeros(0, np.int64),
            waves=np.concatenate([p.waves for p in parts]) if parts else np.zeros((0, 300), np.float32),
            rr_prev_s=np.concatenate([p.rr_prev_s for p in parts]) if parts else np.zeros(0),
            rr_next_s=np.concatenate([p.rr_next_s for p in parts]) if parts else np.zeros(0),
            quality=np.concatenate([p.quality for p in parts]) if parts else np.zeros((0, 5), np.float32),
            beat_class=np.concatenate([p.beat_class for p in parts]) if parts else np.zeros(0, str),
            rhythm=np.concatenate([p.rhythm for p in parts]) if parts else np.zeros(0, str),
            missed=missed,
        )  # fmt: skip


def beats_of_signal(x_mv: npt.NDArray[np.float64], fs: float, window: BeatWindow) -> list[Beat]:
    """Run the streaming DSP core over a whole signal (10-s chunks; output is chunk-invariant)."""
    state = ecg_stream_init(fs, window=window)
    out: list[Beat] = []
    step = max(1, round(_CHUNK_S * fs))
    for i in range(0, x_mv.size, step):
        state, b = ecg_stream_process(state, x_mv[i : i + step])
        out += b
    state, b = ecg_stream_flush(state)
    return out + b


def beat_arrays(beats: Sequence[Beat]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64],
                                            npt.NDArray[np.float64], npt.NDArray[np.float32]]:  # fmt: skip
    r = np.array([b.r_sample for b in beats], dtype=np.int64)
    waves = np.stack([b.waveform for b in beats]).astype(np.float32) if beats else np.zeros((0, 300), np.float32)
    rp = np.array([b.rr_prev_s for b in beats], dtype=np.float64)
    rn = np.array([b.rr_next_s for b in beats], dtype=np.float64)
    q = np.array(
        [[b.quality.flat, b.quality.saturated, b.quality.hf_noise, b.quality.baseline_excursion_mv, b.quality.score]
         for b in beats], dtype=np.float32,
    ).reshape(-1, 5)  # fmt: skip
    return r, waves, rp, rn, q


def mitdb_record_beats(data_dir: Path, name: str, window: BeatWindow) -> RecordBeats:
    """The DSP's beats of one WFDB record with its ``.atr`` beat and rhythm labels."""
    x, fs = read_ecg(data_dir, name)
    r, waves, rp, rn, q = beat_arrays(beats_of_signal(x, fs, window))
    ann = read_annotations(data_dir, name, "atr", x.size)
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = list(ann.symbol)
    aux = [str(a or "").strip().rstrip("\x00") for a in (ann.aux_note or [""] * len(symbols))]
    is_beat = np.array([s in AAMI_CLASSES for s in symbols], dtype=bool)
    ref = samples[is_beat]
    ref_cls = np.array([AAMI_CLASSES[s] for s, b in zip(symbols, is_beat, strict=True) if b], dtype="<U1")
    rm, dm, _ = match_beats(ref, r, round(_MATCH_S * fs))
    beat_class = np.full(r.size, "", dtype="<U1")
    if r.size and ref.size:
        # the one-to-one pairs: matched detections in order pair with matched references in order
        beat_class[np.flatnonzero(dm)] = ref_cls[np.flatnonzero(rm)]
    missed = {c: int(np.sum(~rm & (ref_cls == c))) for c in "NSVFQ"}
    rhythm_at = [(int(s), a) for s, c, a in zip(samples.tolist(), symbols, aux, strict=True) if c == "+" and a]
    rhythm = np.full(r.size, "", dtype="<U8")
    if rhythm_at:
        rs = np.array([s for s, _ in rhythm_at])
        names = np.array([a for _, a in rhythm_at], dtype="<U8")
        k = np.searchsorted(rs, r, side="right") - 1
        rhythm = np.where(k >= 0, names[np.maximum(k, 0)], "")
    return RecordBeats(name, fs, r, waves, rp, rn, q, beat_class, rhythm.astype("<U8"), missed)


def _cache_path(cache: Path, db: str, window: str, name: str, key: str) -> Path:
    return cache / window / db / f"{name}-{key}.npz"


@lru_cache(maxsize=1)
def _dsp_digest() -> str:
    """Digest of the streaming DSP's sources (``streamdx_dsp.core``): cached beats are keyed by
    it, so a DSP change, however small its effect on the beats, never feeds stale beats into
    training (``_CACHE_VERSION`` alone relied on remembering to bump it)."""
    import streamdx_dsp.core as core

    h = hashlib.sha256()
    for src in sorted(Path(core.__file__).parent.glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return h.hexdigest()[:12]


def _file_key(*paths: Path) -> str:
    h = hashlib.sha256(_dsp_digest().encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


def load_mitdb(
    data_dir: Path, names: Sequence[str], window: BeatWindow, cache: Path | None = DEFAULT_CACHE,
    progress: bool = False,
) -> dict[str, RecordBeats]:
    """Beats of the named MITDB-format records (cached per record and window)."""
    out: dict[str, RecordBeats] = {}
    it: Iterator[str] | Sequence[str] = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc=f"DSP beats {data_dir.name}", unit="record")
    for name in it:
        key = _file_key(data_dir / f"{name}.dat", data_dir / f"{name}.atr")
        path = _cache_path(cache, data_dir.name, window, name, key) if cache else None
        rb = RecordBeats.load(path) if path else None
        if rb is None:
            rb = mitdb_record_beats(data_dir, name, window)
            if path:
                rb.save(path)
        out[name] = rb
    return out


def cinc_pack_problem(data_dir: Path) -> str:
    """Why ``data_dir`` is not a usable CinC 2017 pack folder, or ``""``.

    Checked before a command starts its work: every file of :data:`CINC_PACK_FILES`, the rows of
    ``index.csv`` (:func:`cinc_records`) and the xz signature of the signal file. Whether a row
    runs past the end of the signal is known only once the signal is decoded
    (:func:`load_cinc` raises ``ValueError`` then).
    """
    missing = [f for f in CINC_PACK_FILES if not (data_dir / f).is_file()]
    if missing:
        return f"{data_dir} is not a CinC 2017 pack folder: no {', '.join(missing)}"
    try:
        cinc_records(data_dir)
    except ValueError as e:
        return f"{data_dir}: {e}"
    with (data_dir / "signals_int16_diff.xz").open("rb") as f:
        if f.read(len(_XZ_MAGIC)) != _XZ_MAGIC:
            return f"{data_dir}: signals_int16_diff.xz: not an xz stream"
    return ""


def cinc_records(data_dir: Path, n_samples: int | None = None) -> list[tuple[str, int, int]]:
    """``(record, start, length)`` rows of a CinC pack's ``index.csv``.

    Raises ``ValueError`` naming the row for a missing column, a non-integer or negative
    ``start``/``length``, a repeated record name or (given the signal's ``n_samples``) a
    recording that runs past the end of the signal.
    """
    rows: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    with (data_dir / "index.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"record", "start", "length"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"index.csv: no column {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            name = (row["record"] or "").strip()
            try:
                start, length = int(row["start"]), int(row["length"])
            except (TypeError, ValueError):
                raise ValueError(f"index.csv line {line}: start and length must be integers") from None
            if not name or start < 0 or length <= 0:
                raise ValueError(f"index.csv line {line}: needs a record name, start >= 0 and length > 0")
            if name in seen:
                raise ValueError(f"index.csv line {line}: record {name} is listed twice")
            if n_samples is not None and start + length > n_samples:
                raise ValueError(f"index.csv line {line}: record {name} ends at sample {start + length}, "
                                 f"past the signal's {n_samples} samples")  # fmt: skip
            seen.add(name)
            rows.append((name, start, length))
    return rows


def cinc_labels(data_dir: Path) -> dict[str, str]:
    """Reference label (``N``, ``A``, ``O``, ``~``) per record from ``REFERENCE.csv``."""
    labels: dict[str, str] = {}
    with (data_dir / "REFERENCE.csv").open(newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].strip() and row[1].strip() in {"N", "A", "O", "~"}:
                labels[row[0].strip()] = row[1].strip()
    return labels


def cinc_signals(data_dir: Path) -> npt.NDArray[np.int16]:
    """The pack's concatenated int16 signals (decoded from first differences)."""
    try:
        raw = lzma.decompress((data_dir / "signals_int16_diff.xz").read_bytes())
    except lzma.LZMAError as e:
        raise ValueError(f"signals_int16_diff.xz: not an xz stream ({e})") from None
    if len(raw) % 2:
        raise ValueError("signals_int16_diff.xz: an odd number of bytes, not int16 samples")
    d = np.frombuffer(raw, dtype="<i2")
    return np.cumsum(d, dtype=np.int32).astype(np.int16)


def load_cinc(
    data_dir: Path, window: BeatWindow, cache: Path | None = DEFAULT_CACHE, progress: bool = False,
    only: set[str] | None = None,
) -> dict[str, RecordBeats]:
    """Beats of every recording of a CinC 2017 pack (one cache file per pack and window)."""
    key = _file_key(data_dir / "index.csv", data_dir / "REFERENCE.csv", data_dir / "signals_int16_diff.xz")
    path = _cache_path(cache, data_dir.name, window, "all", key) if cache else None
    labels = cinc_labels(data_dir)
    recs: dict[str, RecordBeats] = {}
    if path and path.exists():
        allb = RecordBeats.load(path)
        if allb is not None:
            with np.load(path.with_suffix(".index.npz")) as z:
                names, bounds = z["names"].tolist(), z["bounds"]
            for i, name in enumerate(names):
                a, b = int(bounds[i]), int(bounds[i + 1])
                recs[name] = RecordBeats(
                    name, CINC_FS, allb.r_sample[a:b], allb.waves[a:b], allb.rr_prev_s[a:b], allb.rr_next_s[a:b],
                    allb.quality[a:b], allb.beat_class[a:b], allb.rhythm[a:b], {},
                )  # fmt: skip
    if not recs:
        sig = cinc_signals(data_dir)
        rows = cinc_records(data_dir, sig.size)
        it: Iterator[tuple[str, int, int]] | list[tuple[str, int, int]] = rows
        if progress:
            from tqdm import tqdm

            it = tqdm(rows, desc=f"DSP beats {data_dir.name}", unit="rec")
        for name, start, length in it:
            x = sig[start : start + length].astype(np.float64) / CINC_GAIN
            r, waves, rp, rn, q = beat_arrays(beats_of_signal(x, CINC_FS, window))
            lab = labels.get(name, "")
            recs[name] = RecordBeats(
                name, CINC_FS, r, waves, rp, rn, q, np.full(r.size, "", "<U1"), np.full(r.size, lab, "<U8"), {}
            )
        if path:
            names = list(recs)
            bounds = np.cumsum([0] + [len(recs[n]) for n in names])
            # the index first: a reader that finds the beats file finds its index too
            save_npz_atomic(path.with_suffix(".index.npz"), names=np.array(names, dtype=str), bounds=bounds)
            RecordBeats.concat([recs[n] for n in names]).save(path)
    if only is not None:
        recs = {k: v for k, v in recs.items() if k in only}
    return recs
