"""``streamdx eval esr`` — seed 000's Table-1 comparison on **simulated** cohorts.

For each of ``--runs`` repetitions (default 40) a new random by-tube split of the cohort
(80 % train / 20 % test; 20 % of train held out for early stopping) is drawn and every model is
trained afresh with a new seed: GRU, Random Forest, FFNN and Wide & Deep (see
:mod:`streamdx_inference.esr.models`), plus two untrained baselines — the last observed height
(minute 30) and a linear extrapolation of the last 10 minutes. Reported: MAE of the normalised
60-minute height on the test tubes, mean ± sample standard deviation over runs; the GRU's
MAE against the input length (last minute 10, 15, 20, 24, 30 — one GRU per input length,
trained in the first ``--length-runs`` runs); the same on a larger cohort (fewer runs); and
the boundary tracker's error on rendered frames of a separate simulated cohort.

Writes a JSON report (``--out``) and prints a human table. All data are SIMULATED.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdx_inference.esr.features import (
    FIRST_MINUTE,
    LENGTHS_REPORTED,
    LINEAR_WINDOW,
    MAX_MINUTE,
    Series,
    linear_extrapolation,
    series_from_tubes,
)
from streamdx_inference.esr.training import split_indices, train_gru

__all__ = ["boundary_study", "cohort_summary", "main", "model_study", "paired_vs_gru"]

MODELS = ("gru", "rf", "ffnn", "wdnn", "last_value", "linear")


def _flat(s: Series, scaler: Any) -> NDArray[np.float64]:
    return np.concatenate([scaler.h(s.heights), scaler.static(s.age, s.sex)], axis=1)


def _one_run(
    s: Series, run: int, base_seed: int, per_length: bool
) -> tuple[dict[str, float], dict[int, dict[str, float]], int]:
    """Train every model on one split → per-model MAE, per-length MAE (GRU only when
    ``per_length``; baselines always), GRU epochs."""
    from sklearn.ensemble import RandomForestRegressor

    from streamdx_inference.esr.models import FFNN, LEARNING_RATES, TrainConfig, WideDeep, fit_net, predict_net

    seed = base_seed * 100_003 + run
    fit, val, test = split_indices(len(s), seed)
    tr = np.concatenate([fit, val])
    te = s.take(test)
    y = te.h60
    mae: dict[str, float] = {}
    gru = train_gru(s, fit, val, seed, last_minute=MAX_MINUTE)
    sc = gru.scaler
    mae["gru"] = float(np.mean(np.abs(gru.predict(te) - y)))
    by_len: dict[int, dict[str, float]] = {}
    for T in LENGTHS_REPORTED:
        h = te.heights[:, : T - FIRST_MINUTE + 1]
        by_len[T] = {
            "last_value": float(np.mean(np.abs(h[:, -1] - y))),
            "linear": float(np.mean(np.abs(linear_extrapolation(h) - y))),
        }
        if T == MAX_MINUTE:
            by_len[T]["gru"] = mae["gru"]
        elif per_length:
            g = train_gru(s, fit, val, seed, last_minute=T)
            by_len[T]["gru"] = float(np.mean(np.abs(g.predict(te) - y)))
    f, v = s.take(fit), s.take(val)
    xf, xv, xte = _flat(f, sc), _flat(v, sc), _flat(te, sc)
    for name, cls in (("ffnn", FFNN), ("wdnn", WideDeep)):
        cfg = TrainConfig(lr=LEARNING_RATES[name])
        net, _ = fit_net(cls(xf.shape[1]), (xf,), sc.h(f.h60), (xv,), sc.h(v.h60), cfg, seed)
        mae[name] = float(np.mean(np.abs(sc.h_inv(predict_net(net, (xte,))) - y)))
    rf = RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
    rf.fit(_flat(s.take(tr), sc), s.h60[tr])
    mae["rf"] = float(np.mean(np.abs(rf.predict(xte) - y)))
    mae["last_value"] = float(np.mean(np.abs(te.heights[:, -1] - y)))
    mae["linear"] = float(np.mean(np.abs(linear_extrapolation(te.heights) - y)))
    return mae, by_len, gru.epochs


def _agg(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mae_mean": float(a.mean()),
        "mae_std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "runs": int(a.size),
    }


def paired_vs_gru(per_run: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Paired per-run comparison of the GRU with every other model (same splits).

    ``mean_diff`` is mean(MAE_gru - MAE_other) (negative = GRU better), ``se`` its standard
    error over runs, ``gru_better_runs`` the number of runs in which the GRU's MAE was lower.
    """
    g = np.asarray(per_run["gru"], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for m, v in per_run.items():
        if m == "gru":
            continue
        d = g - np.asarray(v, dtype=np.float64)
        out[m] = {
            "mean_diff": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan"),
            "gru_better_runs": int((d < 0).sum()),
            "runs": int(d.size),
        }
    return out


def cohort_summary(tubes: Sequence[Any], n: int, seed: int) -> dict[str, Any]:
    """Description of a simulated cohort for the report."""
    esr = np.array([t.esr_mm_h for t in tubes])
    h60 = np.array([t.heights[60] for t in tubes])
    return {
        "n": n,
        "seed": seed,
        "simulated": True,
        "generator": "streamdx.sim.esr.esr_cohort_simulate",
        "heights": "heights_observed (true heights + 0.1 mm Gaussian read-out noise, non-increasing)",
        "split": "80/20 by tube, new split per run; 20% of train for early stopping",
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
    """Train/evaluate every model ``runs`` times on a simulated cohort of ``n`` tubes; GRUs for
    the shorter input lengths are trained in the first ``length_runs`` runs."""
    from streamdx.sim.esr import esr_cohort_simulate

    tubes = esr_cohort_simulate(n, seed)
    s = series_from_tubes(tubes)
    per_model: dict[str, list[float]] = {m: [] for m in MODELS}
    per_len: dict[int, dict[str, list[float]]] = {
        T: {"gru": [], "last_value": [], "linear": []} for T in LENGTHS_REPORTED
    }
    epochs: list[int] = []
    t0 = time.monotonic()
    for r in range(runs):
        mae, by_len, ep = _one_run(s, r, seed, per_length=r < length_runs)
        for m in MODELS:
            per_model[m].append(mae[m])
        for T in LENGTHS_REPORTED:
            for k, v in by_len[T].items():
                per_len[T][k].append(v)
        epochs.append(ep)
        if log:
            print(
                f"  n={n} run {r + 1}/{runs}: "
                + " ".join(f"{m}={mae[m]:.4f}" for m in MODELS)
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
        "gru_epochs_median": float(np.median(epochs)),
        "mae_vs_minutes": {str(T): {k: _agg(v) for k, v in per_len[T].items() if v} for T in LENGTHS_REPORTED},
        "seconds": round(time.monotonic() - t0, 1),
    }


def boundary_study(n_tubes: int, seed: int, minute_step: int = 5) -> dict[str, Any]:
    """Boundary error (px) of the tracker on rendered JPEG frames of a simulated cohort."""
    import cv2

    from streamdx.sim.esr import esr_cohort_simulate, esr_frame_render
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
        f"{title}: SIMULATED cohort n={c['n']} (seed {c['seed']}), {study['runs']} runs, "
        f"ESR median {c['esr_mm_h']['median']:.0f} mm/h (range {c['esr_mm_h']['min']:.0f}–"
        f"{c['esr_mm_h']['max']:.0f})",
        f"  {'model':<11} {'MAE mean':>9} {'± std':>8}",
    ]
    for m in MODELS:
        r = study["models"][m]
        lines.append(f"  {m:<11} {r['mae_mean']:9.4f} {r['mae_std']:8.4f}")
    for m, d in study["paired_vs_gru"].items():
        lines.append(
            f"  GRU - {m}: {d['mean_diff']:+.4f} ± {d['se']:.4f} (SE), "
            f"GRU lower in {d['gru_better_runs']}/{d['runs']} runs"
        )
    lines.append("  MAE vs last input minute (GRU | last value | linear):")
    for T, d in study["mae_vs_minutes"].items():
        g = f"{d['gru']['mae_mean']:.4f}±{d['gru']['mae_std']:.4f} ({d['gru']['runs']} runs)" if "gru" in d else "-"
        lines.append(
            f"    {T:>3} min  {g} | {d['last_value']['mae_mean']:.4f}±{d['last_value']['mae_std']:.4f}"
            f" | {d['linear']['mae_mean']:.4f}±{d['linear']['mae_std']:.4f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """CLI entry point (``streamdx eval esr``)."""
    p = argparse.ArgumentParser(prog="streamdx eval esr", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON report path")
    p.add_argument("--runs", type=int, default=40, help="trainings per model on the main cohort")
    p.add_argument("--length-runs", type=int, default=10, help="runs that also train GRUs for T < 30")
    p.add_argument("--n", type=int, default=130, help="main cohort size")
    p.add_argument("--seed", type=int, default=0, help="main cohort seed")
    p.add_argument("--large-n", type=int, default=1000, help="larger cohort size (0 = skip)")
    p.add_argument("--large-runs", type=int, default=3, help="trainings per model on the larger cohort")
    p.add_argument("--large-length-runs", type=int, default=1, help="larger-cohort runs with GRUs for T < 30")
    p.add_argument("--boundary-tubes", type=int, default=20, help="tubes rendered for the boundary error")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = p.parse_args(list(argv))
    if a.runs < 1:
        p.error("--runs must be >= 1")

    import torch

    torch.set_num_threads(a.threads)
    t0 = time.monotonic()
    main_study = model_study(a.n, a.seed, a.runs, length_runs=a.length_runs)
    report: dict[str, Any] = {
        "simulated": True,
        "cohort": main_study["cohort"],
        "runs": main_study["runs"],
        "models": main_study["models"],
        "mae_vs_minutes": main_study["mae_vs_minutes"],
        "gru_best_fraction_of_runs": main_study["gru_best_fraction_of_runs"],
        "paired_vs_gru": main_study["paired_vs_gru"],
        "gru_epochs_median": main_study["gru_epochs_median"],
        "per_run_mae": main_study["per_run_mae"],
        "linear_window_minutes": LINEAR_WINDOW,
    }
    if a.large_n > 0 and a.large_runs > 0:
        large = model_study(a.large_n, a.seed + 1, a.large_runs, length_runs=a.large_length_runs)
        report["large_cohort"] = {k: v for k, v in large.items() if k != "per_run_mae"}
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
