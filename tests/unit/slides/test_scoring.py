"""Scoring on hand-made tables: matching at IoU 0.5, PR curve, threshold for high recall."""

from __future__ import annotations

import numpy as np
import pytest

from streamdx_inference.slides.scoring import box_iou, choose_threshold, match_slide, operating_point, pr_curve


def test_box_iou_by_hand() -> None:
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]]
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


def test_greedy_matching_by_score() -> None:
    gt = [[0, 0, 100, 100], [200, 0, 300, 100]]
    pred = [[0, 0, 100, 100],      # TP (gt 0)
            [2, 2, 100, 100],      # duplicate of gt 0 → FP
            [200, 0, 300, 100],    # TP (gt 1)
            [500, 500, 600, 600]]  # FP
    scores = [0.9, 0.8, 0.7, 0.95]
    s, tp = match_slide(pred, scores, gt)
    assert s.tolist() == [0.95, 0.9, 0.8, 0.7]
    assert tp.tolist() == [False, True, False, True]


def test_iou_below_half_is_no_match() -> None:
    # IoU of [0,0,100,100] with [0,0,100,49] is 0.49
    _, tp = match_slide([[0, 0, 100, 49]], [0.9], [[0, 0, 100, 100]])
    assert not tp[0]
    _, tp = match_slide([[0, 0, 100, 51]], [0.9], [[0, 0, 100, 100]])
    assert tp[0]


def test_higher_scored_prediction_takes_the_match() -> None:
    gt = [[0, 0, 100, 100]]
    _, tp = match_slide([[10, 10, 100, 100], [0, 0, 100, 100]], [0.6, 0.5], gt)
    assert tp.tolist() == [True, False]


def test_pr_curve_and_operating_point_by_hand() -> None:
    # two slides, 5 glomeruli; pooled sorted scores: .95 T, .9 T, .8 F, .7 T, .6 T, .3 F
    slide1 = (np.array([0.95, 0.8, 0.6]), np.array([True, False, True]))
    slide2 = (np.array([0.9, 0.7, 0.3]), np.array([True, True, False]))
    c = pr_curve([slide1, slide2], n_gt=5)
    assert c.thresholds.tolist() == [0.95, 0.9, 0.8, 0.7, 0.6, 0.3]
    assert c.tp.tolist() == [1, 2, 2, 3, 4, 4]
    assert c.fp.tolist() == [0, 0, 1, 1, 1, 2]
    assert c.precision.tolist() == pytest.approx([1, 1, 2 / 3, 3 / 4, 4 / 5, 4 / 6])
    assert c.recall.tolist() == pytest.approx([0.2, 0.4, 0.4, 0.6, 0.8, 0.8])
    op = operating_point(c, 0.6)
    assert (op["tp"], op["fp"], op["fn"]) == (4, 1, 1)
    assert op["precision"] == pytest.approx(0.8) and op["recall"] == pytest.approx(0.8)
    assert op["f1"] == pytest.approx(0.8)
    # recall 0.95 is out of reach → best F1 overall (0.8 at t = 0.6), flagged
    t, reached = choose_threshold(c, 0.95)
    assert t == 0.6 and not reached
    # recall ≥ 0.6 reachable at 0.7 (F1 .667) and 0.6 (F1 .8) → 0.6
    t, reached = choose_threshold(c, 0.6)
    assert t == 0.6 and reached
    assert operating_point(c, 0.99)["tp"] == 0
    # AP: interpolated precision × recall steps = .4·1 + .2·.8 + .2·.8
    assert c.average_precision() == pytest.approx(0.4 + 0.16 + 0.16)


def test_ties_form_one_threshold() -> None:
    c = pr_curve([(np.array([0.5, 0.5, 0.4]), np.array([True, False, True]))], n_gt=2)
    assert c.thresholds.tolist() == [0.5, 0.4]
    assert c.tp.tolist() == [1, 2] and c.fp.tolist() == [1, 1]


def test_empty_tables() -> None:
    c = pr_curve([], n_gt=3)
    assert len(c.thresholds) == 0 and c.average_precision() == 0.0
    assert choose_threshold(c) == (1.0, False)
    op = operating_point(c, 0.5)
    assert op["recall"] == 0.0 and op["fn"] == 3
    s, tp = match_slide(np.zeros((0, 4)), np.zeros(0), [[0, 0, 1, 1]])
    assert len(s) == 0 and len(tp) == 0
    with pytest.raises(ValueError, match="scores"):
        match_slide([[0, 0, 1, 1]], [0.5, 0.6], [])
