"""What the evaluation page shows of a finished run: tables and a confusion matrix read from the
JSON report the ``streamdx eval`` command wrote (nothing is recomputed here).

Each protocol's report has its own layout (see the eval modules); :func:`report_view` maps it to
:class:`ReportView` — metric tables (accuracy, precision/+P, recall/Se, F1 as the report has
them), a confusion matrix with rows = reference and columns = predicted (counts, shaded by the
row's share), and the headline figure the past-runs list shows (:func:`headline`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Confusion", "ReportView", "Table", "headline", "report_view"]


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Cell:
    count: int | None
    share: float | None  # of the row total, 0..1

    @property
    def text(self) -> str:
        return "—" if self.count is None else f"{self.count:,}".replace(",", " ")


@dataclass
class Confusion:
    """Rows = reference, columns = predicted; ``extra_cols`` are shown after a divider (e.g. missed)."""

    title: str
    rows: list[str]
    cols: list[str]
    counts: list[list[int | None]]
    extra_cols: int = 0
    note: str = ""

    def cells(self) -> list[tuple[str, list[Cell], int]]:
        """Per row: its label, its cells (count and share of the row total) and the row total."""
        out = []
        for label, row in zip(self.rows, self.counts, strict=True):
            total = sum(c for c in row if c is not None)
            out.append((label, [Cell(c, (c / total if total else 0.0) if c is not None else None) for c in row],
                        total))
        return out


@dataclass
class ReportView:
    headline: dict[str, Any] | None
    tables: list[Table] = field(default_factory=list)
    confusion: Confusion | None = None
    protocol: list[tuple[str, str]] = field(default_factory=list)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return None if math.isnan(x) else float(x)


def frac(x: Any) -> str:
    v = _num(x)
    return "—" if v is None else f"{v:.3f}"


def pct(x: Any) -> str:
    v = _num(x)
    return "—" if v is None else f"{v:.2f}"


def count(x: Any) -> str:
    v = _num(x)
    return "—" if v is None else f"{int(v):,}".replace(",", " ")


def _ints(m: Any) -> list[list[int | None]]:
    return [[int(c) if _num(c) is not None else None for c in row] for row in m]


def _protocol_lines(p: Any) -> list[tuple[str, str]]:
    if not isinstance(p, dict):
        return []
    out = []
    for k, v in p.items():
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, dict):
            v = "; ".join(f"{a}: {b}" for a, b in v.items())
        out.append((str(k).replace("_", " "), str(v)))
    return out


_BINARY_HEADERS = ["", "n", "accuracy", "precision (+P)", "recall (Se)", "F1", "kappa", "ROC AUC"]


def _binary_row(name: str, b: dict[str, Any]) -> list[str]:
    return [name, count(b.get("n")), frac(b.get("accuracy")), frac(b.get("precision")), frac(b.get("recall")),
            frac(b.get("f1")), frac(b.get("kappa")), frac(b.get("roc_auc"))]


def headline(protocol: str, r: dict[str, Any]) -> dict[str, Any] | None:
    """The figure the past-runs list shows: ``{"label", "value", "text"}`` or None."""
    try:
        if protocol == "rpeaks":
            v, label, text = r["gross"]["f1"], "gross F1", pct(r["gross"]["f1"]) + " %"
        elif protocol == "beats":
            v, label = r["binary"]["f1"], "F1, N vs abnormal"
            text = frac(v)
        elif protocol == "af":
            v, label, text = r["binary"]["f1"], "AF F1 per beat", frac(r["binary"]["f1"])
        elif protocol == "cinc2017":
            v, label, text = r["challenge_f1"], "challenge F1", frac(r["challenge_f1"])
        else:
            return None
    except (KeyError, TypeError):
        return None
    return {"label": label, "value": _num(v), "text": text}


def report_view(protocol: str, r: dict[str, Any]) -> ReportView:
    """The tables and the confusion matrix of one report (raises KeyError/TypeError when malformed)."""
    view = ReportView(headline(protocol, r), protocol=_protocol_lines(r.get("protocol")))
    if protocol == "rpeaks":
        _rpeaks(view, r)
    elif protocol == "beats":
        _beats(view, r)
    elif protocol == "af":
        _af(view, r)
    elif protocol == "cinc2017":
        _cinc(view, r)
    return view


def _rpeaks(view: ReportView, r: dict[str, Any]) -> None:
    heads = ["", "TP", "FN", "FP", "Se %", "+P %", "F1 %"]

    def row(name: str, s: dict[str, Any]) -> list[str]:
        return [name, count(s.get("tp")), count(s.get("fn")), count(s.get("fp")), pct(s.get("se")),
                pct(s.get("ppv")), pct(s.get("f1"))]

    start = _num((r.get("protocol") or {}).get("scored_from_s"))
    scored = f"from {start / 60:g} min" if start is not None else "scored interval"
    g, a = r["gross"], r["average"]
    rows = [row(f"gross ({scored})", g), ["average of records", "", "", "", pct(a["se"]), pct(a["ppv"]), pct(a["f1"])]]
    if "full_record" in r:
        rows.append(row("gross, whole records", r["full_record"]["gross"]))
    if "vf_excluded" in r:
        rows.append(row("gross, VF/VFL excluded", r["vf_excluded"]["gross"]))
    view.tables.append(Table("R-peak detection", heads, rows,
                             f"matching window {r.get('window_ms', 150):g} ms; Se = recall, +P = precision"))
    view.tables.append(Table("Per record", ["record", *heads[1:]],
                             [row(n, s) for n, s in sorted(r["records"].items())]))
    view.confusion = Confusion(
        "Beat detection (scored interval)", ["beat", "no beat"], ["detected", "not detected"],
        [[int(g["tp"]), int(g["fn"])], [int(g["fp"]), None]],
        note="A detector has no true negatives: the lower right cell is empty.")


def _beats(view: ReportView, r: dict[str, Any]) -> None:
    classes = r["classes"]
    served = "classifier_classes" in r  # the labels as the service serves them (eval beats --protocol ds1ds2)
    view.tables.append(Table(
        "Per class (AAMI)", ["class", "Se % (recall)", "+P % (precision)", "TP", "FN", "FP"],
        [[c, pct(v.get("se")), pct(v.get("ppv")), count(v.get("tp")), count(v.get("fn")), count(v.get("fp"))]
         for c, v in classes.items()],
        "Beats the detector missed count as false negatives of their class"
        + (", and so do beats the quality gate left unreadable (labels as the service serves them)."
           if served else ".")))
    if served:
        view.tables.append(Table(
            "Classifier alone (no quality gate, S possible inside AF)", ["class", "Se % (recall)", "+P % (precision)"],
            [[c, pct(v.get("se")), pct(v.get("ppv"))] for c, v in r["classifier_classes"].items()]))
    if "binary" in r:
        view.tables.append(Table("N vs abnormal (S, V, F, Q)", _BINARY_HEADERS, [_binary_row("beats", r["binary"])],
                                 "The classifier's, on every annotated beat the detector found (readable or not)."
                                 if served else ""))
    missed = r.get("missed_by_detector") or {}
    rows = list(r["confusion_rows"])
    counts = _ints(r["confusion"])
    extra = 0
    if missed:
        extra = 1
        counts = [[*row, (int(missed.get(label, 0)) if label in classes else None)]
                  for label, row in zip(rows, counts, strict=True)]
    view.confusion = Confusion(
        "Beat classes", rows, [*r["confusion_cols"], *(["missed"] if missed else [])], counts, extra,
        "“none”: detections matching no annotated beat; “missed”: annotated beats the detector did not find"
        + ("; “unreadable”: beats the quality gate left without a class (labels as the service serves them)."
           if served else "."))


def _af(view: ReportView, r: dict[str, Any]) -> None:
    b = r["binary"]
    view.tables.append(Table("AF per beat (pooled)", _BINARY_HEADERS, [_binary_row("AF vs non-AF", b)]))
    errs = r.get("errors_in") or {}
    if errs:
        view.tables.append(Table("Errors inside other annotated rhythms", ["", *errs.keys(), "all errors"],
                                 [["beats", *(count(v) for v in errs.values()), count(r.get("errors_total"))]]))
    recs = [[n, count(v.get("af_beats")), frac(v.get("recall")), frac(v.get("precision")), frac(v.get("f1"))]
            for n, v in sorted(r.get("records", {}).items())
            if v.get("af_beats") or (v.get("confusion") and v["confusion"][0][1])]
    if recs:
        view.tables.append(Table("Records with AF or false AF", ["record", "AF beats", "Se", "+P", "F1"], recs))
    (tn, fp), (fn, tp) = b["confusion"]
    view.confusion = Confusion("AF per beat", ["non-AF", "AF"], ["non-AF", "AF"],
                               [[int(tn), int(fp)], [int(fn), int(tp)]])


def _cinc(view: ReportView, r: dict[str, Any]) -> None:
    af = r.get("af_binary") or {}
    view.tables.append(Table("AF, recording level (A vs rest)", _BINARY_HEADERS, [_binary_row("recordings", af)],
                             f"{count(r.get('n_records'))} recordings scored; "
                             f"{count(r.get('excluded_training_records'))} the AF model was trained on left out"))
    f1 = r.get("f1") or {}
    view.tables.append(Table("F1 per class", ["", *f1.keys(), "challenge F1 (mean of N, A, O)"],
                             [["F1", *(frac(v) for v in f1.values()), frac(r.get("challenge_f1"))]]))
    c = r["confusion"]
    view.confusion = Confusion("Rhythm class", list(c["rows_reference"]), list(c["cols_predicted"]),
                               _ints(c["matrix"]), note="N normal, A AF, O other rhythm, ~ too noisy")
