"""``streamdx bench inference``: beats/s of the ECG labeler (features + 3 ONNX models) on one core.

The beats are the DSP's own (:func:`~streamdx_inference.ecg.datasets.beats_of_signal`, the
streaming core the dsp service runs) over synthetic ECG from :func:`streamdx_devkit.sim.ecg_synthesize`
(sinus, AF, ectopy, mixed, noisy, brady; no external data), or over the WFDB records of
``--data``. One call of :meth:`EcgLabeler.label_batch` labels a batch of ``B`` beats made of
``B / k`` streams with ``k`` consecutive beats each (``--beats-per-stream``) (their per-stream state carried
from call to call), exactly as the inference worker labels a ``getmany`` batch. The process is
pinned to one CPU and onnxruntime runs with one intra-op thread; each batch size runs for
``--seconds`` after a warm-up. The headline is the best fp32 throughput over the batch sizes and
the p99 call latency at that batch size. A profile of the largest batch splits the call into the
feature function, each model (the AF and beat-class networks as one fused graph when
``models/ecg_af_beats`` matches them; the quality gate pair-folded when ``models/ecg_quality_paired``
matches it) and the decision rules.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.cli_args import positive_int, report_path
from streamdx.gc_tuning import DEFAULT_GC_THRESHOLD0, tuned_gc
from streamdx_inference.ecg.features import EcgBeatBatch, ecg_beat_features_batch
from streamdx_inference.ecg.labeler import EcgLabeler, StreamLabelState

__all__ = ["BeatPool", "bench_labeler", "build_parser", "main", "synthetic_pool"]

SCENARIOS = ("sinus", "af", "ectopy", "mixed", "noisy", "brady")
BATCH_SIZES = (1, 64, 512, 4096)


class BeatPool:
    """The DSP's beats of a few signals, as the labeler's input arrays (concatenated)."""

    def __init__(self, beats_by_signal: Sequence[Sequence[Any]], source: str) -> None:
        allb = [b for bs in beats_by_signal for b in bs]
        if not allb:
            raise ValueError("the DSP found no beat in the benchmark signals")
        self.source = source
        self.waves = np.stack([b.waveform for b in allb]).astype(np.float32)
        self.rr_prev = np.array([b.rr_prev_s for b in allb], np.float64)
        self.rr_next = np.array([b.rr_next_s for b in allb], np.float64)
        self.quality = np.array([[b.quality.flat, b.quality.saturated, max(0.0, b.quality.hf_noise),
                                  max(0.0, b.quality.baseline_excursion_mv), min(1.0, max(0.0, b.quality.score))]
                                 for b in allb], np.float32)  # fmt: skip

    def __len__(self) -> int:
        return int(self.rr_prev.size)

    def batch(self, n_streams: int, per_stream: int, start: int) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64],
        npt.NDArray[np.float32],
    ]:  # fmt: skip
        """One batch as the worker builds it: ``n_streams`` streams of ``per_stream`` consecutive
        beats from ``start``, concatenated (counts, waves, rr_prev_s, rr_next_s, quality)."""
        n = len(self)
        idx = (start + np.arange(n_streams * per_stream)) % n
        counts = np.full(n_streams, per_stream, np.int64)
        return counts, self.waves[idx], self.rr_prev[idx], self.rr_next[idx], self.quality[idx]


def synthetic_pool(duration_s: float = 120.0, fs: float = 360.0, seed: int = 2026) -> BeatPool:
    """The DSP's beats of one synthetic record per scenario of :data:`SCENARIOS`."""
    from streamdx_devkit.sim import ecg_synthesize
    from streamdx_inference.ecg.datasets import beats_of_signal

    beats = [beats_of_signal(ecg_synthesize(duration_s, fs, seed=seed + i, scenario=s).signal_mv, fs, "rr")
             for i, s in enumerate(SCENARIOS)]  # fmt: skip
    return BeatPool(beats, f"synthetic: {', '.join(SCENARIOS)} × {duration_s:g} s at {fs:g} Hz")


