"""How far other models get on the held-out CinC 2017 recordings (recording-level AF diagnostics).

``python -m streamdx_inference.ecg.training.af_ceiling --cinc DIR --models DIR --out F
[--cnn-epochs N] [--seed S] [--threads T] [--cache DIR]`` asks whether the CinC AF target (F1 >= 0.85 on
recordings that training never saw) is out of reach because of the served design (a causal
per-beat network on the DSP's beats, 32 previous RR intervals) or because of what the training
recordings teach. It scores, on the same held-out recordings as ``streamdx eval cinc2017``,
models that see more than the served one does:

- ``served``: the shipped quality gate, AF and beat-class models and recording rules, exactly as
  ``streamdx eval cinc2017``;
- ``mean_af_prob``: the shipped AF model's mean probability over a recording's readable beats;
- ``gbm_rr``: gradient boosting (scikit-learn) on RR statistics of the whole recording
  (:func:`recording_rr_features`);
- ``gbm_rr_median_beat``: the same plus the shape of the recording's median beat
  (:func:`median_beat_features`: P-wave area, QRS and T wave, beat-to-beat spread before R);
- ``blend_gbm_mean_af_prob``: a logit blend of the two previous scores;
- ``cnn_raw``: a 1-D ResNet over the whole raw recording (:class:`RecordingCnn`; 0.5-40 Hz
  zero-phase band-pass, 150 Hz), i.e. a non-causal model that sees every sample;
- ``blend_cnn_mean_af_prob``: a logit blend of ``cnn_raw`` and ``mean_af_prob``.

Parts of the pack, from the shipped AF model's files: ``train`` = its CinC training recordings
(``cinc_train_records.json``) without its validation ones (``training.val_records`` of its
``model.json``), ``fit`` = those validation recordings (never trained on; the recording rules
were fitted there), ``held`` = every other labelled recording (what ``eval cinc2017`` scores).
The gradient-boosting models learn from ``train`` + ``fit`` (their inputs do not come from the AF
model) and take their threshold from 5-fold cross-validated scores there; the network learns
from ``train`` and takes its epoch and threshold from ``fit``; blend weights and thresholds come
from ``fit``. Nothing is chosen on ``held``. Each model's held-out AF F1 (A versus the rest) is
reported at that threshold, with the ROC AUC and, as an optimistic bound only, the F1 at the best
threshold on ``held`` itself (``f1_best_threshold_on_held``).
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
import numpy.typing as npt

from streamdx.cli_args import non_negative_int, positive_int, report_path, write_report
from streamdx_inference.ecg.scoring import binary_report, format_table

__all__ = ["RR_FEATURES", "main", "median_beat_features", "recording_rr_features"]

#: Names of :func:`recording_rr_features`, in order.
RR_FEATURES = ("n_readable", "readable_fraction", "mean_rr_s", "cv", "rmssd_norm", "median_abs_diff_norm",
               "pnn50", "pnn_rel10", "pnn_rel20", "sd1_sd2", "sd1_norm", "turning_points", "histogram_entropy",
               "near_median", "iqr_norm")  # fmt: skip
_CNN_SECONDS = 30.0
_CNN_FS = 150.0


def recording_rr_features(rr_prev_s: npt.ArrayLike, readable: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """RR-interval statistics of one recording's readable beats (:data:`RR_FEATURES`).

    Parameters
    ----------
    rr_prev_s : array_like of float, shape (n,)
        Each beat's previous RR interval (s).
    readable : array_like of bool, shape (n,)
        Whether the beat passed the quality gate.

    Returns
    -------
    ndarray of float64, shape (len(RR_FEATURES),)
        Counts and fractions, then the mean RR (s), the coefficient of variation, RMSSD and the
        median absolute successive difference over the median RR, pNN50, the fractions of
        successive differences above 10 and 20 % of the RR, SD1/SD2 and SD1 over the mean RR
        (Poincaré plot; Brennan et al. 2001), the turning-point ratio, the entropy of the RR
        histogram (0.3-2.0 times the median, 34 bins), the fraction within 8 % of the median and
        the interquartile range over the median. NaN where fewer than 4 readable beats.
    """
    ok = np.asarray(readable, dtype=bool)
    rr = np.asarray(rr_prev_s, dtype=np.float64)[ok]
    out = np.full(len(RR_FEATURES), np.nan)
    out[0] = rr.size
    out[1] = ok.mean() if ok.size else 0.0
    if rr.size < 4:
        return out
    d = np.diff(rr)
    med, mean = float(np.median(rr)), float(rr.mean())
    sd1 = float(np.std(d)) / np.sqrt(2.0)
    sd2 = float(np.sqrt(max(1e-12, 2.0 * float(rr.var()) - sd1**2)))
    h, _ = np.histogram(rr / med, bins=np.linspace(0.3, 2.0, 35))
    hp = h[h > 0] / max(1, h.sum())
    out[2:] = (
        mean, float(rr.std()) / mean, float(np.sqrt(np.mean(d**2))) / mean, float(np.median(np.abs(d))) / med,
        float(np.mean(np.abs(d) > 0.05)), float(np.mean(np.abs(d) / rr[1:] > 0.1)),
        float(np.mean(np.abs(d) / rr[1:] > 0.2)), sd1 / sd2, sd1 / mean,
        float(np.sum(d[:-1] * d[1:] < 0)) / max(1, d.size - 1), float(-np.sum(hp * np.log(hp))),
        float(np.mean(np.abs(rr / med - 1.0) < 0.08)),
        float(np.percentile(rr, 75) - np.percentile(rr, 25)) / med,
    )  # fmt: skip
    return out


def median_beat_features(waves: npt.ArrayLike, r_index: int = 100) -> npt.NDArray[np.float64]:
    """Shape of a recording's median beat (100 values; NaN for fewer than 4 beats).

    Parameters
    ----------
    waves : array_like of float, shape (n, 300)
        The recording's readable beats as the DSP emits them (R at ``r_index``).
    r_index : int
        Sample of the R peak in a beat.

    Returns
    -------
    ndarray of float64, shape (100,)
        The median beat, its baseline (median of the first 20 samples) removed and divided by its
        value at R (sign included), averaged over pairs of samples before R (50 values: the P
        wave) and over 5 samples from R on (40 values: QRS, ST, T), then 10 copies of the median
        spread of the beats' pre-R samples around the median beat (f waves, noise), relative to
        the R amplitude.
    """
    w = np.asarray(waves, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] < 4 or w.shape[1] != 3 * r_index:
        return np.full(100, np.nan)
    med = np.median(w, axis=0)
    base = float(np.median(med[:20]))
    med = med - base
    s = float(med[r_index]) if abs(float(med[r_index])) > 1e-6 else 1.0
    pre = w[:, 20:90] - np.median(w[:, 20:90], axis=1, keepdims=True)
    spread = float(np.median(np.std(pre - med[20:90], axis=1))) / abs(s)
    shape = med / s
    return np.concatenate([shape[:r_index].reshape(50, -1).mean(axis=1),
                           shape[r_index:].reshape(40, -1).mean(axis=1), np.full(10, spread)])  # fmt: skip


def _best_threshold(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(best F1, its threshold) over the distinct scores (rounded to 1e-3)."""
    best = (0.0, 0.5)
    for t in np.unique(np.round(s, 3)):
        best = max(best, (float(binary_report(y, s >= t)["f1"]), float(t)))
    return best


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, 1e-4, 1.0 - 1e-4)
    return np.asarray(np.log(q / (1.0 - q)))


