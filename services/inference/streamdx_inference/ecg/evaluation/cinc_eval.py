"""``streamdx eval cinc2017`` — recording-level rhythm classes on a CinC 2017 pack folder.

Runs the DSP and the shipped models (quality gate, AF, beat class) over every recording of
a folder in the pack format (``index.csv``, ``REFERENCE.csv``, ``signals_int16_diff.xz``)
exactly as a stream is served, then classifies each recording from its beat labels:

- ``~`` (noisy): fewer than ``MIN_BEATS`` beats, or more than half of them unreadable;
- ``A`` (AF): AF-labelled beats are the majority of the readable beats;
- ``O`` (other rhythm): more than ``ECTOPIC_FRACTION`` of the readable beats are S, V or F,
  or the mean heart rate is below 50 or above 100 beats/min;
- ``N`` otherwise.

Recordings the shipped AF model was trained on (its ``cinc_train_records.json``) are left
out, so on the project's own folder the figures are on the held-out 30 %; on any other pack
every recording counts. Scores: AF Se/+P/F1 (recording level, A versus the rest) and the
challenge score, the mean F1 of N, A and O (Clifford et al. 2017).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamdx_inference.ecg.datasets import DEFAULT_CACHE, load_cinc
from streamdx_inference.ecg.scoring import binary_report, format_table, safe_div

__all__ = ["ECTOPIC_FRACTION", "MIN_BEATS", "build_parser", "classify_recording", "main"]

MIN_BEATS = 5
ECTOPIC_FRACTION = 0.1
_CLASSES = ("N", "A", "O", "~")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx eval cinc2017",
        description="Classify every recording of a CinC 2017 pack folder (N, A, O, ~) with the signal-processing "
        "service and the shipped ECG models; AF F1 and the challenge score.",
    )
    p.add_argument("--data", type=Path, required=True, help="CinC 2017 pack folder (index.csv, REFERENCE.csv, signals)")
    p.add_argument("--out", type=Path, required=True, help="JSON report to write")
    p.add_argument("--models", type=Path, default=Path("models"), help="folder with the shipped ECG models")
    p.add_argument("--int8", action="store_true", help="use the INT8 models")
    p.add_argument("--include-training", action="store_true",
                   help="also score recordings the shipped AF model was trained on (not a fair test)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats")
    return p


def classify_recording(quality: Sequence[str], af: Sequence[bool | None], beat_class: Sequence[str | None],
                       rr_s: Sequence[float]) -> str:  # fmt: skip
    """The recording's class from its beats' labels (rules in the module docstring)."""
    n = len(quality)
    ok = [i for i in range(n) if quality[i] == "ok"]
    if n < MIN_BEATS or len(ok) * 2 < n:
        return "~"
    if sum(1 for i in ok if af[i]) * 2 > len(ok):
        return "A"
    ect = sum(1 for i in ok if beat_class[i] in ("S", "V", "F"))
    hr = 60.0 / float(np.mean([rr_s[i] for i in ok]))
    if ect > ECTOPIC_FRACTION * len(ok) or hr < 50.0 or hr > 100.0:
        return "O"
    return "N"


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    from streamdx_inference.ecg.labeler import EcgLabeler, StreamLabelState

    if not (a.data / "index.csv").exists():
        print(f"error: no CinC 2017 pack (index.csv) in {a.data}", file=sys.stderr)
        return 2
    labeler = EcgLabeler.from_dir(a.models, int8=a.int8)
    train_file = a.models / "ecg_af" / "cinc_train_records.json"
    trained = set(json.loads(train_file.read_text())) if train_file.exists() and not a.include_training else set()
    recs = load_cinc(a.data, labeler.window, a.cache, progress=True)  # type: ignore[arg-type]
    from streamdx_inference.ecg.datasets import cinc_labels

    ref = cinc_labels(a.data)
    names = [n for n in recs if n not in trained and n in ref]
    y, pred = [], []
    for n in names:
        rb = recs[n]
        _, labels = labeler.label(StreamLabelState(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
        c = classify_recording([b.quality for b in labels], [b.af for b in labels], [b.beat_class for b in labels],
                               rb.rr_prev_s.tolist())  # fmt: skip
        y.append(ref[n])
        pred.append(c)
    ya, pa = np.array(y), np.array(pred)
    conf = [[int(np.sum((ya == r) & (pa == c))) for c in _CLASSES] for r in _CLASSES]
    f1 = {}
    for i, c in enumerate(_CLASSES):
        f1[c] = safe_div(2 * conf[i][i], sum(conf[i]) + sum(row[i] for row in conf))
    af = binary_report(ya == "A", pa == "A")
    report = {
        "n_records": len(names),
        "excluded_training_records": len(set(recs) & trained),
        "af": {"se": af["recall"], "ppv": af["precision"], "f1": af["f1"]},
        "af_binary": af,
        "challenge_f1": float(np.mean([f1["N"], f1["A"], f1["O"]])),
        "f1": f1,
        "confusion": {"rows_reference": list(_CLASSES), "cols_predicted": list(_CLASSES), "matrix": conf},
        "models": labeler.versions,
        "rules": {"min_beats": MIN_BEATS, "ectopic_fraction": ECTOPIC_FRACTION, "hr_normal_bpm": [50, 100]},
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"{len(names)} recordings scored ({report['excluded_training_records']} training recordings left out)")
    print(format_table(["AF (recording)", "Se", "+P", "F1", "accuracy", "kappa"],
                       [["A vs rest", af["recall"], af["precision"], af["f1"], af["accuracy"], af["kappa"]]]))
    print()
    print(format_table(["ref \\ pred", *_CLASSES, "F1"], [[r, *conf[i], f1[r]] for i, r in enumerate(_CLASSES)]))
    print(f"\nchallenge F1 (mean of N, A, O): {report['challenge_f1']:.3f}")
    print(f"report written to {a.out}")
    return 0
