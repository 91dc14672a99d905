"""EC57 (epicmp) episode comparison: hand-made reference/test tables with known Se and +P."""

from __future__ import annotations

import math

import pytest

from streamdx_alerts.evaluation.episodes import (
    EpisodeCounts,
    average_scores,
    compare_episodes,
    covered_s,
    gross_scores,
    rhythm_episodes,
    scores,
)


def test_perfect_detection() -> None:
    ref = [(400.0, 500.0), (600.0, 700.0)]
    c = compare_episodes(ref, ref, end_s=1800.0)
    assert (c.tp_se, c.fn, c.tp_ppv, c.fp) == (2, 0, 2, 0)
    assert c.episode_se == c.episode_ppv == c.duration_se == c.duration_ppv == 100.0


def test_known_table() -> None:
    # reference: A 400-500, B 600-700, C 900-960; test: 450-650 (spans A and B), 1000-1100 (false)
    ref = [(400.0, 500.0), (600.0, 700.0), (900.0, 960.0)]
    test = [(450.0, 650.0), (1000.0, 1100.0)]
    c = compare_episodes(ref, test, end_s=1800.0)
    assert (c.tp_se, c.fn) == (2, 1)  # A and B overlapped, C missed
    assert (c.tp_ppv, c.fp) == (1, 1)
    assert c.ref_s == 260.0 and c.ref_overlap_s == 100.0  # 50 s of A + 50 s of B
    assert c.test_s == 300.0 and c.test_overlap_s == 100.0
    assert c.episode_se == pytest.approx(200 / 3)
    assert c.episode_ppv == 50.0
    assert c.duration_se == pytest.approx(100 / 2.6)
    assert c.duration_ppv == pytest.approx(100 / 3)


def test_touching_episodes_do_not_overlap() -> None:
    c = compare_episodes([(400.0, 500.0)], [(500.0, 560.0)], end_s=1800.0)
    assert (c.tp_se, c.fn, c.tp_ppv, c.fp) == (0, 1, 0, 1)
    assert c.ref_overlap_s == c.test_overlap_s == 0.0


def test_tiny_overlap_is_a_match() -> None:
    c = compare_episodes([(400.0, 500.0)], [(499.9, 560.0)], end_s=1800.0)
    assert (c.tp_se, c.fn, c.tp_ppv, c.fp) == (1, 0, 1, 0)
    assert c.duration_se == pytest.approx(0.1)


def test_learning_period_and_record_end() -> None:
    # ends before 5:00: ignored on both sides; starts before: clipped; past the end: clipped
    ref = [(0.0, 200.0), (250.0, 400.0), (1700.0, 2000.0)]
    test = [(100.0, 150.0), (280.0, 350.0), (1750.0, 1800.0)]
    c = compare_episodes(ref, test, start_s=300.0, end_s=1800.0)
    assert (c.tp_se, c.fn, c.tp_ppv, c.fp) == (2, 0, 2, 0)
    assert c.ref_s == 100.0 + 100.0  # 300-400 and 1700-1800
    assert c.test_s == 50.0 + 50.0  # 300-350 and 1750-1800
    assert c.ref_overlap_s == c.test_overlap_s == 100.0


def test_episode_ending_exactly_at_start_is_dropped() -> None:
    c = compare_episodes([(100.0, 300.0)], [], start_s=300.0, end_s=1800.0)
    assert c == EpisodeCounts()


def test_episode_after_end_is_ignored() -> None:
    c = compare_episodes([(1900.0, 2000.0)], [(1850.0, 1950.0)], start_s=300.0, end_s=1800.0)
    assert c == EpisodeCounts()


