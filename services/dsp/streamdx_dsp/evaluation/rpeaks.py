"""``streamdx eval rpeaks``: EC57-style R-peak evaluation of the streaming DSP core.

Runs :func:`streamdx_dsp.core.ecg_stream_process` over every WFDB record (with a
``.atr`` file) of a folder, first channel, in fixed chunks (1 s by default), and
scores the detected R peaks against the reference beat annotations:

- reference beats: the EC57 beat labels ``N L R B A a J S V r F e j n E / f Q ?``;
  all other annotations (rhythm, noise, non-beat) are ignored;
- matching window 150 ms, one-to-one: all (reference, detection) pairs closer than
  the window are taken in order of increasing distance, each reference and each
  detection used at most once;
- scored interval: from ``--start-s`` (default 300 s, the EC57 / ``bxb`` convention
  that excludes the first 5 minutes as the detector's learning period) to the end
  of the record; a reference (detection) counts if it lies in the interval, so a
  detection just before the start may still match a reference just after it. The
  report also gives the whole-record figures (``full_record``);
- Se = TP/(TP+FN), +P = TP/(TP+FP), F1 = 2TP/(2TP+FN+FP), in percent; ``gross``
  pools the counts of all records, ``average`` is the mean of the per-record values.

With ``--noise-dir``/``--noise``/``--snr`` the noise of an NSTDB record is added to
every record the way ``nst`` does (see :mod:`streamdx_dsp.evaluation.noise`).

Start-up (``startup`` in the report): the EC57 figures exclude the detector's first
5 minutes, but wearables send short recordings (CinC 2017: 9-60 s) in which the first
seconds matter. So the detector is also restarted from a fresh state on
``--restart-segment-s`` (20) seconds of each record every ``--restart-every-s`` (150)
seconds (from 10 s on), and scored per segment in two spans: ``early`` (seconds 1-6, the
first second being the learning period) and ``late`` (second 6 to 1.5 s before the
segment's end, whose last beats may still be undecided at the cut).

The protocol (data, records and lead, reference beats, scoring start, window, chunking, noise;
:mod:`streamdx_dsp.evaluation.protocol`) is printed above the table and stored in the report
under ``protocol``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_float, positive_float, report_path
from streamdx_dsp.evaluation.noise import add_nst_noise
from streamdx_dsp.evaluation.protocol import first_leads, protocol_lines, rpeaks_protocol
from streamdx_dsp.evaluation.records import (
    read_annotations,
    read_ecg,
    records_for_command,
    rpeaks_from_beats,
    stream_record,
)

__all__ = [
    "BEAT_SYMBOLS",
    "STARTUP_SPANS",
    "build_parser",
    "main",
    "match_beats",
    "score_counts",
    "startup_counts",
    "startup_spans_s",
    "vf_mask",
]

BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


def match_beats(
    ref: npt.NDArray[np.int64], det: npt.NDArray[np.int64], window: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """One-to-one matching of sorted sample indices within ``window`` samples.

    Returns
    -------
    ref_matched, det_matched : ndarray of bool
        Which references / detections are matched.
    offsets : ndarray of int
        ``det - ref`` of the matched pairs (samples).
    """
    ref = np.asarray(ref, dtype=np.int64)
    det = np.asarray(det, dtype=np.int64)
    rm = np.zeros(ref.size, dtype=bool)
    dm = np.zeros(det.size, dtype=bool)
    if ref.size == 0 or det.size == 0:
        return rm, dm, np.zeros(0, dtype=np.int64)
    lo = np.searchsorted(det, ref - window, side="left")
    hi = np.searchsorted(det, ref + window, side="right")
    counts = hi - lo
    ri = np.repeat(np.arange(ref.size), counts)
    starts = np.repeat(lo - np.cumsum(np.concatenate(([0], counts[:-1]))), counts)
    di = np.arange(ri.size) + starts
    dist = np.abs(det[di] - ref[ri])
    order = np.argsort(dist, kind="stable")
    offsets = []
    for k in order.tolist():
        a, b = ri[k], di[k]
        if rm[a] or dm[b]:
            continue
        rm[a] = dm[b] = True
        offsets.append(int(det[b] - ref[a]))
    return rm, dm, np.asarray(offsets, dtype=np.int64)


def vf_mask(
    samples: npt.NDArray[np.int64], ann_samples: Sequence[int], ann_symbols: Sequence[str]
) -> npt.NDArray[np.bool_]:
    """True for samples inside ventricular flutter/fibrillation episodes (``[`` ... ``]`` annotations)."""
    inside = np.zeros(np.asarray(samples).size, dtype=bool)
    start = None
    for s, c in zip(ann_samples, ann_symbols, strict=True):
        if c == "[":
            start = int(s)
        elif c == "]" and start is not None:
            inside |= (samples >= start) & (samples <= int(s))
            start = None
    if start is not None:
        inside |= samples >= start
    return inside


def score_counts(tp: int, fn: int, fp: int) -> dict[str, float]:
    """Se, +P and F1 in percent (100 when the denominator is 0)."""
    se = 100.0 * tp / (tp + fn) if tp + fn else 100.0
    ppv = 100.0 * tp / (tp + fp) if tp + fp else 100.0
    f1 = 100.0 * 2 * tp / (2 * tp + fn + fp) if tp + fn + fp else 100.0
    return {"se": se, "ppv": ppv, "f1": f1}


#: Spans of a restarted segment scored by :func:`startup_counts` (s from the segment's start;
#: ``None``: up to 1.5 s before its end).
STARTUP_SPANS: dict[str, tuple[float, float | None]] = {"early": (1.0, 6.0), "late": (6.0, None)}
_END_MARGIN_S = 1.5


def startup_spans_s(segment_s: float) -> dict[str, tuple[float, float]]:
    """:data:`STARTUP_SPANS` of a ``segment_s``-second segment, ends resolved (s)."""
    return {k: (lo, hi if hi is not None else segment_s - _END_MARGIN_S) for k, (lo, hi) in STARTUP_SPANS.items()}


def startup_counts(
    x_mv: npt.NDArray[np.float64], fs: float, ref: npt.NDArray[np.int64], segment_s: float, every_s: float,
    chunk: int, window: int,
) -> tuple[dict[str, list[int]], int]:
    """TP, FN and FP per span of :data:`STARTUP_SPANS` of the detector restarted on segments.

    Parameters
    ----------
    x_mv : ndarray
        The record's signal (mV).
    fs : float
        Sampling frequency (Hz).
    ref : ndarray of int
        Sorted reference beat positions (samples).
    segment_s, every_s : float
        Segment length and spacing (s); segments start at 10 s.
    chunk, window : int
        Streaming chunk and matching window (samples).

    Returns
    -------
    counts : dict
        ``{span: [tp, fn, fp]}``.
    n_segments : int
        Number of segments scored.
    """
    n = round(segment_s * fs)
    spans = startup_spans_s(segment_s)
    counts = {k: [0, 0, 0] for k in spans}
    n_seg = 0
    for t0 in range(round(10.0 * fs), x_mv.size - n + 1, max(1, round(every_s * fs))):
        beats, unemitted = stream_record(x_mv[t0 : t0 + n], fs, chunk)
        det = rpeaks_from_beats(beats, fs, unemitted)
        seg_ref = ref[(ref >= t0) & (ref < t0 + n)] - t0
        rm, dm, _ = match_beats(seg_ref, det, window)
        for span, (lo_s, hi_s) in spans.items():
            lo, hi = round(lo_s * fs), round(hi_s * fs)
            rin, din = (seg_ref >= lo) & (seg_ref < hi), (det >= lo) & (det < hi)
            c = counts[span]
            c[0] += int(np.count_nonzero(rm & rin))
            c[1] += int(np.count_nonzero(~rm & rin))
            c[2] += int(np.count_nonzero(~dm & din))
        n_seg += 1
    return counts, n_seg


def _summary(records: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    tp = sum(int(r["tp"]) for r in records.values())
    fn = sum(int(r["fn"]) for r in records.values())
    fp = sum(int(r["fp"]) for r in records.values())
    gross: dict[str, float] = {"tp": tp, "fn": fn, "fp": fp, **score_counts(tp, fn, fp)}
    n = max(len(records), 1)
    average = {k: sum(r[k] for r in records.values()) / n for k in ("se", "ppv", "f1")}
    return gross, average


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamdx eval rpeaks", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of WFDB records with .atr")
    ap.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    ap.add_argument("--records", default="", help="comma-separated record names (default: all)")
    ap.add_argument("--chunk-s", type=positive_float, default=1.0, help="streaming chunk length (s)")
    ap.add_argument("--start-s", type=non_negative_float, default=300.0, help="start of the scored interval (s)")
    ap.add_argument("--window-ms", type=positive_float, default=150.0, help="matching window (ms)")
    ap.add_argument("--annotator", default="atr", help="reference annotation file extension (default: atr)")
    ap.add_argument("--noise-dir", type=Path, default=None, help="NSTDB folder (bw, em, ma)")
    ap.add_argument("--noise", choices=["ma", "bw", "em"], default=None, help="noise record")
    ap.add_argument("--snr", type=float, default=None, help="SNR in dB (nst definition)")
    ap.add_argument("--restart-segment-s", type=positive_float, default=20.0,
                    help="start-up scoring: length of the segments the detector is restarted on (s)")
    ap.add_argument("--restart-every-s", type=positive_float, default=150.0,
                    help="start-up scoring: one segment every this many seconds of each record")
    return ap


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    ap = build_parser()
    args = ap.parse_args(list(argv))
    if args.restart_segment_s < STARTUP_SPANS["late"][0] + _END_MARGIN_S + 1.0:
        ap.error(f"--restart-segment-s must be at least {STARTUP_SPANS['late'][0] + _END_MARGIN_S + 1.0:g} s")
    if (args.noise is None) != (args.snr is None) or (args.noise is not None and args.noise_dir is None):
        ap.error("--noise, --snr and --noise-dir go together")
    return args


def main(argv: Sequence[str]) -> int:
    """Entry point of ``streamdx eval rpeaks``; returns the exit code."""
    args = _parse(argv)
    names = records_for_command(args.data, args.records, annotator=args.annotator)
    if names is None:
        return 2
    if args.noise is not None and not (args.noise_dir / f"{args.noise}.hea").exists():
        print(f"error: noise record {args.noise} not found in {args.noise_dir}", file=sys.stderr)
        return 2
    per_rec: dict[str, dict[str, float]] = {}
    full_rec: dict[str, dict[str, float]] = {}
    novf_rec: dict[str, dict[str, float]] = {}
    noise_info: dict[str, dict[str, float]] = {}
    all_offsets: list[npt.NDArray[np.int64]] = []
    n_samples = 0
    t_proc = 0.0
    startup = {k: [0, 0, 0] for k in STARTUP_SPANS}
    n_segments = 0
    protocol = rpeaks_protocol(
        data=args.data,
        leads=first_leads(args.data, names),
        beat_symbols="".join(sorted(BEAT_SYMBOLS)),
        annotator=args.annotator,
        start_s=args.start_s,
        window_ms=args.window_ms,
        chunk_s=args.chunk_s,
        noise={"kind": args.noise, "snr_db": args.snr, "dir": str(args.noise_dir)} if args.noise else None,
    )
    print("\n".join(protocol_lines(protocol)) + "\n", flush=True)
    header = f"{'record':>8} {'beats':>6} {'TP':>6} {'FN':>5} {'FP':>5} {'Se%':>7} {'+P%':>7} {'F1%':>7}"
    print(header)
    print("-" * len(header))
    for name in names:
        x, fs = read_ecg(args.data, name)
        ann = read_annotations(args.data, name, args.annotator, x.size)
        samples = np.asarray(ann.sample, dtype=np.int64)
        symbols = list(ann.symbol)
        if args.noise is not None:
            x, info = add_nst_noise(x, fs, samples, symbols, args.noise_dir, args.noise, args.snr)
            noise_info[name] = info
        keep = np.fromiter((s in BEAT_SYMBOLS for s in symbols), dtype=bool, count=len(symbols))
        ref = np.sort(samples[keep])
        chunk = max(1, round(args.chunk_s * fs))
        t0 = time.perf_counter()
        beats, unemitted = stream_record(x, fs, chunk)
        t_proc += time.perf_counter() - t0
        n_samples += x.size
        det = rpeaks_from_beats(beats, fs, unemitted)
        win = round(args.window_ms / 1000.0 * fs)
        rm, dm, offs = match_beats(ref, det, win)
        all_offsets.append(np.round(offs / fs * 1000.0).astype(np.int64))
        start = round(args.start_s * fs)
        rin, din = ref >= start, det >= start
        tp = int(np.count_nonzero(rm & rin))
        fn = int(np.count_nonzero(~rm & rin))
        fp = int(np.count_nonzero(~dm & din))
        per_rec[name] = {"tp": tp, "fn": fn, "fp": fp, **score_counts(tp, fn, fp)}
        rin_v = rin & ~vf_mask(ref, samples.tolist(), symbols)
        din_v = din & ~vf_mask(det, samples.tolist(), symbols)
        vtp, vfn = int(np.count_nonzero(rm & rin_v)), int(np.count_nonzero(~rm & rin_v))
        vfp = int(np.count_nonzero(~dm & din_v))
        novf_rec[name] = {"tp": vtp, "fn": vfn, "fp": vfp, **score_counts(vtp, vfn, vfp)}
        ftp, ffn, ffp = int(rm.sum()), int((~rm).sum()), int((~dm).sum())
        full_rec[name] = {"tp": ftp, "fn": ffn, "fp": ffp, **score_counts(ftp, ffn, ffp)}
        su, n_seg = startup_counts(x, fs, ref, args.restart_segment_s, args.restart_every_s, chunk, win)
        n_segments += n_seg
        for k, c in su.items():
            startup[k] = [a + b for a, b in zip(startup[k], c, strict=True)]
        r = per_rec[name]
        print(
            f"{name:>8} {int(rin.sum()):>6} {tp:>6} {fn:>5} {fp:>5} {r['se']:>7.2f} {r['ppv']:>7.2f} {r['f1']:>7.2f}",
            flush=True,
        )
    if names and not any(int(r["tp"]) + int(r["fn"]) for r in per_rec.values()):
        print(f"error: no annotated beat after --start-s {args.start_s:g} s in any record: nothing to score",
              file=sys.stderr)  # fmt: skip
        return 2
    gross, average = _summary(per_rec)
    fgross, faverage = _summary(full_rec)
    vgross, vaverage = _summary(novf_rec)
    print("-" * len(header))
    print(
        f"{'gross':>8} {'':>6} {int(gross['tp']):>6} {int(gross['fn']):>5} {int(gross['fp']):>5} "
        f"{gross['se']:>7.2f} {gross['ppv']:>7.2f} {gross['f1']:>7.2f}"
    )
    print(
        f"{'average':>8} {'':>6} {'':>6} {'':>5} {'':>5} "
        f"{average['se']:>7.2f} {average['ppv']:>7.2f} {average['f1']:>7.2f}"
    )
    print(
        f"whole records: gross Se {fgross['se']:.2f} +P {fgross['ppv']:.2f} F1 {fgross['f1']:.2f}; "
        f"{n_samples / max(t_proc, 1e-9) / 1e6:.2f} M samples/s"
    )
    print(f"VF/VFL episodes excluded: gross Se {vgross['se']:.2f} +P {vgross['ppv']:.2f} F1 {vgross['f1']:.2f}")
    spans = startup_spans_s(args.restart_segment_s)
    startup_scores = {k: {"tp": c[0], "fn": c[1], "fp": c[2], **score_counts(*c)} for k, c in startup.items()}
    startup_report = {"segment_s": args.restart_segment_s, "every_s": args.restart_every_s, "n_segments": n_segments,
                      "spans_s": {k: list(v) for k, v in spans.items()}, **startup_scores}  # fmt: skip
    print(f"restarted on {n_segments} segments of {args.restart_segment_s:g} s: " + "; ".join(
        f"{k} (s {lo:g}-{hi:g}) Se {startup_scores[k]['se']:.2f} +P {startup_scores[k]['ppv']:.2f} "
        f"(FN {startup[k][1]}, FP {startup[k][2]})" for k, (lo, hi) in spans.items()))  # fmt: skip
    offs_all = np.concatenate(all_offsets) if all_offsets else np.zeros(0, dtype=np.int64)
    report = {
        "window_ms": args.window_ms,
        "protocol": protocol,
        "not_excluded": "headline figures score ventricular flutter/fibrillation episodes and noisy "
        "segments too (see vf_excluded for the EC57 VF exclusion)",
        "data": str(args.data),
        "chunk_s": args.chunk_s,
        "noise": (
            {"kind": args.noise, "snr_db": args.snr, "dir": str(args.noise_dir), "per_record": noise_info}
            if args.noise
            else None
        ),
        "gross": gross,
        "average": average,
        "records": per_rec,
        "full_record": {"gross": fgross, "average": faverage, "records": full_rec},
        "vf_excluded": {
            "note": "same interval, references and detections inside ventricular flutter/fibrillation "
            "episodes ('[' to ']' annotations, EC57 practice) not scored",
            "gross": vgross,
            "average": vaverage,
            "records": novf_rec,
        },
        "timing_ms": {
            "median_det_minus_ref": float(np.median(offs_all)) if offs_all.size else None,
            "p95_abs": float(np.percentile(np.abs(offs_all), 95)) if offs_all.size else None,
        },
        "samples_per_s": n_samples / max(t_proc, 1e-9),
        "startup": startup_report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