def _score(y: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_], s: npt.NDArray[np.float64] | None = None,
           threshold: float | None = None) -> dict[str, float]:  # fmt: skip
    """Se, +P and F1 of ``pred`` (:func:`binary_report`); with the score ``s`` that gave it at
    ``threshold``, also the ROC AUC and the F1 at the best threshold on these recordings."""
    r = binary_report(y, pred, s)
    out = {"se": r["recall"], "ppv": r["precision"], "f1": r["f1"]}
    if s is not None:
        out.update(threshold=threshold, roc_auc=r["roc_auc"], f1_best_threshold_on_held=_best_threshold(y, s)[0])
    return out


def _scored(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64], threshold: float) -> dict[str, float]:
    return _score(y, s >= threshold, s, threshold)


def _blend(
    a_fit: npt.NDArray[np.float64], b_fit: npt.NDArray[np.float64], y_fit: npt.NDArray[np.bool_],
    a_held: npt.NDArray[np.float64], b_held: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], float, float]:  # fmt: skip
    """Logit blend ``(1 - w) a + w b``: weight (0, 0.25, ..., 1) and threshold best on ``fit``;
    returns the held-out blend, the weight and the threshold."""
    best = (-1.0, 0.0, 0.0)
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        f, t = _best_threshold(y_fit, (1 - w) * _logit(a_fit) + w * _logit(b_fit))
        best = max(best, (f, w, t))
    _, w, t = best
    return (1 - w) * _logit(a_held) + w * _logit(b_held), w, t


