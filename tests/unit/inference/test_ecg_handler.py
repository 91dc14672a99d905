"""The inference service's ECG label handler with the shipped models: one label per new beat,
redeliveries de-duplicated, context reset on gaps, beats of another window rejected, state
checkpoints round-trip and are validated on load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.encoding import encode_f32
from streamdx.messaging.worker import Handled, HandlerRejected, KeyBatch
from streamdx.metrics import InferenceMetrics
from streamdx.schemas import EcgBeatV1, EcgLabelV1, SignalQuality
from streamdx_devkit.sim import ecg_synthesize
from streamdx_dsp.core import DEFAULT_WINDOW, Beat
from streamdx_inference.ecg.datasets import beats_of_signal
from streamdx_inference.ecg.labeler import EcgLabeler
from streamdx_inference.ecg_handler import EcgBeatsHandler, EcgLabelStateCodec, EcgLabelStreamState
from streamdx_inference.settings import default_models_dir

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def beat_messages(
    stream: str, beats: Sequence[Beat], fs: float, window: Literal["rr", "fixed"] = DEFAULT_WINDOW
) -> list[EcgBeatV1]:
    """The DSP's beats as ``ecg.beats`` messages (as the dsp handler publishes them)."""
    return [
        EcgBeatV1(
            stream_id=stream, beat_index=i, r_sample=b.r_sample, r_time=T0 + timedelta(seconds=b.r_sample / fs),
            fs=fs, waveform=encode_f32(b.waveform), window=window, rr_prev_s=b.rr_prev_s, rr_next_s=b.rr_next_s,
            rr_local_mean_s=b.rr_local_mean_s, rr_irregularity=b.rr_irregularity,
            quality=SignalQuality(flat=b.quality.flat, saturated=b.quality.saturated,
                                  hf_noise=max(0.0, b.quality.hf_noise),
                                  baseline_excursion_mv=max(0.0, b.quality.baseline_excursion_mv),
                                  score=min(1.0, max(0.0, b.quality.score))),
        )
        for i, b in enumerate(beats)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def labeler() -> EcgLabeler:
    return EcgLabeler.from_dir(default_models_dir())


@pytest.fixture(scope="module")
def beats() -> list[EcgBeatV1]:
    ecg = ecg_synthesize(60, 250.0, seed=21, scenario="ectopy")
    out = beat_messages("h-1", beats_of_signal(ecg.signal_mv, 250.0, DEFAULT_WINDOW), 250.0)
    assert len(out) >= 50
    return out


def run(handler: EcgBeatsHandler, *parts: tuple[str, EcgLabelStreamState | None, Sequence[EcgBeatV1]]
        ) -> list[Handled[EcgLabelStreamState]]:  # fmt: skip
    return asyncio.run(handler([KeyBatch(k, s, tuple(m)) for k, s, m in parts]))


def labels_of(h: Handled[EcgLabelStreamState]) -> list[EcgLabelV1]:
    out = list(h.outputs)
    assert all(isinstance(m, EcgLabelV1) for m in out)
    return out  # type: ignore[return-value]


def test_every_new_beat_is_labelled_once_and_redeliveries_emit_nothing(
    labeler: EcgLabeler, beats: list[EcgBeatV1]
) -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    h = EcgBeatsHandler(labeler, metrics)
    (first,) = run(h, ("h-1", None, beats[:20]))
    out = labels_of(first)
    assert [m.beat_index for m in out] == list(range(20))
    assert first.state is not None and first.state.last_beat_index == 19
    assert all(m.r_sample == b.r_sample and m.r_time == b.r_time for m, b in zip(out, beats, strict=False))
    assert all(m.models == labeler.versions and m.window == labeler.window for m in out)
    # an overlapping redelivery: only the beats after the last labelled one are labelled
    (second,) = run(h, ("h-1", first.state, beats[10:30]))
    assert [m.beat_index for m in labels_of(second)] == list(range(20, 30))
    # the same beats again: nothing, state unchanged
    (third,) = run(h, ("h-1", second.state, beats[:30]))
    assert list(third.outputs) == [] and third.state is second.state
    counted = sum(metrics.registry.get_sample_value("streamdx_labels_total", {"aami_class": c}) or 0
                  for c in ("N", "S", "V", "F", "Q", "unreadable"))  # fmt: skip
    assert counted == 30
    assert metrics.registry.get_sample_value("streamdx_inference_seconds_count", {"model": "ecg_labeler"}) == 2


def test_gap_and_lost_signal_flags_are_copied_from_the_beat(labeler: EcgLabeler, beats: list[EcgBeatV1]) -> None:
    """The alerts service reads them from the label: a pause across lost signal or a gap is no pause."""
    h = EcgBeatsHandler(labeler, InferenceMetrics(CollectorRegistry()))
    marked = [
        b.model_copy(update={"after_gap": i == 3, "rr_prev_lost_s": 1.25 if i == 5 else 0.0})
        for i, b in enumerate(beats[:8])
    ]
    (done,) = run(h, ("h-1", None, marked))
    out = labels_of(done)
    assert [m.after_gap for m in out] == [i == 3 for i in range(8)]
    assert [m.rr_prev_lost_s for m in out] == [1.25 if i == 5 else 0.0 for i in range(8)]
    assert EcgLabelV1.model_validate_json(out[5].model_dump_json()).rr_prev_lost_s == 1.25


def test_batched_streams_equal_beat_by_beat_with_checkpoints(labeler: EcgLabeler, beats: list[EcgBeatV1]) -> None:
    """Two streams in one call give the labels each gets alone, beat by beat through the codec."""
    h = EcgBeatsHandler(labeler, InferenceMetrics(CollectorRegistry()))
    other = [b.model_copy(update={"stream_id": "h-2"}) for b in beats[5:45]]
    other = [b.model_copy(update={"beat_index": i}) for i, b in enumerate(other)]
    together = run(h, ("h-1", None, beats[:40]), ("h-2", None, other))
    codec = EcgLabelStateCodec()
    for part, msgs in zip(together, (beats[:40], other), strict=True):
        state: EcgLabelStreamState | None = None
        one_by_one: list[EcgLabelV1] = []
        for b in msgs:
            (r,) = run(h, (b.stream_id, state, [b]))
            assert r.state is not None
            state = codec.loads(codec.dumps(r.state))
            one_by_one += labels_of(r)
        batched = labels_of(part)
        assert [m.beat_index for m in batched] == [m.beat_index for m in one_by_one]
        for x, y in zip(batched, one_by_one, strict=True):
            assert (x.quality, x.af, x.beat_class) == (y.quality, y.af, y.beat_class)
            assert x.af_prob == pytest.approx(y.af_prob, abs=1e-5)
            assert x.class_probs == pytest.approx(y.class_probs, abs=1e-5)


def test_after_gap_clears_the_context(labeler: EcgLabeler, beats: list[EcgBeatV1]) -> None:
    h = EcgBeatsHandler(labeler, InferenceMetrics(CollectorRegistry()))
    (before,) = run(h, ("h-1", None, beats[:30]))
    assert before.state is not None and len(before.state.label.ctx.rr) == 30
    gap_beat = beats[30].model_copy(update={"after_gap": True})
    (after,) = run(h, ("h-1", before.state, [gap_beat, beats[31]]))
    assert after.state is not None
    assert after.state.label.ctx.rr == pytest.approx([beats[30].rr_prev_s, beats[31].rr_prev_s])
    # the gap beat is labelled as the first beat of a fresh stream
    (fresh,) = run(h, ("h-1", None, [gap_beat, beats[31]]))
    assert [m.model_dump(exclude={"r_time"}) for m in labels_of(after)] == [
        m.model_dump(exclude={"r_time"}) for m in labels_of(fresh)
    ]
    (no_gap,) = run(h, ("h-1", before.state, [beats[30], beats[31]]))
    assert no_gap.state is not None and len(no_gap.state.label.ctx.rr) == 32


def test_beat_of_another_window_is_rejected_before_any_work(labeler: EcgLabeler, beats: list[EcgBeatV1]) -> None:
    metrics = InferenceMetrics(CollectorRegistry())
    h = EcgBeatsHandler(labeler, metrics)
    other = "fixed" if labeler.window == "rr" else "rr"
    bad = beats[3].model_copy(update={"window": other})
    with pytest.raises(HandlerRejected) as err:
        run(h, ("h-1", None, [*beats[:3], bad, *beats[4:6]]))
    assert err.value.reason == "window_mismatch"
    assert other in err.value.detail and labeler.window in err.value.detail
    assert metrics.registry.get_sample_value("streamdx_inference_seconds_count", {"model": "ecg_labeler"}) is None


def test_state_codec_round_trip(labeler: EcgLabeler, beats: list[EcgBeatV1]) -> None:
    h = EcgBeatsHandler(labeler, InferenceMetrics(CollectorRegistry()))
    (r,) = run(h, ("h-1", None, beats[:12]))
    assert r.state is not None
    codec = EcgLabelStateCodec()
    back = codec.loads(codec.dumps(r.state))
    assert back.last_beat_index == 11 and back.label.af_smooth == r.state.label.af_smooth
    np.testing.assert_array_equal(back.label.ctx.rr, r.state.label.ctx.rr)
    np.testing.assert_array_equal(back.label.ctx.dev, r.state.label.ctx.dev)
    assert np.array_equal(back.label.ctx.template, r.state.label.ctx.template)
    assert back.label.ctx.odd == r.state.label.ctx.odd
    empty = codec.loads(codec.dumps(EcgLabelStreamState()))
    assert empty.last_beat_index == -1 and empty.label.af_smooth == -1.0 and empty.label.ctx.template.size == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(v=2),
        lambda d: d.update(last_beat_index=-2),
        lambda d: d.update(last_beat_index="3"),
        lambda d: d.update(label=[]),
        lambda d: d["label"].update(af_smooth=float("nan")),
        lambda d: d["label"]["ctx"].update(rr=[0.8, -1.0]),
        lambda d: d["label"]["ctx"].update(template="not base64!"),
        lambda d: d["label"]["ctx"].update(template="AAAAAA=="),  # one float, not 300
        lambda d: d["label"]["ctx"].update(odd=-1),
    ],
    ids=["version", "negative-index", "index-type", "label-type", "af-nan", "negative-rr", "template-b64",
         "template-size", "odd-count"],
)
def test_state_codec_rejects_malformed_checkpoints(labeler: EcgLabeler, beats: list[EcgBeatV1], mutate: object) -> None:
    h = EcgBeatsHandler(labeler, InferenceMetrics(CollectorRegistry()))
    (r,) = run(h, ("h-1", None, beats[:5]))
    assert r.state is not None
    codec = EcgLabelStateCodec()
    d = json.loads(codec.dumps(r.state))
    mutate(d)  # type: ignore[operator]
    with pytest.raises(ValueError):
        codec.loads(json.dumps(d).encode())


def test_state_codec_rejects_non_json() -> None:
    with pytest.raises(ValueError):
        EcgLabelStateCodec().loads(b"\xff\x00 not json")
