"""Single-beat CSVs in the Kaggle heartbeat layout: parsing, classification with
``models/ecg_kaggle_beats``, the stored result and its metrics.

The layout is the published Kaggle MIT-BIH heartbeat files': no header, one beat per row, 187
values at 125 Hz from the R peak, min–max scaled to [0, 1], zero-padded, and optionally a 188th
column with the reference class 0..4 = N, S, V, F, Q. :func:`parse_kaggle_csv` refuses a file
whose rows are not all that (wrong length, non-numeric, outside [0, 1], label not 0..4) with
a message naming the rows. Classes and probabilities come from
:class:`streamdx_inference.ecg.kaggle_classifier.KaggleBeatClassifier` (onnxruntime); nothing
here classifies. With labels the result carries the seed's evaluation view: accuracy, per-class
precision / recall / F1 with their macro averages, N-vs-abnormal figures and the confusion matrix
(rows = reference, columns = predicted).

A result lives in ``{web_runs_dir}/kaggle/{id}/`` (``beats.npy``, ``probs.npy``, ``labels.npy``
when labelled, ``summary.json``); the newest :data:`KEEP` are kept. Neither the file name nor
anything about a patient is stored.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.json_values import json_safe
from streamdx_inference.ecg.kaggle_classifier import BEAT_LEN, CLASSES, KaggleBeatClassifier, check_beats
from streamdx_inference.ecg.scoring import binary_report
from streamdx_web.eval_report import Confusion, Table, count, frac

__all__ = [
    "CLASSES",
    "FILTERS",
    "KEEP",
    "MAX_ROWS",
    "Arrays",
    "KaggleCsv",
    "KaggleCsvError",
    "beat_json",
    "classify_and_store",
    "kaggle_candidate",
    "load_arrays",
    "load_summary",
    "metrics",
    "metrics_view",
    "model_info",
    "parse_kaggle_csv",
    "predictions_csv",
    "predictions_json",
    "recent_results",
    "row_page",
]

#: Largest number of beats classified per upload.
MAX_ROWS = 200_000
#: Results kept on disk (the oldest are removed).
KEEP = 30
#: Bad rows named in a refusal.
_SHOWN = 5
_SLACK = 1e-6
_LOCK = threading.Lock()


class KaggleCsvError(ValueError):
    """The CSV is not a valid Kaggle-layout file (the message says which rows and why)."""


@dataclass
class KaggleCsv:
    beats: npt.NDArray[np.float32]  # (n, 187)
    labels: npt.NDArray[np.int64] | None  # (n,) 0..4 or None


def _first_line(data: bytes) -> str:
    return data[:65536].decode("utf-8", "replace").lstrip("\ufeff").lstrip().split("\n", 1)[0]


def _fields(line: str) -> list[str]:  # first row only
    line = line.strip().replace(";", ",").replace("\t", ",")
    if line.endswith(","):
        line = line[:-1]
    return [v.strip() for v in line.split(",")]


def kaggle_candidate(data: bytes) -> bool:
    """True when the first row is header-less data with many numbers (≥ 100): a single-beat file,
    not a recording (a recording CSV has a header row and a few columns). Its rows are then
    checked by :func:`parse_kaggle_csv`, so a file whose rows have the wrong length is told so."""
    values = _fields(_first_line(data))
    if len(values) < 100:
        return False
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_SHOWN])
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (f" and {len(rows) - _SHOWN} more"
                                                                     if len(rows) > _SHOWN else "")  # fmt: skip


def parse_kaggle_csv(data: bytes, max_rows: int = MAX_ROWS) -> KaggleCsv:
    """Beats (and labels) of a Kaggle-layout CSV.

    Raises
    ------
    KaggleCsvError
        With a message naming the offending rows (1-based, as in the file) when the file is not
        UTF-8 text, empty, has too many rows, rows of another length than 187 (beat) or 188
        (beat + label) or not all the same, a value that is not a number or outside [0, 1], or a
        label other than 0..4.
    """
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise KaggleCsvError(f"The CSV is not UTF-8 text (byte {exc.start + 1}).") from None
    if ";" in text or "\t" in text:
        text = text.replace(";", ",").replace("\t", ",")
    numbers: list[int] = []  # file row numbers of the non-blank lines
    kept: list[str] = []
    for i, ln in enumerate(text.splitlines()):
        ln = ln.strip()
        if ln:
            numbers.append(i + 1)
            kept.append(ln[:-1].rstrip() if ln.endswith(",") else ln)
    if not numbers:
        raise KaggleCsvError("The CSV is empty.")
    if len(numbers) > max_rows:
        raise KaggleCsvError(f"The CSV has {len(numbers):,} beats; the console classifies at most {max_rows:,} per "
                             "upload. Split the file.".replace(",", " "))  # fmt: skip
    widths = [ln.count(",") + 1 for ln in kept]
    width = widths[0]
    if width not in (BEAT_LEN, BEAT_LEN + 1):
        raise KaggleCsvError(
            f"Row {numbers[0]} has {width} values; a Kaggle-layout row has {BEAT_LEN} (one beat at 125 Hz) or "
            f"{BEAT_LEN + 1} (the beat and its class 0–4) values, with no header row."
        )
    wrong = [(n, w) for n, w in zip(numbers, widths, strict=True) if w != width]
    if wrong:
        first_n, first_w = wrong[0]
        raise KaggleCsvError(
            f"{len(wrong)} {'row has' if len(wrong) == 1 else 'rows have'} the wrong length: "
            f"{_rows_text([n for n, _ in wrong])} (row {first_n} has {first_w} values). Every row must have "
            f"{width} values like the first ({BEAT_LEN} samples{' and the class' if width > BEAT_LEN else ''})."
        )
    try:
        a = np.loadtxt(io.StringIO("\n".join(kept)), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError:
        for n, ln in zip(numbers, kept, strict=True):
            for k, v in enumerate(ln.split(",")):
                try:
                    float(v)
                except ValueError:
                    shown = v.strip()[:30]
                    raise KaggleCsvError(f"Row {n}, value {k + 1}: {shown!r} is not a number." if shown else
                                         f"Row {n}, value {k + 1} is empty.") from None  # fmt: skip
        raise KaggleCsvError("The CSV could not be read as numbers.") from None
    del kept
    beats, _, problems = check_beats(a[:, :BEAT_LEN])
    if problems:
        p = problems[0]
        raise KaggleCsvError(
            f"{len(problems)} {'row is' if len(problems) == 1 else 'rows are'} not a Kaggle-layout beat: "
            f"{_rows_text([numbers[q.row] for q in problems])}. Row {numbers[p.row]}: {p.reason}. The beat values "
            "must be finite numbers in [0, 1] (min–max scaled)."
        )
    labels = None
    if width == BEAT_LEN + 1:
        lab = a[:, BEAT_LEN]
        ok = np.isfinite(lab) & (np.abs(lab - np.round(lab)) < 1e-6) & (lab > -0.5) & (lab < len(CLASSES) - 0.5)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            raise KaggleCsvError(
                f"The class column (value {BEAT_LEN + 1}) must be 0–4 (N, S, V, F, Q): "
                f"{_rows_text([numbers[int(i)] for i in bad])} (row {numbers[int(bad[0])]} has {lab[bad[0]]:g})."
            )
        labels = np.round(lab).astype(np.int64)
    return KaggleCsv(beats, labels)


# ------------------------------------------------------------------------------ classification


@functools.lru_cache(maxsize=2)
def _classifier(models_dir: str) -> KaggleBeatClassifier:
    return KaggleBeatClassifier.from_models_dir(Path(models_dir))


def model_info(models_dir: Path) -> dict[str, Any]:
    """Name, version and test-split figures of ``models_dir/ecg_kaggle_beats`` (for the page);
    raises FileNotFoundError."""
    clf = _classifier(str(models_dir))
    tm = clf.meta.get("test_metrics") or {}
    mc = tm.get("multiclass") or {}
    return {"name": clf.meta.get("name", "ecg_kaggle_beats"), "version": clf.version,
            "n_records": (clf.meta.get("data") or {}).get("n_records"),
            "test_accuracy": mc.get("accuracy"), "test_macro_f1": mc.get("macro_f1"),
            "n_test": (clf.meta.get("split") or {}).get("n_test")}  # fmt: skip


def metrics(
    labels: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], probs: npt.NDArray[np.float32]
) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1 (support, predicted), their macro averages over the
    classes present in the reference (as the seed's Kaggle protocol), N vs abnormal, confusion."""
    k = len(CLASSES)
    conf = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    per: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(CLASSES):
        tp, support, predicted = int(conf[i, i]), int(conf[i].sum()), int(conf[:, i].sum())
        p = tp / predicted if predicted else math.nan
        r = tp / support if support else math.nan
        f = 2 * tp / (support + predicted) if support + predicted else math.nan
        per[c] = {"precision": p, "recall": r, "f1": f, "support": support, "predicted": predicted, "tp": tp}
    present = [c for c in CLASSES if per[c]["support"]]

    def macro(key: str) -> float:
        vals = [0.0 if math.isnan(per[c][key]) else per[c][key] for c in present]
        return float(np.mean(vals)) if vals else math.nan

    n = int(labels.size)
    b = binary_report(labels != 0, pred != 0, 1.0 - probs[:, 0].astype(np.float64))
    return {"n": n, "accuracy": float(np.mean(labels == pred)) if n else math.nan,
            "macro": {"precision": macro("precision"), "recall": macro("recall"), "f1": macro("f1")},
            "per_class": per, "confusion": conf.tolist(), "labels": list(CLASSES), "binary": b,
            "macro_over": present}  # fmt: skip


