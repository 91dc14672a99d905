"""ECG message schemas: samples → beats (+ signal status) → labels."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from streamdx.encoding import EncodingError, decode_f32, decode_i16
from streamdx.schemas.base import Message
from streamdx.schemas.topics import Topic

__all__ = [
    "BEAT_LENGTH",
    "BEAT_R_INDEX",
    "FS_MAX",
    "FS_MIN",
    "MAX_CHUNK_SAMPLES",
    "MAX_LOST_INTERVALS",
    "MAX_STATUS_R_SAMPLES",
    "EcgBeatV1",
    "EcgLabelV1",
    "EcgSamplesV1",
    "EcgStatusV1",
    "SignalQuality",
    "StreamId",
]

#: Identifier of one device lead. Opaque: it must never be a patient identifier.
StreamId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]

FS_MIN = 125.0
FS_MAX = 1000.0
MAX_CHUNK_SAMPLES = 16_384
#: A segmented beat is resampled to 300 samples with the R peak at index 100 (seed 003).
BEAT_LENGTH = 300
BEAT_R_INDEX = 100


class EcgSamplesV1(Message):
    """One chunk of one ECG lead, as int16 ADC counts (``mV = (adc - baseline) / gain``)."""

    TOPIC: ClassVar[str] = Topic.ECG_SAMPLES
    VERSION: ClassVar[int] = 1

    stream_id: StreamId
    seq: int = Field(ge=0, description="Device sequence number of this chunk, +1 per chunk")
    fs: float = Field(ge=FS_MIN, le=FS_MAX, description="Sampling frequency (Hz)")
    t0: datetime = Field(description="Time of the first sample (UTC)")
    gain: float = Field(gt=0, le=1e6, description="ADC counts per mV")
    baseline: int = Field(default=0, ge=-32768, le=32767, description="ADC count of 0 mV")
    n: int = Field(ge=1, le=MAX_CHUNK_SAMPLES, description="Number of samples")
    data: str = Field(description="base64 of little-endian int16 ADC counts")
    lead: str | None = Field(default=None, max_length=16)
    source: Literal["device", "replay", "simulator"] = "device"
    gap_before: int = Field(
        default=0, ge=0, description="Chunks missing between the previous published seq and this one"
    )
    final: bool = Field(default=False, description="Last chunk of a finite stream (a replayed recording)")

    @model_validator(mode="after")
    def _payload_matches_n(self) -> EcgSamplesV1:
        try:
            decode_i16(self.data, self.n)
        except EncodingError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def key(self) -> str:
        return self.stream_id

    def idempotency_key(self) -> str:
        return f"{self.stream_id}:{self.seq}"

    def adc(self) -> npt.NDArray[np.int16]:
        """The samples as int16 ADC counts."""
        return decode_i16(self.data, self.n)

    def millivolts(self) -> npt.NDArray[np.float64]:
        """The samples in mV."""
        return (self.adc().astype(np.float64) - self.baseline) / self.gain


class SignalQuality(BaseModel):
    """Signal-quality index of the window around a beat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flat: bool = Field(description="Flat line / lead off")
    saturated: bool = Field(description="Clipped at the ADC rails")
    hf_noise: float = Field(ge=0, description="High-frequency (>40 Hz) to total power ratio")
    baseline_excursion_mv: float = Field(ge=0, description="Peak-to-peak low-frequency excursion (mV)")
    score: float = Field(ge=0, le=1, description="0 = unusable, 1 = clean")


class _DecodedWaveform:
    """A beat message's waveform decoded once (read-only). Derived from the ``waveform`` field, so it
    never makes two messages unequal (pydantic compares private attributes too)."""

    __slots__ = ("array", "source")

    def __init__(self, source: str) -> None:
        self.array = decode_f32(source, BEAT_LENGTH)
        self.array.flags.writeable = False
        self.source = source

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DecodedWaveform)

    __hash__ = None  # type: ignore[assignment]


class EcgBeatV1(Message):
    """One segmented beat with its RR features (idempotency key: stream_id, beat_index)."""

    TOPIC: ClassVar[str] = Topic.ECG_BEATS
    VERSION: ClassVar[int] = 1

    stream_id: StreamId
    beat_index: int = Field(ge=0)
    r_sample: int = Field(ge=0, description="Sample index of the R peak since the stream started")
    r_time: datetime
    fs: float = Field(ge=FS_MIN, le=FS_MAX)
    waveform: str = Field(description=f"base64 float32, {BEAT_LENGTH} samples (mV), R at {BEAT_R_INDEX}")
    window: Literal["rr", "fixed"] = Field(
        default="rr",
        description="Beat window: rr = R-RR_prev/3 .. R+2RR_next/3 (leaves at the next R); fixed = R-0.28 s .. "
        "R+0.56 s (leaves ~0.6 s after R)",
    )
    rr_prev_s: float = Field(gt=0)
    rr_next_s: float | None = Field(
        default=None,
        gt=0,
        description="RR interval to the next beat (s); null for the fixed window, whose beats leave before the "
        "next R peak (the next beat's rr_prev_s is this interval)",
    )
    rr_local_mean_s: float = Field(
        gt=0,
        description="Mean of the last 8 RR intervals (ending with rr_next_s for the "
        "rr window, with rr_prev_s for the fixed window)",
    )
    rr_irregularity: float = Field(ge=0)
    quality: SignalQuality
    after_gap: bool = Field(default=False, description="First beat after a sequence gap / detector reset")
    rr_prev_lost_s: float = Field(
        default=0.0, ge=0, description="Seconds of lost signal (flat line / lead off) between the previous R and this R"
    )

    _wave: _DecodedWaveform | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _waveform_length(self) -> EcgBeatV1:
        try:
            self._wave = _DecodedWaveform(self.waveform)  # kept: a consumer decodes it only once
        except EncodingError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def key(self) -> str:
        return self.stream_id

    def idempotency_key(self) -> str:
        return f"{self.stream_id}:{self.beat_index}"

    def waveform_mv(self) -> npt.NDArray[np.float32]:
        """The decoded waveform (mV; read-only, decoded once when the message was validated)."""
        if self._wave is None or self._wave.source is not self.waveform:  # e.g. model_copy(update=...)
            self._wave = _DecodedWaveform(self.waveform)
        return self._wave.array


