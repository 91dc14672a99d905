"""Whole-slide detection scoring: matching at IoU 0.5, precision / recall / F1, PR curve.

Per slide, predictions are matched greedily by descending score to the unmatched ground-truth
box of highest IoU (≥ ``iou``), as in the PASCAL VOC / COCO protocol: a prediction is a true
positive when it gets a match, a false positive otherwise (including a second box on an
already found object — a duplicate from overlapping tiles costs precision). Because matching
goes by score, the predictions kept at any confidence threshold are a prefix of that order
and their matches stay the same, so one matching per slide gives the whole PR curve.

The operating threshold is chosen for high recall: among the thresholds whose recall is ≥
``target_recall`` the one with the best F1 (recall matters most: a missed glomerulus is a
missed grading); when no threshold reaches the target, the one with the best F1 overall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Curve", "box_iou", "choose_threshold", "match_slide", "operating_point", "pr_curve"]

FloatArray = npt.NDArray[np.float64]


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4) → (n, m); boxes ``x0, y0, x1, y1``."""
    A = np.asarray(a, np.float64).reshape(-1, 4)
    B = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(A[:, None, 2], B[None, :, 2]) - np.maximum(A[:, None, 0], B[None, :, 0])
    ih = np.minimum(A[:, None, 3], B[None, :, 3]) - np.maximum(A[:, None, 1], B[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(A[:, 2] - A[:, 0], 0, None) * np.clip(A[:, 3] - A[:, 1], 0, None)
    area_b = np.clip(B[:, 2] - B[:, 0], 0, None) * np.clip(B[:, 3] - B[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_slide(
    pred_boxes: npt.ArrayLike, pred_scores: npt.ArrayLike, gt_boxes: npt.ArrayLike, *, iou: float = 0.5,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Greedy matching of one slide's predictions to its ground truth.

    Parameters
    ----------
    pred_boxes : array_like, shape (n, 4)
    pred_scores : array_like, shape (n,)
    gt_boxes : array_like, shape (m, 4)
    iou : float
        Minimum IoU of a match.

    Returns
    -------
    scores : ndarray, shape (n,)
        Prediction scores by descending value.
    tp : ndarray of bool, shape (n,)
        Whether each (sorted) prediction matched a ground-truth box.
    """
    pb = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    ps = np.asarray(pred_scores, np.float64).reshape(-1)
    gb = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    if len(pb) != len(ps):
        raise ValueError(f"{len(pb)} boxes but {len(ps)} scores")
    order = np.argsort(-ps, kind="stable")
    pb, ps = pb[order], ps[order]
    tp = np.zeros(len(pb), bool)
    if len(gb) and len(pb):
        ious = box_iou(pb, gb)
        free = np.ones(len(gb), bool)
        for i in range(len(pb)):
            cand = np.where(free, ious[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= iou:
                tp[i] = True
                free[j] = False
    return ps, tp


@dataclass(frozen=True)
class Curve:
    """Precision and recall at every distinct score threshold (descending thresholds)."""

    thresholds: FloatArray
    precision: FloatArray
    recall: FloatArray
    tp: npt.NDArray[np.int64]
    fp: npt.NDArray[np.int64]
    n_gt: int

    @property
    def f1(self) -> FloatArray:
        s = self.precision + self.recall
        return np.where(s > 0, 2 * self.precision * self.recall / np.where(s > 0, s, 1.0), 0.0)

    def average_precision(self) -> float:
        """Area under the interpolated PR curve (all-point, VOC 2010+)."""
        if self.n_gt == 0 or len(self.recall) == 0:
            return 0.0
        r = np.concatenate([[0.0], self.recall, [self.recall[-1]]])
        p = np.concatenate([[1.0], self.precision, [0.0]])
        p = np.maximum.accumulate(p[::-1])[::-1]
        return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def pr_curve(per_slide: Sequence[tuple[FloatArray, npt.NDArray[np.bool_]]], n_gt: int) -> Curve:
    """PR curve pooled over slides from :func:`match_slide` results and the total ground-truth count."""
    if n_gt < 0:
        raise ValueError("n_gt must be ≥ 0")
    scores = np.concatenate([s for s, _ in per_slide]) if per_slide else np.zeros(0)
    tp = np.concatenate([t for _, t in per_slide]) if per_slide else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    ctp = np.cumsum(tp).astype(np.int64)
    cfp = np.cumsum(~tp).astype(np.int64)
    # one point per distinct threshold: the last index of each run of equal scores
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True]) if len(scores) else np.zeros(0, int)
    t, f = ctp[last], cfp[last]
    prec = np.where(t + f > 0, t / np.maximum(t + f, 1), 1.0)
    rec = t / n_gt if n_gt else np.zeros(len(t))
    return Curve(thresholds=scores[last], precision=prec.astype(np.float64), recall=rec.astype(np.float64),
                 tp=t, fp=f, n_gt=n_gt)


def choose_threshold(curve: Curve, target_recall: float = 0.95) -> tuple[float, bool]:
    """Threshold with the best F1 among those reaching ``target_recall``; ``(t, reached)``."""
    if len(curve.thresholds) == 0:
        return 1.0, curve.n_gt == 0
    f1 = curve.f1
    ok = curve.recall >= target_recall - 1e-12
    if ok.any():
        i = int(np.flatnonzero(ok)[np.argmax(f1[ok])])
        return float(curve.thresholds[i]), True
    return float(curve.thresholds[int(np.argmax(f1))]), False


def operating_point(curve: Curve, threshold: float) -> dict[str, float | int]:
    """Precision, recall, F1 and counts keeping predictions with score ≥ ``threshold``."""
    idx = np.flatnonzero(curve.thresholds >= threshold)
    if len(idx) == 0:
        tp = fp = 0
    else:
        tp, fp = int(curve.tp[idx[-1]]), int(curve.fp[idx[-1]])
    fn = curve.n_gt - tp
    p = tp / (tp + fp) if tp + fp else (1.0 if curve.n_gt == 0 else 0.0)
    r = tp / curve.n_gt if curve.n_gt else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "threshold": float(threshold)}
