"""Service handlers without Kafka: checkpoint/restore invariance, gaps, duplicates, ESR forecasts."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.encoding import encode_i16
from streamdx.metrics import DspMetrics
from streamdx.schemas import EcgBeatV1, EcgSamplesV1, EsrHeightV1
from streamdx_devkit.sim import ecg_synthesize
from streamdx_dsp.ecg_handler import DspStateCodec, DspStreamState, EcgSamplesHandler
from streamdx_inference.esr.forecaster import EsrForecaster
from streamdx_inference.esr_handler import EsrHeightsHandler, TubeSeries, TubeSeriesCodec
from streamdx_inference.settings import default_models_dir

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def chunks(adc: np.ndarray, fs: float, n: int, skip: tuple[int, ...] = ()) -> list[EcgSamplesV1]:
    out = []
    last = -1
    for seq in range(-(-adc.size // n)):
        if seq in skip:
            continue
        part = adc[seq * n : (seq + 1) * n]
        out.append(EcgSamplesV1(stream_id="s", seq=seq, fs=fs, t0=T0 + timedelta(seconds=seq * n / fs), gain=200,
                                n=part.size, data=encode_i16(part), gap_before=seq - last - 1))
        last = seq
    return out


def run(msgs: list[EcgSamplesV1], *, checkpoint_every_chunk: bool) -> list[EcgBeatV1]:
    handler = EcgSamplesHandler(DspMetrics(CollectorRegistry()))
    codec = DspStateCodec()
    state: DspStreamState | None = None
    beats: list[EcgBeatV1] = []
    for m in msgs:
        handled = asyncio.run(handler(m, state))
        beats += [o for o in handled.outputs if isinstance(o, EcgBeatV1)]  # statuses: test_dsp_status.py
        state = handled.state
        if checkpoint_every_chunk and state is not None:
            state = codec.loads(codec.dumps(state))  # as a replacement worker would resume
    return beats


@pytest.fixture(scope="module")
def ecg() -> tuple[np.ndarray, np.ndarray, float]:
    e = ecg_synthesize(40, 360, seed=3, scenario="ectopy")
    return e.to_adc(200.0, 0), e.r_samples, 360.0


def test_checkpoint_restore_every_chunk_changes_nothing(ecg: tuple[np.ndarray, np.ndarray, float]) -> None:
    adc, _, fs = ecg
    msgs = chunks(adc, fs, 360)
    a = run(msgs, checkpoint_every_chunk=False)
    b = run(msgs, checkpoint_every_chunk=True)
    assert len(a) > 30
    assert [x.r_sample for x in a] == [x.r_sample for x in b]
    assert all(np.allclose(x.waveform_mv(), y.waveform_mv(), atol=1e-6) for x, y in zip(a, b, strict=True))
    assert [x.beat_index for x in a] == list(range(len(a)))


def test_duplicate_chunks_are_ignored(ecg: tuple[np.ndarray, np.ndarray, float]) -> None:
    adc, _, fs = ecg
    msgs = chunks(adc, fs, 360)
    doubled = [m for m in msgs for _ in range(2)]
    assert [b.r_sample for b in run(doubled, checkpoint_every_chunk=False)] == \
        [b.r_sample for b in run(msgs, checkpoint_every_chunk=False)]


def test_gap_restarts_detector_on_the_right_clock(ecg: tuple[np.ndarray, np.ndarray, float]) -> None:
    adc, truth, fs = ecg
    beats = run(chunks(adc, fs, 360, skip=(10, 11)), checkpoint_every_chunk=True)
    after = [b for b in beats if b.after_gap]
    assert len(after) == 1 and after[0].r_sample >= 12 * 360
    assert not any(10 * 360 <= b.r_sample < 12 * 360 for b in beats)
    # beats after the gap still land on the true R peaks (absolute sample clock kept)
    later = np.array([b.r_sample for b in beats if b.r_sample >= 13 * 360 and b.r_sample < 35 * 360])
    assert later.size > 10 and np.all(np.min(np.abs(later[:, None] - truth[None, :]), axis=1) <= 0.05 * fs)
    for b in beats:
        assert abs((b.r_time - T0).total_seconds() - b.r_sample / fs) < 1e-6


def test_final_chunk_flushes_the_last_beats(ecg: tuple[np.ndarray, np.ndarray, float]) -> None:
    adc, truth, fs = ecg
    msgs = chunks(adc, fs, 360)
    open_ended = run(msgs, checkpoint_every_chunk=False)
    msgs[-1] = msgs[-1].model_copy(update={"final": True})
    flushed = run(msgs, checkpoint_every_chunk=False)
    # the fixed window leaves ~0.6 s after R: the flush adds the beats of the last ~0.6 s, and
    # every R whose window fits in the signal is out
    assert len(flushed) >= len(open_ended)
    assert flushed[: len(open_ended)] == open_ended
    fits = truth[truth + 0.57 * fs <= adc.size]
    assert flushed[-1].r_sample >= fits[-1] - 0.05 * fs


def test_flat_line_gives_no_beats() -> None:
    beats = run(chunks(np.zeros(360 * 30, np.int16), 360.0, 360), checkpoint_every_chunk=True)
    assert beats == []


def test_corrupt_state_blob_is_refused() -> None:
    with pytest.raises(ValueError):
        DspStateCodec().loads(b"\x05\x00\x00\x00{bad}")


def test_core_state_of_an_older_dsp_restarts_the_core_and_keeps_the_beat_index(
    ecg: tuple[np.ndarray, np.ndarray, float],
) -> None:
    """After an upgrade, a checkpoint whose core blob has another format version is not dropped:
    the stream keeps its beat index and clock, the core restarts (after_gap on the next beat)."""
    adc, truth, fs = ecg
    msgs = chunks(adc, fs, 360)
    handler = EcgSamplesHandler(DspMetrics(CollectorRegistry()))
    codec = DspStateCodec()
    state: DspStreamState | None = None
    beats: list[EcgBeatV1] = []
    for m in msgs[:20]:
        handled = asyncio.run(handler(m, state))
        beats += [o for o in handled.outputs if isinstance(o, EcgBeatV1)]
        state = handled.state
    assert state is not None and beats
    blob = bytearray(codec.dumps(state))
    (n,) = struct.unpack_from("<I", blob)
    core_at = 4 + n
    assert blob[core_at : core_at + 4] == b"SDXE"
    struct.pack_into("<H", blob, core_at + 4, 1)  # the core format of the previous DSP
    old = codec.loads(bytes(blob))
    assert old.next_beat_index == state.next_beat_index and old.gap_pending
    assert old.core.start_sample == state.next_sample and old.core.n_in == 0
    later: list[EcgBeatV1] = []
    for m in msgs[20:]:
        handled = asyncio.run(handler(m, old))
        later += [o for o in handled.outputs if isinstance(o, EcgBeatV1)]
        old = handled.state  # type: ignore[assignment]
    assert later and later[0].after_gap and later[0].beat_index == beats[-1].beat_index + 1
    assert all(b.r_sample > beats[-1].r_sample for b in later)
    assert np.all(np.min(np.abs(np.array([b.r_sample for b in later])[:, None] - truth[None, :]), axis=1) <= 18)


def test_esr_forecasts_from_minute_10_and_measured_at_60() -> None:
    forecaster = EsrForecaster.load(default_models_dir() / "esr_gru")
    handler = EsrHeightsHandler(forecaster)
    codec = TubeSeriesCodec()
    state: TubeSeries | None = None
    out = []
    heights = 1.0 - 0.4 * (1 - np.exp(-np.arange(61) / 25.0))
    for minute in [*range(61), 30]:  # minute 30 redelivered at the end
        msg = EsrHeightV1(tube_id="t", minute=minute, boundary_px=100.0, height=float(heights[minute]),
                          confidence=0.9, age=60, sex="M", simulated=True)
        handled = asyncio.run(handler(msg, state))
        state = codec.loads(codec.dumps(handled.state))  # type: ignore[arg-type]
        out += handled.outputs
    assert [f.minute for f in out] == list(range(10, 61))  # type: ignore[attr-defined]
    assert out[-1].measured_h60 == pytest.approx(heights[60])  # type: ignore[attr-defined]
    assert all(f.h60_low <= f.h60 <= f.h60_high for f in out)  # type: ignore[attr-defined]


def test_models_dir_holds_the_shipped_gru() -> None:
    assert (default_models_dir() / "esr_gru" / "esr_gru.json").is_file()
    assert Path(default_models_dir() / "esr_gru" / "MODEL_CARD.md").is_file()


def test_onnx_provider_selection_falls_back_to_cpu() -> None:
    from streamdx_inference.onnx_providers import onnx_providers_select

    jetson = "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider"
    assert onnx_providers_select(jetson, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers_select(jetson, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers_select("", []) == ["CPUExecutionProvider"]