def test_minimum_length_drops_short_episodes_from_their_own_pass_only() -> None:
    ref = [(400.0, 410.0), (600.0, 700.0)]  # a 10-s episode and a 100-s one
    test = [(395.0, 450.0), (800.0, 820.0)]  # overlaps the short one; a 20-s false one
    c = compare_episodes(ref, test, end_s=1800.0, min_s=30.0)
    assert (c.tp_se, c.fn) == (0, 1)  # only the 100-s reference counts, and it is missed
    assert c.ref_s == 100.0
    # the 55-s test episode counts and still matches the short reference (-i); the 20-s one is left out
    assert (c.tp_ppv, c.fp) == (1, 0)
    assert c.test_s == 55.0 and c.test_overlap_s == 10.0
    strict = compare_episodes(ref, test, end_s=1800.0, min_s=30.0, min_s_overlap=True)  # -I
    assert (strict.tp_ppv, strict.fp) == (0, 1)
    assert strict.test_overlap_s == 0.0


def test_minimum_applies_after_clipping() -> None:
    c = compare_episodes([(250.0, 320.0)], [(250.0, 320.0)], start_s=300.0, end_s=1800.0, min_s=30.0)
    assert c == EpisodeCounts()


def test_afl_exclusion_trims_test_episodes_in_the_ppv_pass_only() -> None:
    ref = [(400.0, 500.0)]
    afl = [(500.0, 600.0), (700.0, 720.0), (900.0, 1000.0)]
    test = [(450.0, 650.0), (690.0, 730.0), (920.0, 980.0)]
    c = compare_episodes(ref, test, end_s=1800.0, exclude=afl)
    assert (c.tp_se, c.fn) == (1, 0)
    # flutter 500-600 lies inside 450-650 and 700-720 inside 690-730: only their durations shrink;
    # 920-980 lies wholly inside flutter and is ignored
    assert (c.tp_ppv, c.fp) == (1, 1)
    assert c.test_s == pytest.approx((200.0 - 100.0) + (40.0 - 20.0))
    without = compare_episodes(ref, test, end_s=1800.0)
    assert (without.tp_ppv, without.fp) == (1, 2)  # EC57 default: detections in flutter are false


def test_exclusion_at_the_episode_start_shortens_it() -> None:
    c = compare_episodes([(440.0, 460.0)], [(400.0, 500.0)], end_s=1800.0, exclude=[(380.0, 450.0)])
    assert c.test_s == 50.0  # 450-500 left (epicmp's code would add the excluded time here)
    assert c.test_overlap_s == 10.0


def test_rhythm_episodes_from_annotations() -> None:
    notes = [(0.0, "(N"), (100.0, "(AFIB"), (150.0, "(AFIB"), (200.0, "(N"), (300.0, "(AFL"), (320.0, "(AFIB"),
             (400.0, "(B"), (410.0, "(AFIB")]  # fmt: skip
    assert rhythm_episodes(notes, 1800.0) == [(100.0, 200.0), (320.0, 400.0), (410.0, 1800.0)]
    assert rhythm_episodes(notes, 1800.0, prefix="(AFL") == [(300.0, 320.0)]
    assert rhythm_episodes([], 1800.0) == []


def test_covered_time() -> None:
    assert covered_s([(0.0, 100.0), (200.0, 400.0)], 50.0, 300.0) == 150.0


def test_gross_pools_and_average_skips_undefined() -> None:
    a = EpisodeCounts(tp_se=1, fn=1, tp_ppv=1, fp=0, ref_s=100.0, ref_overlap_s=50.0, test_s=50.0, test_overlap_s=50.0)
    b = EpisodeCounts(tp_se=0, fn=0, tp_ppv=0, fp=2, ref_s=0.0, ref_overlap_s=0.0, test_s=60.0, test_overlap_s=0.0)
    g = gross_scores([a, b])
    assert g["episode"]["se"] == 50.0 and g["episode"]["ppv"] == pytest.approx(100 / 3)
    assert g["duration"]["se"] == 50.0 and g["duration"]["ppv"] == pytest.approx(50 / 1.1)
    avg = average_scores([a, b])
    assert avg["episode"]["se"] == 50.0 and avg["episode"]["n_se"] == 1  # b has no reference episode
    assert avg["episode"]["ppv"] == 50.0 and avg["episode"]["n_ppv"] == 2
    assert avg["duration"]["ppv"] == 50.0
    s = scores(EpisodeCounts())
    assert math.isnan(s["episode"]["se"]) and math.isnan(s["duration"]["ppv"])