def _wfdb_pool(data: Path, max_records: int) -> BeatPool:
    from streamdx_dsp.evaluation.records import list_records, read_ecg
    from streamdx_inference.ecg.datasets import beats_of_signal

    names = list_records(data, need_atr=False)[:max_records]
    if not names:
        raise FileNotFoundError(f"no WFDB records (*.hea) in {data}")
    beats = []
    for name in names:
        x, fs = read_ecg(data, name)
        beats.append(beats_of_signal(x, fs, "rr"))
    return BeatPool(beats, f"WFDB: {data} ({', '.join(names)})")


def _pin_one_core() -> str:
    """Pin this process to one CPU (Linux); returns which."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"cpu {cpu}"


def bench_labeler(
    labeler: EcgLabeler, pool: BeatPool, batch: int, per_stream: int, seconds: float, max_calls: int = 100_000
) -> dict[str, Any]:
    """Throughput and call latency of ``labeler.label_many`` on batches of ``batch`` beats.

    Returns
    -------
    dict
        ``batch``, ``streams``, ``calls``, ``beats_per_s``, ``p50_batch_ms``, ``p99_batch_ms``.
    """
    k = max(1, min(per_stream, batch))
    n_streams = max(1, batch // k)
    states = [StreamLabelState() for _ in range(n_streams)]
    pos = 0
    for _ in range(3):  # warm-up (session allocations for this shape)
        states, _labels = labeler.label_batch(states, EcgBeatBatch.of(*pool.batch(n_streams, k, pos)))
        pos += n_streams * k
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(lat) < max_calls and (time.perf_counter() < t_end or len(lat) < 5):
        arrays = pool.batch(n_streams, k, pos)
        t0 = time.perf_counter()
        states, _labels = labeler.label_batch(states, EcgBeatBatch.of(*arrays))
        lat.append(time.perf_counter() - t0)
        pos += n_streams * k
    a = np.asarray(lat)
    beats = n_streams * k
    return {"batch": beats, "streams": n_streams, "calls": int(a.size), "beats_per_s": float(beats * a.size / a.sum()),
            "p50_batch_ms": 1e3 * float(np.percentile(a, 50)), "p99_batch_ms": 1e3 * float(np.percentile(a, 99))}


def profile_labeler(
    labeler: EcgLabeler, pool: BeatPool, batch: int, per_stream: int, reps: int = 5
) -> dict[str, float]:
    """Seconds per beat (x 1e6 = µs) of each step of one ``label_many`` call of ``batch`` beats."""
    k = max(1, min(per_stream, batch))
    n_streams = max(1, batch // k)
    states = [StreamLabelState() for _ in range(n_streams)]
    arrays = pool.batch(n_streams, k, 0)
    q = labeler.quality
    runs: dict[str, Any] = {f"{q.name} (pair-folded)" if q.derived else q.name: q.run}
    if labeler.fused is not None:
        runs["ecg_af+ecg_beats (fused)"] = labeler.fused.run
    else:
        runs.update({labeler.af.name: labeler.af.run, labeler.beats.name: labeler.beats.run})
    t_feat, t_models = 0.0, dict.fromkeys(runs, 0.0)
    t_total = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        _, allf = ecg_beat_features_batch([st.ctx for st in states], EcgBeatBatch.of(*arrays))
        t_feat += time.perf_counter() - t0
        for name, run in runs.items():
            t1 = time.perf_counter()
            run(allf)
            t_models[name] += time.perf_counter() - t1
        t2 = time.perf_counter()
        labeler.label_batch(states, EcgBeatBatch.of(*arrays))
        t_total += time.perf_counter() - t2
    nb = reps * n_streams * k
    out = {"features_us": 1e6 * t_feat / nb, **{f"{n}_us": 1e6 * t / nb for n, t in t_models.items()}}
    out["total_us"] = 1e6 * t_total / nb
    out["decision_and_overhead_us"] = max(0.0, out["total_us"] - out["features_us"] - sum(t_models.values()) * 1e6 / nb)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamdx bench inference", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    ap.add_argument("--models", type=Path, default=None, help="models directory (default: the repository's models/)")
    ap.add_argument("--data", type=Path, default=None, help="folder of WFDB records instead of synthetic ECG")
    ap.add_argument("--max-records", type=positive_int, default=4, help="records of --data used (default: %(default)s)")
    ap.add_argument("--batches", default=",".join(map(str, BATCH_SIZES)),
                    help="comma-separated batch sizes in beats (default: %(default)s)")
    ap.add_argument("--beats-per-stream", default="1,16",
                    help="comma-separated: consecutive beats of one stream in a batch; 1 = a live worker at "
                         "real time, more = catching up or replaying (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per batch size (default: %(default)s)")
    ap.add_argument("--no-int8", action="store_true", help="skip the INT8 models")
    return ap


def main(argv: Sequence[str]) -> int:
    """Entry point of ``streamdx bench inference``; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    from streamdx_inference.settings import default_models_dir

    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
        per_stream = [int(b) for b in args.beats_per_stream.split(",") if b.strip()]
    except ValueError:
        print("error: --batches and --beats-per-stream must be comma-separated integers")
        return 2
    if not batches or not per_stream or min(batches + per_stream) < 1 or not 0 < args.seconds <= 600:
        print("error: batch sizes and --beats-per-stream must be >= 1, --seconds in (0, 600]")
        return 2
    models = args.models or default_models_dir()
    pinned = _pin_one_core()
    with tuned_gc(DEFAULT_GC_THRESHOLD0):  # as `streamdx serve inference` runs (GC_THRESHOLD0)
        return _run(args, models, pinned, batches, per_stream)


