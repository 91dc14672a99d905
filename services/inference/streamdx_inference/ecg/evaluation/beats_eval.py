"""``streamdx eval beats`` — AAMI beat classification (N, S, V, F, Q).

- ``--protocol ds1ds2`` (inter-patient, the headline; de Chazal et al. 2004): the DSP's beats of
  the DS2 records found in ``--data`` (paced records excluded) labelled **as the service serves
  them** (:class:`~streamdx_inference.ecg.labeler.EcgLabeler` with the shipped quality gate, AF
  and beat-class models): an unreadable beat gets no class (its own confusion column, a false
  negative of its class) and a beat in AF is never S. That needs models that never saw a DS2
  record, which each model's ``model.json`` lists (:func:`ds2_records_in`); when one did, or
  does not say, the report scores the classifier alone (the beat-class network and its SVEB
  rule) and says so (``protocol.labels``). ``classifier_classes`` always gives the classifier
  alone. Annotated beats the detector missed count as false negatives of their class;
  detections matching no annotated beat count against +P of the class they get. Se and +P are
  the AAMI gross statistics (ANSI/AAMI EC57, as WFDB's ``bxb`` computes them): a fusion or
  unclassifiable beat called V, or an unclassifiable beat called S, is not a false positive
  (:data:`~streamdx_inference.ecg.scoring.EC57_FP_EXEMPT`); the report's ``strict_classes``
  count every off-class call. ``--retrain`` first trains a beat-class model on the folder's DS1
  records with the shipped recipe. ``--cinc`` serves the labels with an AF model trained here on
  the folder's DS1 records and the CinC training part instead of the shipped one (the AF model's
  seed-to-seed spread). Per record, the beats the classifier called S correctly that the AF
  model put inside AF (``as_served_s_lost_in_af``), and per class the annotated beats left
  unreadable (``as_served_unreadable``).
- ``--protocol kaggle`` (intra-patient, labelled so): the seed's protocol, beats rebuilt
  from the folder with Kachuee et al. 2018's procedure and split at random by beat.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from streamdx.cli_args import non_negative_int, positive_int, report_path, write_report
from streamdx_dsp.core import DEFAULT_WINDOW, BeatWindow
from streamdx_inference.ecg.beat_class import SvebRule, ecg_beat_classes
from streamdx_inference.ecg.datasets import DEFAULT_CACHE, DS1, DS2, cinc_pack_problem, load_mitdb
from streamdx_inference.ecg.labeler import EcgLabeler, EcgModel, StreamLabelState, load_ecg_model
from streamdx_inference.ecg.scoring import EC57_FP_EXEMPT, binary_report, class_report, format_table

__all__ = ["UNREADABLE", "build_parser", "ds2_records_in", "main", "print_class_report"]

_AAMI = ("N", "S", "V", "F", "Q")
#: The served label of a beat the quality gate calls unreadable (no class; a false negative of its class).
UNREADABLE = "unreadable"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx eval beats",
        description="AAMI beat classification (N, S, V, F, Q): inter-patient DS1→DS2 with the shipped model, or the "
        "seed's intra-patient Kaggle-style protocol.",
    )
    p.add_argument("--data", type=Path, required=True, help="folder of MIT-BIH-format WFDB records with .atr")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--protocol", choices=["ds1ds2", "kaggle"], default="ds1ds2",
                   help="ds1ds2: inter-patient (headline); kaggle: random split by beat (intra-patient)")
    p.add_argument("--models", type=Path, default=Path("models"), help="folder with the shipped ECG models")
    p.add_argument("--retrain", action="store_true", help="ds1ds2: train a model on the folder's DS1 records first")
    p.add_argument("--int8", action="store_true", help="ds1ds2: score the INT8 model instead of fp32")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs (kaggle, or ds1ds2 with --retrain)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed of any training")
    p.add_argument("--peaks", choices=["paper", "annotations"], default="paper",
                   help="kaggle: R peaks by Kachuee et al.'s published rule (paper) or at the annotated beats "
                   "(annotations, close to the Kaggle files' 109k beats)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats per record")
    p.add_argument("--cinc", type=Path, default=None,
                   help="ds1ds2: CinC 2017 pack; serve the labels with an AF model trained here on the folder's DS1 "
                        "records and the CinC training part instead of the shipped AF model")
    return p


def print_class_report(rep: dict[str, Any]) -> None:
    """Per-class Se/+P, the binary (normal vs abnormal) table and the confusion matrix."""
    print(format_table(["class", "Se %", "+P %", "TP", "FN", "FP"],
                       [[c, v["se"], v["ppv"], v["tp"], v["fn"], v["fp"]] for c, v in rep["classes"].items()]))
    print(f"labels: {rep['protocol']['labels']}" + (f" (AF model: {rep['as_served_af_model']})"
                                                     if "as_served_af_model" in rep else ""))
    for key, label in (("strict_classes", "every off-class call a false positive (stricter than EC57)"),
                       ("classifier_classes", "the classifier alone (no quality gate, S possible inside AF)"),
                       ("network_argmax_classes", "network arg-max alone (without the SVEB rule or the gate)")):
        if key in rep:
            print(f"{label}: " + ", ".join(f"{c} {v['se']:.1f}/{v['ppv']:.1f}" for c, v in rep[key].items()
                                           if c in "SV") + " (Se/+P %)")  # fmt: skip
    if "as_served_s_lost_in_af" in rep:
        print(f"  annotated beats left unreadable as served, per class: {rep['as_served_unreadable']}")
        print(f"  correctly classed S beats inside AF as served, per record: {rep['as_served_s_lost_in_af']}")
    b = rep["binary"]
    print()
    print(format_table(["N vs abnormal", "accuracy", "precision", "recall", "F1", "kappa", "ROC AUC"],
                       [["beats", b["accuracy"], b["precision"], b["recall"], b["f1"], b["kappa"], b["roc_auc"]]]))
    print()
    cols = rep["confusion_cols"]
    print(format_table(["ref \\ pred", *cols], [[r, *row] for r, row in zip(rep["confusion_rows"], rep["confusion"],
                                                                             strict=True)]))  # fmt: skip


def _ds1ds2(a: argparse.Namespace) -> dict[str, Any] | None:
    from streamdx_dsp.evaluation.records import list_records
    from streamdx_inference.ecg.features import ecg_beat_features, ecg_context_init
    from streamdx_inference.ecg.training.fit import onnx_ecg_model, predict_net

    names = list_records(a.data)
    test = [n for n in DS2 if n in names]
    if not test:
        print(f"error: none of the DS2 records ({', '.join(DS2)}) is in {a.data}", file=sys.stderr)
        return None
    m = None if a.retrain else load_ecg_model(a.models, "ecg_beats", int8=a.int8)
    # the DSP's beats in the window the model was trained on (its model.json), or the DSP's default when retraining
    window: BeatWindow = DEFAULT_WINDOW if m is None else cast(BeatWindow, m.window)
    need_ds1 = a.retrain or a.cinc is not None
    mit = load_mitdb(a.data, test + ([n for n in DS1 if n in names] if need_ds1 else []), window, a.cache,
                     progress=True)  # fmt: skip
    if m is None:
        import torch

        from streamdx_inference.ecg.training.recipes import BEAT_EPOCHS, train_beats

        torch.set_num_threads(2)
        t = train_beats({n: mit[n] for n in DS1 if n in mit}, epochs=a.epochs or BEAT_EPOCHS, seed=a.seed)

        def predict(f: Any) -> np.ndarray:
            return predict_net(t.net, f)

        model_desc = "retrained on the folder's DS1 records"
        rule = SvebRule.from_meta(t.info)
        assert t.calib is not None
        # the retrained network as the service would run it
        beats_model = onnx_ecg_model(t.net, t.calib, "ecg_beats", {
            "version": "retrained", "threshold": t.threshold, "window": window, "sveb_rule": t.info["sveb_rule"]})
    else:
        shipped = m

        def predict(f: Any) -> np.ndarray:
            return shipped.run(f)

        rule = SvebRule.from_meta(shipped.meta)
        model_desc = f"shipped ecg_beats {shipped.version} ({'int8' if a.int8 else 'fp32'}), trained on DS1"
        beats_model = shipped
    if a.cinc is not None:
        served_by: tuple[EcgLabeler, str] | None = _served_labeler(a, mit, window, beats_model)
    else:
        served_by = _shipped_labeler(a, beats_model, retrained=m is None)
    unreadable = dict.fromkeys(_AAMI, 0)  # per class: annotated beats left without a class as served
    ys, ps, nets, probs, served, recs = [], [], [], [], [], {}
    missed: dict[str, int] = {}
    s_lost: dict[str, int] = {}  # per record: S beats called S by the decision but inside AF as served
    for n in test:
        rec = mit[n]
        _, f = ecg_beat_features(ecg_context_init(), rec.waves, rec.rr_prev_s, rec.rr_next_s, rec.quality)
        p = predict(f) if len(rec) else np.zeros((0, 5), np.float32)
        cls = ecg_beat_classes(p, f, rule)
        names_of = np.array(_AAMI, dtype="<U1")
        pred = names_of[cls]
        ys.append(rec.beat_class)
        ps.append(pred)
        nets.append(names_of[p.argmax(1)])
        if served_by is not None:  # the service's labels: quality gate, no S inside AF
            _, labels = served_by[0].label(StreamLabelState(), rec.waves, rec.rr_prev_s, rec.rr_next_s, rec.quality)
            sv = np.array([lb.beat_class or UNREADABLE for lb in labels], dtype=object).astype(str)
            in_af = np.array([bool(lb.af) for lb in labels], dtype=bool)
            served.append(sv)
            for c in _AAMI:
                unreadable[c] += int(np.sum((rec.beat_class == c) & (sv == UNREADABLE)))
            lost = int(np.sum((rec.beat_class == "S") & (pred == "S") & in_af))
            if lost:
                s_lost[n] = lost
        probs.append(p)
        for k, v in rec.missed.items():
            missed[k] = missed.get(k, 0) + v
        recs[n] = _se_ppv(class_report(rec.beat_class, served[-1] if served_by is not None else pred, _AAMI,
                                       rec.missed, EC57_FP_EXEMPT))  # fmt: skip
    y, pred, prob = np.concatenate(ys), np.concatenate(ps), np.concatenate(probs)
    classifier = class_report(y, pred, _AAMI, missed, EC57_FP_EXEMPT)
    if served_by is not None:
        # the headline: the labels as the service serves them (no model here saw a DS2 record): unreadable
        # beats get no class (a column of their own; false negatives of their class), no S inside AF
        sv_all = np.concatenate(served)
        rep = class_report(y, sv_all, _AAMI, missed, EC57_FP_EXEMPT, extra_cols=(UNREADABLE,))
        rep["strict_classes"] = _se_ppv(class_report(y, sv_all, _AAMI, missed))
        rep["classifier_classes"] = _se_ppv(classifier)
        rep["as_served_af_model"] = served_by[1]
        rep["as_served_unreadable"] = unreadable
        rep["as_served_s_lost_in_af"] = s_lost
    else:
        rep = classifier
        # every off-class prediction a false positive (stricter than EC57; earlier reports used it)
        rep["strict_classes"] = _se_ppv(class_report(y, pred, _AAMI, missed))
    # the network's arg-max alone, for comparison with the decision (which adds the SVEB rule)
    rep["network_argmax_classes"] = _se_ppv(class_report(y, np.concatenate(nets), _AAMI, missed, EC57_FP_EXEMPT))
    ann = np.isin(y, _AAMI)
    rep["binary"] = binary_report(y[ann] != "N", pred[ann] != "N", 1.0 - prob[ann, 0])
    rep["protocol"] = {"name": "ds1ds2", "split": "inter-patient: DS1 train, DS2 test (de Chazal 2004), paced "
                       "records excluded", "test_records": test, "model": model_desc,
                       "labels": "as served" if served_by is not None else "classifier",
                       "matching": "DSP beats matched to .atr beats within 150 ms; missed beats count as FN",
                       "scoring": "AAMI EC57 gross statistics: F or Q beats called V and Q beats called S are not "
                                  "false positives (strict_classes: every off-class call is)",
                       "binary": "the classifier's N vs S/V/F/Q on annotated beats the DSP found (readable or not)",
                       "window": window,
                       "decision": ("the service's labeler: quality gate (an unreadable beat gets no class), then "
                                    "the classifier, never S inside AF; " if served_by is not None else "")
                                   + "classifier: network arg-max, N vs S by the model's SVEB rule " + (
                           str(rule.to_dict()) if rule else "(none: arg-max only)")}  # fmt: skip
    rep["records"] = recs
    return rep


def _se_ppv(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Se and +P per class of a :func:`class_report`."""
    return {c: {"se": v["se"], "ppv": v["ppv"]} for c, v in report["classes"].items()}


