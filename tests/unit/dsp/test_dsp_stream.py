"""Streaming ECG core: detection on synthetic ECG, edge cases, chunk invariance, state codec."""

from __future__ import annotations

import itertools
import json
import math
import struct
import zlib

import numpy as np
import pytest
from dsp_synth import synth_ecg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdx_dsp.core import (
    BEAT_LENGTH,
    DEFAULT_WINDOW,
    FIXED_POST_S,
    Beat,
    BeatQuality,
    EcgStreamState,
    ecg_state_dumps,
    ecg_state_loads,
    ecg_stream_flush,
    ecg_stream_init,
    ecg_stream_process,
)


def run_stream(
    x: np.ndarray, fs: float, cuts: list[int] | None = None, chunk: int | None = None, window: str = DEFAULT_WINDOW
) -> list[Beat]:
    state = ecg_stream_init(fs, window=window)  # type: ignore[arg-type]
    beats: list[Beat] = []
    if cuts is None:
        step = chunk or int(fs)
        cuts = list(range(step, x.size, step))
    prev = 0
    for c in [*cuts, x.size]:
        state, b = ecg_stream_process(state, x[prev:c])
        beats.extend(b)
        prev = c
    state, b = ecg_stream_flush(state)
    beats.extend(b)
    return beats


def emitted(r_true: np.ndarray, n: int, fs: float, window: str = DEFAULT_WINDOW) -> np.ndarray:
    """The true R peaks the core emits: all but the first, and the last too unless the window
    is RR-based (it needs the next R) or the fixed window would run past the end."""
    if window == "rr":
        return r_true[1:-1]
    return r_true[1:][r_true[1:] + math.ceil(FIXED_POST_S * fs) + 1 <= n]


def assert_same_beats(a: list[Beat], b: list[Beat]) -> None:
    assert [x.r_sample for x in a] == [x.r_sample for x in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.waveform, y.waveform, atol=1e-6, rtol=0)
        assert x.rr_prev_s == y.rr_prev_s and x.rr_next_s == y.rr_next_s
        assert x.quality == y.quality


@pytest.mark.parametrize("window", ["fixed", "rr"])
@pytest.mark.parametrize("fs", [125.0, 250.0, 360.0, 500.0, 1000.0])
def test_detects_synthetic_beats_at_any_fs(fs: float, window: str) -> None:
    x, r_true = synth_ecg(fs, 60.0, hr_bpm=75, seed=int(fs))
    beats = run_stream(x, fs, window=window)
    det = np.array([b.r_sample for b in beats])
    inner = emitted(r_true, x.size, fs, window)
    assert len(det) == len(inner), (len(det), len(inner))
    err_ms = np.abs(det - inner) / fs * 1000.0
    assert err_ms.max() <= 25.0, err_ms.max()
    for b in beats:
        assert b.waveform.shape == (BEAT_LENGTH,) and b.waveform.dtype == np.float32
        assert not b.waveform.flags.writeable
        # the R peak sits at index 100 (within the resampling of the +-25 ms error)
        assert abs(int(np.argmax(b.waveform)) - 100) <= 10
        assert 0.5 < b.rr_prev_s < 1.2
        if window == "rr":
            assert b.rr_next_s is not None and 0.5 < b.rr_next_s < 1.2
        else:
            assert b.rr_next_s is None
        assert 0.6 < b.rr_local_mean_s < 1.0
        assert 0.0 <= b.rr_irregularity < 0.3
        assert not b.quality.flat and not b.quality.saturated
        assert b.quality.score > 0.8
    # RR values are consistent with the R samples
    for a, b in itertools.pairwise(beats):
        assert b.r_sample - a.r_sample == round(b.rr_prev_s * fs)
        if window == "rr":
            assert a.rr_next_s is not None and b.r_sample - a.r_sample == round(a.rr_next_s * fs)


