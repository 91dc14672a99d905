"""``streamdx train af|beats|quality`` — train an ECG model on the DSP's own beats, export ONNX + INT8.

Outputs in ``--out`` (default ``models/ecg_<model>``): ``model.onnx`` (inputs ``wave``
(B, 2, 300), ``rr`` (B, 2, 32), ``scalars`` (B, 13) as far as the model reads them;
output ``prob``), ``model.int8.onnx`` (static QDQ INT8), ``model.json`` (version, beat
window, threshold, data, split, metrics) and ``MODEL_CARD.md``.

- ``af``: MITDB (every record with ``.atr`` but DS2's, so that ``streamdx eval beats`` can score
  the whole service on DS2; ``--mitdb-records all`` for all) + the fixed training part of CinC
  2017 (70 % of recordings by a hash of the name; ``~`` left out). The recording-level rules of
  ``streamdx eval cinc2017`` are then fitted on the training-part recordings the network did
  not learn from (its validation recordings and the ``~`` ones) with the new AF network and
  the shipped quality and beat-class models (train those first). Held-out CinC recordings measure
  it (also ``streamdx eval cinc2017``); inter-patient MITDB figures come from
  ``streamdx eval af`` (leave-records-out, models retrained per fold).
- ``beats``: MITDB DS1 (de Chazal 2004); measured on DS2 (``streamdx eval beats``).
- ``quality``: see :mod:`streamdx_inference.ecg.training.quality_data`.

After ``af`` or ``beats`` into ``models/ecg_<model>``, the fused AF + beat-class graph
beside them (``ecg_af_beats``, :mod:`~streamdx_inference.ecg.training.trunk_fusion`) is
rebuilt, and after ``quality`` the pair-folded quality graph (``ecg_quality_paired``,
:mod:`~streamdx_inference.ecg.training.pair_fold`), so the labeler never runs a stale one.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamdx.cli_args import non_negative_int, positive_int
from streamdx_dsp.core import DEFAULT_WINDOW
from streamdx_inference.ecg.datasets import (
    DEFAULT_CACHE,
    DS1,
    DS2,
    SHARED_CINC,
    cinc_pack_problem,
    load_cinc,
    load_mitdb,
)
from streamdx_inference.ecg.features import EcgFeatures
from streamdx_inference.ecg.labeler import META_FILE
from streamdx_inference.ecg.scoring import binary_report
from streamdx_inference.ecg.training.data import beat_set, cinc_split
from streamdx_inference.ecg.training.fit import export_onnx, onnx_ecg_model, predict_net, quantize_int8
from streamdx_inference.ecg.training.recipes import (
    AF_EMA_DECAY,
    AF_EPOCH_SIZE,
    AF_EPOCHS,
    AF_TEACHERS,
    BEAT_EMA_DECAY,
    BEAT_EPOCHS,
    BEAT_TEACHERS,
    MITDB_WEIGHT,
    QUALITY_EPOCHS,
    SYNTHETIC_RECORDS,
    Trained,
    beat_labels,
    smooth_af,
    train_af,
    train_beats,
    train_quality,
)
from streamdx_inference.ecg.training.sveb_fit import sveb_card_section

__all__ = ["build_parser_for", "run", "save_model"]

_DEFAULT_MITDB = Path("../shared/data/mitdb")
_DEFAULT_NSTDB = Path("../shared/data/nstdb")
CINC_TRAIN_FILE = "cinc_train_records.json"


_WHAT = {
    "af": "the per-beat atrial fibrillation model (MITDB + the training part of CinC 2017)",
    "beats": "the AAMI beat-class model (N/S/V/F/Q) on MITDB DS1",
    "quality": "the signal-quality gate (noise, artefacts, lead-off, non-ECG input)",
}


def build_parser_for(model: str) -> argparse.ArgumentParser:
    """The parser of ``streamdx train <model>``."""
    p = argparse.ArgumentParser(
        prog=f"streamdx train {model}",
        description=f"Train {_WHAT[model]} on the signal-processing service's own beats and export it to ONNX "
        "(fp32 and INT8) with its model card.",
    )
    p.add_argument("--mitdb", type=Path, default=_DEFAULT_MITDB,
                   help="MIT-BIH Arrhythmia folder (WFDB .hea/.dat/.atr)")
    p.add_argument("--cinc", type=Path, default=SHARED_CINC, help="CinC 2017 folder in the pack format (af, quality)")
    p.add_argument("--nstdb", type=Path, default=_DEFAULT_NSTDB, help="NSTDB folder with ma/bw noise (quality)")
    p.add_argument("--window", choices=["rr", "fixed"], default=DEFAULT_WINDOW,
                   help="beat window the DSP emits (rr: RR-based, fixed: 0.28 s before / 0.56 s after R)")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    p.add_argument("--out", type=Path, default=None, help="output folder (default models/ecg_<model>)")
    if model == "af":
        p.add_argument("--models", type=Path, default=None,
                       help="folder with the quality and beat-class models the recording rules are fitted with "
                            "(default: the folder that holds --out)")
        p.add_argument("--mitdb-records", choices=["no-ds2", "all"], default="no-ds2",
                       help="MITDB records to train on: every record but DS2 (default: the whole service can "
                            "then be scored on DS2 by `streamdx eval beats`, as the other models are trained "
                            "without it), or all records")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats per record")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads for PyTorch")
    return p


def _int8_change(fp32: Path, int8: Path, f: EcgFeatures, y: np.ndarray, threshold: float) -> dict[str, Any]:
    import onnxruntime as ort

    out = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in s.get_inputs()}
        feed = {k: v for k, v in f.as_inputs().items() if k in names}
        out[name] = s.run(None, feed)[0]
    a, b = out["fp32"], out["int8"]
    if a.ndim == 2:
        pa, pb = a.argmax(1), b.argmax(1)
        return {"agreement": float(np.mean(pa == pb)), "accuracy_fp32": float(np.mean(pa == y)),
                "accuracy_int8": float(np.mean(pb == y)), "max_abs_prob_diff": float(np.abs(a - b).max())}  # fmt: skip
    ra, rb = binary_report(y.astype(bool), a > threshold, a), binary_report(y.astype(bool), b > threshold, b)
    return {"agreement": float(np.mean((a > threshold) == (b > threshold))), "f1_fp32": ra["f1"], "f1_int8": rb["f1"],
            "max_abs_prob_diff": float(np.abs(a - b).max())}  # fmt: skip


def save_model(
    t: Trained, name: str, out: Path, window: str, meta: dict[str, Any], card: str, held: EcgFeatures | None = None,
    y_held: np.ndarray | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Export ONNX + INT8, measure the INT8 change on held-out beats, write metadata and card."""
    out.mkdir(parents=True, exist_ok=True)
    assert t.calib is not None
    export_onnx(t.net, t.calib, out / "model.onnx")
    quantize_int8(out / "model.onnx", out / "model.int8.onnx", t.calib)
    if held is not None and y_held is not None and len(held):
        meta["int8_change"] = _int8_change(out / "model.onnx", out / "model.int8.onnx", held, y_held, t.threshold)
    meta.update({
        "name": name, "version": _dt.datetime.now(_dt.UTC).strftime("%Y%m%d%H%M"), "window": window,
        "threshold": t.threshold, "inputs": ["wave", "rr", "scalars"], "training": t.info,
        "size_bytes": {p.name: p.stat().st_size for p in (out / "model.onnx", out / "model.int8.onnx")},
    })  # fmt: skip
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=float) + "\n")
    (out / "MODEL_CARD.md").write_text(card.format(meta=meta, json=json.dumps(
        {k: v for k, v in meta.items() if k not in ("training",)}, indent=2, default=float)))  # fmt: skip
    return meta