def ds2_records_in(model: EcgModel) -> list[str] | None:
    """The DS2 records a shipped model was trained on (from its ``model.json``: ``data.mitdb_records``,
    or ``data.train_records`` of the beat-class model), or None when it does not list its MITDB records."""
    data = model.meta.get("data")
    listed = None
    if isinstance(data, dict):
        listed = data.get("mitdb_records", data.get("train_records"))
    if not isinstance(listed, list):
        return None
    return [n for n in DS2 if n in {str(x) for x in listed}]


def _shipped_labeler(a: argparse.Namespace, beats: EcgModel, retrained: bool) -> tuple[EcgLabeler, str] | None:
    """The service's labeler from the shipped models when none of them was trained on a DS2 record
    (as listed in their ``model.json``), with ``beats`` (the shipped or retrained beat-class model);
    otherwise None, and why is printed (the report then scores the classifier alone)."""
    quality = load_ecg_model(a.models, "ecg_quality", int8=a.int8)
    af = load_ecg_model(a.models, "ecg_af", int8=a.int8)
    for model in (quality, af) if retrained else (quality, af, beats):  # a retrained one saw DS1 only
        seen = ds2_records_in(model)
        if seen is None or seen:
            why = f"trained on DS2 records {', '.join(seen)}" if seen else "does not list its MITDB training records"
            print(f"note: the shipped {model.name} {model.version} {why}: scoring the classifier alone (add --cinc "
                  "to score the labels as served with an AF model trained here without DS2)")  # fmt: skip
            return None
    if len(windows := {quality.window, af.window, beats.window}) != 1:
        print(f"note: the models were trained on different beat windows ({', '.join(sorted(windows))}): scoring the "
              "classifier alone")  # fmt: skip
        return None
    desc = f"ecg_af {af.version} of {a.models} (trained without DS2), its quality gate {quality.version}"
    if retrained or a.int8:
        return EcgLabeler(quality, af, beats), desc
    return EcgLabeler.from_dir(a.models), desc


