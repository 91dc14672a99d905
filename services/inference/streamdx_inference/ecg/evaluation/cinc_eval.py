"""``streamdx eval cinc2017`` — recording-level rhythm classes on a CinC 2017 pack folder.

Runs the DSP and the shipped models (quality gate, AF, beat class) over every recording of
a folder in the pack format (``index.csv``, ``REFERENCE.csv``, ``signals_int16_diff.xz``)
exactly as a stream is served, then classifies each recording from its beat labels with
the rules of :mod:`streamdx_inference.ecg.recording`, whose thresholds were fitted on the
AF model's training recordings (``recording_rules`` in ``models/ecg_af/model.json``).

Recordings the shipped AF model was trained on (its ``cinc_train_records.json``) are left
out, so on the project's own folder the figures are on the held-out 30 %; on any other pack
every recording counts; recordings without a label in ``REFERENCE.csv`` are listed
(``unlabelled_records``), not scored. A folder that lacks a pack file, or whose ``index.csv``
is malformed or points past the signal, is an error (exit status 2). Scores: AF Se/+P/F1
(recording level, A versus the rest) and the challenge score, the mean F1 of N, A and O
(Clifford et al. 2017).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamdx.cli_args import report_path, write_report
from streamdx_inference.ecg.datasets import DEFAULT_CACHE, cinc_labels, cinc_pack_problem, load_cinc
from streamdx_inference.ecg.recording import (
    CLASSES,
    RecordingRules,
    challenge_scores,
    classify_recording,
    recording_af_score,
    summarise_recording,
)
from streamdx_inference.ecg.scoring import binary_report, format_table

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx eval cinc2017",
        description="Classify every recording of a CinC 2017 pack folder (N, A, O, ~) with the signal-processing "
        "service and the shipped ECG models; AF F1 and the challenge score.",
    )
    p.add_argument("--data", type=Path, required=True, help="CinC 2017 pack folder (index.csv, REFERENCE.csv, signals)")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--models", type=Path, default=Path("models"), help="folder with the shipped ECG models")
    p.add_argument("--int8", action="store_true", help="use the INT8 models")
    p.add_argument("--include-training", action="store_true",
                   help="also score recordings the shipped AF model was trained on (not a fair test)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats")
    return p


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    from streamdx_inference.ecg.labeler import EcgLabeler, StreamLabelState

    if problem := cinc_pack_problem(a.data):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    labeler = EcgLabeler.from_dir(a.models, int8=a.int8)
    rules = RecordingRules.from_dict(labeler.af.meta.get("recording_rules"))
    train_file = a.models / "ecg_af" / "cinc_train_records.json"
    trained = set(json.loads(train_file.read_text())) if train_file.exists() and not a.include_training else set()
    try:
        recs = load_cinc(a.data, labeler.window, a.cache, progress=True)  # type: ignore[arg-type]
    except ValueError as e:
        print(f"error: {a.data}: {e}", file=sys.stderr)
        return 2
    ref = cinc_labels(a.data)
    names = [n for n in recs if n not in trained and n in ref]
    unlabelled = sorted(n for n in recs if n not in ref)
    if not names:
        print(f"error: no recording of {a.data} to score (labelled in REFERENCE.csv and not trained on)",
              file=sys.stderr)  # fmt: skip
        return 2
    y, pred, score = [], [], []
    for n in names:
        rb = recs[n]
        _, labels = labeler.label(StreamLabelState(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
        y.append(ref[n])
        pred.append(classify_recording(summarise_recording(labels, rb.rr_prev_s.tolist()), rules))
        score.append(recording_af_score(labels))
    ya, pa = np.array(y), np.array(pred)
    cs = challenge_scores(y, pred)
    conf, f1 = cs["confusion"], cs["f1"]
    # ROC AUC of the recording's mean AF probability over its readable beats (the decision's own score
    # is a rule on label fractions)
    af = binary_report(ya == "A", pa == "A", score)
    report = {
        "n_records": len(names),
        "excluded_training_records": len(set(recs) & trained),
        "unlabelled_records": unlabelled,
        "af": {"se": af["recall"], "ppv": af["precision"], "f1": af["f1"]},
        "af_binary": af,
        "af_score": "roc_auc of af_binary: each recording's mean AF probability over its readable beats",
        "challenge_f1": cs["challenge_f1"],
        "f1": f1,
        "confusion": {"rows_reference": list(CLASSES), "cols_predicted": list(CLASSES), "matrix": conf},
        "models": labeler.versions,
        "rules": rules.to_dict(),
    }  # fmt: skip
    print(f"{len(names)} recordings scored ({report['excluded_training_records']} training recordings left out); "
          f"rules {rules.to_dict()}")
    if unlabelled:
        print(f"{len(unlabelled)} recordings of index.csv have no label in REFERENCE.csv and are not scored: "
              f"{', '.join(unlabelled[:10])}{' ...' if len(unlabelled) > 10 else ''}")
    print(format_table(["AF (recording)", "Se", "+P", "F1", "accuracy", "kappa", "ROC AUC"],
                       [["A vs rest", af["recall"], af["precision"], af["f1"], af["accuracy"], af["kappa"],
                         af["roc_auc"]]]))  # fmt: skip
    print("ROC AUC of each recording's mean AF probability over its readable beats")
    print()
    print(format_table(["ref \\ pred", *CLASSES, "F1"], [[r, *conf[i], f1[r]] for i, r in enumerate(CLASSES)]))
    print(f"\nchallenge F1 (mean of N, A, O): {report['challenge_f1']:.3f}")
    write_report(a.out, report)
    return 0
