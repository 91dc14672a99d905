"""What a beat the network calls S becomes when the SVEB rule vetoes it: cross-validated on DS1.

``python -m streamdx_inference.ecg.training.sveb_cv --mitdb DIR --out F [--teachers N] [--seed S]``
splits the DS1 records of ``DIR`` into 4 groups; for each, a beat-class network and its SVEB
rule are trained on the other three (:func:`~streamdx_inference.ecg.training.recipes.train_beats`)
and the held-out group's beats are classed with each policy below. The AAMI EC57 gross
statistics per policy are written as JSON and printed. DS2 (the test records) is never read,
so the policy can be chosen here without looking at the test set.

Policies for a beat whose arg-max is S that the rule does not call S:

- ``runner_up``: the network's most probable class other than S (the decision before
  2026-12-06);
- ``normal_qrs_n`` (shipped, :func:`~streamdx_inference.ecg.beat_class.without_s`): N when
  its QRS is like the template, else the runner-up;
- ``all_n``: N;
- ``argmax``: the network alone, without the rule (reference).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_int, report_path, write_report
from streamdx_inference.ecg.beat_class import AAMI_CLASSES, SvebRule, ecg_beat_classes, premature_normal_qrs
from streamdx_inference.ecg.features import EcgFeatures
from streamdx_inference.ecg.scoring import EC57_FP_EXEMPT, class_report, format_table

__all__ = ["FOLDS", "POLICIES", "main", "vetoed_s_policies"]

FOLDS = 4
POLICIES = ("runner_up", "normal_qrs_n", "all_n", "argmax")
_N, _S = AAMI_CLASSES.index("N"), AAMI_CLASSES.index("S")


def vetoed_s_policies(
    probs: npt.NDArray[np.floating[Any]], feats: EcgFeatures, rule: SvebRule
) -> dict[str, npt.NDArray[np.intp]]:
    """Class indices of the beats under each of :data:`POLICIES` (module docstring)."""
    top = probs.argmax(axis=1)
    rule_s = ((top == _N) | (top == _S)) & premature_normal_qrs(feats, rule)
    no_s = probs.copy()
    no_s[:, _S] = -np.inf
    runner_up = no_s.argmax(axis=1)
    vetoed = (top == _S) & ~rule_s
    return {
        "runner_up": np.where(rule_s, _S, np.where(vetoed, runner_up, top)),
        "normal_qrs_n": ecg_beat_classes(probs, feats, rule),
        "all_n": np.where(rule_s, _S, np.where(vetoed, _N, top)),
        "argmax": top,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamdx_inference.ecg.training.sveb_cv", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--mitdb", type=Path, required=True, help="MITDB folder (only its DS1 records are read)")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--teachers", type=non_negative_int, default=None, help="teacher networks (default: the recipe's)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    a = p.parse_args(argv)
    import torch

    from streamdx_dsp.core import DEFAULT_WINDOW
    from streamdx_dsp.evaluation.records import list_records
    from streamdx_inference.ecg.datasets import DEFAULT_CACHE, DS1, load_mitdb
    from streamdx_inference.ecg.training.data import record_features
    from streamdx_inference.ecg.training.fit import predict_net
    from streamdx_inference.ecg.training.recipes import BEAT_TEACHERS, train_beats

    names = [n for n in DS1 if n in set(list_records(a.mitdb))] if a.mitdb.is_dir() else []
    if len(names) < FOLDS:
        print(f"error: fewer than {FOLDS} DS1 records in {a.mitdb}", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    mit = load_mitdb(a.mitdb, names, DEFAULT_WINDOW, DEFAULT_CACHE, progress=True)
    order = np.random.default_rng(123).permutation(sorted(mit))
    folds = [sorted(order[i::FOLDS].tolist()) for i in range(FOLDS)]
    teachers = BEAT_TEACHERS if a.teachers is None else a.teachers
    labels = np.array(AAMI_CLASSES, dtype="<U1")
    ys: list[npt.NDArray[np.str_]] = []
    preds: dict[str, list[npt.NDArray[np.str_]]] = {k: [] for k in POLICIES}
    missed: dict[str, int] = {}
    for k, fold in enumerate(folds):
        t = train_beats({n: mit[n] for n in mit if n not in fold}, seed=a.seed, teachers=teachers,
                        progress=True)  # fmt: skip
        rule = SvebRule.from_meta(t.info)
        assert rule is not None
        for n in fold:
            rec = mit[n]
            f = record_features(rec)
            for key, c in vetoed_s_policies(predict_net(t.net, f), f, rule).items():
                preds[key].append(labels[c])
            ys.append(rec.beat_class)
            for c_name, v in rec.missed.items():
                missed[c_name] = missed.get(c_name, 0) + v
        print(f"fold {k + 1}/{FOLDS} scored ({', '.join(fold)})", flush=True)
    y = np.concatenate(ys)
    report: dict[str, Any] = {"folds": folds, "teachers": teachers, "seed": a.seed, "policies": {}}
    rows = []
    for key in POLICIES:
        cr = class_report(y, np.concatenate(preds[key]), AAMI_CLASSES, missed, EC57_FP_EXEMPT)["classes"]
        report["policies"][key] = cr
        rows.append([key, *(cr[c][m] for c in "NSV" for m in ("se", "ppv")), cr["V"]["fp"]])
    print(format_table(["policy", "N Se", "N +P", "S Se", "S +P", "V Se", "V +P", "V FP"], rows))
    write_report(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
