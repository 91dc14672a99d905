"""The dsp service's ECG handler: ``ecg.samples`` chunk + stream state → ``ecg.beats`` + ``ecg.status``.

Per stream it keeps the DSP core's state plus the bookkeeping that ties samples to time
and beats to indices. A chunk whose ``seq`` was already applied is ignored (ingest may
republish after a crash) and produces nothing; a sequence gap flushes the detector,
restarts it at the sample position the gap implies, and marks the next beat
``after_gap``; a ``final`` chunk flushes.

After every applied chunk the handler publishes the beats it completed, then one
``EcgStatusV1``: how far the detector's decisions are final (``horizon_sample``, see
:func:`streamdx_dsp.core.ecg_stream_horizon`), the last accepted R peak, the lost-signal
intervals (runs of identical raw samples >= 0.1 s, :mod:`streamdx_dsp.core.signal_loss`)
overlapping the chunk, and the seconds of data missing before it. Each beat carries
``rr_prev_lost_s``, the lost signal between its previous R peak and its R peak.
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
from streamdx.schemas import EcgBeatV1, EcgSamplesV1, EcgStatusV1, Message, SignalQuality
from streamdx.schemas.ecg import MAX_LOST_INTERVALS, MAX_STATUS_R_SAMPLES
from streamdx_dsp.core import (
    DEFAULT_WINDOW,
    Beat,
    BeatWindow,
    EcgStreamState,
    SignalLossState,
    ecg_state_dumps,
    ecg_state_loads,
    ecg_stream_flush,
    ecg_stream_horizon,
    ecg_stream_init,
    ecg_stream_process,
    merge_intervals,
    signal_loss_close,
    signal_loss_from_dict,
    signal_loss_init,
    signal_loss_overlap,
    signal_loss_process,
    signal_loss_to_dict,
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
    loss: SignalLossState | None = None

    def __post_init__(self) -> None:
        if self.loss is None:
            self.loss = signal_loss_init(self.fs, self.next_sample)

    def time_of(self, sample: int) -> datetime:
        return datetime.fromtimestamp(self.anchor_epoch_s, UTC) + timedelta(
            seconds=(sample - self.anchor_sample) / self.fs
        )


class DspStateCodec:
    """4-byte header length, JSON bookkeeping, then the core's own versioned blob.

    ``v2`` adds the lost-signal detector's state (``loss``) to the JSON; a ``v1`` blob
    (written before it existed) still loads, with a fresh detector at ``next_sample``
    (a flat run in progress at that moment is then measured from the restart). A core
    blob of another core format version (written by an older DSP) restarts the core at
    ``next_sample`` with ``after_gap`` on the next beat; the beat index and clock go on.
    """

    VERSION = 2
    READABLE = (1, 2)

    def __init__(self, window: BeatWindow = DEFAULT_WINDOW) -> None:
        self._window: BeatWindow = window

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
            "loss": signal_loss_to_dict(state.loss) if state.loss is not None else None,
        }
        head = json.dumps(meta, separators=(",", ":")).encode()
        return struct.pack("<I", len(head)) + head + ecg_state_dumps(state.core)

    def loads(self, blob: bytes) -> DspStreamState:
        if len(blob) < 4:
            raise ValueError("dsp state blob too short")
        (n,) = struct.unpack_from("<I", blob)
        meta = json.loads(blob[4 : 4 + n])
        if meta.get("v") not in self.READABLE:
            raise ValueError(f"dsp state v{meta.get('v')} is not one of v{self.READABLE}")
        gap = bool(meta["gap_pending"])
        try:
            core = ecg_state_loads(blob[4 + n :])
        except ValueError as exc:
            if "unsupported ECG state version" not in str(exc):
                raise
            # a core state written by another DSP version (an upgrade): keep the stream's
            # bookkeeping (beat index, clock) and restart the core at the next sample, like
            # after a sequence gap, so no beat index is reused
            log.warning("dsp core state of another version, core restarted", extra=log_fields(version=str(exc)))
            core = ecg_stream_init(float(meta["fs"]), start_sample=int(meta["next_sample"]), window=self._window)
            gap = True
        loss = meta.get("loss")
        return DspStreamState(
            core=core,
            fs=float(meta["fs"]),
            last_seq=int(meta["last_seq"]),
            next_beat_index=int(meta["next_beat_index"]),
            next_sample=int(meta["next_sample"]),
            anchor_sample=int(meta["anchor_sample"]),
            anchor_epoch_s=float(meta["anchor_epoch_s"]),
            gap_pending=gap,
            finished=bool(meta["finished"]),
            loss=signal_loss_from_dict(loss) if loss is not None else None,
        )


class EcgSamplesHandler:
    """Typed async handler for ``ecg.samples`` (metrics injected)."""

    def __init__(self, metrics: DspMetrics, window: BeatWindow = DEFAULT_WINDOW) -> None:
        self._metrics = metrics
        self._window: BeatWindow = window

    async def __call__(self, msg: EcgSamplesV1, state: DspStreamState | None) -> Handled[DspStreamState]:
        if state is not None and msg.seq <= state.last_seq and not state.finished:
            return Handled(state, [])  # already applied (a republished chunk)
        out: list[Message] = []
        t0 = msg.t0.timestamp()
        gap_s = msg.gap_before * msg.n / msg.fs  # unless the sample clock says better (below)
        if state is None:
            state = self._new_state(msg, self._window, start_sample=0, gap=msg.gap_before > 0)
        elif state.finished or abs(msg.fs - state.fs) > 1e-9:
            # a new stream reusing the id, or a new fs: restart after what was there
            restart = state.next_sample
            state = self._new_state(
                msg, self._window, start_sample=restart, gap=True, beat_index=state.next_beat_index, loss=state.loss
            )
        elif msg.gap_before > 0 or msg.seq != state.last_seq + 1:
            state.core, beats = ecg_stream_flush(state.core)
            out += self._beats(msg.stream_id, state, beats)
            expected = state.anchor_epoch_s + (state.next_sample - state.anchor_sample) / state.fs
            missing_s = t0 - expected
            if not 0 < missing_s < MAX_GAP_S:
                missing_s = max(msg.gap_before, 1) * msg.n / msg.fs
            start = state.next_sample + round(missing_s * msg.fs)
            gap_s = (start - state.next_sample) / msg.fs
            state = self._new_state(
                msg, self._window, start_sample=start, gap=True, beat_index=state.next_beat_index, loss=state.loss
            )
        loss = state.loss
        assert loss is not None  # set by DspStreamState.__post_init__
        state.anchor_sample, state.anchor_epoch_s = state.next_sample, t0
        adc = msg.adc()
        loss, lost = signal_loss_process(loss, adc)
        state.core, beats = ecg_stream_process(state.core, (adc.astype(np.float64) - msg.baseline) / msg.gain)
        state.next_sample += msg.n
        state.last_seq = msg.seq
        if msg.final:
            state.core, more = ecg_stream_flush(state.core)
            beats = beats + more
            state.finished = True
            signal_loss_close(loss)
        out += self._beats(msg.stream_id, state, beats)
        self._metrics.beats.inc(len(out))
        status = self._status(msg, state, lost, gap_s, [b.r_sample for b in out if isinstance(b, EcgBeatV1)])
        if status is not None:
            out.append(status)
        return Handled(state, out)

    @staticmethod
    def _status(
        msg: EcgSamplesV1, state: DspStreamState, lost: list[tuple[int, int]], gap_s: float, r_samples: list[int]
    ) -> EcgStatusV1 | None:
        core = state.core
        try:
            return EcgStatusV1(
                stream_id=msg.stream_id,
                seq=msg.seq,
                fs=state.fs,
                t_end=state.time_of(state.next_sample),
                end_sample=state.next_sample,
                horizon_sample=ecg_stream_horizon(core),
                last_r_sample=core.start_sample + core.last_r if core.last_r >= 0 else -1,
                r_samples=r_samples[-MAX_STATUS_R_SAMPLES:],
                lost=merge_intervals(lost, MAX_LOST_INTERVALS),
                gap_s=max(0.0, gap_s),
                final=msg.final,
            )
        except ValidationError as exc:  # never raise after the core advanced
            log.warning(
                "status outside the schema skipped",
                extra=log_fields(seq=msg.seq, reason=exc.errors()[0]["msg"] if exc.errors() else ""),
            )
            return None

    @staticmethod
    def _new_state(
        msg: EcgSamplesV1,
        window: BeatWindow,
        *,
        start_sample: int,
        gap: bool,
        beat_index: int = 0,
        loss: SignalLossState | None = None,
    ) -> DspStreamState:
        """A fresh detector at ``start_sample``; the lost-signal detector (if any) ends its run
        there (a run cannot span missing data) and keeps its recent intervals."""
        if loss is not None:
            loss = signal_loss_close(loss, resume_at=max(loss.pos, start_sample))
        return DspStreamState(
            core=ecg_stream_init(msg.fs, start_sample=start_sample, window=window),
            fs=msg.fs,
            last_seq=msg.seq - 1,
            next_beat_index=beat_index,
            next_sample=start_sample,
            anchor_sample=start_sample,
            anchor_epoch_s=msg.t0.timestamp(),
            gap_pending=gap,
            loss=loss,
        )

    @staticmethod
    def _beats(stream_id: str, state: DspStreamState, beats: list[Beat]) -> list[EcgBeatV1]:
        out = []
        loss = state.loss
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
                    rr_prev_lost_s=(
                        signal_loss_overlap(loss, b.r_sample - round(b.rr_prev_s * state.fs), b.r_sample) / state.fs
                        if loss is not None
                        else 0.0
                    ),
                )
            except ValidationError:  # never raise after the core advanced: count and skip the beat
                log.warning("beat outside the schema skipped", extra=log_fields(beat_index=state.next_beat_index))
                continue
            out.append(beat)
            state.next_beat_index += 1
            state.gap_pending = False
        return out