def test_start_sample_offsets_r_sample() -> None:
    fs = 360.0
    x, _ = synth_ecg(fs, 20.0, seed=3)
    s0 = ecg_stream_init(fs, start_sample=1_000_000)
    s1 = ecg_stream_init(fs)
    s0, b0 = ecg_stream_process(s0, x)
    s1, b1 = ecg_stream_process(s1, x)
    s0, f0 = ecg_stream_flush(s0)
    s1, f1 = ecg_stream_flush(s1)
    r0 = [b.r_sample for b in b0 + f0]
    r1 = [b.r_sample for b in b1 + f1]
    assert r0 and r0 == [r + 1_000_000 for r in r1]


@pytest.mark.parametrize("fs", [250.0, 360.0])
def test_flat_start_then_ecg_detects_exactly_the_beats(fs: float) -> None:
    x, r_true = synth_ecg(fs, 60.0, seed=3)
    pad = np.full(int(20 * fs), x[0])
    rng = np.random.default_rng(0)
    y = np.concatenate((pad, x)) + 0.002 * rng.standard_normal(pad.size + x.size)
    det = np.array([b.r_sample for b in run_stream(y, fs)]) - pad.size
    inner = emitted(r_true + pad.size, y.size, fs) - pad.size
    assert det.size == inner.size
    assert np.abs(det - inner).max() <= 0.025 * fs


@pytest.mark.parametrize("fs", [250.0, 300.0, 360.0])
@pytest.mark.parametrize("pop_mv", [10.0, 20.0])
def test_detector_recovers_after_an_artefact_in_the_learning_period(fs: float, pop_mv: float) -> None:
    """An electrode pop 8-16 times the QRS amplitude in the first second (the learning period)
    sets the signal level far above the QRS. The detector used to find no beat at all for the
    rest of the stream (search-back needed an RR interval, and the rejected QRS complexes
    raised the noise level to their own height); it now finds every beat after 20 s."""
    x, r_true = synth_ecg(fs, 60.0, hr_bpm=90, seed=5)
    t = np.arange(x.size) / fs
    x = x + pop_mv * np.exp(-0.5 * ((t - 0.3) / 0.008) ** 2) - 0.3 * pop_mv * np.exp(-0.5 * ((t - 0.34) / 0.02) ** 2)
    beats = run_stream(x, fs)
    det = np.array([b.r_sample for b in beats])
    late = emitted(r_true, x.size, fs)
    late = late[late > 20 * fs]
    assert det.size
    assert np.abs(det[:, None] - late[None, :]).min(axis=0).max() <= 0.025 * fs  # every late beat found
    assert np.abs(det[det > 20 * fs][:, None] - r_true[None, :]).min(axis=1).max() <= 0.025 * fs  # nothing else
    assert_same_beats(beats, run_stream(x, fs, chunk=37))


@pytest.mark.parametrize("level", [0.0, 2.5, -1.0])
def test_flat_line_gives_no_beats(level: float) -> None:
    fs = 360.0
    x = np.full(int(60 * fs), level)
    assert run_stream(x, fs) == []
    # a flat line with a microvolt of noise (quantisation / amplifier noise)
    rng = np.random.default_rng(1)
    assert run_stream(x + 0.001 * rng.standard_normal(x.size), fs) == []


def test_ecg_then_flat_line_stops_beats() -> None:
    fs = 250.0
    x, _ = synth_ecg(fs, 30.0, seed=2)
    y = np.concatenate((x, np.full(int(60 * fs), x[-1])))
    beats = run_stream(y, fs)
    assert beats
    assert max(b.r_sample for b in beats) < x.size


def test_saturation_is_flagged() -> None:
    fs = 360.0
    x, _ = synth_ecg(fs, 40.0, seed=4, noise_mv=0.005, wander_mv=0.0, offset_mv=0.0)
    clipped = np.minimum(x, 0.7)  # amplifier rail below the R-peak amplitude (1.2 mV)
    beats = run_stream(clipped, fs)
    assert len(beats) > 30
    assert np.mean([b.quality.saturated for b in beats]) > 0.9
    assert all(b.quality.score == 0.0 for b in beats if b.quality.saturated)
    clean = run_stream(x, fs)
    assert not any(b.quality.saturated for b in clean)


