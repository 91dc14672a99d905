"""Per-beat ECG labels from the three ONNX models: quality gate, AF, AAMI beat class.

Pure core of the ECG inference worker (onnxruntime and numpy only; no Kafka, Redis or
HTTP). For a stream's consecutive beats :meth:`EcgLabeler.label` computes the shared
features (:func:`~streamdx_inference.ecg.features.ecg_beat_features`), runs the models in
one batch each and applies the decision rules:

- **quality gate**: a beat is ``unreadable`` when the DSP's beat quality rule says so
  (flat line / lead off, clipping, a quality score below ``DSP_SCORE_MIN`` or a
  high-frequency energy share above ``DSP_HF_NOISE_MAX``) or the
  quality model's probability of unreadable signal exceeds its threshold, either for the
  beat itself or smoothed over the stream's recent beats (exponential average,
  ``QUALITY_SMOOTH_ALPHA``): quality belongs to a span of signal, so a beat that happens
  to look clean inside noise, or right after it, stays unreadable. A new stream (or one
  restarted after a gap) starts from "unreadable" (1.0), so its first few beats (about 3
  clean ones) are unreadable until the gate has seen enough signal. An unreadable
  beat gets no rhythm and no beat-class label (``af`` and ``beat_class`` are ``None``):
  a flat line is never "normal".
- **AF**: the AF model's probability is smoothed causally per stream (exponential average,
  ``AF_SMOOTH_ALPHA``; unreadable beats do not update it) and compared with the
  threshold chosen on the training records' validation part (in the model's metadata).
- **beat class**: the class with the highest probability, except that a beat labelled AF is
  never called S (supraventricular ectopy is not defined in AF, where every conducted beat
  is irregular; MITDB annotates such beats N): it takes the most probable other class.

:meth:`EcgLabeler.label_many` labels the beats of many streams with one model call per
model, which is how the worker batches a ``getmany`` batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx_inference.ecg.features import EcgContext, EcgFeatures, ecg_beat_features_many, ecg_context_init

__all__ = [
    "AAMI_CLASSES",
    "AF_SMOOTH_ALPHA",
    "DSP_HF_NOISE_MAX",
    "DSP_SCORE_MIN",
    "MODEL_NAMES",
    "QUALITY_SMOOTH_ALPHA",
    "BeatLabel",
    "EcgLabeler",
    "EcgModel",
    "StreamLabelState",
    "load_ecg_model",
]

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
MODEL_NAMES = ("ecg_quality", "ecg_af", "ecg_beats")
AF_SMOOTH_ALPHA = 0.15
QUALITY_SMOOTH_ALPHA = 0.5
#: Beats whose DSP quality score is below this are unreadable whatever the model says.
DSP_SCORE_MIN = 0.2
#: Beats whose window has more than this share of high-frequency energy (the DSP's
#: ``hf_noise``) are unreadable whatever the model says: 0.01 % of the MITDB beats exceed
#: it, the first beat of a muscle-noise burst does (the fixed window's 0.56 s after R lie
#: in the noise while the model, seeing a clean QRS, may still call it readable).
DSP_HF_NOISE_MAX = 0.2
META_FILE = "model.json"
_S = AAMI_CLASSES.index("S")


@dataclass(frozen=True)
class EcgModel:
    """One ONNX model with its metadata (``model.json`` beside ``model.onnx``)."""

    name: str
    session: Any
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def window(self) -> str:
        return str(self.meta.get("window", "rr"))

    def run(self, f: EcgFeatures) -> npt.NDArray[np.float32]:
        """Probabilities for the beats of ``f`` (one call)."""
        names = {i.name for i in self.session.get_inputs()}
        feed = {k: v for k, v in f.as_inputs().items() if k in names}
        out: npt.NDArray[np.float32] = self.session.run(None, feed)[0]
        return out


def load_ecg_model(
    models_dir: Path, name: str, providers: Sequence[str] = ("CPUExecutionProvider",), int8: bool = False,
    threads: int = 1,
) -> EcgModel:
    """Load ``models_dir/name/model.onnx`` (or ``model.int8.onnx``) and its ``model.json``.

    Raises
    ------
    FileNotFoundError
        If the model or its metadata is missing.
    """
    import onnxruntime as ort

    d = models_dir / name
    path = d / ("model.int8.onnx" if int8 else "model.onnx")
    if not path.exists() or not (d / META_FILE).exists():
        raise FileNotFoundError(f"ECG model {name!r} not found in {d} (run `streamdx train ...`)")
    meta = json.loads((d / META_FILE).read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=list(providers))
    return EcgModel(name, sess, meta)


@dataclass
class StreamLabelState:
    """Per-stream state of the labeler: the feature context, the smoothed AF and unreadable probabilities."""

    ctx: EcgContext = field(default_factory=ecg_context_init)
    af_smooth: float = -1.0
    q_smooth: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"ctx": self.ctx.to_dict(), "af_smooth": self.af_smooth, "q_smooth": self.q_smooth}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamLabelState:
        """Raises ``ValueError`` on a malformed state."""
        a = float(d.get("af_smooth", -1.0))
        q = float(d.get("q_smooth", 1.0))
        if not (math.isfinite(a) and a <= 1.0 and math.isfinite(q) and 0.0 <= q <= 1.0):
            raise ValueError("label state: smoothed probability out of range")
        return cls(ctx=EcgContext.from_dict(dict(d.get("ctx", {}))), af_smooth=a, q_smooth=q)


@dataclass(frozen=True)
class BeatLabel:
    """Labels of one beat (``af``/``beat_class`` are None when the beat is unreadable)."""

    quality: str
    quality_prob: float
    af_prob: float
    af: bool | None
    beat_class: str | None
    class_probs: dict[str, float]


@dataclass
class _Pending:
    state: StreamLabelState
    features: EcgFeatures
    dsp_bad: npt.NDArray[np.bool_]


class EcgLabeler:
    """The quality gate, AF and beat-class models applied to beats (see module docstring)."""

    def __init__(self, quality: EcgModel, af: EcgModel, beats: EcgModel) -> None:
        windows = {quality.window, af.window, beats.window}
        if len(windows) != 1:
            raise ValueError(f"the ECG models were trained on different beat windows: {sorted(windows)}")
        self.quality, self.af, self.beats = quality, af, beats
        self.window = windows.pop()

    @classmethod
    def from_dir(
        cls, models_dir: Path, providers: Sequence[str] = ("CPUExecutionProvider",), int8: bool = False,
        threads: int = 1,
    ) -> EcgLabeler:
        """Load the three shipped models from ``models_dir`` (``ecg_quality``, ``ecg_af``, ``ecg_beats``)."""
        q, a, b = (load_ecg_model(models_dir, n, providers, int8, threads) for n in MODEL_NAMES)
        return cls(q, a, b)

    @property
    def versions(self) -> dict[str, str]:
        return {m.name: m.version for m in (self.quality, self.af, self.beats)}

    def label(
        self, state: StreamLabelState, waves: npt.ArrayLike, rr_prev_s: npt.ArrayLike, rr_next_s: npt.ArrayLike,
        quality: npt.ArrayLike, reset: npt.ArrayLike | None = None,
    ) -> tuple[StreamLabelState, list[BeatLabel]]:  # fmt: skip
        """Labels of consecutive beats of one stream (see :func:`ecg_beat_features` for the inputs)."""
        states, labels = self.label_many([(state, waves, rr_prev_s, rr_next_s, quality, reset)])
        return states[0], labels[0]

    def label_many(
        self,
        streams: Sequence[tuple[StreamLabelState, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike,
                                npt.ArrayLike | None]],
    ) -> tuple[list[StreamLabelState], list[list[BeatLabel]]]:  # fmt: skip
        """Labels of the beats of several streams, one model call per model for all of them.

        Each item is ``(state, waves, rr_prev_s, rr_next_s, quality, reset)`` for one
        stream's consecutive beats; returns the new states and the labels, in order.
        """
        ctxs, feats = ecg_beat_features_many([(st.ctx, w, rp, rn, q, rs) for st, w, rp, rn, q, rs in streams])
        pending = []
        for (state, _, _, _, q, reset), ctx, f in zip(streams, ctxs, feats, strict=True):
            qa = np.asarray(q, dtype=np.float64).reshape(-1, 5)
            dsp_bad = (qa[:, 0] > 0) | (qa[:, 1] > 0) | (qa[:, 4] < DSP_SCORE_MIN) | (qa[:, 2] > DSP_HF_NOISE_MAX)
            r = np.zeros(len(f), bool) if reset is None else np.asarray(reset, bool).reshape(-1)
            first_reset = bool(r.size and r[0])
            af0 = -1.0 if first_reset else state.af_smooth
            q0 = 1.0 if first_reset else state.q_smooth
            pending.append(_Pending(StreamLabelState(ctx, af0, q0), f, dsp_bad))
        sizes = [len(p.features) for p in pending]
        if sum(sizes) == 0:
            return [p.state for p in pending], [[] for _ in pending]
        allf = EcgFeatures.concat([p.features for p in pending])
        pq = self.quality.run(allf).reshape(-1)
        pa = self.af.run(allf).reshape(-1)
        pb = self.beats.run(allf).reshape(-1, len(AAMI_CLASSES))
        out_states, out_labels = [], []
        pb_l = pb.astype(np.float64).tolist()
        pos = 0
        qt, at = self.quality.threshold, self.af.threshold
        for p, n, item in zip(pending, sizes, streams, strict=True):
            r = np.zeros(n, bool) if item[5] is None else np.asarray(item[5], bool).reshape(-1)
            smooth = p.state.af_smooth
            qs = p.state.q_smooth
            labels = []
            for i in range(n):
                k = pos + i
                if r[i] and i > 0:
                    smooth, qs = -1.0, 1.0
                qk = 1.0 if p.dsp_bad[i] else float(pq[k])
                qs += QUALITY_SMOOTH_ALPHA * (qk - qs)
                bad = bool(p.dsp_bad[i] or pq[k] > qt or qs > qt)
                raw = float(pa[k])
                if not bad:
                    smooth = raw if smooth < 0 else smooth + AF_SMOOTH_ALPHA * (raw - smooth)
                probs = dict(zip(AAMI_CLASSES, pb_l[k], strict=True))
                if bad:
                    labels.append(BeatLabel("unreadable", float(pq[k]), raw, None, None, probs))
                else:
                    in_af = smooth > at
                    order = np.argsort(-pb[k])
                    j = int(order[1]) if in_af and int(order[0]) == _S else int(order[0])
                    labels.append(BeatLabel("ok", float(pq[k]), smooth, in_af, AAMI_CLASSES[j], probs))
            pos += n
            out_states.append(StreamLabelState(p.state.ctx, smooth, qs))
            out_labels.append(labels)
        return out_states, out_labels
