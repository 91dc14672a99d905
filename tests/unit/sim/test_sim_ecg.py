"""Synthetic ECG generator: ground truth consistency, rhythm statistics, artefacts, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdx_devkit.sim.ecg import (
    OVERLAY_LABELS,
    SCENARIO_NAMES,
    TILE_LABELS,
    Artefact,
    NoiseSpec,
    RhythmSegment,
    Scenario,
    SyntheticEcg,
    aami_class,
    adc_to_mv,
    ecg_synthesize,
    mv_to_adc,
)
from streamdx_devkit.sim.ecg_morphology import render_fwaves

FS_VALUES = (125.0, 128.0, 250.0, 360.0, 500.0, 1000.0)


def _rr(ecg: SyntheticEcg, symbols: str = "NAV") -> np.ndarray:
    """RR intervals (s) between consecutive annotated beats whose symbols are both in ``symbols``."""
    r = ecg.r_samples
    keep = np.array([a in symbols and b in symbols for a, b in itertools.pairwise(ecg.beat_symbols)])
    rr = np.diff(r) / ecg.fs
    return rr[keep] if keep.size else rr


def _tiles(ecg: SyntheticEcg) -> list[tuple[int, int, str]]:
    return [(r.start, r.end, r.label) for r in ecg.rhythms if not r.overlay]


def _spans(ecg: SyntheticEcg, label: str) -> list[tuple[int, int]]:
    return [(r.start, r.end) for r in ecg.rhythms if r.label == label]


def _inside(r: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    out = np.zeros(r.size, dtype=bool)
    for s, e in spans:
        out |= (r >= s) & (r < e)
    return out


# --------------------------------------------------------------------- R-peak truth


@pytest.mark.parametrize("fs", FS_VALUES)
@pytest.mark.parametrize("scenario", ["sinus", "af", "ectopy", "vt", "tachy"])
def test_r_peak_is_the_local_max_of_abs_qrs(fs: float, scenario: str) -> None:
    ecg = ecg_synthesize(40.0, fs, seed=11, scenario=scenario, noise=NoiseSpec.none())
    x = np.abs(ecg.signal_mv)
    w = round(0.05 * fs)  # ±50 ms neighbourhood
    assert ecg.r_samples.size > 20
    for r in ecg.r_samples:
        lo, hi = max(0, r - w), min(x.size, r + w + 1)
        peak = lo + int(np.argmax(x[lo:hi]))
        assert abs(peak - r) <= 1, (scenario, fs, r, peak)


@pytest.mark.parametrize("fs", FS_VALUES)
def test_all_fs_values_give_consistent_beat_times(fs: float) -> None:
    """Beat timing does not depend on fs: R times agree with a 1 kHz rendering within 1 sample."""
    ref = ecg_synthesize(30.0, 1000.0, seed=5, scenario="mixed")
    ecg = ecg_synthesize(30.0, fs, seed=5, scenario="mixed")
    assert ecg.signal_mv.shape == (round(30.0 * fs),)
    assert ecg.signal_mv.dtype == np.float64
    assert ecg.r_samples.size == ref.r_samples.size
    assert ecg.beat_symbols == ref.beat_symbols
    assert np.max(np.abs(ecg.r_samples / fs - ref.r_samples / 1000.0)) <= 1.0 / fs + 1e-3


def test_annotations_shape_and_order() -> None:
    ecg = ecg_synthesize(60.0, 250.0, seed=3, scenario="mixed")
    assert ecg.r_samples.dtype == np.int64
    assert len(ecg.beat_symbols) == ecg.r_samples.size == len(ecg.beat_aami)
    assert np.all(np.diff(ecg.r_samples) > 0)
    assert ecg.r_samples.min() >= 0 and ecg.r_samples.max() < ecg.n_samples
    assert set(ecg.beat_symbols) <= {"N", "A", "V"}
    assert all(aami_class(s) == a for s, a in zip(ecg.beat_symbols, ecg.beat_aami, strict=True))
    assert not ecg.signal_mv.flags.writeable and not ecg.r_samples.flags.writeable


# --------------------------------------------------------------------- rhythm statistics


def test_sinus_rr_is_regular_with_hrv_and_the_set_rate() -> None:
    ecg = ecg_synthesize(300.0, 250.0, seed=1, scenario="sinus", heart_rate_bpm=70)
    rr = _rr(ecg)
    cv = rr.std() / rr.mean()
    assert 0.01 < cv < 0.08, cv  # HRV present but small
    assert 60.0 / rr.mean() == pytest.approx(70.0, rel=0.05)
    assert set(ecg.beat_symbols) == {"N"}
    # respiratory sinus arrhythmia: RR spectrum has power in the 0.15-0.4 Hz band
    assert np.abs(np.diff(rr)).mean() < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_af_rr_is_irregularly_irregular(seed: int) -> None:
    ecg = ecg_synthesize(120.0, 250.0, seed=seed, scenario="af", heart_rate_bpm=90)
    rr = _rr(ecg)
    assert rr.std() / rr.mean() > 0.15
    # successive differences are large (no regular pattern) and uncorrelated
    assert np.sqrt(np.mean(np.diff(rr) ** 2)) / rr.mean() > 0.2
    assert abs(np.corrcoef(rr[:-1], rr[1:])[0, 1]) < 0.3
    assert rr.min() >= 0.27
    assert _tiles(ecg) == [(0, ecg.n_samples, "AFIB")]


def test_fwaves_are_4_to_9_hz_and_small() -> None:
    fs = 250.0
    n = round(60 * fs)
    f = render_fwaves(n, fs, [(round(10 * fs), round(50 * fs))], np.random.default_rng(0))
    assert np.all(f[: round(10 * fs)] == 0) and np.all(f[round(50 * fs) :] == 0)
    seg = f[round(11 * fs) : round(49 * fs)]
    freqs = np.fft.rfftfreq(seg.size, 1 / fs)
    p = np.abs(np.fft.rfft(seg)) ** 2
    assert 4.0 <= freqs[np.argmax(p)] <= 9.0
    assert p[(freqs >= 4) & (freqs <= 9)].sum() > 0.85 * p.sum()
    assert 0.01 < np.abs(seg).max() < 0.15


def test_af_has_no_p_waves() -> None:
    clean = NoiseSpec.none()
    af = ecg_synthesize(60.0, 500.0, seed=4, scenario="af", noise=clean)
    sr = ecg_synthesize(60.0, 500.0, seed=4, scenario="sinus", noise=clean)
    fs = sr.fs

    def p_height(ecg: SyntheticEcg) -> float:
        """Median height of the largest hump 220-100 ms before R above the value at 220 ms."""
        lo, hi = round(0.22 * fs), round(0.10 * fs)
        x = ecg.signal_mv
        return float(np.median([x[r - lo : r - hi].max() - x[r - lo] for r in ecg.r_samples[2:-2]]))

    assert p_height(sr) > 0.07
    assert p_height(af) < 0.7 * p_height(sr)


def test_mixed_has_sinus_af_sinus_and_ectopy() -> None:
    ecg = ecg_synthesize(300.0, 250.0, seed=7, scenario="mixed")
    labels = [lab for _, _, lab in _tiles(ecg)]
    assert labels == ["N", "AFIB", "N"]
    ((af_s, af_e),) = _spans(ecg, "AFIB")
    assert (af_e - af_s) / ecg.fs >= 30.0  # an EC57 AF episode
    in_af = _inside(ecg.r_samples, [(af_s, af_e)])
    assert {"V", "A"} <= set(np.array(ecg.beat_symbols)[~in_af])
    rr_af = np.diff(ecg.r_samples[in_af]) / ecg.fs
    n_only = np.array([s == "N" for s in ecg.beat_symbols])
    first = ecg.r_samples[~in_af & n_only & (ecg.r_samples < af_s)]
    rr_sr = np.diff(first) / ecg.fs
    rr_sr = rr_sr[rr_sr < 1.5 * np.median(rr_sr)]  # drop compensatory pauses
    assert rr_af.std() / rr_af.mean() > 0.15 > rr_sr.std() / rr_sr.mean()


def test_pvc_is_premature_wide_large_with_compensatory_pause() -> None:
    ecg = ecg_synthesize(600.0, 360.0, seed=2, scenario="ectopy", noise=NoiseSpec.none())
    sym = np.array(ecg.beat_symbols)
    r = ecg.r_samples
    x = ecg.signal_mv
    v = np.flatnonzero(sym == "V")
    v = v[(v >= 2) & (v < sym.size - 2)]
    v = v[(sym[v - 1] == "N") & (sym[v + 1] == "N") & (sym[v - 2] == "N")]
    assert v.size >= 10
    normal_rr = np.median(np.diff(r)[(sym[:-1] == "N") & (sym[1:] == "N")])
    coupling = (r[v] - r[v - 1]) / normal_rr
    assert np.all(coupling < 0.8)  # premature
    comp = (r[v + 1] - r[v - 1]) / normal_rr
    assert np.median(comp) == pytest.approx(2.0, abs=0.15)  # full compensatory pause
    # larger and wider than a normal beat

    def width(i: int) -> int:
        peak = abs(x[r[i]])
        lo, hi = r[i], r[i]
        while lo > 0 and abs(x[lo]) > peak / 2:
            lo -= 1
        while hi < x.size - 1 and abs(x[hi]) > peak / 2:
            hi += 1
        return hi - lo

    n_idx = np.flatnonzero(sym == "N")[5:25]
    assert np.median(np.abs(x[r[v]])) > 1.2 * np.median(np.abs(x[r[n_idx]]))
    assert np.median([width(i) for i in v]) > 2.0 * np.median([width(i) for i in n_idx])
    assert {ecg.beat_aami[i] for i in v} == {"V"}


def test_pac_is_premature_non_compensatory_with_abnormal_p() -> None:
    ecg = ecg_synthesize(600.0, 360.0, seed=2, scenario="ectopy", noise=NoiseSpec.none())
    sym = np.array(ecg.beat_symbols)
    r = ecg.r_samples
    a = np.flatnonzero(sym == "A")
    a = a[(a >= 2) & (a < sym.size - 2)]
    a = a[(sym[a - 1] == "N") & (sym[a + 1] == "N")]
    assert a.size >= 10
    normal_rr = np.median(np.diff(r)[(sym[:-1] == "N") & (sym[1:] == "N")])
    assert np.all((r[a] - r[a - 1]) / normal_rr < 0.85)
    assert np.median((r[a + 1] - r[a - 1]) / normal_rr) < 1.95  # sinus reset, not compensatory
    # the P wave before a PAC is inverted: the minimum 80-160 ms before R is below the baseline
    fs = ecg.fs
    dip = [ecg.signal_mv[ri - round(0.16 * fs) : ri - round(0.08 * fs)].min() for ri in r[a]]
    assert np.median(dip) < -0.03
    assert {ecg.beat_aami[i] for i in a} == {"S"}


@pytest.mark.parametrize(("scenario", "label", "lo", "hi"), [("brady", "BRADY", 35, 45), ("tachy", "TACHY", 130, 150)])
def test_brady_and_tachy_segments(scenario: str, label: str, lo: float, hi: float) -> None:
    ecg = ecg_synthesize(240.0, 250.0, seed=8, scenario=scenario)
    assert [t[2] for t in _tiles(ecg)] == ["N", label, "N"]
    ((s, e),) = _spans(ecg, label)
    r = ecg.r_samples[(ecg.r_samples >= s) & (ecg.r_samples < e)]
    hr = 60.0 * ecg.fs / np.mean(np.diff(r))
    assert lo <= hr <= hi


def test_vt_run() -> None:
    ecg = ecg_synthesize(120.0, 250.0, seed=9, scenario="vt")
    ((s, e),) = _spans(ecg, "VT")
    inside = _inside(ecg.r_samples, [(s, e)])
    sym = np.array(ecg.beat_symbols)
    assert inside.sum() >= 3 and set(sym[inside]) == {"V"}
    hr = 60.0 * ecg.fs / np.mean(np.diff(ecg.r_samples[inside]))
    assert 150 <= hr <= 190
    assert sym[np.flatnonzero(inside)[0] - 1] == "N"  # the run starts from sinus


def test_pause_intervals_span_long_rr_without_beats() -> None:
    ecg = ecg_synthesize(90.0, 250.0, seed=10, scenario="pause")
    pauses = _spans(ecg, "PAUSE")
    assert len(pauses) == 2
    r = ecg.r_samples
    for s, e in pauses:
        assert s in r and e in r  # from the R before to the R after
        assert not np.any((r > s) & (r < e))
        assert (e - s) / ecg.fs >= 3.0
    rr = np.diff(r) / ecg.fs
    assert np.sum(rr >= 3.0) == 2
    assert np.sort(rr)[-3] < 1.5


# --------------------------------------------------------------------- artefacts


@pytest.mark.parametrize("scenario", ["flat", "leadoff"])
def test_no_beats_in_flat_or_leadoff(scenario: str) -> None:
    ecg = ecg_synthesize(120.0, 250.0, seed=12, scenario=scenario)
    flats = _spans(ecg, "FLAT")
    assert flats
    q = round(0.06 * ecg.fs)
    for s, e in flats:
        seg = ecg.signal_mv[s:e]
        assert np.ptp(seg) == 0.0  # exactly flat (0 mV, or pinned at the rail for lead-off)
        assert not np.any((ecg.r_samples + q >= s) & (ecg.r_samples - q < e))
    if scenario == "flat":
        assert all(np.all(ecg.signal_mv[s:e] == 0.0) for s, e in flats)
    else:
        assert all(np.all(ecg.signal_mv[s:e] == 5.0) for s, e in flats)
        assert _spans(ecg, "NOISE")  # recovery transients are marked
    # beats resume after the episode
    assert np.any(ecg.r_samples > flats[-1][1])


def test_saturation_and_noise_bursts_are_marked_and_clipped_beats_dropped() -> None:
    ecg = ecg_synthesize(120.0, 360.0, seed=13, scenario="noisy")
    noisy = _spans(ecg, "NOISE")
    assert len(noisy) >= 3
    x = ecg.signal_mv
    assert np.abs(x).max() == pytest.approx(5.0)  # saturation hits the rail
    rail = np.flatnonzero(np.abs(x) >= 5.0)
    assert _inside(rail, noisy).all()
    q = round(0.06 * ecg.fs)
    for r in ecg.r_samples:
        assert np.abs(x[max(0, r - q) : r + q + 1]).max() < 5.0
    # the heart keeps beating under noise bursts: most beats are annotated
    assert ecg.r_samples.size > 0.9 * 120 * 70 / 60


def test_rhythm_tiles_cover_the_record_without_overlap() -> None:
    for scenario in SCENARIO_NAMES:
        ecg = ecg_synthesize(90.0, 250.0, seed=21, scenario=scenario)
        tiles = _tiles(ecg)
        assert tiles[0][0] == 0 and tiles[-1][1] == ecg.n_samples, scenario
        assert all(a[1] == b[0] for a, b in itertools.pairwise(tiles)), scenario
        assert all(s < e for s, e, _ in tiles)
        assert all(a[2] != b[2] for a, b in itertools.pairwise(tiles))  # merged
        assert {t[2] for t in tiles} <= set(TILE_LABELS)
        assert {r.label for r in ecg.rhythms if r.overlay} <= set(OVERLAY_LABELS)
        starts = [r.start for r in ecg.rhythms]
        assert starts == sorted(starts)


def test_powerline_and_emg_are_in_band() -> None:
    fs = 500.0
    clean = ecg_synthesize(30.0, fs, seed=14, noise=NoiseSpec.none())
    pl = ecg_synthesize(30.0, fs, seed=14, noise=NoiseSpec(0, 0, 0, powerline_mv=0.1, powerline_hz=60.0))
    d = pl.signal_mv - clean.signal_mv
    f = np.fft.rfftfreq(d.size, 1 / fs)
    p = np.abs(np.fft.rfft(d)) ** 2
    assert f[np.argmax(p)] == pytest.approx(60.0, abs=0.1)
    emg = ecg_synthesize(30.0, fs, seed=14, noise=NoiseSpec(0, emg_mv=0.1, white_mv=0))
    d = emg.signal_mv - clean.signal_mv
    assert np.sqrt(np.mean(d**2)) == pytest.approx(0.1, rel=0.3)
    p = np.abs(np.fft.rfft(d)) ** 2
    assert p[f < 10].sum() < 0.05 * p.sum()
    bw = ecg_synthesize(60.0, fs, seed=14, noise=NoiseSpec(baseline_wander_mv=0.3, emg_mv=0, white_mv=0))
    d = bw.signal_mv - ecg_synthesize(60.0, fs, seed=14, noise=NoiseSpec.none()).signal_mv
    f = np.fft.rfftfreq(d.size, 1 / fs)
    p = np.abs(np.fft.rfft(d)) ** 2
    assert p[(f >= 0.09) & (f <= 0.55)].sum() > 0.95 * p.sum()
    assert np.abs(d).max() <= 0.3 + 1e-9


# --------------------------------------------------------------------- amplitude, ADC, determinism


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_amplitude_range_is_physiological(scenario: str) -> None:
    ecg = ecg_synthesize(60.0, 250.0, seed=15, scenario=scenario)
    x = ecg.signal_mv
    assert np.all(np.isfinite(x))
    assert np.abs(x).max() <= 5.0
    if scenario not in ("noisy", "leadoff", "flat"):
        peaks = np.abs(x[ecg.r_samples])
        assert 0.5 < np.median(peaks) < 3.0
        assert x.max() - x.min() < 6.0


def test_deterministic_with_seed() -> None:
    a = ecg_synthesize(30.0, 250.0, seed=42, scenario="mixed")
    b = ecg_synthesize(30.0, 250.0, seed=42, scenario="mixed")
    c = ecg_synthesize(30.0, 250.0, seed=43, scenario="mixed")
    assert np.array_equal(a.signal_mv, b.signal_mv)
    assert np.array_equal(a.r_samples, b.r_samples)
    assert a.beat_symbols == b.beat_symbols and a.rhythms == b.rhythms
    assert not np.array_equal(a.signal_mv, c.signal_mv)


def test_noise_does_not_change_the_beats() -> None:
    a = ecg_synthesize(30.0, 250.0, seed=42, noise=NoiseSpec.none())
    b = ecg_synthesize(30.0, 250.0, seed=42, noise=NoiseSpec(0.3, 0.05, 0.01, 0.05))
    assert np.array_equal(a.r_samples, b.r_samples)


def test_adc_round_trip() -> None:
    ecg = ecg_synthesize(10.0, 250.0, seed=1)
    adc = ecg.to_adc(gain=200.0, baseline=1024)
    assert adc.dtype == np.int16
    back = adc_to_mv(adc, gain=200.0, baseline=1024)
    assert np.max(np.abs(back - ecg.signal_mv)) <= 0.5 / 200.0 + 1e-12
    assert mv_to_adc([1000.0, -1000.0], gain=200.0).tolist() == [32767, -32768]
    with pytest.raises(ValueError):
        mv_to_adc([0.0], gain=0.0)


def test_custom_scenario_and_validation() -> None:
    scen = Scenario(
        "custom",
        segments=(RhythmSegment("sinus", 0, 10, 60), RhythmSegment("af", 10, 40, 110)),
        artefacts=(Artefact("flat", 20, 22),),
    )
    ecg = ecg_synthesize(50.0, 250.0, seed=1, scenario=scen, heart_rate_bpm=80)
    assert [t[2] for t in _tiles(ecg)] == ["N", "AFIB", "FLAT", "AFIB", "N"]
    assert ecg.scenario == "custom"
    with pytest.raises(ValueError):
        ecg_synthesize(10.0, 100.0, seed=1)
    with pytest.raises(ValueError):
        ecg_synthesize(10.0, 250.0, seed=1, scenario="nope")
    with pytest.raises(ValueError):
        RhythmSegment("sinus", 5, 5)
    with pytest.raises(ValueError):
        Scenario("x", segments=(RhythmSegment("sinus", 0, 10), RhythmSegment("af", 5, 20)))
    with pytest.raises(ValueError):
        NoiseSpec(emg_mv=-1)


def test_truth_dict_is_json_ready() -> None:
    import json

    ecg = ecg_synthesize(20.0, 250.0, seed=1, scenario="pause")
    d = json.loads(json.dumps(ecg.truth_dict()))
    assert d["r_samples"] == ecg.r_samples.tolist()
    assert d["symbols"] == list(ecg.beat_symbols)
    assert {r["label"] for r in d["rhythms"]} >= {"N", "PAUSE"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    duration=st.floats(1.0, 40.0),
    fs=st.floats(125.0, 1000.0),
    hr=st.floats(30.0, 200.0),
    scenario=st.sampled_from(SCENARIO_NAMES),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_any_arguments_give_consistent_truth(
    duration: float, fs: float, hr: float, scenario: str, seed: int
) -> None:
    ecg = ecg_synthesize(duration, fs, seed=seed, scenario=scenario, heart_rate_bpm=hr)
    n = ecg.n_samples
    assert n == round(duration * fs)
    assert np.all(np.isfinite(ecg.signal_mv)) and np.abs(ecg.signal_mv).max() <= 5.0
    r = ecg.r_samples
    assert np.all(np.diff(r) > 0) and (r.size == 0 or (r[0] >= 0 and r[-1] < n))
    tiles = _tiles(ecg)
    assert tiles[0][0] == 0 and tiles[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(tiles))
    assert not _inside(r, _spans(ecg, "FLAT")).any()


@pytest.mark.parametrize("fs", [250.0, 360.0])
def test_asystole_is_six_seconds_without_qrs_on_a_noisy_baseline(fs: float) -> None:
    ecg = ecg_synthesize(60.0, fs, seed=3, scenario="asystole")
    pauses = _spans(ecg, "PAUSE")
    assert len(pauses) == 1
    s, e = pauses[0]
    # the PAUSE tile runs from the last R before to the first R after the QRS-free 6 s
    assert s in ecg.r_samples and e in ecg.r_samples
    assert 6.0 <= (e - s) / fs <= 6.0 + 60.0 / 70.0 * 1.2
    assert not _inside(ecg.r_samples, [(s + 1, e)]).any()
    assert 30.0 * fs - 1.2 * fs <= s <= 30.0 * fs
    # sinus before and after; the baseline keeps its noise: no run of identical ADC samples >= 0.1 s
    assert [t[2] for t in _tiles(ecg)] == ["N", "PAUSE", "N"]
    adc = ecg.to_adc()[s + round(0.5 * fs) : e - round(0.1 * fs)]
    change = np.flatnonzero(np.diff(adc) != 0)
    assert np.diff(change).max() < 0.1 * fs
    # no P or T waves inside: the baseline stays small
    assert np.ptp(ecg.signal_mv[s + round(0.6 * fs) : e - round(0.3 * fs)]) < 0.5
