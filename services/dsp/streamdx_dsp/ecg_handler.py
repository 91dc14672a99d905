"""The dsp service's ECG handler: ``ecg.samples`` chunk + stream state → ``ecg.beats``.

Per stream it keeps the DSP core's state plus the bookkeeping that ties samples to time
and beats to indices. A chunk whose ``seq`` was already applied is ignored (ingest may
republish after a crash); a sequence gap flushes the detector, restarts it at the sample
position the gap implies, and marks the next beat ``after_gap``; a ``final`` chunk flushes.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import ValidationError

from streamdx.encoding import encode_f32
from streamdx.logs import log_fields
from streamdx.messaging.worker import Handled
from streamdx.metrics import DspMetrics
from streamdx.schemas import EcgBeatV1, EcgSamplesV1, SignalQuality
from streamdx_dsp.core import (
    Beat,
    BeatWindow,
    EcgStreamState,
    ecg_state_dumps,
    ecg_state_loads,
    ecg_stream_flush,
    ecg_stream_init,
    ecg_stream_process,
)

__all__ = ["DspStateCodec", "DspStreamState", "EcgSamplesHandler"]

log = logging.getLogger("streamdx.dsp")

#: Longest gap bridged by advancing the sample clock (s); longer gaps still restart cleanly.
MAX_GAP_S = 24 * 3600.0


@dataclass
class DspStreamState:
    """Per-stream state of the dsp service (serialised by :class:`DspStateCodec`)."""

    core: EcgStreamState
    fs: float
    last_seq: int
    next_beat_index: int
    next_sample: int
    anchor_sample: int
    anchor_epoch_s: float
    gap_pending: bool
    finished: bool = False

    def time_of(self, sample: int) -> datetime:
        return datetime.fromtimestamp(self.anchor_epoch_s, UTC) + timedelta(
            seconds=(sample - self.anchor_sample) / self.fs
        )


class DspStateCodec:
    """``v1``: 4-byte header length, JSON bookkeeping, then the core's own versioned blob."""

    VERSION = 1

    def dumps(self, state: DspStreamState) -> bytes:
        meta = {
            "v": self.VERSION,
            "fs": state.fs,
            "last_seq": state.last_seq,
            "next_beat_index": state.next_beat_index,
            "next_sample": state.next_sample,
            "anchor_sample": state.anchor_sample,
            "anchor_epoch_s": state.anchor_epoch_s,
            "gap_pending": state.gap_pending,
            "finished": state.finished,
        }
        head = json.dumps(meta, separators=(",", ":")).encode()
        return struct.pack("<I", len(head)) + head + ecg_state_dumps(state.core)

    def loads(self, blob: bytes) -> DspStreamState:
        if len(blob) < 4:
            raise ValueError("dsp state blob too short")
        (n,) = struct.unpack_from("<I", blob)
        meta = json.loads(blob[4 : 4 + n])
        if meta.get("v") != self.VERSION:
            raise ValueError(f"dsp state v{meta.get('v')} is not v{self.VERSION}")
        core = ecg_state_loads(blob[4 + n :])
        return DspStreamState(
            core=core,
            fs=float(meta["fs"]),
            last_seq=int(meta["last_seq"]),
            next_beat_index=int(meta["next_beat_index"]),
            next_sample=int(meta["next_sample"]),
            anchor_sample=int(meta["anchor_sample"]),
            anchor_epoch_s=float(meta["anchor_epoch_s"]),
            gap_pending=bool(meta["gap_pending"]),
            finished=bool(meta["finished"]),
        )


class EcgSamplesHandler:
    """Typed async handler for ``ecg.samples`` (metrics injected)."""

    def __init__(self, metrics: DspMetrics, window: BeatWindow = "rr") -> None:
        self._metrics = metrics
        self._window: BeatWindow = window

    async def __call__(self, msg: EcgSamplesV1, state: DspStreamState | None) -> Handled[DspStreamState]:
        if state is not None and msg.seq <= state.last_seq and not state.finished:
            return Handled(state, [])  # already applied (a republished chunk)
        out: list[EcgBeatV1] = []
        t0 = msg.t0.timestamp()
        if state is None:
            state = self._new_state(msg, self._window, start_sample=0, gap=msg.gap_before > 0)
        elif state.finished or abs(msg.fs - state.fs) > 1e-9:
            # a new stream reusing the id, or a new fs: restart after what was there
            state = self._new_state(
                msg, self._window, start_sample=state.next_sample, gap=True, beat_index=state.next_beat_index
            )
        elif msg.gap_before > 0 or msg.seq != state.last_seq + 1:
            state.core, beats = ecg_stream_flush(state.core)
            out += self._beats(msg.stream_id, state, beats)
            expected = state.anchor_epoch_s + (state.next_sample - state.anchor_sample) / state.fs
            missing_s = t0 - expected
            if not 0 < missing_s < MAX_GAP_S:
                missing_s = max(msg.gap_before, 1) * msg.n / msg.fs
            start = state.next_sample + round(missing_s * msg.fs)
            state = self._new_state(msg, self._window, start_sample=start, gap=True, beat_index=state.next_beat_index)
        state.anchor_sample, state.anchor_epoch_s = state.next_sample, t0
        state.core, beats = ecg_stream_process(state.core, msg.millivolts())
        state.next_sample += msg.n
        state.last_seq = msg.seq
        if msg.final:
            state.core, more = ecg_stream_flush(state.core)
            beats = beats + more
            state.finished = True
        out += self._beats(msg.stream_id, state, beats)
        self._metrics.beats.inc(len(out))
        return Handled(state, out)

    @staticmethod
    def _new_state(
        msg: EcgSamplesV1, window: BeatWindow, *, start_sample: int, gap: bool, beat_index: int = 0
    ) -> DspStreamState:
        return DspStreamState(
            core=ecg_stream_init(msg.fs, start_sample=start_sample, window=window),
            fs=msg.fs,
            last_seq=msg.seq - 1,
            next_beat_index=beat_index,
            next_sample=start_sample,
            anchor_sample=start_sample,
            anchor_epoch_s=msg.t0.timestamp(),
            gap_pending=gap,
        )

    @staticmethod
    def _beats(stream_id: str, state: DspStreamState, beats: list[Beat]) -> list[EcgBeatV1]:
        out = []
        for b in beats:
            if not np.all(np.isfinite(b.waveform)):
                continue
            q = b.quality
            try:
                beat = EcgBeatV1(
                    stream_id=stream_id,
                    beat_index=state.next_beat_index,
                    r_sample=b.r_sample,
                    r_time=state.time_of(b.r_sample),
                    fs=state.fs,
                    waveform=encode_f32(b.waveform),
                    window=state.core.window,
                    rr_prev_s=b.rr_prev_s,
                    rr_next_s=b.rr_next_s,
                    rr_local_mean_s=b.rr_local_mean_s,
                    rr_irregularity=b.rr_irregularity,
                    quality=SignalQuality(
                        flat=q.flat,
                        saturated=q.saturated,
                        hf_noise=max(0.0, q.hf_noise),
                        baseline_excursion_mv=max(0.0, q.baseline_excursion_mv),
                        score=min(1.0, max(0.0, q.score)),
                    ),
                    after_gap=state.gap_pending,
                )
            except ValidationError:  # never raise after the core advanced: count and skip the beat
                log.warning("beat outside the schema skipped", extra=log_fields(beat_index=state.next_beat_index))
                continue
            out.append(beat)
            state.next_beat_index += 1
            state.gap_pending = False
        return out
