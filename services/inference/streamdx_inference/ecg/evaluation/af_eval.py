"""``streamdx eval af`` — per-beat AF on MITDB-format records, inter-patient.

Two modes:

- default (leave-records-out cross-validation): the folder's records are split into
  ``--folds`` groups (records with AF spread evenly over the groups); for each group an
  AF model is trained from scratch on the other records and the training part of a CinC
  2017 pack (``--cinc``, by default the shared one, as ``streamdx train af``: the shipped
  recipe's data; ``--no-cinc``: the folder's records alone) with the shipped recipe, its
  threshold chosen on validation records of the training side, and scored on the held-out
  group. No record is ever in both training and scoring.
- ``--train-on cinc2017``: one model trained only on the CinC pack, scored on every
  record of the folder (an unseen database).

Reference per beat: the beat lies inside an ``(AFIB`` rhythm annotation, scored on every
beat the DSP emits. MITDB marks ventricular bigeminy/trigeminy/VT inside AF as ``(B``,
``(T``, ``(VT``: they are scored as annotated (not AF) and the report counts the errors
that fall there and in ``(AFL``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamdx.cli_args import int_at_least, non_negative_int, positive_int, report_path, write_report
from streamdx_dsp.core import DEFAULT_WINDOW
from streamdx_inference.ecg.datasets import DEFAULT_CACHE, SHARED_CINC, cinc_pack_problem, load_cinc, load_mitdb
from streamdx_inference.ecg.scoring import binary_report, format_table

__all__ = ["build_parser", "cv_folds", "main"]

_SPECIAL = ("(B", "(T", "(VT", "(AFL")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx eval af",
        description="Per-beat atrial-fibrillation detection on WFDB records with rhythm annotations, inter-patient "
        "(models retrained per cross-validation fold, never scored on a record they were trained on).",
    )
    p.add_argument("--data", type=Path, required=True, help="folder of WFDB records with .atr rhythm annotations")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--cinc", type=Path, default=SHARED_CINC,
                   help="CinC 2017 pack folder: its training part joins every fold's training data, as in the shipped "
                        "recipe (default: %(default)s)")
    p.add_argument("--no-cinc", action="store_true",
                   help="train every fold on the records of --data alone (and the simulated records)")
    p.add_argument("--train-on", choices=["cinc2017"], default=None,
                   help="train one model only on the CinC pack (--cinc) and score every record of --data")
    p.add_argument("--folds", type=int_at_least(2), default=4,
                   help="cross-validation folds (groups of records; more folds than records: leave-one-record-out)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs per model (default: the recipe's)")
    p.add_argument("--records", default=None, help="comma-separated records to use (default: all with .atr)")
    p.add_argument("--window", choices=["rr", "fixed"], default=DEFAULT_WINDOW, help="beat window of the DSP")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads for PyTorch")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats per record")
    return p


def cv_folds(names: Sequence[str], af_names: Sequence[str], k: int) -> list[list[str]]:
    """Split records into ``k`` groups, records with AF dealt round-robin first, then the others."""
    folds: list[list[str]] = [[] for _ in range(k)]
    af = [n for n in names if n in set(af_names)]
    other = [n for n in names if n not in set(af_names)]
    for i, n in enumerate(af + other):
        folds[i % k].append(n)
    return [f for f in folds if f]


def _score(rec: Any, p: np.ndarray, thr: float) -> dict[str, Any]:
    y = rec.af
    d = p > thr
    r = binary_report(y, d, p)
    err = d != y
    r["errors_in"] = {s: int(np.sum(err & (rec.rhythm == s))) for s in _SPECIAL}
    r["af_beats"] = int(y.sum())
    return r


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    import torch

    from streamdx_dsp.evaluation.records import records_for_command
    from streamdx_inference.ecg.training.data import cinc_split, record_features
    from streamdx_inference.ecg.training.fit import predict_net
    from streamdx_inference.ecg.training.recipes import AF_EPOCHS, smooth_af, train_af

    torch.set_num_threads(max(1, a.threads))
    names = records_for_command(a.data, a.records)
    if names is None:
        return 2
    if a.train_on and a.no_cinc:
        print("error: --train-on cinc2017 needs the CinC pack (--cinc DIR, not --no-cinc)", file=sys.stderr)
        return 2
    if not a.train_on and len(names) < 2:
        print(f"error: leave-records-out needs at least 2 records in {a.data}, found {len(names)} "
              "(or score a CinC-trained model on them with --train-on cinc2017)", file=sys.stderr)  # fmt: skip
        return 2
    if not a.no_cinc and (problem := cinc_pack_problem(a.cinc)):
        print(f"error: {problem} (give the pack with --cinc DIR, or train on the records of --data alone with "
              "--no-cinc)", file=sys.stderr)  # fmt: skip
        return 2
    mit = load_mitdb(a.data, names, a.window, a.cache, progress=True)
    cinc_train = {}
    if not a.no_cinc:
        cinc = load_cinc(a.cinc, a.window, a.cache, progress=True)
        tr = cinc if a.train_on else {k: cinc[k] for k in cinc_split(sorted(cinc))[0]}
        cinc_train = dict(tr)
    epochs = a.epochs or AF_EPOCHS
    af_names = [n for n in names if mit[n].af.any()]
    records: dict[str, Any] = {}
    ys, ps, ds, rh = [], [], [], []
    plan = [(names, {})] if a.train_on else [
        (fold, {n: mit[n] for n in names if n not in fold}) for fold in cv_folds(names, af_names, a.folds)]
    for i, (test, train_mit) in enumerate(plan):
        print(f"fold {i + 1}/{len(plan)}: scoring {', '.join(test)}", file=sys.stderr)
        t = train_af(train_mit, cinc_train, epochs=epochs, seed=a.seed, desc=f"af fold {i + 1}", window=a.window)
        for n in test:
            rec = mit[n]
            if not len(rec):
                continue
            p = smooth_af(predict_net(t.net, record_features(rec)), np.full(len(rec), n))
            records[n] = {**_score(rec, p, t.threshold), "threshold": t.threshold, "fold": i + 1}
            ys.append(rec.af)
            ps.append(p)
            ds.append(p > t.threshold)
            rh.append(rec.rhythm)
    y, p, d, rhythm = np.concatenate(ys), np.concatenate(ps), np.concatenate(ds), np.concatenate(rh)
    pooled = binary_report(y, d, p)
    err = d != y
    report = {
        "protocol": {"reference": "beat inside (AFIB rhythm annotation", "beats": "every beat the DSP emits",
                     "split": "train on cinc2017 only" if a.train_on else f"{len(plan)}-fold leave-records-out CV",
                     "cinc_training_recordings": len(cinc_train), "window": a.window, "epochs": epochs,
                     "smoothing": "causal exponential, alpha 0.15 (as served)"},
        "beat": {"se": pooled["recall"], "ppv": pooled["precision"], "f1": pooled["f1"]},
        "binary": pooled,
        "errors_in": {s: int(np.sum(err & (rhythm == s))) for s in _SPECIAL},
        "errors_total": int(err.sum()),
        "records": records,
    }  # fmt: skip
    print(f"protocol: {report['protocol']}")
    rows = [[n, r["af_beats"], r["recall"], r["precision"], r["f1"], r["fold"]] for n, r in records.items()
            if r["af_beats"] or r["confusion"][0][1]]  # fmt: skip
    print(format_table(["record", "AF beats", "Se", "+P", "F1", "fold"], rows))
    print()
    print(format_table(["pooled", "accuracy", "precision", "recall", "F1", "kappa", "ROC AUC"],
                       [["AF per beat", pooled["accuracy"], pooled["precision"], pooled["recall"], pooled["f1"],
                         pooled["kappa"], pooled["roc_auc"]]]))  # fmt: skip
    (tn, fp), (fn, tp) = pooled["confusion"]
    print(f"confusion [[TN FP] [FN TP]]: [[{tn} {fp}] [{fn} {tp}]]; errors in (B/(T/(VT/(AFL: {report['errors_in']} "
          f"of {report['errors_total']}")
    write_report(a.out, report)
    return 0