def test_noise_and_wander_lower_the_quality_score() -> None:
    fs = 360.0
    x, _ = synth_ecg(fs, 40.0, seed=5, noise_mv=0.005, wander_mv=0.0)
    rng = np.random.default_rng(5)
    t = np.arange(x.size) / fs
    noisy = x + 0.25 * rng.standard_normal(x.size) + 2.0 * np.sin(2 * np.pi * 0.3 * t)
    q_clean = [b.quality for b in run_stream(x, fs)]
    q_noisy = [b.quality for b in run_stream(noisy, fs)]
    assert np.median([q.hf_noise for q in q_noisy]) > 5 * np.median([q.hf_noise for q in q_clean])
    assert np.median([q.baseline_excursion_mv for q in q_noisy]) > 1.0
    assert np.median([q.baseline_excursion_mv for q in q_clean]) < 0.3
    assert np.median([q.score for q in q_noisy]) < np.median([q.score for q in q_clean])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chunk_raises(bad: float) -> None:
    state = ecg_stream_init(360.0)
    chunk = np.zeros(100)
    chunk[37] = bad
    with pytest.raises(ValueError):
        ecg_stream_process(state, chunk)


@pytest.mark.parametrize("size", [360, 961, 2000])  # one compiled step, or cut into several
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chunk_of_a_learned_stream_changes_nothing(bad: float, size: int) -> None:
    """A refused chunk leaves the state as it was: the stream then continues exactly as one
    that never received it."""
    fs = 360.0
    x, _ = synth_ecg(fs, 30.0, seed=8)
    state = ecg_stream_init(fs)
    for a in range(0, 3600, 360):
        state, _ = ecg_stream_process(state, x[a : a + 360])
    assert state.detector.learned
    before = ecg_state_dumps(state)
    chunk = x[3600 : 3600 + size].copy()
    chunk[size - 5] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        ecg_stream_process(state, chunk)
    assert ecg_state_dumps(state) == before
    reference = ecg_state_loads(before)
    for a in range(3600, x.size, 500):
        state, got = ecg_stream_process(state, x[a : a + 500])
        reference, want = ecg_stream_process(reference, x[a : a + 500])
        assert_same_beats(got, want)
    assert ecg_state_dumps(state) == ecg_state_dumps(reference)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError):
        ecg_stream_init(100.0)
    with pytest.raises(ValueError):
        ecg_stream_init(2000.0)
    state = ecg_stream_init(360.0)
    with pytest.raises(ValueError):
        ecg_stream_process(state, np.zeros((2, 10)))
    with pytest.raises(ValueError):
        ecg_stream_process(state, 0.5)  # a scalar is not a chunk
    state, beats = ecg_stream_process(state, [0.0, 0.1, 0.2])  # any 1-D array-like
    assert beats == [] and state.n_in == 3
    state, _ = ecg_stream_process(state, np.arange(10, dtype=np.int16)[::2])  # other dtypes, strided
    assert state.n_in == 8
    state, _ = ecg_stream_flush(state)
    with pytest.raises(ValueError):
        ecg_stream_process(state, np.zeros(10))


def test_chunk_size_extremes_give_identical_beats() -> None:
    fs = 360.0
    x, _ = synth_ecg(fs, 40.0, seed=6, hr_bpm=90)
    whole = run_stream(x, fs, cuts=[])
    assert len(whole) > 50
    assert_same_beats(whole, run_stream(x, fs, chunk=1))
    assert_same_beats(whole, run_stream(x, fs, chunk=997))


_FS_PROP = 250.0
_X_PROP, _ = synth_ecg(_FS_PROP, 30.0, seed=7, hr_bpm=80, rr_jitter=0.1, noise_mv=0.03)
_REF_PROP = run_stream(_X_PROP, _FS_PROP, cuts=[])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=_X_PROP.size - 1), max_size=40, unique=True))
def test_chunking_does_not_change_beats(cuts: list[int]) -> None:
    assert len(_REF_PROP) > 30
    assert_same_beats(_REF_PROP, run_stream(_X_PROP, _FS_PROP, cuts=sorted(cuts)))


