"""The console's view of an ``eval beats --protocol ds1ds2`` report: labels as served (an
``unreadable`` column and the classifier alone beside them) or the classifier alone."""

from __future__ import annotations

import json
from typing import Any

from streamdx_web.eval_report import report_view

_CLASSES = ("N", "S", "V", "F", "Q")


def _report(served: bool) -> dict[str, Any]:
    cols = [*_CLASSES, *(["unreadable"] if served else [])]
    conf = [[10 + i + j for j in range(len(cols))] for i in range(6)]
    r: dict[str, Any] = {
        "classes": {c: {"se": 90.0, "ppv": 80.0, "tp": 9, "fn": 1, "fp": 2} for c in _CLASSES},
        "confusion": conf, "confusion_rows": [*_CLASSES, "none"], "confusion_cols": cols,
        "missed_by_detector": {"V": 3},
        "binary": {"n": 100, "accuracy": 0.9, "precision": 0.8, "recall": 0.7, "f1": 0.75, "kappa": 0.7,
                   "roc_auc": None},
        "protocol": {"name": "ds1ds2", "labels": "as served" if served else "classifier"},
    }
    if served:
        r["classifier_classes"] = {c: {"se": 97.5, "ppv": None} for c in _CLASSES}
    return json.loads(json.dumps(r))  # as read back from the file


def test_served_labels_show_the_unreadable_column_and_the_classifier_alone() -> None:
    view = report_view("beats", _report(served=True))
    assert view.confusion is not None
    assert view.confusion.cols == [*_CLASSES, "unreadable", "missed"]
    assert view.confusion.counts[0][5] == 15 and view.confusion.counts[2][6] == 3  # unreadable N; missed V
    assert "“unreadable”" in view.confusion.note
    titles = [t.title for t in view.tables]
    alone = view.tables[titles.index("Classifier alone (no quality gate, S possible inside AF)")]
    assert alone.rows[2] == ["V", "97.50", "—"]
    assert "quality gate left unreadable" in view.tables[0].note
    assert "classifier's" in view.tables[titles.index("N vs abnormal (S, V, F, Q)")].note
    assert ("labels", "as served") in view.protocol


def test_classifier_labels_have_no_unreadable_column() -> None:
    view = report_view("beats", _report(served=False))
    assert view.confusion is not None and view.confusion.cols == [*_CLASSES, "missed"]
    assert "unreadable" not in view.confusion.note
    assert all("Classifier alone" not in t.title for t in view.tables)

