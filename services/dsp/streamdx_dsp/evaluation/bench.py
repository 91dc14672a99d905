"""``streamdx bench dsp``: throughput of the streaming DSP core against NeuroKit2, and its latency.

Throughput: the full core (offset removal, wavelet denoising, band-pass, R-peak
detection, beat segmentation, RR features, quality index) runs over the first channel
of the records as ``--streams`` concurrent streams, interleaved chunk by chunk in 1-s
chunks (stream ``i`` replays record ``i mod R``). NeuroKit2 (``nk.ecg_clean`` +
``nk.ecg_peaks``, default method, whole records at once) runs on the same records in
the same process. Throughput is samples processed per wall-clock second. The two are
run ``--repeat`` times (3), alternately, and the best run of each is reported (``ratio``),
with every run and the ratio of the medians: on a shared machine one run of either can
be slowed by a tenth or more by other load. The state size is the largest serialised
state (``ecg_state_dumps``) seen at the checkpoints (every 60 s of stream time).

The process runs with the services' garbage-collector setting
(:func:`streamdx.gc_tuning.tune_gc` with ``DEFAULT_GC_THRESHOLD0``, as ``streamdx serve dsp``
does), for the core and NeuroKit2 alike.

Latency (``beat_delay_s``): every record is replayed alone in ``--latency-chunk-s``
chunks (0.1 s); a beat's delay is (samples the core had received when it emitted the
beat - the beat's R sample) / fs; p50, p99 and max over all beats. The same is done
after resampling the records to each of ``--fs-list`` (first ``--latency-seconds``
of each record), with the stages' fixed delays at each fs (``stages``).

Denoiser agreement (``denoise_agreement``): the bounded-delay streaming denoiser and
the former 4-s block version against the whole-record DWT shrinkage, see
:func:`streamdx_dsp.evaluation.latency.denoise_agreement`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_float, non_negative_int, positive_float, positive_int, report_path
from streamdx.gc_tuning import DEFAULT_GC_THRESHOLD0, tuned_gc
from streamdx_dsp.core import (
    EcgStreamState,
    ecg_state_dumps,
    ecg_stream_flush,
    ecg_stream_init,
    ecg_stream_process,
)
from streamdx_dsp.evaluation.latency import beat_delays, delay_summary, denoise_agreement, resample_to, stage_delays
from streamdx_dsp.evaluation.records import read_ecg, records_for_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamdx bench dsp", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of WFDB records")
    ap.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    ap.add_argument("--streams", type=non_negative_int, default=0, help="concurrent streams (default: one per record)")
    ap.add_argument("--records", default="", help="comma-separated record names (default: all)")
    ap.add_argument("--seconds", type=non_negative_float, default=0.0,
                    help="use only the first S seconds of each record")
    ap.add_argument("--chunk-s", type=positive_float, default=1.0, help="chunk length (s)")
    ap.add_argument(
        "--repeat", type=positive_int, default=3,
        help="throughput runs of the core and of NeuroKit2 (alternately; best of each)",
    )  # fmt: skip
    ap.add_argument("--latency-chunk-s", type=positive_float, default=0.1,
                    help="chunk length of the latency replay (s)")
    ap.add_argument(
        "--fs-list",
        default="125,250,360,500,1000",
        help="sampling frequencies (Hz) of the resampled latency replays; empty: none",
    )
    ap.add_argument(
        "--latency-seconds", type=float, default=300.0, help="seconds of each record in the resampled latency replays"
    )
    return ap


def main(argv: Sequence[str]) -> int:
    """Entry point of ``streamdx bench dsp``; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    names = records_for_command(args.data, args.records, need_atr=False)
    if names is None:
        return 2
    signals = []
    for name in names:
        x, fs = read_ecg(args.data, name)
        if args.seconds > 0:
            x = x[: round(args.seconds * fs)]
        signals.append((name, x, fs))
    n_streams = args.streams if args.streams > 0 else len(signals)
    with tuned_gc(DEFAULT_GC_THRESHOLD0):  # as the dsp service runs
        report = _measure(args, names, signals, n_streams)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


_Signal = tuple[str, npt.NDArray[np.float64], float]