@pytest.mark.parametrize("fs", [360.0, 1000.0])
def test_state_roundtrip_mid_stream_is_identical(fs: float) -> None:
    x, _ = synth_ecg(fs, 40.0, seed=8, noise_mv=0.03)
    reference = run_stream(x, fs, chunk=int(fs))
    state = ecg_stream_init(fs)
    beats: list[Beat] = []
    step = int(fs)
    for i in range(0, x.size, step):
        blob = ecg_state_dumps(state)
        assert len(blob) <= 64 * 1024, len(blob)
        state = ecg_state_loads(blob)
        state, b = ecg_stream_process(state, x[i : i + step])
        beats.extend(b)
    state = ecg_state_loads(ecg_state_dumps(state))
    state, b = ecg_stream_flush(state)
    beats.extend(b)
    assert len(reference) > 30
    assert_same_beats(reference, beats)


def test_state_size_at_1000_hz_with_noisy_signal() -> None:
    fs = 1000.0
    rng = np.random.default_rng(9)
    x, _ = synth_ecg(fs, 20.0, seed=9)
    x = x + 0.2 * rng.standard_normal(x.size)  # incompressible content
    state = ecg_stream_init(fs)
    worst = 0
    for i in range(0, x.size, 700):
        state, _ = ecg_stream_process(state, x[i : i + 700])
        worst = max(worst, len(ecg_state_dumps(state)))
    assert worst <= 64 * 1024, worst


def test_bad_blobs_raise_value_error() -> None:
    state = ecg_stream_init(360.0)
    state, _ = ecg_stream_process(state, synth_ecg(360.0, 10.0)[0])
    blob = ecg_state_dumps(state)
    for bad in (b"", b"garbage", blob[:20], blob[:-5], b"SDXE" + b"\x01\x00" + b"not zlib"):
        with pytest.raises(ValueError):
            ecg_state_loads(bad)
    other_version = blob[:4] + struct.pack("<H", 999) + blob[6:]
    with pytest.raises(ValueError, match="version"):
        ecg_state_loads(other_version)
    # well-formed container with a missing field
    body = blob[6:]
    (hlen,) = struct.unpack("<I", body[:4])
    header = body[4 : 4 + hlen].replace(b'"n_in"', b'"n_xx"')
    forged = blob[:6] + struct.pack("<I", len(header)) + header + body[4 + hlen :]
    with pytest.raises(ValueError):
        ecg_state_loads(forged)
    # a format-2 blob (zlib) that is not zlib
    with pytest.raises(ValueError):
        ecg_state_loads(b"SDXE" + struct.pack("<H", 2) + b"not zlib")


def _dumps_old_format(state: EcgStreamState, version: int) -> bytes:
    """What the previous writers produced (to check it is still read): format 3, or format 2
    (the same zlib-compressed, with full rings). Both had the detector's scalars as header
    scalars and its filter memories as arrays, and no capacity buffers: the search-back
    pool and the queue were their valid rows."""
    from streamdx_dsp.core.state_codec import _flatten
    from streamdx_dsp.core.wavelet_stream import wavelet_ring_pack

    scalars: dict[str, object] = {}
    arrays: dict[str, np.ndarray] = {}
    _flatten(state, "", scalars, arrays)
    det = state.detector
    del arrays["detector.buf"], scalars["pending_n"]
    for name in ("feat_start", "cand_next", "last_r", "rr_n", "sb_next"):
        scalars["detector." + name] = getattr(det, name)
    for name in ("spk", "npk", "last_slope"):
        scalars["detector." + name] = getattr(det, name)
    for name in ("zi", "f_tail", "sq_tail"):
        arrays["detector." + name] = getattr(det, name).copy()
    arrays["detector.sb"] = arrays["detector.sb"][: det.sb_n]
    arrays["pending"] = arrays["pending"][: state.pending_n]
    if version == 3:
        arrays["wavelet.ring_tail"] = wavelet_ring_pack(arrays.pop("wavelet.ring"), state.wavelet.cnt)
    meta, chunks, pos = [], [], 0
    for name, arr in arrays.items():
        b = np.ascontiguousarray(arr).tobytes()
        meta.append([name, arr.dtype.name, list(arr.shape), pos, len(b)])
        chunks.append(b)
        pos += len(b)
    header = json.dumps({"s": scalars, "a": meta}, separators=(",", ":")).encode()
    body = struct.pack("<I", len(header)) + header + b"".join(chunks)
    return b"SDXE" + struct.pack("<H", version) + (zlib.compress(body) if version == 2 else body)


