"""``streamdx eval esr`` — seed 000's Table-1 comparison on **simulated** cohorts.

For each of ``--runs`` repetitions (default 40) a new random by-tube split of the cohort
(80 % training part / 20 % test; 20 % of the training part is the inner validation set) is drawn
and every learned model is tuned and trained afresh with a new seed: GRU, Random Forest, FFNN and
Wide & Deep. All four predict the 60-minute height as the last observed height plus a predicted
change and get the same search — :data:`~streamdx_inference.esr.tuning.SEARCH_SIZE`
configurations each, chosen by the MAE on the inner validation tubes; the test tubes are never
passed to the search (see :mod:`streamdx_inference.esr.tuning`). Two untrained baselines are kept:
the last observed height (minute 30) and a linear extrapolation of the last 10 minutes.

Reported: MAE of the normalised 60-minute height on the test tubes, mean ± sample SD over runs;
paired differences against the GRU on the same splits (mean ± SD of MAE(model) − MAE(GRU) and
how many splits each side wins); how often each configuration was chosen; the GRU's MAE against
the input length (last minute 10, 15, 20, 24, 30 — one GRU per input length with the setting
chosen at T = 30, trained in the first ``--length-runs`` runs); the same on a larger cohort
(fewer runs); and the boundary tracker's error on rendered frames of a separate simulated cohort.

Writes a JSON report (``--out``) and prints a human table. All data are SIMULATED.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdx.cli_args import int_at_least, non_negative_int, positive_int, report_path
from streamdx_inference.esr.features import (
    FIRST_MINUTE,
    LENGTHS_REPORTED,
    LINEAR_WINDOW,
    MAX_MINUTE,
    Series,
    linear_extrapolation,
    series_from_tubes,
)
from streamdx_inference.esr.training import TrainedGru, split_indices

__all__ = ["boundary_study", "build_parser", "cohort_summary", "main", "model_study", "paired_vs_gru"]

MODELS = ("gru", "rf", "ffnn", "wdnn", "last_value", "linear")


def _mae(pred: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    return float(np.mean(np.abs(pred - y)))


@dataclass(frozen=True)
class RunResult:
    """One split: test MAE per model, per input length, the GRU's epochs and each learned
    model's chosen configuration."""

    mae: dict[str, float]
    by_len: dict[int, dict[str, float]]
    gru_epochs: int
    chosen: dict[str, dict[str, Any]]


def _one_run(s: Series, run: int, base_seed: int, per_length: bool) -> RunResult:
    """Tune and train every learned model on one split's training part and score all models on
    its test tubes (GRUs for T < 30 only when ``per_length``; naive baselines always)."""
    from streamdx_inference.esr import tuning

    seed = base_seed * 100_003 + run
    fit, val, test = split_indices(len(s), seed)
    f, v, te = s.take(fit), s.take(val), s.take(test)
    y = te.h60
    tuned = {m: tuning.tune(m, f, v, seed) for m in tuning.LEARNED_MODELS}
    mae = {m: _mae(t.forecaster.predict(te), y) for m, t in tuned.items()}
    mae["last_value"] = _mae(te.heights[:, -1], y)
    mae["linear"] = _mae(linear_extrapolation(te.heights), y)
    gru = tuned["gru"]
    by_len: dict[int, dict[str, float]] = {}
    for T in LENGTHS_REPORTED:
        h = te.heights[:, : T - FIRST_MINUTE + 1]
        by_len[T] = {"last_value": _mae(h[:, -1], y), "linear": _mae(linear_extrapolation(h), y)}
        if T == MAX_MINUTE:
            by_len[T]["gru"] = mae["gru"]
        elif per_length:
            from streamdx_inference.esr.training import fit_gru

            g = fit_gru(f, v, seed, last_minute=T, lr=float(gru.params["lr"]), hidden=int(gru.params["hidden"]))
            by_len[T]["gru"] = _mae(g.predict(te), y)
    epochs = gru.forecaster.epochs if isinstance(gru.forecaster, TrainedGru) else 0
    return RunResult(mae, by_len, epochs, {m: t.params for m, t in tuned.items()})


def _agg(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mae_mean": float(a.mean()),
        "mae_std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "runs": int(a.size),
    }