AamiClass = Literal["N", "S", "V", "F", "Q"]


class EcgLabelV1(Message):
    """Labels of one beat from the inference service (idempotency key: stream_id, beat_index).

    A beat that fails the quality gate (``quality == "unreadable"``: flat line, lead off,
    clipping, noise or non-ECG input) carries no rhythm and no beat-class label (``af`` and
    ``beat_class`` are ``None``); its probabilities are reported for diagnostics only.
    """

    TOPIC: ClassVar[str] = Topic.ECG_LABELS
    VERSION: ClassVar[int] = 1

    stream_id: StreamId
    beat_index: int = Field(ge=0)
    r_sample: int = Field(ge=0, description="Sample index of the R peak since the stream started")
    r_time: datetime
    rr_prev_s: float = Field(gt=0)
    quality: Literal["ok", "unreadable"] = Field(description="Quality gate: unreadable beats get no label")
    quality_prob: float = Field(ge=0, le=1, description="Quality model's probability of unreadable signal")
    af_prob: float = Field(ge=0, le=1, description="AF probability (smoothed per stream when quality is ok)")
    af: bool | None = Field(description="AF at this beat; None when unreadable")
    beat_class: AamiClass | None = Field(description="AAMI class (N, S, V, F, Q); None when unreadable")
    class_probs: dict[AamiClass, float] = Field(description="Beat-class model's probability of each class")
    models: dict[str, str] = Field(default_factory=dict, description="model name → version")
    window: Literal["rr", "fixed"] = Field(default="rr", description="Beat window the models were applied to")
    after_gap: bool = Field(default=False, description="First beat after a data gap (copied from the beat)")
    rr_prev_lost_s: float = Field(default=0.0, ge=0, description="Lost signal inside rr_prev (s, from the beat)")

    @model_validator(mode="after")
    def _gate_consistent(self) -> EcgLabelV1:
        unreadable = self.quality == "unreadable"
        if unreadable and (self.af is not None or self.beat_class is not None):
            raise ValueError("an unreadable beat carries no af / beat_class label")
        if not unreadable and (self.af is None or self.beat_class is None):
            raise ValueError("a readable beat carries af and beat_class")
        if any(not 0.0 <= p <= 1.0 for p in self.class_probs.values()):
            raise ValueError("class probabilities must be in [0, 1]")
        return self

    def key(self) -> str:
        return self.stream_id

    def idempotency_key(self) -> str:
        return f"{self.stream_id}:{self.beat_index}"


#: Most lost-signal intervals one status message carries (longer lists are merged by the dsp).
MAX_LOST_INTERVALS = 64
#: Most R peaks one status message lists (a 16 384-sample chunk at 125 Hz at 300 bpm holds ~660).
MAX_STATUS_R_SAMPLES = 1024


class EcgStatusV1(Message):
    """Signal status of one stream after one chunk, from the dsp (idempotency key: stream_id, seq).

    What the beats alone cannot say: how far the detector has looked (so that "no beat for
    4 s" is known while no beat arrives), where the signal was lost (flat line or lead off:
    runs of identical samples of at least ``LOST_RUN_S``), and data gaps. Sample indices are
    absolute since the stream started, like ``EcgBeatV1.r_sample``.
    """

    TOPIC: ClassVar[str] = Topic.ECG_STATUS
    VERSION: ClassVar[int] = 1

    stream_id: StreamId
    seq: int = Field(ge=0, description="seq of the samples chunk this status follows")
    fs: float = Field(ge=FS_MIN, le=FS_MAX)
    t_end: datetime = Field(description="Time of end_sample (UTC)")
    end_sample: int = Field(ge=0, description="Samples received (absolute index one past the last sample)")
    horizon_sample: int = Field(ge=0, description="R-peak decisions are final for samples before this index")
    last_r_sample: int = Field(ge=-1, description="Last R peak accepted by the detector (-1: none yet)")
    lost: list[tuple[int, int]] = Field(
        default_factory=list,
        max_length=MAX_LOST_INTERVALS,
        description="Lost-signal intervals [a, b) (absolute samples) that end in or overlap this chunk",
    )
    r_samples: list[int] = Field(
        default_factory=list,
        max_length=MAX_STATUS_R_SAMPLES,
        description="R peaks of the beats published for this chunk (absolute samples, ascending)",
    )
    gap_s: float = Field(default=0.0, ge=0, description="Data missing just before this chunk (s)")
    final: bool = Field(default=False, description="The stream ended (last chunk of a replay)")

    @model_validator(mode="after")
    def _ordered(self) -> EcgStatusV1:
        if self.horizon_sample > self.end_sample or self.last_r_sample >= self.end_sample:
            raise ValueError("horizon_sample and last_r_sample must lie before end_sample")
        for a, b in self.lost:
            if not 0 <= a < b <= self.end_sample:
                raise ValueError("lost intervals must satisfy 0 <= a < b <= end_sample")
        return self

    def key(self) -> str:
        return self.stream_id

    def idempotency_key(self) -> str:
        return f"{self.stream_id}:{self.seq}"