def _gbm_scores(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], learn: npt.NDArray[np.int64], held: npt.NDArray[np.int64],
    seed: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:  # fmt: skip
    """Gradient boosting learnt on ``learn``: its 5-fold out-of-fold scores there, its scores on
    ``held`` and the threshold best on the out-of-fold scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    def model() -> Any:
        return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                              l2_regularization=1.0, random_state=seed)  # fmt: skip

    oof = cross_val_predict(model(), x[learn], y[learn], cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                            method="predict_proba")[:, 1]  # fmt: skip
    m = model().fit(x[learn], y[learn])
    return np.asarray(oof, np.float64), np.asarray(m.predict_proba(x[held])[:, 1], np.float64), _best_threshold(
        y[learn], oof)[1]  # fmt: skip


def _raw_recordings(cinc: Path, names: Sequence[str]) -> list[npt.NDArray[np.float32]]:
    """The recordings' raw signals, 0.5-40 Hz zero-phase band-passed, at 150 Hz, standardised."""
    from scipy.signal import butter, resample_poly, sosfiltfilt

    from streamdx_inference.ecg.datasets import CINC_FS, CINC_GAIN, cinc_records, cinc_signals

    sos = butter(2, [0.5, 40.0], btype="band", fs=CINC_FS, output="sos")
    sig = cinc_signals(cinc)
    where = {n: (s, length) for n, s, length in cinc_records(cinc, sig.size)}
    out = []
    for n in names:
        s, length = where[n]
        x = sosfiltfilt(sos, sig[s : s + length].astype(np.float64) / CINC_GAIN)
        x = resample_poly(x, 1, round(CINC_FS / _CNN_FS))
        out.append(np.clip((x - np.median(x)) / (np.std(x) + 1e-3), -20.0, 20.0).astype(np.float32))
    return out


