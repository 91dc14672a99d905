"""``streamdx eval episodes`` — AF episodes of the whole chain, EC57 episode and duration Se/+P.

For every WFDB record of ``--data`` whose rhythm annotations contain ``(AFIB`` (found by
reading each record's ``.atr``; the others are reported as skipped), the record is run
through the chain the services run:

1. the streaming DSP core (:func:`streamdx_inference.ecg.datasets.load_mitdb`, first channel,
   the models' beat window; cached per record);
2. the ECG labeler (:class:`streamdx_inference.ecg.labeler.EcgLabeler`: quality gate, smoothed
   AF, beat class), one stream per record, in chunks of beats as the worker gets them;
3. the rhythm engine (:func:`streamdx_alerts.engine.rhythm.rhythm_step` then
   :func:`~streamdx_alerts.engine.rhythm.rhythm_finish`) with the default alert rules (AF episode
   ≥ 30 s, ended by 15 s of non-AF rhythm; ``--min-duration``/``--offset`` change them);

and the engine's raised-and-ended AF episodes are compared with the reference ``(AFIB``
episodes by :func:`streamdx_alerts.evaluation.episodes.compare_episodes` (epicmp rules: test
period from 5:00 to the end of the record, episode matched on any overlap, ``(AFL`` counted as
non-AF unless ``--exclude-afl``). The headline leaves out episodes shorter than 30 s
(``--min-episode-s``, epicmp ``-i 30``: DESIGN "AF episode ≥ 30 s", the clinical minimum the
engine also applies); the figures without a minimum (epicmp's default) are reported beside it.
AF burden per record: the engine's (AF time / analysed time) against the reference's (``(AFIB``
time / record length), error in percentage points.

Models: ``--models`` holds the three ECG models (default: the shipped ones, whose AF model was
trained on every MITDB record, so scoring it on MITDB is **not** inter-patient). With
``--train-af-on cinc2017 --cinc DIR`` an AF model is trained only on the CinC 2017 pack with the
shipped recipe (``streamdx eval af --train-on cinc2017`` trains the same one) and replaces the
AF model; that is the inter-patient headline, and the ``--models`` set is scored beside it
(``models_compared``). ``--af-model DIR`` uses an AF model saved before (``--save-af DIR``).
The quality gate and beat-class models stay the shipped ones in every case (trained on MITDB DS1
records, which include AF records 201 and 203; the engine's AF episodes read only the gate and
the AF label).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamdx.cli_args import non_negative_float, non_negative_int, positive_int, report_path
from streamdx_alerts.evaluation.episodes import (
    EpisodeCounts,
    average_scores,
    compare_episodes,
    covered_s,
    gross_scores,
    rhythm_episodes,
    scores,
)

if TYPE_CHECKING:
    from streamdx_inference.ecg.datasets import RecordBeats
    from streamdx_inference.ecg.labeler import EcgLabeler

__all__ = ["build_parser", "main", "read_rhythm"]

_DEFAULT_MODELS = Path("models")
#: Beats per labeler call (one worker batch of one stream).
_CHUNK = 256


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx eval episodes",
        description="AF episodes of DSP + ECG models + rhythm engine on the WFDB records with (AFIB rhythm "
        "annotations: EC57 (epicmp) episode and duration Se/+P and AF-burden error per record.",
    )
    p.add_argument("--data", type=Path, required=True, help="folder of WFDB records with .atr rhythm annotations")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--records", default=None, help="comma-separated records to consider (default: all with .atr)")
    p.add_argument(
        "--models",
        type=Path,
        default=_DEFAULT_MODELS,
        help="folder with ecg_quality, ecg_af, ecg_beats (default: the shipped models/)",
    )
    p.add_argument(
        "--train-af-on",
        choices=["cinc2017"],
        default=None,
        help="replace the AF model by one trained only on the CinC 2017 pack (--cinc): inter-patient on "
        "MITDB; the --models set is scored beside it",
    )
    p.add_argument("--cinc", type=Path, default=None, help="CinC 2017 pack folder (index.csv) for --train-af-on")
    p.add_argument(
        "--af-model",
        type=Path,
        default=None,
        help="folder with an AF model.onnx + model.json to use instead of --models/ecg_af (e.g. --save-af)",
    )
    p.add_argument("--save-af", type=Path, default=None, help="keep the AF model trained by --train-af-on here")
    p.add_argument("--epochs", type=positive_int, default=None, help="AF training epochs (default: the recipe's)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="AF training seed")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for PyTorch training")
    p.add_argument(
        "--min-duration",
        type=float,
        default=None,
        help="rhythm engine: AF lasting this long raises an episode (s; default the rule's 30)",
    )
    p.add_argument(
        "--offset",
        type=float,
        default=None,
        help="rhythm engine: non-AF rhythm lasting this long ends an episode (s; default the rule's 15)",
    )
    p.add_argument(
        "--start-s", type=non_negative_float, default=300.0,
        help="start of the test period (s; epicmp's 5-minute learning period)",
    )
    p.add_argument(
        "--min-episode-s",
        type=non_negative_float,
        default=30.0,
        help="episodes shorter than this are left out of the headline statistics (epicmp -i; the "
        "figures without a minimum are reported too)",
    )
    p.add_argument(
        "--exclude-afl",
        action="store_true",
        help="exclude reference (AFL from the +P pass (epicmp -x, EC38:1998; default EC57: no exclusion)",
    )
    p.add_argument(
        "--check-skipped",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the chain on records without AF and report the AF episodes it raises there",
    )
    p.add_argument("--cache", type=Path, default=None, help="cache of the DSP's beats per record (default: the usual)")
    return p


def read_rhythm(data_dir: Path, name: str) -> tuple[list[tuple[float, str]], float]:
    """Rhythm annotations ``(time_s, note)`` of a record's ``.atr`` and the record's length (s)."""
    from streamdx_dsp.evaluation.records import read_annotations, read_header

    hdr = read_header(data_dir, name)
    fs = float(hdr.fs)
    ann = read_annotations(data_dir, name, "atr", int(hdr.sig_len) if hdr.sig_len else None)
    aux = ann.aux_note or [""] * len(ann.symbol)
    notes = [(int(s) / fs, str(a or "").strip().rstrip("\x00"))
             for s, c, a in zip(ann.sample, ann.symbol, aux, strict=True) if c == "+" and a]  # fmt: skip
    return notes, float(hdr.sig_len or 0) / fs


def _train_cinc_af(a: argparse.Namespace, window: str, out: Path) -> dict[str, Any]:
    """Train the AF model only on the CinC pack (the shipped recipe) and export it to ``out``."""
    import torch

    from streamdx_inference.ecg.datasets import DEFAULT_CACHE, load_cinc
    from streamdx_inference.ecg.labeler import META_FILE
    from streamdx_inference.ecg.training.fit import export_onnx
    from streamdx_inference.ecg.training.recipes import AF_EPOCHS, train_af

    torch.set_num_threads(max(1, a.threads))
    cinc = load_cinc(a.cinc, window, a.cache or DEFAULT_CACHE, progress=True)  # type: ignore[arg-type]
    t = train_af({}, cinc, epochs=a.epochs or AF_EPOCHS, seed=a.seed, desc="af (CinC 2017 only)",
                 window=window)  # type: ignore[arg-type]  # fmt: skip
    assert t.calib is not None
    export_onnx(t.net, t.calib, out / "model.onnx")
    meta = {"name": "ecg_af", "version": f"cinc2017-only-seed{a.seed}", "window": window, "threshold": t.threshold,
            "inputs": ["wave", "rr", "scalars"], "data": {"cinc_recordings": len(cinc), "mitdb_records": []},
            "training": {k: v for k, v in t.info.items() if k not in ("history", "val_records")}}  # fmt: skip
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=float) + "\n")
    return meta


def _label_record(labeler: EcgLabeler, rec: RecordBeats) -> tuple[list[Any], list[bool]]:
    """The engine's beats of one record and the AF decision per beat (unreadable: False)."""
    from streamdx_alerts.engine.rhythm import RhythmBeat
    from streamdx_inference.ecg.labeler import StreamLabelState

    state = StreamLabelState()
    beats: list[RhythmBeat] = []
    af: list[bool] = []
    for i in range(0, len(rec), _CHUNK):
        sl = slice(i, i + _CHUNK)
        state, labels = labeler.label(state, rec.waves[sl], rec.rr_prev_s[sl], rec.rr_next_s[sl], rec.quality[sl])
        for k, lab in enumerate(labels, start=i):
            beats.append(RhythmBeat(beat_index=k, t=float(rec.r_sample[k]) / rec.fs, rr_prev_s=float(rec.rr_prev_s[k]),
                                    readable=lab.quality == "ok", af=lab.af, beat_class=lab.beat_class))  # fmt: skip
            af.append(bool(lab.af))
    return beats, af


