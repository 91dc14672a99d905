"""Training sets of the ECG models, built with the shared feature function.

Every record's beats go through :func:`~streamdx_inference.ecg.features.ecg_beat_features`
in time order from a fresh context, exactly as the inference worker sees a new stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamdx_dsp.core import BeatWindow
from streamdx_inference.ecg.datasets import RecordBeats
from streamdx_inference.ecg.features import EcgFeatures, ecg_beat_features, ecg_context_init

__all__ = ["AAMI", "BeatSet", "beat_set", "cinc_split", "record_features", "synthetic_rhythm_records"]

AAMI = ("N", "S", "V", "F", "Q")


@dataclass
class BeatSet:
    """Features of many records' beats with their labels and record of origin."""

    features: EcgFeatures
    records: npt.NDArray[np.str_]
    beats: RecordBeats

    def __len__(self) -> int:
        return len(self.features)

    def take(self, mask: npt.NDArray[np.bool_]) -> BeatSet:
        idx = np.flatnonzero(mask)
        b = self.beats
        sub = RecordBeats(
            b.record, b.fs, b.r_sample[idx], b.waves[idx], b.rr_prev_s[idx], b.rr_next_s[idx], b.quality[idx],
            b.beat_class[idx], b.rhythm[idx], b.missed,
        )  # fmt: skip
        return BeatSet(self.features.take(idx), self.records[idx], sub)


def record_features(rb: RecordBeats) -> EcgFeatures:
    """Features of one record's beats from a fresh stream context."""
    _, f = ecg_beat_features(ecg_context_init(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
    return f


def beat_set(recs: Mapping[str, RecordBeats], names: Sequence[str] | None = None) -> BeatSet:
    """Features, labels and record names of the given records (all when ``names`` is None)."""
    keys = list(recs) if names is None else [n for n in names if n in recs]
    parts = [recs[k] for k in keys if len(recs[k])]
    feats = EcgFeatures.concat([record_features(p) for p in parts]) if parts else record_features(
        RecordBeats.concat([]))  # fmt: skip
    names_arr = np.concatenate([np.full(len(p), p.record, dtype="<U16") for p in parts]) if parts else np.zeros(
        0, "<U16")  # fmt: skip
    return BeatSet(feats, names_arr, RecordBeats.concat(parts))


def cinc_split(names: Sequence[str], train_fraction: float = 0.7) -> tuple[list[str], list[str]]:
    """Fixed split of CinC recordings by a hash of the record name (train, held out)."""
    train: list[str] = []
    rest: list[str] = []
    for n in names:
        h = int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (train if h < train_fraction else rest).append(n)
    return train, rest


def synthetic_rhythm_records(window: BeatWindow, n: int = 48, seed: int = 0, seconds: float = 120.0) -> dict[
        str, RecordBeats]:  # fmt: skip
    """Simulated records (:mod:`streamdx_devkit.sim`) with per-beat rhythm truth, for the AF model.

    AF, sinus, ectopy, mixed and bradycardia scenarios at ventricular rates of 50-130
    beats/min: the public databases hold little slow (rate-controlled) AF, which is common
    in ambulatory patients. Rhythm per beat: ``"(AFIB"`` inside a simulated AF tile, else
    ``"(N"``.
    """
    from streamdx_devkit.sim.ecg import ecg_synthesize
    from streamdx_inference.ecg.datasets import beat_arrays, beats_of_signal

    rng = np.random.default_rng(seed)
    scenarios = ("af", "af", "sinus", "ectopy", "mixed", "brady")
    out: dict[str, RecordBeats] = {}
    for i in range(n):
        sc = scenarios[i % len(scenarios)]
        fs = float(rng.choice([250.0, 300.0, 360.0, 500.0]))
        hr = float(rng.uniform(50.0, 130.0))
        syn = ecg_synthesize(seconds, fs, seed=int(rng.integers(1 << 30)), scenario=sc, heart_rate_bpm=hr)
        r, w, rp, rn, q = beat_arrays(beats_of_signal(np.asarray(syn.signal_mv, dtype=np.float64), fs, window))
        rhythm = np.full(r.size, "(N", dtype="<U8")
        for tile in syn.rhythms:
            if tile.label == "AFIB":
                rhythm[(r >= tile.start) & (r < tile.end)] = "(AFIB"
        name = f"syn-{i:03d}"
        out[name] = RecordBeats(name, fs, r, w, rp, rn, q, np.full(r.size, "", "<U1"), rhythm, {})
    return out
