"""``streamdx eval quality`` — how often unreadable input gets a label, over many signals.

The unit tests check the gate on a few fixed signals ("never labelled normal"); this
evaluation measures it over many seeds, with the shipped models and the labeler exactly
as served (the DSP's beats of each signal, one stream, from a fresh state):

- **artefact episodes** (:mod:`streamdx_devkit.sim`): sinus rhythm with three 12-s
  episodes of one kind (flat, saturation, lead-off, strong EMG + motion noise), at 250 and
  360 Hz. A *leak* is a beat whose R peak lies inside an episode and that gets
  ``quality: ok`` (so a rhythm and beat class). Also the share of readable beats more than
  2 s away from any episode (the gate must not be blanket).
- **non-ECG input**: sines, square and sawtooth waves, white noise, EMG bursts, random
  walks (the unit tests' families, other seeds): every ``ok`` beat is a leak.
- **clean ECG**: sinus, AF and ectopy records: the share of beats after the tenth that are
  readable.
- **real noise** (with ``--mitdb`` and ``--nstdb``): MITDB DS2 records (not used to train
  the gate) with NSTDB noise at several SNRs: the share of beats labelled unreadable.
- **real ECG as recorded** (with ``--mitdb``): every DS2 record without added noise, per
  record the share of beats labelled unreadable, of all annotated beats and of the
  ventricular (V) ones. MITDB has some genuinely noisy stretches (e.g. 105), so this is not
  all error, but a gate that blanks a third of a clean record with frequent PVCs hides the
  beats a Holter user most needs labelled.

Writes JSON and prints tables. Seeds start at ``--seed`` (default 1000, apart from the
tests' and the training set's).
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
from streamdx_inference.ecg.datasets import DEFAULT_CACHE
from streamdx_inference.ecg.labeler import BeatLabel, EcgLabeler, StreamLabelState
from streamdx_inference.ecg.scoring import format_table

__all__ = ["ARTEFACTS", "NON_ECG", "build_parser", "label_signal", "main", "non_ecg_signal"]

ARTEFACTS = ("flat", "saturation", "leadoff", "noise")
NON_ECG = ("sine-1hz", "sine-7hz", "square-1.2hz", "sawtooth-1hz", "white-noise", "emg-bursts", "random-walk")
_SNRS = (-6.0, 0.0, 6.0, 12.0, 24.0)
_SECONDS = 120.0


def label_signal(labeler: EcgLabeler, x_mv: npt.NDArray[np.float64], fs: float) -> tuple[
        list[Any], list[BeatLabel]]:  # fmt: skip
    """The DSP core's beats of ``x_mv`` (one stream) and the labeler's labels of them, in order."""
    from streamdx_inference.ecg.datasets import beat_arrays, beats_of_signal

    beats = beats_of_signal(x_mv, fs, labeler.window)  # type: ignore[arg-type]
    if not beats:
        return [], []
    _, waves, rr_prev, rr_next, quality = beat_arrays(beats)  # the arrays training and the other evaluations use
    _, labels = labeler.label(StreamLabelState(), waves, rr_prev, rr_next, quality)
    return beats, labels


def non_ecg_signal(kind: str, fs: float, rng: np.random.Generator, seconds: float = _SECONDS) -> npt.NDArray[
        np.float64]:  # fmt: skip
    """One non-ECG signal of family ``kind`` (mV; see :data:`NON_ECG`)."""
    t = np.arange(round(seconds * fs)) / fs
    if kind == "sine-1hz":
        return 1.0 * np.sin(2 * np.pi * 1.0 * t)
    if kind == "sine-7hz":
        return 0.8 * np.sin(2 * np.pi * 7.0 * t)
    if kind == "square-1.2hz":
        return 1.0 * np.sign(np.sin(2 * np.pi * 1.2 * t))
    if kind == "sawtooth-1hz":
        return 2.0 * (t % 1.0) - 1.0
    if kind == "white-noise":
        return 0.5 * rng.standard_normal(t.size)
    if kind == "emg-bursts":  # strong EMG-like noise, on and off at 0.8 Hz
        return 1.5 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 0.8 * t) > 0)
    if kind == "random-walk":
        return np.cumsum(rng.standard_normal(t.size)) * 0.02
    raise ValueError(f"unknown non-ECG family {kind!r}")


def _artefacts(labeler: EcgLabeler, seeds: Sequence[int]) -> dict[str, Any]:
    from streamdx_devkit.sim import ecg_synthesize
    from streamdx_devkit.sim.ecg import Artefact, RhythmSegment, Scenario

    out: dict[str, Any] = {}
    for kind in ARTEFACTS:
        inside = leaks = clean = clean_ok = 0
        for fs in (250.0, 360.0):
            for seed in seeds:
                arts = tuple(Artefact(kind, s, s + 12.0, 1.0 if kind == "noise" else None)  # type: ignore[arg-type]
                             for s in (20.0, 55.0, 90.0))  # fmt: skip
                scen = Scenario(f"{kind}-episodes", (RhythmSegment("sinus", 0, _SECONDS, 70.0),), arts)
                beats, labels = label_signal(labeler, ecg_synthesize(_SECONDS, fs, seed=seed, scenario=scen).signal_mv,
                                             fs)  # fmt: skip
                for b, lab in zip(beats, labels, strict=True):
                    t = b.r_sample / fs
                    if any(a.start_s <= t < a.end_s for a in arts):
                        inside += 1
                        leaks += lab.quality == "ok"
                    elif not any(a.start_s - 2.0 <= t < a.end_s + 2.0 for a in arts):
                        clean += 1
                        clean_ok += lab.quality == "ok"
        out[kind] = {"beats_inside": inside, "leaks": leaks, "leak_rate": leaks / max(1, inside),
                     "beats_outside": clean, "readable_outside": clean_ok / max(1, clean)}  # fmt: skip
    return out


def _non_ecg(labeler: EcgLabeler, seeds: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in NON_ECG:
        n = leaks = 0
        for seed in seeds:
            _, labels = label_signal(labeler, non_ecg_signal(kind, 250.0, np.random.default_rng(seed)), 250.0)
            n += len(labels)
            leaks += sum(lab.quality == "ok" for lab in labels)
        out[kind] = {"beats": n, "leaks": leaks, "leak_rate": leaks / max(1, n)}
    return out


def _clean(labeler: EcgLabeler, seeds: Sequence[int]) -> dict[str, Any]:
    from streamdx_devkit.sim import ecg_synthesize

    out: dict[str, Any] = {}
    for scenario in ("sinus", "af", "ectopy"):
        n = ok = 0
        for seed in seeds:
            _, labels = label_signal(labeler, ecg_synthesize(_SECONDS, 360.0, seed=seed, scenario=scenario).signal_mv,
                                     360.0)  # fmt: skip
            settled = labels[10:]
            n += len(settled)
            ok += sum(lab.quality == "ok" for lab in settled)
        out[scenario] = {"beats": n, "readable": ok / max(1, n)}
    return out


def _nstdb(labeler: EcgLabeler, mitdb: Path, nstdb: Path, max_records: int) -> dict[str, Any]:
    from streamdx_dsp.evaluation.records import list_records
    from streamdx_inference.ecg.datasets import DS2
    from streamdx_inference.ecg.training.quality_data import record_with_nst_noise

    names = [n for n in DS2 if n in set(list_records(mitdb))][:max_records]
    kinds = [k for k in ("ma", "em", "bw") if (nstdb / f"{k}.hea").exists()]
    out: dict[str, Any] = {"records": names}
    for kind in kinds:
        rows = {}
        for snr in _SNRS:
            n = bad = 0
            for name in names:
                x, fs = record_with_nst_noise(mitdb, nstdb, name, kind, snr)
                _, labels = label_signal(labeler, x, fs)
                n += len(labels)
                bad += sum(lab.quality == "unreadable" for lab in labels)
            rows[f"{snr:g}"] = {"beats": n, "unreadable": bad / max(1, n)}
        out[kind] = rows
    return out


def _mitdb_as_recorded(labeler: EcgLabeler, mitdb: Path, cache: Path | None) -> dict[str, Any]:
    from streamdx_dsp.evaluation.records import list_records
    from streamdx_inference.ecg.datasets import DS2, load_mitdb

    names = [n for n in DS2 if n in set(list_records(mitdb))]
    recs = load_mitdb(mitdb, names, labeler.window, cache)  # type: ignore[arg-type]
    per: dict[str, Any] = {}
    for name in names:
        rb = recs[name]
        _, labels = labeler.label(StreamLabelState(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
        bad = np.array([lab.quality == "unreadable" for lab in labels], dtype=bool)
        ann = np.isin(rb.beat_class, ("N", "S", "V", "F", "Q"))
        v = rb.beat_class == "V"
        per[name] = {"beats": int(ann.sum()), "unreadable": float(bad[ann].mean()) if ann.any() else 0.0,
                     "v_beats": int(v.sum()), "v_unreadable": float(bad[v].mean()) if v.any() else 0.0}  # fmt: skip

    def pooled(n: str, share: str) -> float:  # share of all records' beats, from the per-record shares
        return sum(r[n] * r[share] for r in per.values()) / max(1, sum(r[n] for r in per.values()))

    worst = max(per, key=lambda k: per[k]["unreadable"]) if per else ""
    return {"records": per, "beats": sum(r["beats"] for r in per.values()), "unreadable": pooled("beats", "unreadable"),
            "v_beats": sum(r["v_beats"] for r in per.values()), "v_unreadable": pooled("v_beats", "v_unreadable"),
            "worst_record": worst}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamdx eval quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--models", type=Path, default=None, help="models folder (default: the shipped models/)")
    p.add_argument("--seeds", type=int, default=8, help="signals per family and sampling rate (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=1000, help="first seed (default: %(default)s)")
    p.add_argument("--mitdb", type=Path, default=None, help="MITDB folder, for the real-noise part (with --nstdb)")
    p.add_argument("--nstdb", type=Path, default=None, help="NSTDB folder (ma/em/bw noise records)")
    p.add_argument("--max-records", type=non_negative_int, default=8,
                   help="DS2 records with noise (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats per record")
    return p


def main(argv: Sequence[str]) -> int:
    """Entry point of ``streamdx eval quality``; returns the exit code."""
    a = build_parser().parse_args(list(argv))
    from streamdx_inference.settings import default_models_dir

    if not 1 <= a.seeds <= 1000:
        print("error: --seeds must be in 1..1000", file=sys.stderr)
        return 2
    if (a.mitdb is None) != (a.nstdb is None) or (a.mitdb and not (a.mitdb.is_dir() and a.nstdb.is_dir())):
        print("error: --mitdb and --nstdb go together and must be folders", file=sys.stderr)
        return 2
    labeler = EcgLabeler.from_dir(a.models or default_models_dir())
    seeds = list(range(a.seed, a.seed + a.seeds))
    report: dict[str, Any] = {"models": labeler.versions, "seeds": [seeds[0], seeds[-1]],
                              "artefacts": _artefacts(labeler, seeds), "non_ecg": _non_ecg(labeler, seeds),
                              "clean": _clean(labeler, seeds)}  # fmt: skip
    report["leaks_total"] = sum(v["leaks"] for v in report["artefacts"].values()) + sum(
        v["leaks"] for v in report["non_ecg"].values())
    print(format_table(["artefact", "beats inside", "labelled", "rate %", "readable outside %"],
                       [[k, v["beats_inside"], v["leaks"], 100 * v["leak_rate"], 100 * v["readable_outside"]]
                        for k, v in report["artefacts"].items()]))  # fmt: skip
    print()
    print(format_table(["non-ECG input", "beats", "labelled", "rate %"],
                       [[k, v["beats"], v["leaks"], 100 * v["leak_rate"]] for k, v in report["non_ecg"].items()]))
    print()
    print(format_table(["clean ECG", "beats", "readable %"],
                       [[k, v["beats"], 100 * v["readable"]] for k, v in report["clean"].items()]))  # fmt: skip
    if a.mitdb is not None:
        report["nstdb"] = _nstdb(labeler, a.mitdb, a.nstdb, a.max_records)
        kinds = [k for k in report["nstdb"] if k != "records"]
        print()
        print(format_table(["NSTDB noise", *[f"{s:g} dB" for s in _SNRS]],
                           [[k, *[100 * report["nstdb"][k][f"{s:g}"]["unreadable"] for s in _SNRS]] for k in kinds]))
        print(f"(% of beats unreadable; MITDB DS2 records {', '.join(report['nstdb']['records'])})")
        report["mitdb_as_recorded"] = m = _mitdb_as_recorded(labeler, a.mitdb, a.cache)
        rows = [[k, v["beats"], 100 * v["unreadable"], v["v_beats"], 100 * v["v_unreadable"]]
                for k, v in m["records"].items() if v["unreadable"] >= 0.02]
        print()
        print(format_table(["MITDB DS2 as recorded", "beats", "unreadable %", "V beats", "V unreadable %"],
                           [*rows, ["all", m["beats"], 100 * m["unreadable"], m["v_beats"], 100 * m["v_unreadable"]]]))
        print("(records with at least 2 % of their beats unreadable, and all DS2 records together)")
    print(f"\nunreadable input labelled readable: {report['leaks_total']} beats in all")
    write_report(a.out, report)
    return 0