def _train_cnn(
    x: list[npt.NDArray[np.float32]], y: npt.NDArray[np.bool_], train: npt.NDArray[np.int64],
    fit: npt.NDArray[np.int64], held: npt.NDArray[np.int64], epochs: int, seed: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, list[dict[str, float]]]:  # fmt: skip
    """Train :class:`RecordingCnn` on ``train`` (random 30-s crops); the epoch whose ``fit`` F1 is
    best gives the ``fit`` and ``held`` scores and the threshold. Returns them and the history."""
    import torch
    from torch import nn

    from streamdx_inference.ecg.training.nets import RecordingCnn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = RecordingCnn()
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    batch = 32
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * (train.size // batch + 1))
    width = round(_CNN_SECONDS * _CNN_FS)
    pos_weight = torch.tensor(0.5 * float((~y[train]).sum()) / max(1, int(y[train].sum())))

    def crop(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if v.size >= width:
            a = int(rng.integers(0, v.size - width + 1))
            return v[a : a + width]
        return np.pad(v, (0, width - v.size))

    def predict(idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        net.eval()
        with torch.no_grad():
            p = [float(torch.sigmoid(net(torch.from_numpy(x[i][None, None]))).item()) for i in idx]
        net.train()
        return np.array(p)

    best: tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64], float] = (-1.0, np.zeros(0), np.zeros(0), 0.5)
    history = []
    for ep in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(train)
        for b in range(0, order.size, batch):
            idx = order[b : b + batch]
            xb = torch.from_numpy(np.stack([crop(x[i]) * rng.uniform(0.8, 1.2) for i in idx]).astype(np.float32))
            loss = nn.functional.binary_cross_entropy_with_logits(
                net(xb[:, None]), torch.from_numpy(y[idx].astype(np.float32)), pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        p_fit = predict(fit)
        f, t = _best_threshold(y[fit], p_fit)
        history.append({"epoch": ep, "fit_f1": f, "threshold": t, "seconds": time.perf_counter() - t0})
        print(f"cnn epoch {ep + 1}/{epochs}: fit F1 {f:.3f} ({history[-1]['seconds']:.0f} s)", flush=True)
        if f > best[0]:
            best = (f, p_fit, predict(held), t)
    return best[1], best[2], best[3], history


def main(argv: Sequence[str] | None = None) -> int:
    from streamdx_inference.ecg.datasets import DEFAULT_CACHE, SHARED_CINC

    p = argparse.ArgumentParser(prog="python -m streamdx_inference.ecg.training.af_ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--cinc", type=Path, default=SHARED_CINC, help="CinC 2017 pack folder")
    p.add_argument("--models", type=Path, default=Path("models"), help="folder with the shipped ECG models")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--cnn-epochs", type=non_negative_int, default=24, help="epochs of the raw-signal network (0: skip)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache of the DSP's beats")
    a = p.parse_args(argv)
    from streamdx_inference.ecg.datasets import cinc_labels, cinc_pack_problem, load_cinc
    from streamdx_inference.ecg.labeler import EcgLabeler, StreamLabelState
    from streamdx_inference.ecg.recording import (
        RecordingRules,
        classify_recording,
        recording_af_score,
        summarise_recording,
    )

    if problem := cinc_pack_problem(a.cinc):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    af_dir = a.models / "ecg_af"
    try:
        trained = set(json.loads((af_dir / "cinc_train_records.json").read_text()))
        val = set(json.loads((af_dir / "model.json").read_text())["training"]["val_records"])
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {af_dir}: the AF model's training recordings are not readable ({e})", file=sys.stderr)
        return 2
    labeler = EcgLabeler.from_dir(a.models)
    rules = RecordingRules.from_dict(labeler.af.meta.get("recording_rules"))
    recs = load_cinc(a.cinc, labeler.window, a.cache, progress=True)  # type: ignore[arg-type]
    ref = cinc_labels(a.cinc)
    names = [n for n in recs if n in ref]
    part = np.array(["held" if n not in trained else "fit" if n in val else "train" for n in names])
    y = np.array([ref[n] == "A" for n in names])
    served, mean_p, rr_x, beat_x = [], [], [], []
    for n in names:
        rb = recs[n]
        _, labels = labeler.label(StreamLabelState(), rb.waves, rb.rr_prev_s, rb.rr_next_s, rb.quality)
        ok = np.array([lb.quality == "ok" for lb in labels], dtype=bool)
        served.append(classify_recording(summarise_recording(labels, rb.rr_prev_s.tolist()), rules) == "A")
        mean_p.append(recording_af_score(labels))
        rr_x.append(recording_rr_features(rb.rr_prev_s, ok))
        beat_x.append(median_beat_features(rb.waves[ok]))
    idx = {k: np.flatnonzero(part == k) for k in ("train", "fit", "held")}
    learn = np.concatenate([idx["train"], idx["fit"]])
    held, fit = idx["held"], idx["fit"]
    if held.size == 0 or fit.size == 0 or not y[held].any() or not y[fit].any():
        print("error: the folder has no held-out or no validation AF recording to score", file=sys.stderr)
        return 2
    mp = np.array(mean_p)
    models: dict[str, dict[str, float]] = {}
    yh = y[held]
    models["served"] = _score(yh, np.array(served)[held])
    models["mean_af_prob"] = _scored(yh, mp[held], _best_threshold(y[fit], mp[fit])[1])
    xr = np.array(rr_x)
    xb = np.hstack([xr, np.array(beat_x)])
    _, s_rr, t_rr = _gbm_scores(xr, y, learn, held, a.seed)
    models["gbm_rr"] = _scored(yh, s_rr, t_rr)
    oof, s_rb, t_rb = _gbm_scores(xb, y, learn, held, a.seed)
    models["gbm_rr_median_beat"] = _scored(yh, s_rb, t_rb)
    oof_fit = oof[np.isin(learn, fit)]  # out-of-fold scores of the fit recordings, in ``fit`` order
    blend, w, t = _blend(mp[fit], oof_fit, y[fit], mp[held], s_rb)
    models["blend_gbm_mean_af_prob"] = {**_scored(yh, blend, t), "weight_gbm": w}
    report: dict[str, Any] = {"n": {k: int(v.size) for k, v in idx.items()},
                              "n_af": {k: int(y[v].sum()) for k, v in idx.items()}, "seed": a.seed}  # fmt: skip
    if a.cnn_epochs:
        import torch

        torch.set_num_threads(a.threads)
        raw = _raw_recordings(a.cinc, names)
        p_fit, p_held, t_cnn, hist = _train_cnn(raw, y, idx["train"], fit, held, a.cnn_epochs, a.seed)
        models["cnn_raw"] = _scored(yh, p_held, t_cnn)
        blend, w, t = _blend(mp[fit], p_fit, y[fit], mp[held], p_held)
        models["blend_cnn_mean_af_prob"] = {**_scored(yh, blend, t), "weight_cnn": w}
        report["cnn_history"] = hist
    report["models"] = models
    keys = ("se", "ppv", "f1", "roc_auc", "f1_best_threshold_on_held")
    print(f"held-out recordings {held.size} ({int(yh.sum())} AF); train {idx['train'].size}, fit {fit.size}")
    print(format_table(["model", "Se", "+P", "F1", "ROC AUC", "F1 (best thr. on held)"],
                       [[m, *(v.get(k, float("nan")) for k in keys)] for m, v in models.items()]))  # fmt: skip
    write_report(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