@pytest.mark.parametrize("version", [2, 3])
def test_older_format_states_still_continue_the_stream(version: int) -> None:
    x, _ = synth_ecg(360.0, 40.0, seed=3, noise_mv=0.03)
    x = x + 0.3 * np.exp(-0.5 * ((np.arange(x.size) % 997 - 400) / 4.0) ** 2)  # fills the search-back pool
    reference = run_stream(x, 360.0, chunk=360)
    state = ecg_stream_init(360.0)
    beats: list[Beat] = []
    pool = 0
    for i in range(0, x.size, 360):
        blob = _dumps_old_format(state, version)
        assert struct.unpack("<H", blob[4:6]) == (version,)
        state = ecg_state_loads(blob)
        pool = max(pool, state.detector.sb_n)
        state, b = ecg_stream_process(state, x[i : i + 360])
        beats.extend(b)
    state, b = ecg_stream_flush(state)
    assert_same_beats(reference, beats + b)
    assert pool > 0


def _learned_noisy_state(fs: float = 360.0) -> tuple[EcgStreamState, np.ndarray]:
    """A learned fixed-window stream after 12 s of noisy ECG, and the whole signal (40 s).

    Small bumps between the beats become rejected QRS candidates (the search-back pool)."""
    x, _ = synth_ecg(fs, 40.0, seed=11, noise_mv=0.05, rr_jitter=0.15)
    t = np.arange(x.size)
    for c in np.random.default_rng(2).uniform(0, x.size, 60):
        x = x + 0.35 * np.exp(-0.5 * ((t - c) / (0.012 * fs)) ** 2)
    state = ecg_stream_init(fs)
    for a in range(0, round(12 * fs), round(fs)):
        state, _ = ecg_stream_process(state, x[a : a + round(fs)])
    assert state.detector.learned
    return state, x


def test_feature_buffer_off_its_steady_length_takes_the_general_path() -> None:
    """The fused step refuses a detector feature buffer that is not at its steady length;
    the stages one by one then give the same beats and bring it back to that length."""
    fs = 360.0
    state, x = _learned_noisy_state(fs)
    reference = ecg_state_loads(ecg_state_dumps(state))
    det = state.detector
    steady = det.feat.shape[1]
    # five older feature samples (never read again: equivalent content, another length)
    det.feat = np.concatenate((np.zeros((2, 5)), det.feat), axis=1)
    det.feat_start -= 5
    a = round(12 * fs)
    state, got = ecg_stream_process(state, x[a : a + 360])
    reference, want = ecg_stream_process(reference, x[a : a + 360])
    assert_same_beats(got, want)
    assert state.detector.feat.shape[1] == steady
    for b in range(a + 360, x.size, 360):
        state, got = ecg_stream_process(state, x[b : b + 360])
        reference, want = ecg_stream_process(reference, x[b : b + 360])
        assert_same_beats(got, want)
    assert ecg_state_dumps(state) == ecg_state_dumps(reference)


