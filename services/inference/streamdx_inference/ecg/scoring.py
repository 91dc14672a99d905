"""Scores of the ECG evaluations: per-class Se/+P, binary tables, printing.

Conventions (ANSI/AAMI EC57 style, see DESIGN): Se = TP / (TP + FN), +P = TP / (TP + FP),
in percent where a table says so; binary metrics are the seeds' table (accuracy,
precision, recall, F1, Cohen's kappa, ROC AUC, confusion matrix).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EC57_FP_EXEMPT", "binary_report", "class_report", "format_table", "safe_div"]

#: Reference classes whose beats do not count as false positives of a predicted class in the
#: AAMI gross statistics (ANSI/AAMI EC57; as computed by WFDB's ``bxb``: VEB FP = Nv + Sv +
#: Ov + Xv, SVEB FP = Ns + Vs + Fs + Os + Xs): a fusion (F) or unclassifiable (Q) beat
#: called V, and a Q beat called S, are not errors of V or S. They still count against the
#: sensitivity of their own class.
EC57_FP_EXEMPT: Mapping[str, tuple[str, ...]] = {"V": ("F", "Q"), "S": ("Q",)}


def safe_div(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is 0 (reported as null in JSON)."""
    return a / b if b else math.nan


def _roc_auc(y: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN with one class only."""
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(s.size)
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    return float((r[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def binary_report(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, score: npt.ArrayLike | None = None) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, Cohen's kappa, ROC AUC and the confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array_like of bool
        Reference and decision (positive = True).
    score : array_like of float, optional
        Continuous score for the ROC AUC (NaN without it).

    Returns
    -------
    dict
        ``accuracy, precision, recall, f1, kappa, roc_auc`` (fractions, NaN when
        undefined) and ``confusion`` ``[[TN, FP], [FN, TP]]`` plus ``n``.
    """
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    tp = int(np.sum(t & p))
    tn = int(np.sum(~t & ~p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    n = tp + tn + fp + fn
    acc = safe_div(tp + tn, n)
    prec = safe_div(tp, tp + fp)
    rec = safe_div(tp, tp + fn)
    f1 = safe_div(2 * tp, 2 * tp + fp + fn)
    pe = safe_div((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp), n * n) if n else math.nan
    kappa = safe_div(acc - pe, 1.0 - pe) if n and pe != 1.0 else math.nan
    auc = _roc_auc(t, np.asarray(score, dtype=np.float64)) if score is not None else math.nan
    return {"n": n, "accuracy": acc, "precision": prec, "recall": rec, "f1": f1, "kappa": kappa, "roc_auc": auc,
            "confusion": [[tn, fp], [fn, tp]]}  # fmt: skip


def class_report(
    y_true: Sequence[str] | npt.NDArray[np.str_], y_pred: Sequence[str] | npt.NDArray[np.str_],
    classes: Sequence[str], missed: Mapping[str, int] | None = None,
    fp_exempt: Mapping[str, Sequence[str]] | None = None, extra_cols: Sequence[str] = (),
) -> dict[str, Any]:
    """Per-class Se and +P (percent) and the confusion matrix of a multi-class labelling.

    Parameters
    ----------
    y_true, y_pred : sequence of str
        Reference and predicted class per item; a reference not in ``classes`` (e.g. ``""``
        for a detection matching no annotated beat) is counted against +P of the predicted
        class only.
    classes : sequence of str
        Class names, in table order.
    missed : mapping, optional
        Reference items per class that never reached the classifier (beats the detector
        missed): counted as false negatives.
    fp_exempt : mapping, optional
        Per predicted class, reference classes not counted as its false positives
        (:data:`EC57_FP_EXEMPT` for the AAMI convention); default: every other class counts.
    extra_cols : sequence of str, optional
        Predicted labels that are not classes (e.g. ``"unreadable"``: no class given) but get a
        confusion column of their own, after the classes; an item so labelled is a false
        negative of its class.

    Returns
    -------
    dict
        ``{"classes": {c: {"se", "ppv", "tp", "fn", "fp"}}, "confusion": rows = reference
        (classes + "missed"/"none"), columns = predicted, "labels": [...]}``.
    """
    t = np.asarray(y_true, dtype=str)
    p = np.asarray(y_pred, dtype=str)
    missed = dict(missed or {})
    out: dict[str, Any] = {}
    for c in classes:
        tp = int(np.sum((t == c) & (p == c)))
        fn = int(np.sum((t == c) & (p != c))) + int(missed.get(c, 0))
        fp = int(np.sum((t != c) & (p == c) & ~np.isin(t, list((fp_exempt or {}).get(c, ())))))
        out[c] = {"se": 100.0 * safe_div(tp, tp + fn), "ppv": 100.0 * safe_div(tp, tp + fp), "tp": tp, "fn": fn,
                  "fp": fp}  # fmt: skip
    rows = [*classes, "none"]
    cols = [*classes, *extra_cols]
    conf = []
    for rc in rows:
        mask = (t == rc) if rc != "none" else ~np.isin(t, list(classes))
        conf.append([int(np.sum(mask & (p == pc))) for pc in cols])
    return {"classes": out, "confusion": conf, "confusion_rows": rows, "confusion_cols": cols,
            "missed_by_detector": missed}  # fmt: skip


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}" if abs(v) <= 1.0 else f"{v:.2f}"
    return str(v)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (floats ≤ 1 with 3 decimals, others with 2)."""
    cells = [[str(h) for h in header], *[[_fmt(v) for v in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
