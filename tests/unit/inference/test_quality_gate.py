"""The quality gate with the shipped models: flat line, saturation/clipping, lead-off, noise and
non-ECG input run through the DSP core and the labeler are never labelled normal.

A beat counts as "labelled normal" when it passes the gate (``quality == "ok"``) and gets
``beat_class == "N"`` or ``af is False`` (a confident "normal sinus" statement). Every beat
whose R peak lies inside an artefact episode, and every beat found in a non-ECG signal, must
be ``unreadable`` or at least never labelled normal. A positive control checks that clean
synthetic sinus rhythm does pass the gate, so a gate that rejects everything fails too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from streamdx_devkit.sim import ecg_synthesize
from streamdx_devkit.sim.ecg import Artefact, RhythmSegment, Scenario, named_scenario
from streamdx_dsp.core import DEFAULT_WINDOW, Beat
from streamdx_inference.ecg.datasets import beats_of_signal
from streamdx_inference.ecg.evaluation.quality_eval import NON_ECG, label_signal, non_ecg_signal
from streamdx_inference.ecg.labeler import BeatLabel, EcgLabeler
from streamdx_inference.settings import default_models_dir

DURATION_S = 120.0


@pytest.fixture(scope="module")
def labeler() -> EcgLabeler:
    return EcgLabeler.from_dir(default_models_dir())


def labelled_normal(lab: BeatLabel) -> bool:
    return lab.quality == "ok" and (lab.beat_class == "N" or lab.af is False)


def spans_of(artefacts: Sequence[Artefact], fs: float, kinds: Sequence[str]) -> list[tuple[int, int]]:
    return [(round(a.start_s * fs), round(a.end_s * fs)) for a in artefacts if a.kind in kinds]


def offenders(beats: Sequence[Beat], labels: Sequence[BeatLabel], spans: Sequence[tuple[int, int]]) -> list[str]:
    out = []
    for b, lab in zip(beats, labels, strict=True):
        if any(s <= b.r_sample < e for s, e in spans) and labelled_normal(lab):
            out.append(f"R {b.r_sample}: quality {lab.quality} ({lab.quality_prob:.2f}) class {lab.beat_class} "
                       f"af {lab.af}")  # fmt: skip
    return out


ARTEFACT_KINDS = ("flat", "saturation", "leadoff", "noise")


@pytest.mark.parametrize(("name", "fs", "seed"), [("flat", 250.0, 1), ("leadoff", 360.0, 2), ("noisy", 250.0, 3),
                                                   ("noisy", 500.0, 4)])  # fmt: skip
def test_named_artefact_scenarios_are_never_labelled_normal(
    labeler: EcgLabeler, name: str, fs: float, seed: int
) -> None:
    ecg = ecg_synthesize(DURATION_S, fs, seed=seed, scenario=name)
    beats, labels = label_signal(labeler, ecg.signal_mv, fs)
    spans = spans_of(named_scenario(name, DURATION_S).artefacts, fs, ARTEFACT_KINDS)
    assert spans and beats
    bad = offenders(beats, labels, spans)
    assert not bad, f"{name}: {len(bad)} beats inside artefacts labelled normal: {bad[:5]}"


@pytest.mark.parametrize("kind", ARTEFACT_KINDS)
@pytest.mark.parametrize("fs", [250.0, 360.0])
def test_each_artefact_kind_is_never_labelled_normal(labeler: EcgLabeler, kind: str, fs: float) -> None:
    """Sinus rhythm with three 12-s episodes of one artefact kind (strong, for noise)."""
    amp = 1.0 if kind == "noise" else None
    arts = tuple(Artefact(kind, s, s + 12.0, amp) for s in (20.0, 55.0, 90.0))  # type: ignore[arg-type]
    scen = Scenario(f"{kind}-episodes", (RhythmSegment("sinus", 0, DURATION_S, 70.0),), arts)
    ecg = ecg_synthesize(DURATION_S, fs, seed=7, scenario=scen)
    beats, labels = label_signal(labeler, ecg.signal_mv, fs)
    bad = offenders(beats, labels, spans_of(arts, fs, (kind,)))
    assert not bad, f"{kind}: {len(bad)} beats inside the episodes labelled normal: {bad[:5]}"
    # outside the episodes (2 s margin) the same record is readable: the gate is not blanket
    margin = round(2.0 * fs)
    wide = [(s - margin, e + margin) for s, e in spans_of(arts, fs, (kind,))]
    clean = [lab for b, lab in zip(beats, labels, strict=True) if not any(s <= b.r_sample < e for s, e in wide)]
    assert len(clean) > 40 and np.mean([lab.quality == "ok" for lab in clean]) >= 0.8


@pytest.mark.parametrize("kind", NON_ECG)
def test_non_ecg_signals_are_never_labelled_normal(labeler: EcgLabeler, kind: str) -> None:
    fs = 250.0
    beats, labels = label_signal(labeler, non_ecg_signal(kind, fs, np.random.default_rng(5), DURATION_S), fs)
    bad = [f"R {b.r_sample}: {lab}" for b, lab in zip(beats, labels, strict=True) if labelled_normal(lab)]
    assert not bad, f"{kind}: {len(bad)} of {len(beats)} beats labelled normal: {bad[:3]}"


def test_non_ecg_signals_do_reach_the_gate() -> None:
    """The property above is not vacuous: the DSP core finds 'beats' in periodic non-ECG input."""
    fs = 250.0
    rng = np.random.default_rng(5)
    kinds = ("sine-7hz", "square-1.2hz", "sawtooth-1hz")
    found = {k: len(beats_of_signal(non_ecg_signal(k, fs, rng, DURATION_S), fs, DEFAULT_WINDOW)) for k in kinds}
    assert all(n >= 20 for n in found.values()), found


def test_clean_sinus_passes_the_gate_and_is_mostly_normal(labeler: EcgLabeler) -> None:
    """Positive control: a gate that rejected everything would pass the tests above."""
    fs = 360.0
    ecg = ecg_synthesize(DURATION_S, fs, seed=12, scenario="sinus")
    _, labels = label_signal(labeler, ecg.signal_mv, fs)
    settled = labels[10:]  # after the running context has filled
    assert len(settled) > 100
    ok = [lab for lab in settled if lab.quality == "ok"]
    assert len(ok) >= 0.9 * len(settled)
    assert np.mean([lab.beat_class == "N" for lab in ok]) >= 0.9
    assert np.mean([lab.af is False for lab in ok]) >= 0.9