@dataclass
class _CoreRun:
    seconds: float
    samples: int
    beats: int
    states: list[EcgStreamState]
    state_bytes: list[int]


def _core_run(signals: list[_Signal], n_streams: int, chunk_s: float) -> _CoreRun:
    """One replay of the streams through the core, interleaved chunk by chunk (fresh states).

    The clock stops while the states are serialised at the checkpoints (every 60 s of
    stream time), which only measures their size."""
    states: list[EcgStreamState] = []
    plan = []
    for i in range(n_streams):
        _, x, fs = signals[i % len(signals)]
        states.append(ecg_stream_init(fs))
        plan.append((x, max(1, round(chunk_s * fs)), fs))
    n_chunks = max(-(-x.size // c) for x, c, _ in plan)
    checkpoint_every = max(1, round(60.0 / chunk_s))
    state_bytes: list[int] = []
    n_beats = 0
    t_core = 0.0
    t0 = time.perf_counter()
    for k in range(n_chunks):
        for i, (x, c, _fs) in enumerate(plan):
            a = k * c
            if a < x.size:
                states[i], beats = ecg_stream_process(states[i], x[a : a + c])
                n_beats += len(beats)
        if k % checkpoint_every == checkpoint_every - 1:
            t_core += time.perf_counter() - t0
            state_bytes.extend(len(ecg_state_dumps(s)) for s in states)
            t0 = time.perf_counter()
    for i in range(n_streams):
        states[i], beats = ecg_stream_flush(states[i])
        n_beats += len(beats)
    t_core += time.perf_counter() - t0
    if not state_bytes:
        state_bytes = [len(ecg_state_dumps(s)) for s in states]
    return _CoreRun(t_core, sum(x.size for x, _, _ in plan), n_beats, states, state_bytes)


def _neurokit2_run(signals: list[_Signal], n_streams: int) -> tuple[float, int, int]:
    """NeuroKit2 (``ecg_clean`` + ``ecg_peaks``) on the same records, whole records at once:
    ``(seconds, samples, peaks)``."""
    import neurokit2 as nk  # imported here: optional dependency of the benchmark only

    t_nk = 0.0
    nk_samples = 0
    nk_peaks = 0
    for i in range(n_streams):
        _, x, fs = signals[i % len(signals)]
        t1 = time.perf_counter()
        clean = nk.ecg_clean(x, sampling_rate=fs)
        _, info = nk.ecg_peaks(clean, sampling_rate=fs)
        t_nk += time.perf_counter() - t1
        nk_samples += x.size
        nk_peaks += len(info["ECG_R_Peaks"])
    return t_nk, nk_samples, nk_peaks


def _measure(args: argparse.Namespace, names: list[str], signals: list[_Signal], n_streams: int) -> dict[str, object]:
    """Run the measurements, print the tables and return the report."""

    # --- throughput: the core and NeuroKit2, alternately, best of --repeat runs each ------
    core_runs: list[_CoreRun] = []
    nk_runs: list[tuple[float, int, int]] = []
    for _ in range(args.repeat):
        core_runs.append(_core_run(signals, n_streams, args.chunk_s))
        nk_runs.append(_neurokit2_run(signals, n_streams))
    core_sps = [r.samples / max(r.seconds, 1e-9) for r in core_runs]
    nk_sps_runs = [n / max(t, 1e-9) for t, n, _ in nk_runs]
    best = int(np.argmax(core_sps))
    sps, nk_sps = core_sps[best], max(nk_sps_runs)
    t_core, total_samples, n_beats = core_runs[best].seconds, core_runs[best].samples, core_runs[best].beats
    states, state_bytes = core_runs[best].states, core_runs[best].state_bytes
    t_nk, _, nk_peaks = nk_runs[int(np.argmax(nk_sps_runs))]
    # --- latency: every record alone, small chunks ----------------------------------------
    t_lat = time.perf_counter()
    delays = np.concatenate([beat_delays(x, fs, args.latency_chunk_s) for _, x, fs in signals])
    latency = delay_summary(delays)
    fs_list = [float(v) for v in args.fs_list.split(",") if v.strip()]
    by_fs: dict[str, object] = {}
    for fs_out in fs_list:
        d = []
        for _, x, fs in signals:
            xs = x[: round(args.latency_seconds * fs)] if args.latency_seconds > 0 else x
            d.append(beat_delays(resample_to(xs, fs, fs_out), fs_out, args.latency_chunk_s))
        by_fs[f"{fs_out:g}"] = {"beat_delay_s": delay_summary(np.concatenate(d)), "stages": stage_delays(fs_out)}
    agreement = denoise_agreement(signals)
    t_lat = time.perf_counter() - t_lat
    fs0 = states[0].fs
    report = {
        "samples_per_s": sps,
        "neurokit2_samples_per_s": nk_sps,
        "ratio": sps / nk_sps,
        "repeat": len(core_runs),
        "core_runs_samples_per_s": core_sps,
        "neurokit2_runs_samples_per_s": nk_sps_runs,
        "ratio_of_medians": float(np.median(core_sps) / np.median(nk_sps_runs)),
        "state_bytes_per_stream": int(max(state_bytes)),
        "state_bytes_per_stream_mean": float(np.mean(state_bytes)),
        "streams": n_streams,
        "records": names,
        "samples": total_samples,
        "chunk_s": args.chunk_s,
        "beat_window": states[0].window,
        "beat_delay_s": latency,
        "latency_chunk_s": args.latency_chunk_s,
        "stages": stage_delays(fs0),
        "beat_delay_by_fs": by_fs,
        "latency_seconds_per_record_resampled": args.latency_seconds,
        "denoise_agreement": agreement,
        "latency_and_agreement_seconds": t_lat,
        "core_seconds": t_core,
        "neurokit2_seconds": t_nk,
        "beats_emitted": n_beats,
        "neurokit2_peaks": nk_peaks,
        "core_work": "offset removal, db4/5 wavelet shrinkage, 0.5-50 Hz band-pass, Pan-Tompkins "
        "R peaks, 300-sample beats, RR features, quality index",
        "neurokit2_work": "nk.ecg_clean + nk.ecg_peaks (method 'neurokit') per whole record",
        "gc_threshold0": DEFAULT_GC_THRESHOLD0,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(
        f"core: {sps / 1e6:.2f} M samples/s ({n_streams} streams, {states[0].window} beat window), "
        f"NeuroKit2: {nk_sps / 1e6:.2f} M samples/s, ratio {sps / nk_sps:.2f} (best of {len(core_runs)} runs each; "
        f"ratio of the medians {report['ratio_of_medians']:.2f}), state {max(state_bytes)} bytes/stream (max)"
    )
    print(f"\nbeat delay (records at their fs, {args.latency_chunk_s:g}-s chunks): "
          f"p50 {latency['p50']:.3f} s, p99 {latency['p99']:.3f} s, max {latency['max']:.3f} s "
          f"over {latency['beats']} beats")  # fmt: skip
    if by_fs:
        print(f"\n{'fs (Hz)':>8} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'wavelet lag s':>15} {'window after R s':>17}")
        for fs_key, v in by_fs.items():
            bd = v["beat_delay_s"]  # type: ignore[index]
            stg = v["stages"]  # type: ignore[index]
            lag = f"{stg['wavelet_lag_s'][0]:.3f}-{stg['wavelet_lag_s'][1]:.3f}"
            print(f"{fs_key:>8} {bd['p50']:7.3f} {bd['p99']:7.3f} {bd['max']:7.3f} {lag:>15} "
                  f"{stg['beat_window_after_r_s']:17.3f}")  # fmt: skip
    sm = agreement["summary"]
    print(
        "\ndenoiser vs whole-record DWT (NRMSE after band-pass, median / max over records): "
        f"streaming {sm['stream_v2']['median']:.4f} / {sm['stream_v2']['max']:.4f}, "
        f"former 4-s blocks {sm['block_v1']['median']:.4f} / {sm['block_v1']['max']:.4f}, "
        f"no denoising {sm['no_denoising']['median']:.4f} / {sm['no_denoising']['max']:.4f}"
    )
    return report


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