def _run(args: argparse.Namespace, models: Path, pinned: str, batches: list[int], per_stream: list[int]) -> int:
    try:
        pool = _wfdb_pool(args.data, args.max_records) if args.data else synthetic_pool()
        labelers = {"fp32": EcgLabeler.from_dir(models, threads=1)}
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    notes = []
    if not args.no_int8:
        try:
            labelers["int8"] = EcgLabeler.from_dir(models, int8=True, threads=1)
        except FileNotFoundError as exc:
            notes.append(f"int8 skipped: {exc}")
    print(f"ECG labeler (features + {', '.join(labelers['fp32'].versions)}) on one core ({pinned}), "
          f"intra-op threads 1; {len(pool)} beats from {pool.source}")  # fmt: skip
    rows = []
    print(f"{'precision':<9} {'batch':>6} {'streams':>7} {'calls':>6} {'beats/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    shapes = sorted({(b, min(k, b)) for b in batches for k in per_stream})
    for precision, labeler in labelers.items():
        for b, k in shapes:
            row = {"precision": precision, "beats_per_stream": k, **bench_labeler(labeler, pool, b, k, args.seconds)}
            rows.append(row)
            print(f"{precision:<9} {row['batch']:>6} {row['streams']:>7} {row['calls']:>6} "
                  f"{row['beats_per_s']:>10,.0f} {row['p50_batch_ms']:>8.2f} {row['p99_batch_ms']:>8.2f}")
    best = max((r for r in rows if r["precision"] == "fp32"), key=lambda r: r["beats_per_s"])
    prof = {f"{p}/{k}_per_stream": profile_labeler(lab, pool, max(batches), k)
            for p, lab in labelers.items() for k in sorted({min(k, max(batches)) for k in per_stream})}
    for name, pr in prof.items():
        steps = ", ".join(f"{k.removesuffix('_us')} {v:.1f}" for k, v in pr.items() if k != "total_us")
        print(f"profile {name}, batch {max(batches)} (µs/beat): total {pr['total_us']:.1f} = {steps}")
    print(f"\nheadline: {best['beats_per_s']:,.0f} beats/s (fp32, batch {best['batch']}, "
          f"{best['beats_per_stream']} beats per stream), "
          f"p99 {best['p99_batch_ms']:.2f} ms per batch; target ≥ 50,000 beats/s")  # fmt: skip
    report = {
        "beats_per_s": best["beats_per_s"], "p99_batch_ms": best["p99_batch_ms"], "batch": best["batch"],
        "target_beats_per_s": 50_000, "meets_target": bool(best["beats_per_s"] >= 50_000),
        "rows": rows, "profile_us_per_beat": prof, "models": labelers["fp32"].versions,
        "fused_af_beats": labelers["fp32"].fused is not None,
        "pair_folded_quality": labelers["fp32"].quality.derived is not None,
        "window": labelers["fp32"].window, "beats_in_pool": len(pool), "source": pool.source,
        "beats_per_stream": best["beats_per_stream"], "intra_op_threads": 1, "pinned": pinned,
        "gc_threshold0": gc.get_threshold()[0],
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "notes": notes,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0