def _served_labeler(
    a: argparse.Namespace, mit: dict[str, Any], window: BeatWindow, beats: EcgModel,
) -> tuple[EcgLabeler, str]:  # fmt: skip
    """The service's labeler for DS2 with an AF network trained here on the folder's DS1 records and
    the CinC training part (``--cinc``, required), the shipped quality gate (trained on DS1, CinC and
    synthetic signals) and ``beats``. Returns the labeler and a description of its AF model."""
    assert a.cinc is not None
    from streamdx_inference.ecg.datasets import load_cinc
    from streamdx_inference.ecg.training.data import cinc_split
    from streamdx_inference.ecg.training.fit import onnx_ecg_model
    from streamdx_inference.ecg.training.recipes import train_af

    ds1 = {n: mit[n] for n in DS1 if n in mit}
    cinc = load_cinc(a.cinc, window, a.cache, progress=True)
    t = train_af(ds1, {k: cinc[k] for k in cinc_split(sorted(cinc))[0]}, seed=a.seed, desc="af (DS1 + CinC)",
                 window=window)  # fmt: skip
    assert t.calib is not None
    af = onnx_ecg_model(t.net, t.calib, "ecg_af", {"version": "ds1+cinc", "threshold": t.threshold, "window": window})
    quality = load_ecg_model(a.models, "ecg_quality", int8=a.int8)
    desc = (f"trained here on {len(ds1)} DS1 records and the CinC training part (seed {a.seed}), threshold "
            f"{t.threshold}; shipped quality gate {quality.version}")
    return EcgLabeler(quality, af, beats), desc


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    if not a.data.is_dir():
        print(f"error: data folder not found: {a.data}", file=sys.stderr)
        return 2
    if a.cinc is not None and (problem := cinc_pack_problem(a.cinc)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if a.protocol == "kaggle":
        from streamdx_inference.ecg.kaggle import evaluate_kaggle, print_kaggle_report

        kw = {"epochs": a.epochs} if a.epochs else {}
        report = evaluate_kaggle(a.data, seed=a.seed, peaks=a.peaks, **kw)
        print_kaggle_report(report)
    else:
        rep = _ds1ds2(a)
        if rep is None:
            return 2
        report = rep
        print(f"protocol: {rep['protocol']}")
        print_class_report(rep)
    write_report(a.out, report)
    return 0