def _fit_rules(t: Trained, recs: dict[str, Any], models_dir: Path, window: str) -> tuple[dict[str, float], float]:
    """Fit the recording-level rules on CinC recordings of the training part that the AF network
    did not learn from (its validation recordings and the ``~`` ones), with the new AF network and
    the shipped quality and beat-class models (``models_dir``)."""
    from streamdx_inference.ecg.labeler import EcgLabeler, StreamLabelState, load_ecg_model
    from streamdx_inference.ecg.recording import fit_recording_rules, summarise_recording

    assert t.calib is not None
    af = onnx_ecg_model(t.net, t.calib, "ecg_af", {"version": "fit", "threshold": t.threshold, "window": window})
    labeler = EcgLabeler(load_ecg_model(models_dir, "ecg_quality"), af, load_ecg_model(models_dir, "ecg_beats"))
    summaries, ys = [], []
    for rb in recs.values():
        _, labels = labeler.label(StreamLabelState(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
        summaries.append(summarise_recording(labels, rb.rr_prev_s.tolist()))
        ys.append(rb.rhythm[0] if len(rb) else "~")
    rules, score = fit_recording_rules(summaries, ys)
    return rules.to_dict(), score


_CARD = """# {meta[name]} — {title}

Not a medical device: research software; labels are not validated for diagnosis.

- **Task**: {task}
- **Input**: the DSP's beats (window `{meta[window]}`), features from
  `streamdx_inference.ecg.features.ecg_beat_features` (shared by training and serving).
- **Data**: {data}
- **Split**: {split}
- **Decision**: threshold {meta[threshold]:.3f} ({thr_note}).
- **Delay**: {delay}
- **Files**: `model.onnx` (fp32), `model.int8.onnx` (static QDQ INT8, for TensorRT/Jetson), `model.json`.
- **Command**: `{command}`

## Metrics

{metrics}

## model.json (without the training history)

```json
{{json}}
```
"""


def _card(**kw: str) -> str:
    return _CARD.replace("{title}", kw["title"]).replace("{task}", kw["task"]).replace("{data}", kw["data"]).replace(
        "{split}", kw["split"]).replace("{thr_note}", kw["thr_note"]).replace("{delay}", kw["delay"]).replace(
        "{command}", kw["command"]).replace("{metrics}", kw["metrics"]).replace("{{json}}", "{json}")  # fmt: skip


def _install(work: Path, out: Path) -> None:
    """Move the files written to ``work`` into ``out``, each by an atomic rename (the models
    before their ``model.json``), so a failed or interrupted training never leaves a half-written model."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(work.iterdir(), key=lambda f: (f.name in (META_FILE, "MODEL_CARD.md"), f.name))
    for f in files:
        os.replace(f, out / f.name)


def run(model: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` and train ``model`` (``af``, ``beats`` or ``quality``)."""
    a = build_parser_for(model).parse_args(list(argv))
    a.model = model
    final = a.out or Path("models") / f"ecg_{a.model}"
    if final.exists() and not final.is_dir():
        print(f"error: --out {final} is a file, not a folder", file=sys.stderr)
        return 2
    if not a.mitdb.is_dir():
        print(f"error: MITDB folder not found: {a.mitdb}", file=sys.stderr)
        return 2
    models_dir = getattr(a, "models", None) or final.parent
    if a.model == "af":  # the recording rules are fitted with these: check them before hours of training
        from streamdx_inference.ecg.labeler import EcgModelError, load_ecg_model

        for name in ("ecg_quality", "ecg_beats"):
            try:
                load_ecg_model(models_dir, name)
            except EcgModelError as exc:
                print(f"error: train af fits its recording rules with the quality and beat-class models; {exc} "
                      "(give the folder that holds them with --models)", file=sys.stderr)  # fmt: skip
                return 2
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        print(f"error: cannot write the model to {final}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        rc = _train(a, work, models_dir, " ".join(["streamdx train", model, *argv]))
        if rc == 0:
            _install(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if rc:
        return rc
    print(f"model written to {final}")
    if a.model in ("af", "beats") and final.name == f"ecg_{a.model}":
        _rebuild_fusion(final.parent)
    if a.model == "quality" and final.name == "ecg_quality":
        _rebuild_pair_fold(final.parent)
    return 0


def _train(a: argparse.Namespace, out: Path, models_dir: Path, command: str) -> int:
    """Train ``a.model`` and write its files to ``out`` (a fresh folder that :func:`run` then
    installs as the ``--out`` folder), ``command`` quoted in its card; 2 on bad input."""
    import torch

    torch.set_num_threads(a.threads)
    from streamdx_dsp.evaluation.records import list_records

    names = list_records(a.mitdb)
    if a.model == "af":
        if problem := cinc_pack_problem(a.cinc):
            print(f"error: {problem}", file=sys.stderr)
            return 2
        af_names = [n for n in names if a.mitdb_records == "all" or n not in DS2]
        mit = load_mitdb(a.mitdb, af_names, a.window, a.cache, progress=True)
        cinc = load_cinc(a.cinc, a.window, a.cache, progress=True)
        tr, held = cinc_split(sorted(cinc))
        t = train_af(mit, {k: cinc[k] for k in tr}, epochs=a.epochs or AF_EPOCHS, seed=a.seed, window=a.window)
        hs = beat_set({k: cinc[k] for k in held if len(cinc[k]) and cinc[k].rhythm[0] != "~"})
        p = smooth_af(predict_net(t.net, hs.features), hs.records)
        yh = hs.beats.af
        rep = binary_report(yh, p > t.threshold, p)
        meta: dict[str, Any] = {"data": {"mitdb_records": af_names, "cinc_train_recordings": len(tr),
                                 "cinc_heldout_recordings": len(held)}, "heldout_cinc_beats": rep}  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        (out / CINC_TRAIN_FILE).write_text(json.dumps(sorted(tr)) + "\n")
        metrics = (f"Held-out CinC 2017 recordings ({len(held)}, never trained on), per beat: F1 {rep['f1']:.3f}, "
                   f"precision {rep['precision']:.3f}, recall {rep['recall']:.3f}, ROC AUC {rep['roc_auc']:.3f}. "
                   "MITDB inter-patient (leave-records-out) and recording-level CinC results: "
                   "`streamdx eval af`, `streamdx eval cinc2017` (see the README).")  # fmt: skip
        unseen = set(t.info["val_records"]) | {k for k in tr if len(cinc[k]) and cinc[k].rhythm[0] == "~"}
        meta["recording_rules"], meta["recording_rules_fit_score"] = _fit_rules(
            t, {k: cinc[k] for k in tr if k in unseen}, models_dir, a.window)
        meta["recording_rules_fit_on"] = (
            f"{len(unseen & set(tr))} CinC training-part recordings the AF network did not learn from")
        save_model(t, "ecg_af", out, a.window, meta, _card(
            title="per-beat atrial fibrillation", task="P(beat lies in atrial fibrillation), causal",
            data=(f"MITDB (all {len(af_names)} records" if a.mitdb_records == "all" else
                  f"MITDB ({len(af_names)} records, all but DS2's, on which `streamdx eval beats` scores the "
                  "service") + f"; rhythm `(AFIB`) + CinC 2017 training part ({len(tr)} recordings, "
                 f"label A = AF; `~` excluded) + {SYNTHETIC_RECORDS} simulated records (streamdx_devkit.sim: AF, "
                 f"sinus, ectopy, mixed, brady at 50-130 bpm). MITDB beats drawn {MITDB_WEIGHT:g}x as often as the "
                 f"others; {AF_EPOCH_SIZE} beats drawn per epoch.",
            split=f"CinC by a fixed hash of the record name: {len(tr)} train / {len(held)} held out "
                  f"(list in `{CINC_TRAIN_FILE}`); threshold validation on 15 % of the training records. "
                  "Distilled: the served network learns half from the reference label, half from the mean AF "
                  f"probability of {AF_TEACHERS} teacher networks trained first on the same beats (seeds + 1 ...)."
                  + (f" Every network keeps a moving average of its weights (decay {AF_EMA_DECAY})."
                     if AF_EMA_DECAY is not None else ""),
            thr_note="fixed at 0.5 on the causally smoothed probability (alpha 0.15), not tuned",
            delay="none beyond the beat window: uses this beat and the 31 RR intervals before it, never RR_next.",
            command=command, metrics=metrics), hs.features, yh.astype(np.int64))  # fmt: skip
    elif a.model == "beats":
        mit = load_mitdb(a.mitdb, names, a.window, a.cache, progress=True)
        ds1 = {k: mit[k] for k in DS1 if k in mit}
        t = train_beats(ds1, epochs=a.epochs or BEAT_EPOCHS, seed=a.seed)
        test = beat_set({k: mit[k] for k in DS2 if k in mit})
        ok, y = beat_labels(test)
        meta = {"data": {"train_records": sorted(ds1), "test_records": [k for k in DS2 if k in mit]},
                "sveb_rule": t.info["sveb_rule"], "sveb_rule_fit": t.info["sveb_rule_fit"]}  # fmt: skip
        save_model(t, "ecg_beats", out, a.window, meta, _card(
            title="AAMI beat class (N, S, V, F, Q)", task="softmax over the AAMI EC57 classes",
            data="MITDB DS1 (de Chazal et al. 2004: 22 records; paced 102, 104, 107, 217 excluded), the DSP's beats "
                 "matched to `.atr` beats within 150 ms.",
            split="inter-patient: trained on DS1 (15 % of its records for validation), scored on DS2 by "
                  "`streamdx eval beats --protocol ds1ds2`. Distilled: the served network learns half from the "
                  f"reference classes, half from the mean class probabilities of {BEAT_TEACHERS} teacher networks "
                  "trained first on the same beats (seeds + 1 ...); every network keeps a moving average of its "
                  f"weights (decay {BEAT_EMA_DECAY}).",
            thr_note="arg-max class, N versus S by the SVEB rule below; class weights 1/sqrt(frequency)",
            delay=("reads RR_next (the interval to the following beat): a label waits for the next R peak, "
                   "as the rr beat window already does." if a.window == "rr" else
                   "none beyond the beat window: with the fixed window a beat leaves before the next R peak, so "
                   "RR_next is unknown and its two features are 0 in training and serving."),
            command=command,
            metrics="DS2 per-class Se/+P: see `streamdx eval beats --protocol ds1ds2` and the README."
            + sveb_card_section(t.info["sveb_rule"], t.info["sveb_rule_fit"], len(ds1), command)),
            test.take(ok).features, y[ok])  # fmt: skip
    else:
        from streamdx_inference.ecg.training.quality_data import ARTEFACT_RECORDS, NON_ECG_ROUNDS, quality_set
        from streamdx_inference.ecg.training.recipes import QUALITY_STEM_STRIDE, QUALITY_THRESHOLD_BETA

        if problem := cinc_pack_problem(a.cinc):
            if (a.cinc / "index.csv").exists():  # a pack that is there but broken
                print(f"error: {problem}", file=sys.stderr)
                return 2
            print(f"note: training without CinC 2017 noise (~) recordings: {problem}", file=sys.stderr)
        cinc = {} if problem else load_cinc(a.cinc, a.window, a.cache, progress=True)
        tr, _ = cinc_split(sorted(cinc))
        q_names = [n for n in DS1 if n in names]
        feats, y, groups = quality_set(a.mitdb, a.nstdb if a.nstdb.is_dir() else None, q_names,
                                       {k: cinc[k] for k in tr}, a.window, seed=a.seed)  # fmt: skip
        t = train_quality(feats, y, groups, epochs=a.epochs or QUALITY_EPOCHS, seed=a.seed)
        meta = {"data": {"groups": t.info["groups"], "mitdb_records": q_names}}
        save_model(t, "ecg_quality", out, a.window, meta, _card(
            title="signal-quality gate", task="P(beat is unreadable: noise, artefact, lead-off, non-ECG)",
            data="CinC 2017 training part (`~` recordings unreadable, N/A/O readable), MITDB DS1 clean and with "
                 "NSTDB ma/bw noise over the whole record (SNR -6/-3 dB unreadable, 12/18 dB readable), "
                 f"{ARTEFACT_RECORDS} synthetic 90-s ECG records with flat/lead-off/saturation/EMG artefact episodes, "
                 f"and {NON_ECG_ROUNDS} 60-s signals of each of ten non-ECG families. The network reads the beat, "
                 "its RR and QRS-deviation context and the RR scalars, not the DSP's quality statistics (the "
                 f"service applies the DSP's rule itself); stem stride {QUALITY_STEM_STRIDE}.",
            split="random 15 % of the beats for validation and threshold choice.",
            thr_note=f"F{QUALITY_THRESHOLD_BETA:g}-optimal on validation; combined in service with "
                     "the DSP's own rule (flat, saturated, quality score < 0.2, high-frequency share > 0.2)",
            delay="none beyond the beat window.", command=command,
            metrics="Validation beats, the unreadable-input tests (`tests/unit/inference`) and `streamdx eval "
                    "quality` (seeded artefacts, non-ECG input and MITDB DS2 with NSTDB noise; see the README). "
                    "INT8 change on the validation beats: `int8_change` in model.json."),
            *(t.validation or (None, None)))  # fmt: skip
    return 0


def _rebuild_pair_fold(models_dir: Path) -> None:
    """Rebuild the pair-folded quality graph beside a newly trained quality model."""
    from streamdx_inference.ecg.training.pair_fold import pair_fold_model_dir

    meta = pair_fold_model_dir(models_dir)
    print(f"pair-folded quality graph rebuilt in {models_dir}/ecg_quality_paired "
          f"(largest difference {meta['max_abs_prob_diff']:.2g})")  # fmt: skip


def _rebuild_fusion(models_dir: Path) -> None:
    """Rebuild the fused AF + beat-class graph beside a newly trained AF or beat-class model."""
    from streamdx_inference.ecg.training.trunk_fusion import fuse_model_dirs

    if all((models_dir / n / "model.onnx").exists() for n in ("ecg_af", "ecg_beats")):
        meta = fuse_model_dirs(models_dir)
        print(f"fused AF + beat-class graph rebuilt in {models_dir}/ecg_af_beats "
              f"(largest difference {meta['max_abs_prob_diff']:.2g})")  # fmt: skip