def _run_engine(beats: Sequence[Any], rules: Any, name: str) -> tuple[list[tuple[float, float]], float | None]:
    from streamdx_alerts.engine.rhythm import rhythm_finish, rhythm_step

    st, _ = rhythm_step(None, beats, rules, stream_id=name)
    st, _ = rhythm_finish(st, rules, stream_id=name)
    return [(float(s), float(e)) for s, e in st.af_episodes], st.af_burden()


def _evaluate(
    labeler: EcgLabeler, recs: dict[str, RecordBeats], rhythm: dict[str, tuple[list[tuple[float, str]], float]],
    af_names: Sequence[str], skipped: Sequence[str], rules: Any, a: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """Score one model set: per record, gross, average, burden, and the skipped records' detections."""
    import numpy as np

    from streamdx_inference.ecg.scoring import binary_report

    records: dict[str, Any] = {}
    head: list[EpisodeCounts] = []
    nomin: list[EpisodeCounts] = []
    ys, ds = [], []
    for n in af_names:
        notes, length = rhythm[n]
        ref = rhythm_episodes(notes, length)
        afl = rhythm_episodes(notes, length, prefix="(AFL") if a.exclude_afl else []
        beats, af = _label_record(labeler, recs[n])
        det, burden = _run_engine(beats, rules, n)
        kw = {"start_s": a.start_s, "end_s": length, "exclude": afl}
        c = compare_episodes(ref, det, min_s=a.min_episode_s, **kw)
        c0 = compare_episodes(ref, det, min_s=0.0, **kw)
        head.append(c)
        nomin.append(c0)
        ref_burden = covered_s(ref, 0.0, length) / length if length > 0 else math.nan
        det_burden = burden if burden is not None else math.nan
        y = recs[n].af
        ys.append(y)
        ds.append(np.asarray(af, dtype=bool))
        br = binary_report(y, ds[-1])
        records[n] = {
            **scores(c), "no_minimum": scores(c0),
            "burden": {"reference": ref_burden, "detected": det_burden, "error_pp": 100.0 * (det_burden - ref_burden)},
            "beats": {"n": len(y), "af_reference": int(y.sum()), "af_se": br["recall"], "af_ppv": br["precision"],
                      "unreadable": int(sum(not b.readable for b in beats))},
            "reference_episodes": [[round(s, 2), round(e, 2)] for s, e in ref],
            "detected_episodes": [[round(s, 2), round(e, 2)] for s, e in det],
        }  # fmt: skip
    errs = [abs(r["burden"]["error_pp"]) for r in records.values() if not math.isnan(r["burden"]["error_pp"])]
    pooled = binary_report(np.concatenate(ys), np.concatenate(ds)) if ys else {}
    out: dict[str, Any] = {
        **gross_scores(head), "average": average_scores(head),
        "no_minimum": {"gross": gross_scores(nomin), "average": average_scores(nomin)},
        "burden": {"mean_abs_error_pp": sum(errs) / len(errs) if errs else math.nan,
                   "max_abs_error_pp": max(errs) if errs else math.nan},
        "beats": {"af_se": pooled.get("recall", math.nan), "af_ppv": pooled.get("precision", math.nan)},
        "records": records,
    }  # fmt: skip
    if a.check_skipped:
        sk: dict[str, Any] = {}
        false: list[EpisodeCounts] = []
        for n in skipped:
            _, length = rhythm[n]
            det, burden = _run_engine(_label_record(labeler, recs[n])[0], rules, n)
            c = compare_episodes([], det, start_s=a.start_s, end_s=length, min_s=a.min_episode_s)
            false.append(c)
            sk[n] = {
                "reason": "no (AFIB rhythm annotation",
                "false_episodes": c.fp,
                "false_af_s": c.test_s,
                "detected_burden": burden,
                "detected_episodes": [[round(s, 2), round(e, 2)] for s, e in det],
            }
        out["skipped"] = sk
        out["skipped_false_episodes"] = sum(v["false_episodes"] for v in sk.values())
        # +P when the records without AF are scored too (their detections can only be false)
        out["all_records"] = {"n_records": len(af_names) + len(skipped), **gross_scores(head + false)}
    else:
        out["skipped"] = {n: {"reason": "no (AFIB rhythm annotation"} for n in skipped}
    return out


def _table(res: dict[str, Any], title: str) -> str:
    from streamdx_inference.ecg.scoring import format_table

    rows: list[list[object]] = []
    for n, r in res["records"].items():
        e, d, b = r["episode"], r["duration"], r["burden"]
        rows.append([n, e["tp_se"], e["fn"], e["tp_ppv"], e["fp"], e["se"], e["ppv"], d["se"], d["ppv"],
                     100.0 * b["reference"], 100.0 * b["detected"], b["error_pp"]])  # fmt: skip
    for label, s in (("gross", res), ("average", res["average"])):
        rows.append([label, "", "", "", "", s["episode"]["se"], s["episode"]["ppv"], s["duration"]["se"],
                     s["duration"]["ppv"], "", "", ""])  # fmt: skip
    if "all_records" in res:
        al = res["all_records"]
        rows.append([f"gross, all {al['n_records']}", al["episode"]["tp_se"], al["episode"]["fn"],
                     al["episode"]["tp_ppv"], al["episode"]["fp"], al["episode"]["se"], al["episode"]["ppv"],
                     al["duration"]["se"], al["duration"]["ppv"], "", "", ""])  # fmt: skip
    nm = res["no_minimum"]["gross"]
    rows.append(["gross, no min.", nm["episode"]["tp_se"], nm["episode"]["fn"], nm["episode"]["tp_ppv"],
                 nm["episode"]["fp"], nm["episode"]["se"], nm["episode"]["ppv"], nm["duration"]["se"],
                 nm["duration"]["ppv"], "", "", ""])  # fmt: skip
    hdr = ["record", "TPs", "FN", "TPp", "FP", "ESe %", "E+P %", "DSe %", "D+P %", "burden ref %", "det %", "err pp"]
    lines = [title, format_table(hdr, rows),
             f"burden |error|: mean {res['burden']['mean_abs_error_pp']:.2f} pp, "
             f"max {res['burden']['max_abs_error_pp']:.2f} pp; per-beat AF (labeler) Se "
             f"{100 * res['beats']['af_se']:.1f} %, +P {100 * res['beats']['af_ppv']:.1f} %"]  # fmt: skip
    if "skipped_false_episodes" in res:
        bad = {n: v["false_episodes"] for n, v in res["skipped"].items() if v["false_episodes"]}
        lines.append(f"records without AF ({len(res['skipped'])}): {res['skipped_false_episodes']} false AF episodes "
                     f"{bad if bad else ''}".rstrip())  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    t0 = time.perf_counter()
    from pydantic import ValidationError

    from streamdx_alerts.rules import AfRule, AlertRules
    from streamdx_dsp.evaluation.records import records_for_command
    from streamdx_inference.ecg.datasets import DEFAULT_CACHE, cinc_pack_problem, load_mitdb
    from streamdx_inference.ecg.labeler import EcgLabeler, load_ecg_model

    if a.train_af_on and (problem := cinc_pack_problem(a.cinc) if a.cinc else "no --cinc given"):
        print(f"error: --train-af-on cinc2017 needs --cinc DIR with a CinC 2017 pack; {problem}", file=sys.stderr)
        return 2
    if a.train_af_on and a.af_model:
        print("error: --train-af-on and --af-model are alternatives", file=sys.stderr)
        return 2
    names = records_for_command(a.data, a.records)
    if names is None:
        return 2
    try:
        shipped = EcgLabeler.from_dir(a.models)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    af_kw = {k: v for k, v in (("min_duration_s", a.min_duration), ("offset_s", a.offset)) if v is not None}
    try:
        rules = AlertRules(af=AfRule(**af_kw))
    except ValidationError as exc:  # --min-duration / --offset outside the rule's bounds
        bad = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"error: --min-duration / --offset: {bad}", file=sys.stderr)
        return 2
    rhythm = {n: read_rhythm(a.data, n) for n in names}
    af_names = [n for n in names if any(note.startswith("(AFIB") for _, note in rhythm[n][0])]
    skipped = [n for n in names if n not in af_names]
    if not af_names:
        print(f"error: no record in {a.data} has an (AFIB rhythm annotation", file=sys.stderr)
        return 2
    print(f"records with AF: {', '.join(af_names)}; skipped (no (AFIB): {len(skipped)}", file=sys.stderr)

    models: dict[str, Any] = {"quality": f"{a.models}/ecg_quality (shipped: CinC + MITDB DS1 + NSTDB)",
                              "beats": f"{a.models}/ecg_beats (shipped: MITDB DS1)"}  # fmt: skip
    labeler, compared = shipped, None
    if a.train_af_on or a.af_model:
        with tempfile.TemporaryDirectory() as tmp:
            af_dir = a.af_model or a.save_af or Path(tmp) / "ecg_af"
            if a.train_af_on:
                af_dir.mkdir(parents=True, exist_ok=True)
                _train_cinc_af(a, shipped.window, af_dir)
            af = load_ecg_model(af_dir.parent, af_dir.name)
        labeler = EcgLabeler(shipped.quality, af, shipped.beats)
        src = "trained here on" if a.train_af_on else f"{af_dir}, trained on"
        models["af"] = (f"{src} the CinC 2017 pack only (seed {a.seed}): no MITDB record in training, inter-patient"
                        if a.train_af_on else f"{af_dir} (version {af.version})")  # fmt: skip
        models["split"] = "inter-patient for the AF model" if a.train_af_on else "as trained (see the AF model)"
        compared = shipped
    else:
        models["af"] = f"{a.models}/ecg_af (version {shipped.af.version})"
        models["split"] = ("shipped AF model trained on all 48 MITDB records (+ CinC): NOT inter-patient on MITDB"
                           if a.models == _DEFAULT_MODELS else "as trained (see the models' cards)")  # fmt: skip
    models["versions"] = labeler.versions

    todo = af_names + (skipped if a.check_skipped else [])
    recs = load_mitdb(a.data, todo, labeler.window, a.cache or DEFAULT_CACHE, progress=True)  # type: ignore[arg-type]
    res = _evaluate(labeler, recs, rhythm, af_names, skipped, rules, a)
    protocol = {
        "data": str(a.data), "records_with_af": af_names, "found_by": "(AFIB rhythm notes in each record's .atr",
        "reference": "(AFIB rhythm note to the next rhythm note that is not (AFIB (epicmp); (AFL, (B, (T, (VT "
                     "inside are non-AF" + ("; reference (AFL excluded from +P (epicmp -x)" if a.exclude_afl else ""),
        "test": "raised-and-ended AF episodes of the rhythm engine, from its first AF beat's onset to its last AF beat",
        "rules": {"af_min_duration_s": rules.af.min_duration_s, "af_offset_s": rules.af.offset_s,
                  "af_min_af_fraction": rules.af.min_af_fraction},
        "test_period": f"{a.start_s:g} s to the end of each record", "min_episode_s": a.min_episode_s,
        "matching": "any positive overlap (epicmp); gross = pooled, average = mean of per-record values; percent",
        "burden": "engine AF time / analysed time vs reference (AFIB time / record length, whole record",
        "dsp": f"streaming DSP core, first channel, {labeler.window} beat window", "labeler_chunk_beats": _CHUNK,
    }  # fmt: skip
    report: dict[str, Any] = {"protocol": protocol, "models": models, **res}
    if compared is not None:
        report["models_compared"] = {"models": f"{a.models} (shipped; AF model trained on all MITDB records: "
                                               "NOT inter-patient)", **_evaluate(compared, recs, rhythm, af_names,
                                                                                skipped, rules, a)}  # fmt: skip
    report["runtime_s"] = round(time.perf_counter() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"protocol: {json.dumps(protocol)}")
    print(_table(res, f"AF episodes, models: AF = {models['af']}; min. episode {a.min_episode_s:g} s"))
    if compared is not None:
        print()
        print(_table(report["models_compared"], f"beside it, {report['models_compared']['models']}"))
    print(f"report written to {a.out} ({report['runtime_s']} s)")
    return 0
