"""Decision rules of the labeler, with stand-in model sessions (pure unit test)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamdx_inference.ecg import labeler as labeler_module
from streamdx_inference.ecg.labeler import EcgLabeler, EcgModel, StreamLabelState


class _Input:
    def __init__(self, name: str) -> None:
        self.name = name


class _Session:
    """Returns a fixed probability row for every beat (reads only ``wave``)."""

    def __init__(self, row: list[float]) -> None:
        self.row = np.asarray(row, np.float32)
        self.calls: list[int] = []

    def get_inputs(self) -> list[_Input]:
        return [_Input("wave")]

    def run(self, _: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = feed["wave"].shape[0]
        self.calls.append(n)
        out = np.tile(self.row, (n, 1))
        return [out[:, 0] if self.row.size == 1 else out]


def _labeler(p_unreadable: float, p_af: float, classes: list[float], **beats_meta: Any) -> EcgLabeler:
    meta = {"version": "t", "threshold": 0.5, "window": "rr"}
    return EcgLabeler(
        EcgModel("ecg_quality", _Session([p_unreadable]), {**meta, "threshold": 0.2}),
        EcgModel("ecg_af", _Session([p_af]), meta),
        EcgModel("ecg_beats", _Session(classes), {**meta, **beats_meta}),
    )


def _beats(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = np.linspace(-1, 2, 300)
    w = np.tile(np.exp(-((t / 0.03) ** 2)).astype(np.float32), (n, 1))
    q = np.tile(np.array([0, 0, 0.01, 0.1, 0.95], np.float32), (n, 1))
    return w, np.full(n, 0.8), np.full(n, 0.8), q


def test_no_s_beats_in_af_and_no_labels_when_unreadable() -> None:
    probs = [0.3, 0.6, 0.05, 0.03, 0.02]  # S most probable, then N
    _, in_af = _labeler(0.0, 0.9, probs).label(StreamLabelState(), *_beats(12))
    ok = [lab for lab in in_af if lab.quality == "ok"]
    assert ok and all(lab.af and lab.beat_class == "N" for lab in ok)
    _, sinus = _labeler(0.0, 0.1, probs).label(StreamLabelState(), *_beats(12))
    assert all(lab.beat_class == "S" and lab.af is False for lab in sinus if lab.quality == "ok")
    _, bad = _labeler(0.9, 0.1, probs).label(StreamLabelState(), *_beats(12))
    assert all(lab.quality == "unreadable" and lab.af is None and lab.beat_class is None for lab in bad)


def test_a_new_stream_warms_up_unreadable_then_clears() -> None:
    _, labels = _labeler(0.0, 0.1, [0.9, 0.05, 0.03, 0.01, 0.01]).label(StreamLabelState(), *_beats(12))
    q = [lab.quality for lab in labels]
    assert q[0] == "unreadable" and q[-1] == "ok" and q.index("ok") <= 4


def test_the_sveb_rule_of_the_beat_model_makes_early_normal_beats_s() -> None:
    """With ``sveb_rule`` in the beat model's metadata, an early beat with the stream's usual QRS
    is S although the network says N; the same beat in AF is N."""
    w, rp, rn, q = _beats(16)
    rp[12] = 0.45  # 45 % early
    normal = [0.9, 0.05, 0.03, 0.01, 0.01]
    rule = {"log_rr_max": -0.175, "qrs_dev_max": 0.3}
    _, labels = _labeler(0.0, 0.1, normal, sveb_rule=rule).label(StreamLabelState(), w, rp, rn, q)
    assert [lab.beat_class for lab in labels[8:]] == ["N"] * 4 + ["S"] + ["N"] * 3
    _, no_rule = _labeler(0.0, 0.1, normal).label(StreamLabelState(), w, rp, rn, q)
    assert all(lab.beat_class == "N" for lab in no_rule[8:])
    _, in_af = _labeler(0.0, 0.9, normal, sveb_rule=rule).label(StreamLabelState(), w, rp, rn, q)
    assert all(lab.beat_class == "N" for lab in in_af[8:])


def test_a_malformed_sveb_rule_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="sveb_rule"):
        _labeler(0.0, 0.1, [0.9, 0.05, 0.03, 0.01, 0.01], sveb_rule={"log_rr_max": -0.2})


def test_large_batches_run_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labeler_module, "RUN_CHUNK", 5)
    lab = _labeler(0.0, 0.1, [0.9, 0.05, 0.03, 0.01, 0.01])
    _, labels = lab.label(StreamLabelState(), *_beats(12))
    sess = lab.beats.session
    assert isinstance(sess, _Session) and sess.calls == [5, 5, 2]
    assert len(labels) == 12 and labels[-1].beat_class == "N" and labels[-1].class_probs["N"] == pytest.approx(0.9)


def test_labels_of_several_streams_keep_their_order_types_and_states() -> None:
    lab = _labeler(0.0, 0.9, [0.3, 0.6, 0.05, 0.03, 0.02])
    w, rp, rn, q = _beats(10)
    q_bad = q.copy()
    q_bad[:, 0] = 1  # flat: the DSP's rule makes every beat unreadable
    streams = [(StreamLabelState(), w[:7], rp[:7], rn[:7], q[:7], None), (StreamLabelState(), w[:0], rp[:0], rn[:0],
               q[:0], None), (StreamLabelState(), w[:3], rp[:3], rn[:3], q_bad[:3], None)]  # fmt: skip
    states, labels = lab.label_many(streams)
    assert [len(x) for x in labels] == [7, 0, 3]
    for lb in labels[0] + labels[2]:
        assert lb.quality in ("ok", "unreadable") and type(lb.quality_prob) is float and type(lb.af_prob) is float
        if lb.quality == "ok":
            assert type(lb.af) is bool and lb.beat_class in ("N", "S", "V", "F", "Q")
        else:
            assert lb.af is None and lb.beat_class is None
    assert any(lb.quality == "ok" and lb.af and lb.beat_class == "N" for lb in labels[0])
    assert all(lb.quality == "unreadable" for lb in labels[2])
    assert states[0].af_smooth > 0.5 and states[1].af_smooth == -1.0 and states[2].q_smooth == 1.0
    # carried on: the same labels as one call over all ten beats of the first stream
    st, first = lab.label(StreamLabelState(), w[:7], rp[:7], rn[:7], q[:7])
    st, rest = lab.label(st, w[7:], rp[7:], rn[7:], q[7:])
    _, whole = lab.label(StreamLabelState(), w, rp, rn, q)
    assert first + rest == whole
