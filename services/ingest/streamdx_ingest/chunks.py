"""The device-facing chunk body and its conversion to the ``ecg.samples`` message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from streamdx.encoding import EncodingError, decode_i16, encode_i16
from streamdx.schemas import EcgSamplesV1
from streamdx.schemas.ecg import FS_MAX, FS_MIN, MAX_CHUNK_SAMPLES

__all__ = ["ChunkAck", "ChunkError", "EcgChunkIn", "adc_check_mv", "chunk_adc", "chunk_check_t0", "chunk_to_message",
           "t0_check"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class ChunkError(ValueError):
    """A chunk whose content is invalid (HTTP 422)."""


class EcgChunkIn(BaseModel):
    """One chunk of one ECG lead as sent by a device.

    Give the samples either as ``samples`` (JSON numbers: ADC counts when ``units`` is
    ``"adc"``, millivolts when ``"mV"``) or as ``data`` (base64 of little-endian int16 ADC
    counts, the compact form).
    """

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0, le=2**31 - 1, description="Chunk sequence number, +1 per chunk")
    fs: FiniteFloat = Field(ge=FS_MIN, le=FS_MAX, description="Sampling frequency (Hz)")
    t0: AwareDatetime = Field(description="Time of the first sample, ISO-8601 with time zone")
    gain: FiniteFloat = Field(default=200.0, gt=0, le=1e6, description="ADC counts per mV")
    baseline: int = Field(default=0, ge=-32768, le=32767, description="ADC count of 0 mV")
    units: Literal["adc", "mV"] = "adc"
    lead: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9._-]+$")
    samples: list[FiniteFloat] | None = Field(default=None, min_length=1, max_length=MAX_CHUNK_SAMPLES)
    data: str | None = Field(default=None, max_length=4 * MAX_CHUNK_SAMPLES, description="base64 int16 LE")

    @model_validator(mode="after")
    def _one_payload(self) -> EcgChunkIn:
        if (self.samples is None) == (self.data is None):
            raise ValueError("give exactly one of 'samples' or 'data'")
        if self.data is not None and self.units != "adc":
            raise ValueError("'data' carries ADC counts: units must be 'adc'")
        return self


class ChunkAck(BaseModel):
    seq: int
    status: Literal["accepted", "duplicate"]
    gap_before: int = 0
    clock_drift_s: float | None = Field(
        default=None,
        description="t0 minus (previous chunk's t0 + its samples / fs), when this chunk directly follows the "
        "previous one: how far the device clock moved against its own sample count",
    )


def chunk_check_t0(chunk: EcgChunkIn, now: datetime, max_ahead_s: float, max_age_s: float) -> None:
    """Raise :class:`ChunkError` when the chunk's t0 is implausibly far from the server clock ``now``."""
    t0_check(chunk.t0, now, max_ahead_s, max_age_s)


def t0_check(t0: datetime, now: datetime, max_ahead_s: float, max_age_s: float) -> None:
    """Raise :class:`ChunkError` when ``t0`` (aware) is implausibly far from the server clock ``now``
    (the rule of every device chunk, JSON or gateway batch)."""
    skew = (t0 - now).total_seconds()
    if skew > max_ahead_s:
        raise ChunkError(f"t0: {t0.isoformat()} is {skew:.0f} s ahead of the server clock "
                         f"({now.isoformat(timespec='seconds')}); at most {max_ahead_s:g} s (MAX_CLOCK_SKEW_S) "
                         "is accepted: check the device clock")
    if -skew > max_age_s:
        raise ChunkError(f"t0: {t0.isoformat()} is {-skew:.0f} s behind the server clock "
                         f"({now.isoformat(timespec='seconds')}); at most {max_age_s:g} s (MAX_T0_AGE_S) is "
                         "accepted: check the device clock, or upload old recordings to /v1/recordings")


def adc_check_mv(values: npt.NDArray[np.float64], baseline: float, gain: float, max_abs_mv: float) -> None:
    """Raise :class:`ChunkError` when an ADC value is beyond ``max_abs_mv`` once converted to mV."""
    peak = float(np.max(np.abs(values - baseline))) / gain
    if peak > max_abs_mv:
        raise ChunkError(f"samples: |value| {peak:.1f} mV exceeds the {max_abs_mv:g} mV physiological limit")


def chunk_adc(chunk: EcgChunkIn, max_abs_mv: float) -> npt.NDArray[np.int16]:
    """The chunk's samples as int16 ADC counts; raise :class:`ChunkError` when out of range."""
    if chunk.data is not None:
        try:
            adc = decode_i16(chunk.data)
        except EncodingError as exc:
            raise ChunkError(f"data: {exc}") from exc
        if adc.size == 0 or adc.size > MAX_CHUNK_SAMPLES:
            raise ChunkError(f"data: {adc.size} samples, allowed 1..{MAX_CHUNK_SAMPLES}")
        values = adc.astype(np.float64)
    else:
        assert chunk.samples is not None
        raw = np.asarray(chunk.samples, dtype=np.float64)
        if chunk.units == "adc":
            if not np.all(raw == np.round(raw)):
                raise ChunkError("samples: ADC counts must be integers")
            values = raw
        else:
            values = np.round(raw * chunk.gain + chunk.baseline)
        if values.min() < -32768 or values.max() > 32767:
            raise ChunkError("samples: value outside the int16 ADC range")
        adc = values.astype(np.int16)
    adc_check_mv(values, chunk.baseline, chunk.gain, max_abs_mv)
    return adc


def chunk_to_message(
    stream_id: str, chunk: EcgChunkIn, adc: npt.NDArray[np.int16], gap_before: int,
    source: Literal["device", "replay", "simulator"] = "device",
) -> EcgSamplesV1:
    """The ``ecg.samples`` message of a validated chunk."""
    return EcgSamplesV1(
        stream_id=stream_id,
        seq=chunk.seq,
        fs=chunk.fs,
        t0=chunk.t0.astimezone(UTC),
        gain=chunk.gain,
        baseline=chunk.baseline,
        n=int(adc.size),
        data=encode_i16(adc),
        lead=chunk.lead,
        source=source,
        gap_before=gap_before,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
