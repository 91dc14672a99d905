"""dsp ECG handler → ``ecg.status``: lost signal, decision horizon (asystole), gaps, redelivery, checkpoints."""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.metrics import DspMetrics
from streamdx.schemas import EcgBeatV1, EcgSamplesV1, EcgStatusV1, Message
from streamdx_devkit.sim import SyntheticEcg, ecg_synthesize
from streamdx_dsp.ecg_handler import DspStateCodec, DspStreamState, EcgSamplesHandler
from tests.unit.services.test_handlers import chunks

Interval = tuple[int, int]


def feed(
    msgs: list[EcgSamplesV1], *, checkpoint: bool = False
) -> tuple[list[EcgBeatV1], list[EcgStatusV1], list[list[Message]]]:
    handler = EcgSamplesHandler(DspMetrics(CollectorRegistry()))
    codec = DspStateCodec()
    state: DspStreamState | None = None
    per_chunk: list[list[Message]] = []
    for m in msgs:
        handled = asyncio.run(handler(m, state))
        per_chunk.append(list(handled.outputs))
        state = handled.state
        if checkpoint and state is not None:
            state = codec.loads(codec.dumps(state))
    beats = [o for out in per_chunk for o in out if isinstance(o, EcgBeatV1)]
    status = [o for out in per_chunk for o in out if isinstance(o, EcgStatusV1)]
    return beats, status, per_chunk


def spans(ecg: SyntheticEcg, label: str) -> list[Interval]:
    return [(r.start, r.end) for r in ecg.rhythms if r.label == label]


