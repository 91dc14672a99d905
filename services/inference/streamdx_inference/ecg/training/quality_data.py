"""Beats for the quality gate: readable ECG versus noise, artefacts and non-ECG input.

Unreadable examples (label 1):

- CinC 2017 recordings labelled ``~`` (too noisy to classify);
- MITDB records with NSTDB muscle (``ma``) or electrode-motion/baseline (``bw``) noise
  added over the whole record at SNR ≤ ``UNREADABLE_SNR_DB`` (nst's SNR definition);
- synthetic ECG (:mod:`streamdx_devkit.sim`) inside flat-line, lead-off, saturation and strong
  EMG artefact episodes;
- non-ECG signals: white and band-limited noise, sine and square waves, random walks.

Readable examples (label 0): CinC ``N``/``A``/``O`` beats, MITDB beats, the same MITDB
records with noise at SNR ≥ ``READABLE_SNR_DB``, and synthetic beats outside artefacts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from streamdx_devkit.sim.ecg import ecg_synthesize
from streamdx_devkit.sim.ecg_noise import Artefact
from streamdx_devkit.sim.ecg_scenarios import Scenario, named_scenario
from streamdx_dsp.core import BeatWindow
from streamdx_dsp.evaluation.noise import nst_gain, nst_noise_rms, nst_signal_amplitude, read_nst_noise
from streamdx_dsp.evaluation.records import read_annotations, read_ecg
from streamdx_inference.ecg.datasets import RecordBeats, beat_arrays, beats_of_signal
from streamdx_inference.ecg.features import EcgFeatures
from streamdx_inference.ecg.training.data import record_features

__all__ = [
    "ARTEFACT_RECORDS",
    "NON_ECG_ROUNDS",
    "READABLE_SNR_DB",
    "UNREADABLE_SNR_DB",
    "non_ecg_signals",
    "quality_set",
    "record_with_nst_noise",
]

UNREADABLE_SNR_DB = (-6.0, -3.0)
READABLE_SNR_DB = (12.0, 18.0)


def _beats(x: npt.NDArray[np.float64], fs: float, window: BeatWindow, name: str) -> RecordBeats:
    r, w, rp, rn, q = beat_arrays(beats_of_signal(x, fs, window))
    return RecordBeats(name, fs, r, w, rp, rn, q, np.full(r.size, "", "<U1"), np.full(r.size, "", "<U8"), {})


def record_with_nst_noise(data_dir: Path, noise_dir: Path, name: str, kind: str, snr_db: float) -> tuple[
        npt.NDArray[np.float64], float]:  # fmt: skip
    """Record ``name`` of ``data_dir`` with NSTDB noise ``kind`` added at ``snr_db`` (nst's SNR definition)."""
    x, fs = read_ecg(data_dir, name)
    ann = read_annotations(data_dir, name, "atr", x.size)
    z = read_nst_noise(noise_dir, kind, fs, x.size)
    g = nst_gain(snr_db, nst_signal_amplitude(x, fs, np.asarray(ann.sample), list(ann.symbol)), nst_noise_rms(z, fs))
    return x + g * z, fs


def non_ecg_signals(rng: np.random.Generator, fs: float, seconds: float) -> list[npt.NDArray[np.float64]]:
    """One signal of each non-ECG family (mV), with random rate, amplitude and shape.

    Families: sine, square, sawtooth/triangle, sum of sines, chirp, white and band-limited
    noise, noise bursts, random walk, powerline hum.
    """
    n = round(seconds * fs)
    t = np.arange(n) / fs
    amp = float(rng.uniform(0.2, 2.0))
    f = float(np.exp(rng.uniform(np.log(0.3), np.log(12.0))))
    phase = float(rng.uniform(0, 2 * np.pi))
    saw = (t * f + phase) % 1.0
    gate_f = float(rng.uniform(0.3, 3.0))
    return [
        amp * np.sin(2 * np.pi * f * t + phase),
        amp * np.sign(np.sin(2 * np.pi * min(f, 5.0) * t + phase)),
        amp * (2.0 * saw - 1.0) if rng.random() < 0.5 else amp * (2.0 * np.abs(2.0 * saw - 1.0) - 1.0),
        cast(npt.NDArray[np.float64], sum(
            float(rng.uniform(0.1, 1.0)) * np.sin(2 * np.pi * float(rng.uniform(0.3, 15.0)) * t + float(k))
            for k in range(3))),
        amp * np.sin(2 * np.pi * (0.3 + (f / seconds) * t) * t),
        rng.normal(0, amp * 0.5, n),
        np.convolve(rng.normal(0, amp, n), np.ones(int(rng.integers(3, 15))) / 5.0, mode="same"),
        amp * rng.standard_normal(n) * (np.sin(2 * np.pi * gate_f * t + phase) > float(rng.uniform(-0.5, 0.5))),
        np.cumsum(rng.standard_normal(n)) * float(np.exp(rng.uniform(np.log(0.003), np.log(0.05)))),
        amp * np.sin(2 * np.pi * float(rng.choice([50.0, 60.0])) * t) + rng.normal(0, 0.05, n),
    ]


_Labelled = tuple[RecordBeats, npt.NDArray[np.int64]]
#: Signals of each non-ECG family in the training set (60 s each). With 16, 1.7-3.6 % of the beats
#: the DSP found in random walks of other seeds passed the gate as readable ECG.
NON_ECG_ROUNDS = 96
#: Simulated 90-s records with artefact episodes (flat, lead-off, saturation, noise). With 24, beats in
#: the first half second of a noise episode passed the gate as readable.
ARTEFACT_RECORDS = 64


def _artefact_records(rng: np.random.Generator, window: BeatWindow, n: int) -> list[_Labelled]:
    out = []
    kinds = ("flat", "leadoff", "saturation", "noise")
    for i in range(n):
        fs = float(rng.choice([250.0, 300.0, 360.0, 500.0]))
        dur = 90.0
        base = named_scenario(str(rng.choice(["sinus", "af", "ectopy"])), dur)
        arts = []
        t = 10.0
        while t < dur - 15:
            k = kinds[int(rng.integers(len(kinds)))]
            length = float(rng.uniform(5.0, 15.0))
            amp = float(rng.uniform(0.5, 1.5)) if k == "noise" else None
            arts.append(Artefact(k, t, t + length, amp))  # type: ignore[arg-type]
            t += length + float(rng.uniform(8.0, 15.0))
        sc = Scenario(base.name, base.segments, tuple(arts), pvc_per_min=base.pvc_per_min,
                      pac_per_min=base.pac_per_min)  # fmt: skip
        syn = ecg_synthesize(dur, fs, seed=int(rng.integers(1 << 30)), scenario=sc)
        rb = _beats(np.asarray(syn.signal_mv, dtype=np.float64), fs, window, f"synthetic-{i}")
        y = np.zeros(len(rb), np.int64)
        for a in arts:
            lo, hi = (a.start_s - 0.3) * fs, (a.end_s + 0.3) * fs
            y[(rb.r_sample >= lo) & (rb.r_sample < hi)] = 1
        out.append((rb, y))
    return out


def quality_set(
    mitdb_dir: Path, noise_dir: Path | None, mitdb_names: Sequence[str], cinc: Mapping[str, RecordBeats],
    window: BeatWindow, seed: int = 0, max_clean: int = 40_000,
) -> tuple[EcgFeatures, npt.NDArray[np.int64], npt.NDArray[np.str_]]:  # fmt: skip
    """Features, labels (1 = unreadable) and source group of the quality-gate training beats."""
    rng = np.random.default_rng(seed)
    feats: list[EcgFeatures] = []
    ys: list[npt.NDArray[np.int64]] = []
    groups: list[npt.NDArray[np.str_]] = []

    def add(rb: RecordBeats, y: npt.NDArray[np.int64], group: str, keep: int | None = None) -> None:
        if not len(rb):
            return
        f = record_features(rb)
        idx = np.arange(len(rb))
        if keep is not None and idx.size > keep:
            idx = np.sort(rng.choice(idx.size, keep, replace=False))
        feats.append(f.take(idx))
        ys.append(y[idx])
        groups.append(np.full(idx.size, group, "<U16"))

    per_rec = max(1, max_clean // max(1, len(cinc)))
    for rb in cinc.values():
        lab = rb.rhythm[0] if len(rb) else ""
        add(rb, np.full(len(rb), int(lab == "~"), np.int64), "cinc", None if lab == "~" else per_rec)
    for name in mitdb_names:
        x, fs = read_ecg(mitdb_dir, name)
        rb = _beats(x, fs, window, name)
        add(rb, np.zeros(len(rb), np.int64), "mitdb", max_clean // max(1, len(mitdb_names)))
        if noise_dir is not None:
            for kind in ("ma", "bw"):
                for snr in (*UNREADABLE_SNR_DB, *READABLE_SNR_DB):
                    xn, _ = record_with_nst_noise(mitdb_dir, noise_dir, name, kind, snr)
                    rbn = _beats(xn, fs, window, f"{name}-{kind}{snr:g}")
                    add(rbn, np.full(len(rbn), int(snr <= 0), np.int64), f"nst-{kind}", 400)
    for rb, y in _artefact_records(rng, window, ARTEFACT_RECORDS):
        add(rb, y, "synthetic")
    for i in range(NON_ECG_ROUNDS):
        fs = float(rng.choice([250.0, 300.0, 360.0, 500.0]))
        for j, x in enumerate(non_ecg_signals(rng, fs, 60.0)):
            rb = _beats(x, fs, window, f"nonecg-{i}-{j}")
            add(rb, np.ones(len(rb), np.int64), "non-ecg")
    return EcgFeatures.concat(feats), np.concatenate(ys), np.concatenate(groups)
