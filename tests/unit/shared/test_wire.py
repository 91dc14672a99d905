"""Pure tests of the wire format: encodings, schemas, codec, log redaction."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamdx.encoding import EncodingError, decode_f32, decode_i16, encode_f32, encode_i16
from streamdx.logs import JsonFormatter, log_fields
from streamdx.messaging.codec import PoisonMessage, decode_message, encode_message
from streamdx.schemas import EcgBeatV1, EcgSamplesV1, SignalQuality, registry
from streamdx_ingest.chunks import ChunkError, EcgChunkIn, chunk_adc


@given(arrays(np.int16, st.integers(1, 2000)))
def test_i16_round_trip(a: np.ndarray) -> None:
    assert np.array_equal(decode_i16(encode_i16(a), a.size), a)


@given(arrays(np.float32, st.integers(1, 400), elements=st.floats(-50, 50, width=32)))
def test_f32_round_trip(a: np.ndarray) -> None:
    assert np.array_equal(decode_f32(encode_f32(a)), a)


def test_encoding_rejects_bad_payloads() -> None:
    with pytest.raises(EncodingError):
        encode_i16([40000])
    with pytest.raises(EncodingError):
        decode_i16("AA==")
    with pytest.raises(EncodingError):
        decode_i16(encode_i16([1, 2]), 3)
    with pytest.raises(EncodingError):
        encode_f32([np.nan])


def _samples() -> EcgSamplesV1:
    return EcgSamplesV1(stream_id="dev-1", seq=7, fs=360, t0=datetime(2026, 1, 1, tzinfo=UTC), gain=200,
                        n=3, data=encode_i16([1, 2, 3]))


def test_codec_round_trip_and_headers() -> None:
    rec = encode_message(_samples())
    assert rec.topic == "ecg.samples" and rec.key == b"dev-1"
    assert ("schema", b"ecg.samples/v1") in rec.headers
    assert decode_message(rec.value, list(rec.headers), EcgSamplesV1) == _samples()


def test_codec_poison_reasons() -> None:
    rec = encode_message(_samples())
    with pytest.raises(PoisonMessage) as e:
        decode_message(b"{", [], EcgSamplesV1)
    assert e.value.reason == "validation"
    with pytest.raises(PoisonMessage) as e:
        decode_message(rec.value, [("schema", b"ecg.beats/v1")], EcgSamplesV1)
    assert e.value.reason == "schema_mismatch"
    bad = json.loads(rec.value)
    bad["n"] = 4  # payload holds 3
    with pytest.raises(PoisonMessage):
        decode_message(json.dumps(bad).encode(), [], EcgSamplesV1)
    with pytest.raises(PoisonMessage) as e:
        decode_message(None, [], EcgSamplesV1)
    assert e.value.reason == "empty"


def test_every_topic_has_a_registered_schema() -> None:
    from streamdx.schemas import Topic

    assert {t.value for t in Topic} <= {k.split("/")[0] for k in registry}


def test_beat_waveform_length_enforced() -> None:
    q = SignalQuality(flat=False, saturated=False, hf_noise=0.1, baseline_excursion_mv=0.2, score=0.9)
    kw = dict(stream_id="s", beat_index=0, r_sample=10, r_time=datetime.now(UTC), fs=360, rr_prev_s=0.8,
              rr_next_s=0.8, rr_local_mean_s=0.8, rr_irregularity=0.0, quality=q)
    EcgBeatV1(waveform=encode_f32(np.zeros(300)), **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="300"):
        EcgBeatV1(waveform=encode_f32(np.zeros(299)), **kw)  # type: ignore[arg-type]


def test_beat_waveform_is_decoded_once_read_only_and_follows_copies() -> None:
    q = SignalQuality(flat=False, saturated=False, hf_noise=0.1, baseline_excursion_mv=0.2, score=0.9)
    kw = dict(stream_id="s", beat_index=0, r_sample=10, r_time=datetime(2026, 1, 1, tzinfo=UTC), fs=360,
              rr_prev_s=0.8, rr_next_s=0.8, rr_local_mean_s=0.8, rr_irregularity=0.0, quality=q)
    wave = np.linspace(-1, 1, 300, dtype=np.float32)
    beat = decode_message(encode_message(EcgBeatV1(waveform=encode_f32(wave), **kw)).value, (), EcgBeatV1)  # type: ignore[arg-type]
    got = beat.waveform_mv()
    np.testing.assert_array_equal(got, wave)
    assert got is beat.waveform_mv()  # decoded when validated, not at every call
    with pytest.raises(ValueError, match="read-only"):
        got[0] = 5.0
    assert beat == EcgBeatV1(waveform=encode_f32(wave), **kw)  # type: ignore[arg-type]  # equality: by fields
    assert beat != EcgBeatV1(waveform=encode_f32(wave[::-1].copy()), **kw)  # type: ignore[arg-type]
    other = beat.model_copy(update={"waveform": encode_f32(2 * wave)})  # no validation: decoded anew
    np.testing.assert_array_equal(other.waveform_mv(), 2 * wave)


def test_logs_drop_everything_not_allow_listed() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "accepted", None, None)
    record.fields = {"seq": 3, "api_key": "sdx_secret", "samples": [1, 2], "age": 71,  # type: ignore[attr-defined]
                     "stream_id": "dev-1"}
    line = json.loads(JsonFormatter("ingest").format(record))
    assert line["seq"] == 3 and line["stream_id"] == "dev-1"
    assert "api_key" not in line and "samples" not in line and "age" not in line
    assert log_fields(seq=1) == {"fields": {"seq": 1}}


def _chunk(**kw: object) -> EcgChunkIn:
    body = {"seq": 0, "fs": 250, "t0": "2026-01-01T00:00:00Z", **kw}
    return EcgChunkIn.model_validate(body)


def test_chunk_validation() -> None:
    assert chunk_adc(_chunk(samples=[1, 2, -3]), 30).tolist() == [1, 2, -3]
    assert chunk_adc(_chunk(samples=[0.5, -1.0], units="mV"), 30).tolist() == [100, -200]
    for bad in ([1.5], [40000]):
        with pytest.raises(ChunkError):
            chunk_adc(_chunk(samples=bad), 30)
    with pytest.raises(ChunkError, match="physiological"):
        chunk_adc(_chunk(samples=[31.0], units="mV"), 30)
    with pytest.raises(ValueError):
        _chunk(samples=[float("nan")])
    with pytest.raises(ValueError):
        _chunk(samples=[1], data=encode_i16([1]))
    with pytest.raises(ValueError):
        _chunk(fs=2000, samples=[1])