def union(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlaps(a: int, b: int, intervals: list[Interval]) -> bool:
    return any(lo < b and hi > a for lo, hi in intervals)


@pytest.fixture(scope="module", params=[("leadoff", 250.0), ("flat", 250.0), ("leadoff", 360.0)])
def artefact_run(request: pytest.FixtureRequest) -> tuple[SyntheticEcg, list[EcgBeatV1], list[EcgStatusV1]]:
    name, fs = request.param
    ecg = ecg_synthesize(60.0, fs, seed=1, scenario=name)
    beats, status, _ = feed(chunks(ecg.to_adc(), fs, int(fs)))
    return ecg, beats, status


def test_lost_intervals_cover_the_flat_and_leadoff_spans_and_nothing_else(
    artefact_run: tuple[SyntheticEcg, list[EcgBeatV1], list[EcgStatusV1]],
) -> None:
    ecg, _, status = artefact_run
    fs = ecg.fs
    flat = spans(ecg, "FLAT")
    lost = union([iv for s in status for iv in s.lost])
    assert flat and lost
    tol = round(0.1 * fs)
    for s, e in flat:  # covered within 0.1 s
        assert any(a <= s + tol and b >= e - tol for a, b in lost), (s, e, lost)
    # nothing outside them, except the rail held by the lead-off recovery (< 0.2 s, a NOISE overlay)
    for a, b in lost:
        assert any(s - tol <= a and b <= e + 2 * tol for s, e in flat), (a, b, flat)
    # each status reports the intervals that overlap its own chunk, in absolute samples
    for st in status:
        c0 = st.end_sample - round(fs)
        assert all(a < st.end_sample and b > c0 for a, b in st.lost)


def test_rr_prev_lost_is_set_for_the_beat_after_the_loss_only(
    artefact_run: tuple[SyntheticEcg, list[EcgBeatV1], list[EcgStatusV1]],
) -> None:
    ecg, beats, _ = artefact_run
    fs = ecg.fs
    flat = spans(ecg, "FLAT")
    for s, e in flat:
        after = next(b for b in beats if b.r_sample >= e)
        assert after.rr_prev_lost_s >= (e - s) / fs - 0.1, (after, s, e)
        assert after.rr_prev_lost_s <= after.rr_prev_s
    for b in beats:
        r_prev = b.r_sample - round(b.rr_prev_s * fs)
        if not overlaps(r_prev, b.r_sample, flat):
            assert b.rr_prev_lost_s == 0.0, b


def test_clean_sinus_has_no_lost_signal_and_a_steady_horizon() -> None:
    fs = 250.0
    ecg = ecg_synthesize(60.0, fs, seed=2, scenario="sinus")
    beats, status, per_chunk = feed(chunks(ecg.to_adc(), fs, 250))
    assert all(s.lost == [] and s.gap_s == 0.0 for s in status)
    assert all(b.rr_prev_lost_s == 0.0 for b in beats)
    assert [s.seq for s in status] == list(range(60))
    assert [s.end_sample for s in status] == [250 * (k + 1) for k in range(60)]
    # one status per chunk, after that chunk's beats
    for out in per_chunk:
        assert isinstance(out[-1], EcgStatusV1) and all(isinstance(o, EcgBeatV1) for o in out[:-1])
    for st in status[10:]:
        assert st.last_r_sample < st.end_sample and st.horizon_sample <= st.end_sample
        # decisions are final within the core's delay: wavelet (<= 1279 samples) + 200 + 250 ms
        assert st.end_sample - st.horizon_sample <= 1279 + 50 + 62
        # sinus at 70 bpm: the last accepted R is never far behind the horizon
        assert st.horizon_sample - st.last_r_sample < 1.5 * fs
    assert status[-1].t_end.timestamp() == pytest.approx(status[0].t_end.timestamp() + 59.0)
    # every beat's R was accepted before a later status's horizon
    horizons = np.array([s.horizon_sample for s in status])
    assert horizons.tolist() == sorted(horizons.tolist())


def test_asystole_is_visible_in_the_status_before_the_beat_that_ends_it() -> None:
    fs = 360.0
    ecg = ecg_synthesize(60.0, fs, seed=3, scenario="asystole")
    ((s, e),) = spans(ecg, "PAUSE")
    beats, status, _ = feed(chunks(ecg.to_adc(), fs, 360))
    lost = [iv for st in status for iv in st.lost]
    assert lost == []  # a noisy isoelectric line is not lost signal
    alarm = [st for st in status if st.last_r_sample >= 0 and st.horizon_sample - st.last_r_sample > 4.0 * fs]
    assert alarm, [(st.horizon_sample - st.last_r_sample) / fs for st in status]
    first = alarm[0]
    assert abs(first.last_r_sample - s) <= 0.05 * fs  # the R before the asystole
    assert first.horizon_sample < e  # known before the R that ends it is decided
    assert first.end_sample - (s + 4.0 * fs) <= 1440 + 256 + 72 + 90 + fs  # within the core's delays
    assert not overlaps(first.last_r_sample, first.horizon_sample, lost)
    # no beat was invented inside it, and the beat that ends it carries the pause with no lost signal
    assert not [b for b in beats if s + 0.1 * fs < b.r_sample < e - 0.1 * fs]
    end = next(b for b in beats if b.r_sample >= e - 0.1 * fs)
    assert end.rr_prev_s == pytest.approx((e - s) / fs, abs=0.05) and end.rr_prev_lost_s == 0.0
    # no other status shows 4 s without a decided R
    assert all(abs(st.last_r_sample - s) <= 0.05 * fs for st in alarm)


def test_asystole_at_250_hz_is_known_from_the_status_or_the_beats() -> None:
    """The horizon trails the input by the wavelet lag + the detector's look-ahead and R search,
    so a 4-s pause is known from the status about 0.6 s after it reached 4 s (or from the beat
    that ends it, whose ``rr_prev_s`` is over 4 s)."""
    fs = 250.0
    ecg = ecg_synthesize(60.0, fs, seed=3, scenario="asystole")
    ((s, _e),) = spans(ecg, "PAUSE")
    _, _, per_chunk = feed(chunks(ecg.to_adc(), fs, 250))
    known_at = None
    for k, out in enumerate(per_chunk):
        st = out[-1]
        assert isinstance(st, EcgStatusV1)
        in_status = st.last_r_sample >= 0 and st.horizon_sample - st.last_r_sample > 4.0 * fs
        in_beat = any(isinstance(b, EcgBeatV1) and max(b.rr_prev_s, b.rr_next_s or 0.0) > 4.0 for b in out)
        if in_status or in_beat:
            known_at = k
            break
    assert known_at is not None
    # known within the detector's delays (wavelet lag <= 52, look-ahead 62, R search 62) + one chunk
    assert (known_at + 1) * fs <= s + 4.0 * fs + 52 + 62 + 62 + fs


def test_seq_gap_gives_gap_s_and_a_restart() -> None:
    fs = 250.0
    ecg = ecg_synthesize(40.0, fs, seed=5, scenario="sinus")
    beats, status, _ = feed(chunks(ecg.to_adc(), fs, 250, skip=(15, 16, 17)), checkpoint=True)
    by_seq = {st.seq: st for st in status}
    assert 15 not in by_seq and by_seq[18].gap_s == pytest.approx(3.0)
    assert all(st.gap_s == 0.0 for st in status if st.seq != 18)
    assert by_seq[18].end_sample == 19 * 250  # the sample clock skips the missing data
    assert by_seq[18].last_r_sample == -1 and by_seq[18].horizon_sample >= 18 * 250  # detector restarted
    assert by_seq[14].last_r_sample >= 0
    assert next(b for b in beats if b.after_gap).r_sample >= 18 * 250


def test_gap_s_follows_the_device_clock() -> None:
    fs = 250.0
    ecg = ecg_synthesize(20.0, fs, seed=5, scenario="sinus")
    _, status, _ = feed(chunks(ecg.to_adc(), fs, 500, skip=(2, 3)))  # 2-s chunks, two lost
    assert [st.seq for st in status] == [0, 1, 4, 5, 6, 7, 8, 9]
    assert status[2].gap_s == pytest.approx(4.0) and status[2].end_sample == 5 * 500


def test_redelivered_chunk_emits_nothing_and_checkpoints_change_nothing() -> None:
    fs = 360.0
    ecg = ecg_synthesize(40.0, fs, seed=1, scenario="leadoff")
    msgs = chunks(ecg.to_adc(), fs, 360)
    ref_beats, ref_status, _ = feed(msgs)
    doubled = [m for m in msgs for _ in range(2)]
    beats, status, per_chunk = feed(doubled, checkpoint=True)
    assert all(out == [] for out in per_chunk[1::2])
    assert [b.model_dump() for b in beats] == [b.model_dump() for b in ref_beats]
    assert [s.model_dump() for s in status] == [s.model_dump() for s in ref_status]
    assert len({s.idempotency_key() for s in status}) == len(status)


def test_final_chunk_closes_the_stream() -> None:
    fs = 250.0
    adc = ecg_synthesize(20.0, fs, seed=1, scenario="sinus").to_adc()
    adc[-100:] = 3  # ends on a flat line
    msgs = chunks(adc, fs, 250)
    msgs[-1] = msgs[-1].model_copy(update={"final": True})
    _, status, _ = feed(msgs)
    last = status[-1]
    assert last.final and last.horizon_sample == last.end_sample == adc.size
    assert last.lost == [(adc.size - 100, adc.size)]


def test_v1_checkpoint_still_loads() -> None:
    fs = 250.0
    msgs = chunks(ecg_synthesize(10.0, fs, seed=1).to_adc(), fs, 250)
    handler = EcgSamplesHandler(DspMetrics(CollectorRegistry()))
    state = asyncio.run(handler(msgs[0], None)).state
    assert state is not None
    codec = DspStateCodec()
    blob = codec.dumps(state)
    (n,) = struct.unpack_from("<I", blob)
    meta = json.loads(blob[4 : 4 + n])
    meta["v"] = 1
    del meta["loss"]
    head = json.dumps(meta).encode()
    old = codec.loads(struct.pack("<I", len(head)) + head + blob[4 + n :])
    assert old.loss is not None and old.loss.pos == old.next_sample and old.loss.closed == []
    out = asyncio.run(handler(msgs[1], old)).outputs
    assert isinstance(out[-1], EcgStatusV1) and out[-1].seq == 1
    meta["v"] = 3
    head = json.dumps(meta).encode()
    with pytest.raises(ValueError, match="v3"):
        codec.loads(struct.pack("<I", len(head)) + head + blob[4 + n :])