def paired_vs_gru(per_run: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Paired per-split comparison of every model with the GRU (same splits).

    Per split ``d = MAE(model) - MAE(GRU)`` (positive = GRU better): its mean, sample SD and
    standard error over splits, and how many splits the GRU (``gru_wins``) and the model
    (``model_wins``) had the lower MAE.
    """
    g = np.asarray(per_run["gru"], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for m, v in per_run.items():
        if m == "gru":
            continue
        d = np.asarray(v, dtype=np.float64) - g
        sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
        out[m] = {
            "model_minus_gru_mean": float(d.mean()),
            "model_minus_gru_sd": sd,
            "model_minus_gru_se": sd / float(np.sqrt(d.size)),
            "gru_wins": int((d > 0).sum()),
            "model_wins": int((d < 0).sum()),
            "runs": int(d.size),
        }
    return out


def tuning_protocol() -> dict[str, Any]:
    """The search every learned model gets, for the report."""
    from streamdx_inference.esr import tuning

    return {
        "target": "change from the last observed height (minute 30); forecast = last height + change",
        "search_size": tuning.SEARCH_SIZE,
        "spaces": {m: {k: list(v) for k, v in space.items()} for m, space in tuning.SEARCH_SPACES.items()},
        "selection": "lowest MAE on the inner validation tubes (20 % of the training part); candidates "
        "trained on the rest of the training part with the same seed; test tubes never passed to the search",
        "final_model": "networks keep the chosen candidate's early-stopped weights; the forest is refitted "
        "with the chosen setting on the whole training part",
        "length_gru": "GRUs for T < 30 reuse the setting chosen at T = 30 in the same run",
    }


def cohort_summary(tubes: Sequence[Any], n: int, seed: int) -> dict[str, Any]:
    """Description of a simulated cohort for the report."""
    esr = np.array([t.esr_mm_h for t in tubes])
    h60 = np.array([t.heights[60] for t in tubes])
    return {
        "n": n,
        "seed": seed,
        "simulated": True,
        "generator": "streamdx_devkit.sim.esr.esr_cohort_simulate",
        "heights": "heights_observed (true heights + 0.1 mm Gaussian read-out noise, non-increasing)",
        "split": "80/20 by tube, new split per run; 20% of the training part is the inner validation set "
        "(early stopping and choice of hyper-parameters)",
        "esr_mm_h": {
            "min": float(esr.min()),
            "median": float(np.median(esr)),
            "max": float(esr.max()),
            "frac_le_20": float(np.mean(esr <= 20)),
            "frac_gt_100": float(np.mean(esr > 100)),
        },
        "h60": {"min": float(h60.min()), "median": float(np.median(h60)), "max": float(h60.max())},
        "female_frac": float(np.mean([t.sex == "F" for t in tubes])),
    }


def model_study(n: int, seed: int, runs: int, length_runs: int = 0, log: bool = True) -> dict[str, Any]:
    """Tune, train and evaluate every model ``runs`` times on a simulated cohort of ``n`` tubes;
    GRUs for the shorter input lengths are trained in the first ``length_runs`` runs."""
    from streamdx_devkit.sim.esr import esr_cohort_simulate
    from streamdx_inference.esr.tuning import params_label

    tubes = esr_cohort_simulate(n, seed)
    s = series_from_tubes(tubes)
    per_model: dict[str, list[float]] = {m: [] for m in MODELS}
    per_len: dict[int, dict[str, list[float]]] = {
        T: {"gru": [], "last_value": [], "linear": []} for T in LENGTHS_REPORTED
    }
    chosen: dict[str, Counter[str]] = {}
    epochs: list[int] = []
    t0 = time.monotonic()
    for r in range(runs):
        res = _one_run(s, r, seed, per_length=r < length_runs)
        for m in MODELS:
            per_model[m].append(res.mae[m])
        for T in LENGTHS_REPORTED:
            for k, v in res.by_len[T].items():
                per_len[T][k].append(v)
        for m, p in res.chosen.items():
            chosen.setdefault(m, Counter())[params_label(p)] += 1
        epochs.append(res.gru_epochs)
        if log:
            print(
                f"  n={n} run {r + 1}/{runs}: "
                + " ".join(f"{m}={res.mae[m]:.4f}" for m in MODELS)
                + f" ({time.monotonic() - t0:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    wins = np.mean(np.array(per_model["gru"]) < np.min([per_model[m] for m in MODELS if m != "gru"], axis=0))
    return {
        "cohort": cohort_summary(tubes, n, seed),
        "runs": runs,
        "models": {m: _agg(v) for m, v in per_model.items()},
        "per_run_mae": per_model,
        "gru_best_fraction_of_runs": float(wins),
        "paired_vs_gru": paired_vs_gru(per_model),
        "chosen_settings": {m: dict(c.most_common()) for m, c in chosen.items()},
        "gru_epochs_median": float(np.median(epochs)),
        "mae_vs_minutes": {str(T): {k: _agg(v) for k, v in per_len[T].items() if v} for T in LENGTHS_REPORTED},
        "seconds": round(time.monotonic() - t0, 1),
    }


def boundary_study(n_tubes: int, seed: int, minute_step: int = 5) -> dict[str, Any]:
    """Boundary error (px) of the tracker on rendered JPEG frames of a simulated cohort."""
    import cv2

    from streamdx_devkit.sim.esr import esr_cohort_simulate, esr_frame_render
    from streamdx_dsp.esr import esr_boundary_track, esr_tracker_init

    errs: list[float] = []
    raw_errs: list[float] = []
    h_errs: list[float] = []
    confs: list[float] = []
    rises = 0
    for tube in esr_cohort_simulate(n_tubes, seed):
        st = esr_tracker_init()
        prev = np.inf
        for m in range(0, 61, minute_step):
            data, truth = esr_frame_render(tube, m, fmt="jpeg")
            img = np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), dtype=np.uint8)
            st, res = esr_boundary_track(st, img, m)
            errs.append(abs(res.boundary_px - truth.boundary_px))
            raw_errs.append(abs(res.raw_boundary_px - truth.boundary_px))
            h_errs.append(abs(res.height - truth.height))
            confs.append(res.confidence)
            rises += int(res.height > prev + 1e-12)
            prev = res.height
    e = np.asarray(errs)
    return {
        "simulated": True,
        "cohort_seed": seed,
        "tubes": n_tubes,
        "frames": int(e.size),
        "format": "jpeg",
        "median": float(np.nanmedian(e)),
        "p95": float(np.nanpercentile(e, 95)),
        "max": float(np.nanmax(e)),
        "failed_frames": int(np.isnan(e).sum()),
        "raw_median": float(np.nanmedian(raw_errs)),
        "height_abs_error_median": float(np.nanmedian(h_errs)),
        "confidence_median": float(np.median(confs)),
        "height_rises": rises,
    }


def _table(title: str, study: dict[str, Any]) -> str:
    c = study["cohort"]
    lines = [
        f"{title}: SIMULATED cohort n={c['n']} (seed {c['seed']}), {study['runs']} runs (splits), "
        f"ESR median {c['esr_mm_h']['median']:.0f} mm/h (range {c['esr_mm_h']['min']:.0f}–"
        f"{c['esr_mm_h']['max']:.0f})",
        "  learned models: last height + predicted change, each tuned over the same number of settings",
        "  on the training part of every split; paired = MAE(model) − MAE(GRU) per split (+ = GRU better)",
        f"  {'model':<11} {'MAE mean':>9} {'± SD':>8}   {'paired mean':>11} {'± SD':>8}"
        f"  {'GRU wins':>8} {'model wins':>10}",
    ]
    paired = study["paired_vs_gru"]
    for m in MODELS:
        r = study["models"][m]
        row = f"  {m:<11} {r['mae_mean']:9.4f} {r['mae_std']:8.4f}"
        d = paired.get(m)
        if d is not None:
            gw, mw = f"{d['gru_wins']}/{d['runs']}", f"{d['model_wins']}/{d['runs']}"
            row += f"   {d['model_minus_gru_mean']:+11.4f} {d['model_minus_gru_sd']:8.4f}  {gw:>8} {mw:>10}"
        lines.append(row)
    lines.append("  chosen settings (splits):")
    for m, counts in study["chosen_settings"].items():
        lines.append(f"    {m:<5} " + "; ".join(f"{label} ×{k}" for label, k in counts.items()))
    lines.append("  MAE vs last input minute (GRU | last value | linear):")
    for T, d in study["mae_vs_minutes"].items():
        g = f"{d['gru']['mae_mean']:.4f}±{d['gru']['mae_std']:.4f} ({d['gru']['runs']} runs)" if "gru" in d else "-"
        lines.append(
            f"    {T:>3} min  {g} | {d['last_value']['mae_mean']:.4f}±{d['last_value']['mae_std']:.4f}"
            f" | {d['linear']['mae_mean']:.4f}±{d['linear']['mae_std']:.4f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``streamdx eval esr``."""
    p = argparse.ArgumentParser(
        prog="streamdx eval esr",
        description="Compare the ESR forecast models (GRU, random forest, FFNN, Wide & Deep, naive baselines) "
        "on simulated tubes; writes a JSON report and prints the table. The published table uses the defaults.",
    )
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument(
        "--runs",
        type=positive_int,
        default=40,
        help="repeated random splits of the main cohort, each tuning and training every model afresh "
        "(default 40, about 75 %% of the run time; fewer runs for a quicker, noisier table)",
    )
    p.add_argument("--length-runs", type=non_negative_int, default=10,
                   help="runs that also train GRUs on minutes 2..T for T < 30")
    p.add_argument("--n", type=int_at_least(3), default=130, help="tubes in the main simulated cohort (>= 3)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the main cohort (the larger one uses seed + 1)")
    p.add_argument("--large-n", type=non_negative_int, default=1000,
                   help="tubes in the larger cohort (0 = skip it, else >= 3)")
    p.add_argument("--large-runs", type=positive_int, default=3, help="repeated splits of the larger cohort")
    p.add_argument(
        "--large-length-runs", type=non_negative_int, default=1,
        help="larger-cohort runs that also train GRUs for T < 30",
    )
    p.add_argument("--boundary-tubes", type=positive_int, default=20,
                   help="simulated tubes rendered for the boundary error")
    p.add_argument("--threads", type=positive_int, default=1, help="threads used by PyTorch")
    return p


def main(argv: Sequence[str]) -> int:
    """CLI entry point (``streamdx eval esr``)."""
    p = build_parser()
    a = p.parse_args(list(argv))
    if 0 < a.large_n < 3:
        p.error("--large-n must be 0 (skip the larger cohort) or >= 3")

    import torch

    torch.set_num_threads(a.threads)
    t0 = time.monotonic()
    main_study = model_study(a.n, a.seed, a.runs, length_runs=a.length_runs)
    report: dict[str, Any] = {
        "simulated": True,
        "cohort": main_study["cohort"],
        "runs": main_study["runs"],
        "tuning": tuning_protocol(),
        "models": main_study["models"],
        "paired_vs_gru": main_study["paired_vs_gru"],
        "chosen_settings": main_study["chosen_settings"],
        "mae_vs_minutes": main_study["mae_vs_minutes"],
        "gru_best_fraction_of_runs": main_study["gru_best_fraction_of_runs"],
        "gru_epochs_median": main_study["gru_epochs_median"],
        "per_run_mae": main_study["per_run_mae"],
        "linear_window_minutes": LINEAR_WINDOW,
        "main_seconds": main_study["seconds"],
    }
    if a.large_n > 0 and a.large_runs > 0:
        large = model_study(a.large_n, a.seed + 1, a.large_runs, length_runs=a.large_length_runs)
        report["large_cohort"] = large
    report["boundary_error_px"] = boundary_study(a.boundary_tubes, a.seed + 2)
    report["seconds"] = round(time.monotonic() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table("Table 1 (main)", main_study))
    if "large_cohort" in report:
        print(_table("Larger cohort", report["large_cohort"]))
    b = report["boundary_error_px"]
    print(
        f"Boundary error on {b['frames']} rendered JPEG frames ({b['tubes']} simulated tubes): "
        f"median {b['median']:.3f} px, p95 {b['p95']:.3f} px, max {b['max']:.3f} px"
    )
    print(f"report: {a.out}  ({report['seconds']:.0f} s)")
    return 0
