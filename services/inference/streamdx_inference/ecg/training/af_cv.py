"""Cross-validation of the AF recipe over the CinC 2017 training part (recording level).

``python -m streamdx_inference.ecg.training.af_cv --mitdb DIR --cinc DIR --out F
[--teachers N] [--seed S] [--ema-decay D|none]`` splits the CinC recordings of the training
part (:func:`~streamdx_inference.ecg.training.data.cinc_split`; the held-out recordings that
``streamdx eval cinc2017`` scores are never read) into 3 groups. For each, an AF model is trained
with :func:`~streamdx_inference.ecg.training.recipes.train_af` on all MITDB records and the
other two groups, and the group's N, A and O recordings are labelled as served (the shipped
quality gate and beat-class model of ``--models``, the new AF network) and summarised like
``streamdx eval cinc2017`` does. Reported: the ROC AUC of the recordings' mean AF probability
(A versus N and O) and the AF F1 at each ``af_min`` of the recording rules' grid, pooled over
the groups. Recipe changes are compared here, on about 4,000 recordings, instead of on the
held-out test recordings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamdx.cli_args import non_negative_int, report_path, write_report
from streamdx_inference.ecg.scoring import format_table

__all__ = ["FOLDS", "main"]

FOLDS = 3


def _ema(value: str) -> float | None:
    if value.lower() == "none":
        return None
    v = float(value)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1) or 'none', got {value}")
    return v


def _probability(value: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    from streamdx_inference.ecg.datasets import SHARED_CINC
    from streamdx_inference.ecg.training.recipes import AF_EMA_DECAY, AF_FLIP, AF_TEACHERS

    p = argparse.ArgumentParser(prog="python -m streamdx_inference.ecg.training.af_cv", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--mitdb", type=Path, default=Path("../shared/data/mitdb"), help="MITDB folder")
    p.add_argument("--cinc", type=Path, default=SHARED_CINC, help="CinC 2017 pack folder")
    p.add_argument("--models", type=Path, default=Path("models"), help="folder with the quality and beat models")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--teachers", type=non_negative_int, default=AF_TEACHERS, help="teacher networks per fold")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--ema-decay", type=_ema, default=AF_EMA_DECAY, help="weight average decay, or 'none'")
    p.add_argument("--flip", type=_probability, default=AF_FLIP, help="sign-inversion probability of a training beat")
    a = p.parse_args(argv)
    import torch
    from sklearn.metrics import roc_auc_score

    from streamdx_dsp.core import DEFAULT_WINDOW
    from streamdx_dsp.evaluation.records import list_records
    from streamdx_inference.ecg.datasets import DEFAULT_CACHE, cinc_pack_problem, load_cinc, load_mitdb
    from streamdx_inference.ecg.labeler import EcgLabeler, StreamLabelState, load_ecg_model
    from streamdx_inference.ecg.recording import MIN_BEATS, RULES_GRID, summarise_recording
    from streamdx_inference.ecg.training.data import cinc_split
    from streamdx_inference.ecg.training.fit import onnx_ecg_model
    from streamdx_inference.ecg.training.recipes import train_af

    if problem := cinc_pack_problem(a.cinc):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not a.mitdb.is_dir():
        print(f"error: MITDB folder not found: {a.mitdb}", file=sys.stderr)
        return 2
    quality, beats = load_ecg_model(a.models, "ecg_quality"), load_ecg_model(a.models, "ecg_beats")
    torch.set_num_threads(2)
    mit = load_mitdb(a.mitdb, list_records(a.mitdb), DEFAULT_WINDOW, DEFAULT_CACHE, progress=True)
    cinc = load_cinc(a.cinc, DEFAULT_WINDOW, DEFAULT_CACHE, progress=True)
    train_part = sorted(cinc_split(sorted(cinc))[0])
    order = np.random.default_rng(7).permutation(train_part)
    y: list[bool] = []
    mean_p: list[float] = []
    frac: list[float] = []
    for k in range(FOLDS):
        fold = set(order[k::FOLDS].tolist())
        t = train_af(mit, {n: cinc[n] for n in train_part if n not in fold}, seed=a.seed, teachers=a.teachers,
                     ema_decay=a.ema_decay, flip=a.flip, desc=f"af fold {k + 1}/{FOLDS}")  # fmt: skip
        assert t.calib is not None
        af = onnx_ecg_model(t.net, t.calib, "ecg_af", {"version": "cv", "threshold": t.threshold,
                                                       "window": DEFAULT_WINDOW})  # fmt: skip
        labeler = EcgLabeler(quality, af, beats)
        for n in sorted(fold):
            rb = cinc[n]
            if len(rb) < MIN_BEATS or rb.rhythm[0] == "~":
                continue
            _, labels = labeler.label(StreamLabelState(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
            s = summarise_recording(labels, rb.rr_prev_s.tolist())
            ok = [lb.af_prob for lb in labels if lb.quality == "ok"]
            y.append(rb.rhythm[0] == "A")
            mean_p.append(float(np.mean(ok)) if ok else 0.0)
            frac.append(s.af)
        print(f"fold {k + 1}/{FOLDS} scored", flush=True)
    ya, fa = np.array(y), np.array(frac)
    f1 = {str(m): float(2 * np.sum((fa >= m) & ya) / max(1, int(np.sum(fa >= m)) + int(ya.sum())))
          for m in RULES_GRID["af_min"]}  # fmt: skip
    report: dict[str, Any] = {
        "n_recordings": int(ya.size), "n_af": int(ya.sum()), "teachers": a.teachers, "seed": a.seed,
        "ema_decay": a.ema_decay, "flip": a.flip, "roc_auc_mean_af_prob": float(roc_auc_score(ya, mean_p)),
        "af_f1_by_af_min": f1,
    }  # fmt: skip
    print(f"{ya.size} recordings ({int(ya.sum())} AF), teachers {a.teachers}, seed {a.seed}, ema {a.ema_decay}: "
          f"ROC AUC of the mean AF probability {report['roc_auc_mean_af_prob']:.4f}")  # fmt: skip
    print(format_table(["af_min", *f1], [["AF F1", *f1.values()]]))
    write_report(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
