"""The inference service's ECG handler: ``ecg.beats`` → ``ecg.labels`` (quality, AF, beat class).

A :data:`~streamdx.messaging.worker.BatchHandler`: the worker hands it every stream's new
beats of a ``getmany`` batch and it labels all of them with one
:meth:`~streamdx_inference.ecg.labeler.EcgLabeler.label_many` call (one onnxruntime call per
model), run in a thread so the event loop keeps serving health checks and heartbeats.

Per stream it keeps :class:`EcgLabelStreamState`: the labeler's feature context and smoothed
AF probability (:class:`~streamdx_inference.ecg.labeler.StreamLabelState`) and the index of
the last labelled beat. A beat at or below that index (a redelivery) emits nothing; a beat
marked ``after_gap`` clears the context first; a beat cut with another window than the models
were trained on is rejected (``HandlerRejected("window_mismatch")`` → dead-letter topic).
The handler never mutates the states it is given (the worker may call it again with them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic_core import to_json

from streamdx.messaging.worker import Handled, HandlerRejected, KeyBatch
from streamdx.metrics import InferenceMetrics
from streamdx.schemas import EcgBeatV1, EcgLabelV1
from streamdx_inference.ecg.features import EcgBeatBatch
from streamdx_inference.ecg.labeler import BeatLabel, EcgLabeler, StreamLabelState

__all__ = ["EcgBeatsHandler", "EcgLabelStateCodec", "EcgLabelStreamState", "beat_arrays"]

#: ``model`` label of the inference-time histogram.
LABELER_METRIC = "ecg_labeler"


@dataclass(frozen=True)
class EcgLabelStreamState:
    """Per-stream state of the ECG labeler worker (serialised by :class:`EcgLabelStateCodec`).

    Attributes
    ----------
    label : StreamLabelState
        Feature context and smoothed AF probability after the last labelled beat.
    last_beat_index : int
        Index of the last labelled beat (-1 before the first).
    """

    label: StreamLabelState = field(default_factory=StreamLabelState)
    last_beat_index: int = -1


class EcgLabelStateCodec:
    """``v1``: JSON ``{"v", "last_beat_index", "label"}``, validated on load."""

    VERSION = 1

    def dumps(self, state: EcgLabelStreamState) -> bytes:
        """Serialise ``state``."""
        body = {"v": self.VERSION, "last_beat_index": state.last_beat_index, "label": state.label.to_dict()}
        return to_json(body)  # pydantic-core: the JSON of json.dumps at a fraction of the cost

    def loads(self, blob: bytes) -> EcgLabelStreamState:
        """Deserialise and validate a checkpoint.

        Raises
        ------
        ValueError
            On another version, malformed JSON or an invalid value (the worker then starts
            the stream afresh).
        """
        try:
            d = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"ECG label state is not JSON: {exc}") from exc
        if not isinstance(d, dict) or d.get("v") != self.VERSION:
            raise ValueError(f"ECG label state v{d.get('v') if isinstance(d, dict) else '?'} is not v{self.VERSION}")
        last = d.get("last_beat_index")
        if not isinstance(last, int) or isinstance(last, bool) or last < -1:
            raise ValueError("ECG label state: last_beat_index must be an integer >= -1")
        label = d.get("label")
        if not isinstance(label, dict):
            raise ValueError("ECG label state: label must be an object")
        try:
            return EcgLabelStreamState(StreamLabelState.from_dict(label), last)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"ECG label state: {exc}") from exc


def beat_arrays(
    beats: Sequence[EcgBeatV1],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float32],
           npt.NDArray[np.bool_]]:  # fmt: skip
    """The labeler's inputs of beats (of one stream or of several, concatenated): waves (n, 300),
    rr_prev, rr_next, quality (n, 5 = flat, saturated, hf_noise, baseline_excursion_mv, score) and
    reset (after_gap)."""
    n = len(beats)
    waves = np.empty((n, 300), np.float32)
    for i, b in enumerate(beats):
        waves[i] = b.waveform_mv()
    rp = np.fromiter((b.rr_prev_s for b in beats), np.float64, n)
    rn = np.fromiter((np.nan if b.rr_next_s is None else b.rr_next_s for b in beats), np.float64, n)
    qs = [b.quality for b in beats]
    q = np.array([(x.flat, x.saturated, x.hf_noise, x.baseline_excursion_mv, x.score) for x in qs],
                 np.float32).reshape(n, 5)  # fmt: skip
    reset = np.fromiter((b.after_gap for b in beats), np.bool_, n)
    return waves, rp, rn, q, reset


class EcgBeatsHandler:
    """Batch handler for ``ecg.beats`` (labeler and metrics injected; see the module doc).

    Parameters
    ----------
    labeler : EcgLabeler
        The three loaded models.
    metrics : InferenceMetrics
        Counts labels by class and times each labeler call.
    """

    def __init__(self, labeler: EcgLabeler, metrics: InferenceMetrics) -> None:
        self._labeler = labeler
        self._metrics = metrics
        self._versions = labeler.versions

    async def __call__(
        self, batches: Sequence[KeyBatch[EcgBeatV1, EcgLabelStreamState]]
    ) -> list[Handled[EcgLabelStreamState]]:
        """Label every stream's new beats with one labeler call."""
        window = self._labeler.window
        for kb in batches:  # validate everything before any work
            for b in kb.messages:
                if b.window != window:
                    raise HandlerRejected(
                        "window_mismatch",
                        f"beat {b.beat_index} of {b.stream_id} was cut with the {b.window!r} window; the models "
                        f"were trained on {window!r} (run the dsp service with the models' window)",
                    )
        fresh: list[tuple[EcgLabelStreamState, list[EcgBeatV1]]] = []
        for kb in batches:
            state = kb.state if kb.state is not None else EcgLabelStreamState()
            last, new = state.last_beat_index, []
            for b in kb.messages:  # redelivered beats (at or below the last labelled index) emit nothing
                if b.beat_index > last:
                    new.append(b)
                    last = b.beat_index
            fresh.append((state, new))
        labels: list[list[BeatLabel]]
        if any(new for _, new in fresh):
            batch = EcgBeatBatch.of([len(new) for _, new in fresh], *beat_arrays([b for _, new in fresh for b in new]))
            started = time.perf_counter()
            states, labels = await asyncio.to_thread(self._labeler.label_batch, [s.label for s, _ in fresh], batch)
            self._metrics.inference_seconds.labels(model=LABELER_METRIC).observe(time.perf_counter() - started)
        else:
            states, labels = [s.label for s, _ in fresh], [[] for _ in fresh]
        out: list[Handled[EcgLabelStreamState]] = []
        for (state, new), label_state, beat_labels in zip(fresh, states, labels, strict=True):
            if not new:
                out.append(Handled(state, []))
                continue
            msgs = [self._message(b, lab) for b, lab in zip(new, beat_labels, strict=True)]
            out.append(Handled(EcgLabelStreamState(label_state, new[-1].beat_index), msgs))
        # counted once every message is built (a failed call is retried by the worker)
        classes = Counter(lab.beat_class or "unreadable" for beat_labels in labels for lab in beat_labels)
        for name, n in classes.items():
            self._metrics.labels.labels(aami_class=name).inc(n)
        return out

    def _message(self, b: EcgBeatV1, lab: BeatLabel) -> EcgLabelV1:
        return EcgLabelV1(
            stream_id=b.stream_id, beat_index=b.beat_index, r_sample=b.r_sample, r_time=b.r_time,
            rr_prev_s=b.rr_prev_s, quality="ok" if lab.quality == "ok" else "unreadable",
            quality_prob=lab.quality_prob, af_prob=lab.af_prob, af=lab.af,  # probabilities: in [0, 1] (BeatLabel)
            beat_class=lab.beat_class,  # type: ignore[arg-type]  # one of AAMI_CLASSES or None
            class_probs=lab.class_probs,  # type: ignore[arg-type]  # keys: AAMI_CLASSES
            models=self._versions, window=b.window, after_gap=b.after_gap, rr_prev_lost_s=b.rr_prev_lost_s,
        )  # fmt: skip