def test_capacity_buffers_are_stored_as_their_valid_rows() -> None:
    """The search-back pool and the beat queue are fixed-capacity buffers in memory; a blob
    holds only their valid rows, and a loaded state continues the stream identically."""
    fs = 360.0
    state, x = _learned_noisy_state(fs)
    seen_pool = seen_queue = False
    a = round(12 * fs)
    for b in range(a, x.size - 720, 90):
        state, _ = ecg_stream_process(state, x[b : b + 90])
        sb_n, pending_n = state.detector.sb_n, state.pending_n
        blob = ecg_state_dumps(state)
        (hlen,) = struct.unpack("<I", blob[6:10])
        shapes = {name: shape for name, _, shape, _, _ in json.loads(blob[10 : 10 + hlen])["a"]}
        assert shapes["detector.sb"] == [sb_n, 5] and shapes["pending"] == [pending_n]
        loaded = ecg_state_loads(blob)
        assert loaded.detector.sb.shape == state.detector.sb.shape and loaded.detector.sb_n == sb_n
        assert loaded.pending.shape == state.pending.shape and loaded.pending_n == pending_n
        np.testing.assert_array_equal(loaded.detector.sb_live, state.detector.sb_live)
        np.testing.assert_array_equal(loaded.pending[:pending_n], state.pending[:pending_n])
        seen_pool |= sb_n > 0
        seen_queue |= pending_n > 0
        if seen_pool and seen_queue:
            break
    assert seen_pool and seen_queue
    loaded = ecg_state_loads(ecg_state_dumps(state))
    for c in range(b + 90, x.size, 500):
        state, got = ecg_stream_process(state, x[c : c + 500])
        loaded, want = ecg_stream_process(loaded, x[c : c + 500])
        assert_same_beats(got, want)


def test_beat_queue_overflow_is_refused_without_change() -> None:
    """The fixed window's queue kernel refuses R peaks beyond its capacity (-1), changing nothing."""
    from streamdx_dsp.core._kernels import fixed_window_emit
    from streamdx_dsp.core.quality import QUALITY_BIN
    from streamdx_dsp.core.segmentation import SEGMENT_U, SEGMENT_V, beat_window_span

    hist = np.zeros(3072, np.float32)  # no window after sample 2800 is complete
    bins = np.zeros((6, hist.size // QUALITY_BIN), np.float32)
    pending = np.array([3000, 3300, 0, 0], np.int64)  # capacity 4, two waiting
    rr = np.zeros(8, np.int64)
    pre, post = beat_window_span("fixed", 360.0)
    args = (rr, 0, hist, 0, bins, QUALITY_BIN, SEGMENT_U, SEGMENT_V, pre, post, 360.0)
    n, prev_r, _, waves, rows = fixed_window_emit(pending, 2, np.array([3500, 3700, 3900], np.int64), 2700, *args)
    assert n == -1 and prev_r == 2700 and rows.shape == (0, 9) and waves.shape == (0, SEGMENT_U.size)
    assert pending.tolist() == [3000, 3300, 0, 0] and not rr.any()
    n, prev_r, _, _, rows = fixed_window_emit(pending, 2, np.array([3500, 3700], np.int64), 2700, *args)
    assert n == 4 and pending.tolist() == [3000, 3300, 3500, 3700] and rows.shape == (0, 9)


def test_beats_are_immutable_records_compared_by_identity() -> None:
    fs = 360.0
    beats = run_stream(synth_ecg(fs, 20.0, seed=4)[0], fs)
    a, b = beats[3], beats[4]
    assert isinstance(a, Beat) and isinstance(a.quality, BeatQuality)
    with pytest.raises(AttributeError):
        a.rr_prev_s = 1.0  # type: ignore[misc]
    assert a == a and a != b and len({a, b, a}) == 2  # identity, never an array comparison
    twin = Beat(*a)
    assert twin != a and twin.r_sample == a.r_sample
    assert a.quality == BeatQuality(*a.quality) and hash(a.quality) == hash(BeatQuality(*a.quality))
    assert type(a.quality.flat) is bool and type(a.r_sample) is int and a.rr_next_s is None


def test_detector_vector_of_another_length_is_refused() -> None:
    state, _ = _learned_noisy_state()
    state.detector.buf = state.detector.buf[:-3].copy()  # as if written for another fs
    with pytest.raises(ValueError, match="detector vector"):
        ecg_state_loads(ecg_state_dumps(state))