def _prune(root: Path) -> None:
    dirs = sorted((d for d in root.iterdir() if (d / "summary.json").exists()), key=lambda d: d.stat().st_mtime)
    for d in dirs[:-KEEP]:
        shutil.rmtree(d, ignore_errors=True)


def classify_and_store(parsed: KaggleCsv, models_dir: Path, runs_dir: Path, user: str) -> str:
    """Classify every beat with ``models_dir/ecg_kaggle_beats``, store the result under
    ``runs_dir/kaggle/<id>`` and return the id (blocking: run it in a thread). Raises
    FileNotFoundError when the model is missing."""
    t0 = time.perf_counter()
    clf = _classifier(str(models_dir))
    with _LOCK:  # one classification at a time: the console shares its cores with the pipeline
        res = clf.classify(parsed.beats)
    seconds = time.perf_counter() - t0
    pred = res.class_index
    rid = uuid.uuid4().hex[:16]
    root = runs_dir / "kaggle"
    d = root / rid
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "beats.npy", parsed.beats)
    np.save(d / "probs.npy", res.probs.astype(np.float32))
    summary: dict[str, Any] = {
        "id": rid, "created": time.time(), "user": user, "n": int(parsed.beats.shape[0]),
        "has_labels": parsed.labels is not None, "seconds": round(seconds, 3),
        "model": model_info(models_dir),
        "counts": {c: int(np.sum(pred == i)) for i, c in enumerate(CLASSES)},
    }  # fmt: skip
    if parsed.labels is not None:
        np.save(d / "labels.npy", parsed.labels.astype(np.int8))
        summary["reference_counts"] = {c: int(np.sum(parsed.labels == i)) for i, c in enumerate(CLASSES)}
        summary["metrics"] = metrics(parsed.labels, pred, res.probs)
    (d / "summary.json").write_text(json.dumps(json_safe(summary)))
    _prune(root)
    return rid


# ------------------------------------------------------------------------------------ reading


def _dir(runs_dir: Path, rid: str) -> Path | None:
    if not (rid.isalnum() and len(rid) <= 32):
        return None
    d = runs_dir / "kaggle" / rid
    return d if (d / "summary.json").exists() else None


def load_summary(runs_dir: Path, rid: str) -> dict[str, Any] | None:
    d = _dir(runs_dir, rid)
    if d is None:
        return None
    try:
        s: dict[str, Any] = json.loads((d / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    s["created_utc"] = datetime.fromtimestamp(float(s.get("created", 0)), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return s


def recent_results(runs_dir: Path, limit: int = 10) -> list[dict[str, Any]]:
    root = runs_dir / "kaggle"
    if not root.is_dir():
        return []
    dirs = sorted((d for d in root.iterdir() if (d / "summary.json").exists()), key=lambda d: d.stat().st_mtime,
                  reverse=True)[:limit]  # fmt: skip
    return [s for d in dirs if (s := load_summary(runs_dir, d.name)) is not None]


@dataclass
class Arrays:
    beats: npt.NDArray[np.float32]
    probs: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8] | None

    @property
    def pred(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.probs.argmax(axis=1), dtype=np.int64)


def load_arrays(runs_dir: Path, rid: str) -> Arrays | None:
    d = _dir(runs_dir, rid)
    if d is None:
        return None
    try:
        labels = np.load(d / "labels.npy", mmap_mode="r") if (d / "labels.npy").exists() else None
        return Arrays(np.load(d / "beats.npy", mmap_mode="r"), np.load(d / "probs.npy", mmap_mode="r"), labels)
    except (OSError, ValueError):
        return None


#: Row filters of the table: every row, the misclassified ones (labelled files) or one predicted class.
FILTERS = ("all", "errors", *CLASSES)


def row_page(a: Arrays, page: int, show: str = "all", per_page: int = 25) -> tuple[list[dict[str, Any]], int, int]:
    """One page of the result table: rows (1-based ``row``, ``cls``, ``probs``, ``label``, ``ok``),
    the number of pages and of matching rows."""
    pred = a.pred
    if show == "errors" and a.labels is not None:
        idx = np.flatnonzero(pred != np.asarray(a.labels))
    elif show in CLASSES:
        idx = np.flatnonzero(pred == CLASSES.index(show))
    else:
        idx = np.arange(pred.size)
    pages = max(1, -(-idx.size // per_page))
    page = min(max(page, 1), pages)
    out = []
    for i in idx[(page - 1) * per_page : page * per_page]:
        lab = int(a.labels[i]) if a.labels is not None else None
        out.append({"row": int(i) + 1, "cls": CLASSES[int(pred[i])], "probs": [float(p) for p in a.probs[i]],
                    "label": CLASSES[lab] if lab is not None else None,
                    "ok": None if lab is None else lab == int(pred[i])})  # fmt: skip
    return out, pages, int(idx.size)


def beat_json(a: Arrays, row: int) -> dict[str, Any] | None:
    """One beat for the plot: ``t_ms``, ``y``, class, probabilities and reference label."""
    i = row - 1
    if not 0 <= i < a.beats.shape[0]:
        return None
    y = np.asarray(a.beats[i], dtype=np.float64)
    lab = int(a.labels[i]) if a.labels is not None else None
    return {"row": row, "n": int(a.beats.shape[0]), "t_ms": [round(k * 8.0, 1) for k in range(BEAT_LEN)],
            "y": np.round(y, 5).tolist(), "cls": CLASSES[int(a.probs[i].argmax())],
            "probs": {c: round(float(p), 4) for c, p in zip(CLASSES, a.probs[i], strict=True)},
            "label": CLASSES[lab] if lab is not None else None}  # fmt: skip


# ------------------------------------------------------------------------------------ exports

EXPORT_FIELDS = ("row", "class", *(f"p_{c}" for c in CLASSES))


def predictions_csv(a: Arrays) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    labelled = a.labels is not None
    w.writerow([*EXPORT_FIELDS, *(("label", "label_class", "correct") if labelled else ())])
    pred = a.pred
    for i in range(pred.size):
        row: list[Any] = [i + 1, CLASSES[int(pred[i])], *(f"{float(p):.5f}" for p in a.probs[i])]
        if a.labels is not None:
            lab = int(a.labels[i])
            row += [lab, CLASSES[lab], int(lab == int(pred[i]))]
        w.writerow(row)
    return buf.getvalue()


def predictions_json(a: Arrays, summary: dict[str, Any]) -> dict[str, Any]:
    pred = a.pred
    rows = []
    for i in range(pred.size):
        r: dict[str, Any] = {
            "row": i + 1,
            "class": CLASSES[int(pred[i])],
            "probs": {c: round(float(p), 5) for c, p in zip(CLASSES, a.probs[i], strict=True)},
        }
        if a.labels is not None:
            r["label"] = CLASSES[int(a.labels[i])]
        rows.append(r)
    meta = {k: v for k, v in summary.items() if k not in ("created_utc", "user")}
    return {**meta, "classes": list(CLASSES), "rows": rows}


# ------------------------------------------------------------------------------------ the view


def metrics_view(m: dict[str, Any]) -> tuple[list[Table], Confusion]:
    """The evaluation page's tables and confusion matrix (:mod:`streamdx_web.eval_report`) of
    :func:`metrics`."""
    per = m["per_class"]
    rows = [[c, count(v["support"]), count(v["predicted"]), frac(v["precision"]), frac(v["recall"]),
             frac(v["f1"])] for c, v in per.items()]  # fmt: skip
    mac = m["macro"]
    rows.append(["macro average", count(m["n"]), "", frac(mac["precision"]), frac(mac["recall"]), frac(mac["f1"])])
    b = m["binary"]
    tables = [
        Table("Per class (AAMI)", ["class", "in the file", "predicted", "precision (+P)", "recall (Se)", "F1"],
              rows, f"Macro: unweighted mean over the classes in the file ({', '.join(m.get('macro_over', []))}); "
              "a class never predicted has precision 0."),
        Table("N vs abnormal (S, V, F, Q)", ["", "n", "accuracy", "precision (+P)", "recall (Se)", "F1", "kappa",
                                             "ROC AUC"],
              [["beats", count(b.get("n")), frac(b.get("accuracy")), frac(b.get("precision")),
                frac(b.get("recall")), frac(b.get("f1")), frac(b.get("kappa")), frac(b.get("roc_auc"))]]),
    ]  # fmt: skip
    conf = Confusion("Beat classes", list(CLASSES), list(CLASSES), [[int(v) for v in r] for r in m["confusion"]],
                     note="Reference = the file's class column (0–4 = N, S, V, F, Q).")  # fmt: skip
    return tables, conf
