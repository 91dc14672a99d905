"""Kaggle-style heartbeats rebuilt from MITDB and the seed's *intra-patient* protocol.

The "Kaggle heartbeat" set on which seed 002 was scored is Kachuee, Fazeli and
Sarrafzadeh's MITDB beat extraction [1]_. :func:`kaggle_beats` rebuilds it from the WFDB
records themselves with the procedure the paper publishes:

1. take one lead and resample it to 125 Hz;
2. split the continuous signal into 10-s windows;
3. normalise each window's amplitude to [0, 1] (min-max);
4. find the local maxima as the zero-crossings (+ to -) of the first difference;
5. R-peak candidates are the local maxima whose normalised value is above 0.9;
6. the nominal heartbeat period T of the window is the median of the candidates' RR intervals;
7. for each candidate take the segment of length 1.2 T that starts at it;
8. zero-pad every segment to 187 samples (truncate a longer one).

Each extracted beat is then labelled with the reference (``.atr``) beat annotation nearest
to its R peak if that annotation lies within 150 ms (the EC57 matching window of the
DESIGN conventions), mapped to the AAMI classes with
:data:`streamdx.aami.AAMI_CLASSES` (N: N, L, R, e, j; S: A, a, J, S; V: V, E; F: F;
Q: /, f, Q). Beats with no annotated beat that near are dropped. All 48 records are used,
paced ones included, as in the Kaggle set.

:func:`evaluate_kaggle` then runs the seed's protocol on these beats: a random 80/20 split
**by beat**, stratified by class (fixed seed). Beats of one patient are on both sides of
the split, so this is the **intra-patient** protocol; it overstates what a model does on a
new patient (the inter-patient DS1/DS2 protocol is the headline, see DESIGN). A tenth of the
training beats (stratified) is the validation part used for model selection (the epoch with
the best validation binary F1); the test part is never looked at before the final scoring.
The model is Kachuee's residual 1-D CNN (a 32-channel convolution, five residual blocks of
two 5-tap convolutions with max-pooling 5/2, two 32-unit dense layers, softmax over the
five classes; 55k parameters), trained with Adam (learning rate 1e-3, decayed by 0.92 per
epoch, batches of 128) and cross-entropy on one CPU thread, at most 40 epochs, stopped after
6 epochs without a better validation binary F1.

How many beats the published procedure yields
    On the 48 MITDB records the procedure as written gives 61,595 labelled beats (N 53,754,
    S 1,242, V 1,959, F 598, Q 4,042) of the 109,494 annotated ones: the 0.9 threshold
    misses every R peak below 90 % of its window's largest deflection (negative or small
    ventricular beats, normal beats in a window with a taller ectopic beat, noise spikes).
    The published Kaggle CSVs hold 109,446 MITDB beats (N 90,589, S 2,779, V 7,236, F 803,
    Q 8,039), virtually every annotated beat, so that set was evidently cut at the annotated
    R peaks. ``peaks="annotations"`` does the same (same windows, scaling, T and segments,
    the annotated beats as R peaks) and gives 109,492 beats (N 90,629, S 2,781, V 7,236,
    F 803, Q 8,043); ``peaks="paper"`` (the default) follows the text.

Deviations from the paper, and the choices it leaves open:

- **Lead**: the channel named ``MLII`` (record 114 has it as its second channel); records
  102 and 104 have no MLII and use their first channel (V5).
- **Resampling**: polyphase resampling (:func:`scipy.signal.resample_poly`, 360 → 125 Hz
  is 25/72); the paper does not say which method it used.
- **Windows**: consecutive non-overlapping 10-s windows from the record's start; the
  shorter last window is processed like the others. A window with fewer than two R-peak
  candidates has no RR interval and yields no beat.
- **Segments** end at the window's end (a beat near it is shorter and zero-padded).
- **Labels**: the paper takes its labels from the annotations without stating the matching;
  here the nearest annotated beat within 150 ms. When several candidates match one annotated
  beat (a notched R wave, two maxima above 0.9), only the nearest is kept, so no heartbeat
  appears twice (a duplicate on both sides of a random split would be a leak).
- **Training set**: beats of class N beyond ``max_train_n`` are subsampled in the training
  part only (the validation and test parts keep every beat); the model's output is
  corrected for the changed class prior by adding ``log`` of the N sampling ratio to the N
  logit (logit adjustment), so decisions are made at the true prior. No augmentation.

References
----------
.. [1] M. Kachuee, S. Fazeli, M. Sarrafzadeh, "ECG Heartbeat Classification: A Deep
   Transferable Representation", IEEE International Conference on Healthcare Informatics
   (ICHI), 2018, pp. 443-444, doi:10.1109/ICHI.2018.00092, arXiv:1805.00794.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from streamdx.aami import AAMI_CLASSES
from streamdx.cli_args import non_negative_int, positive_int, report_path, write_report
from streamdx_dsp.evaluation.records import read_annotations, read_record
from streamdx_inference.ecg.scoring import binary_report, class_report, format_table

__all__ = [
    "BEAT_LEN",
    "CLASSES",
    "FS_KAGGLE",
    "MATCH_S",
    "PEAK_SOURCES",
    "PEAK_THRESHOLD",
    "SEGMENT_PERIODS",
    "WINDOW_S",
    "evaluate_kaggle",
    "extraction_info",
    "kaggle_beats",
    "kaggle_splits",
    "main",
    "print_kaggle_report",
    "score_kaggle",
    "train_kaggle_net",
    "window_segments",
]

#: Sampling frequency of the Kaggle beats (Hz).
FS_KAGGLE = 125.0
#: Samples per beat (zero-padded).
BEAT_LEN = 187
#: Window over which the amplitude is normalised and T is estimated (s).
WINDOW_S = 10.0
#: Normalised amplitude above which a local maximum is an R-peak candidate.
PEAK_THRESHOLD = 0.9
#: Segment length in nominal heartbeat periods.
SEGMENT_PERIODS = 1.2
#: Largest distance between a candidate R peak and its annotated beat (s).
MATCH_S = 0.150
#: Where the beats' R peaks come from (see :func:`kaggle_beats`).
PEAK_SOURCES = ("paper", "annotations")
#: AAMI classes, in table order.
CLASSES = ("N", "S", "V", "F", "Q")
_LEAD = "MLII"
_BATCH = 128
_LR = 1e-3
_PATIENCE = 6


def _lead_index(names: Sequence[str] | None) -> int:
    """Index of the MLII channel, 0 when the record has none."""
    names = list(names or [])
    return names.index(_LEAD) if _LEAD in names else 0


def window_segments(
    w: npt.ArrayLike, peaks: npt.ArrayLike | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Kachuee's beats of one window: R-peak candidates and their zero-padded segments.

    Parameters
    ----------
    w : array_like of float, shape (m,)
        One window of the 125-Hz signal (any amplitude unit).
    peaks : array_like of int, optional
        R peaks to use (sample index in the window) instead of the paper's candidates
        (local maxima of the normalised window above :data:`PEAK_THRESHOLD`).

    Returns
    -------
    peaks : ndarray of int64, shape (k,)
        R peaks (sample index in the window).
    segments : ndarray of float32, shape (k, 187)
        The [0, 1]-normalised window from each peak over 1.2 T (T = median RR of the
        window), zero-padded or truncated to :data:`BEAT_LEN`. Empty when the window is
        flat or has fewer than two peaks.
    """
    x = np.asarray(w, dtype=np.float64)
    empty = (np.zeros(0, np.int64), np.zeros((0, BEAT_LEN), np.float32))
    if x.size < 3:
        return empty
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return empty
    z = (x - lo) / (hi - lo)
    if peaks is None:
        d = np.diff(z)
        maxima = np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0)) + 1
        r = maxima[z[maxima] > PEAK_THRESHOLD].astype(np.int64)
    else:
        r = np.asarray(peaks, dtype=np.int64)
        r = np.sort(r[(r >= 0) & (r < x.size)])
    if r.size < 2:
        return empty
    period = float(np.median(np.diff(r)))
    length = min(round(SEGMENT_PERIODS * period), BEAT_LEN)
    seg = np.zeros((r.size, BEAT_LEN), np.float32)
    for k, p in enumerate(r):
        s = z[p : p + length]
        seg[k, : s.size] = s
    return r, seg


def _record_beats(
    data_dir: Path, name: str, peaks: str = "paper"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """Labelled Kaggle-style beats of one WFDB record (and their R peaks at 125 Hz)."""
    if peaks not in PEAK_SOURCES:
        raise ValueError(f"peaks must be one of {PEAK_SOURCES}, not {peaks!r}")
    rec = read_record(data_dir, name)
    fs = float(rec.fs)
    sig = np.asarray(rec.p_signal, dtype=np.float64)[:, _lead_index(rec.sig_name)]
    sig = np.nan_to_num(sig, nan=float(np.nanmedian(sig)) if np.isfinite(sig).any() else 0.0)
    ratio = Fraction(FS_KAGGLE / fs).limit_denominator(1000)
    x = resample_poly(sig, ratio.numerator, ratio.denominator) if ratio != 1 else sig

    ann = read_annotations(data_dir, name, "atr", sig.size)
    sym = np.asarray(ann.symbol, dtype=object)
    is_beat = np.array([s in AAMI_CLASSES for s in sym], dtype=bool)
    ref_t = np.asarray(ann.sample, dtype=np.float64)[is_beat] / fs  # seconds
    ref_c = np.array([AAMI_CLASSES[s] for s in sym[is_beat]], dtype="<U1")

    ref_r = np.round(ref_t * FS_KAGGLE).astype(np.int64)
    step = round(WINDOW_S * FS_KAGGLE)
    peaks_all: list[npt.NDArray[np.int64]] = []
    segs_all: list[npt.NDArray[np.float32]] = []
    for start in range(0, x.size, step):
        given = None
        if peaks == "annotations":
            given = ref_r[(ref_r >= start) & (ref_r < start + step)] - start
        p, s = window_segments(x[start : start + step], given)
        peaks_all.append(p + start)
        segs_all.append(s)
    r = np.concatenate(peaks_all) if peaks_all else np.zeros(0, np.int64)
    segs = np.concatenate(segs_all) if segs_all else np.zeros((0, BEAT_LEN), np.float32)
    if r.size == 0 or ref_t.size == 0:
        return np.zeros((0, BEAT_LEN), np.float32), np.zeros(0, "<U1"), np.zeros(0, np.int64)

    # Nearest annotated beat of each candidate.
    t = r / FS_KAGGLE
    j = np.clip(np.searchsorted(ref_t, t), 1, ref_t.size - 1) if ref_t.size > 1 else np.zeros(t.size, np.int64)
    left = np.maximum(j - 1, 0)
    nearest = np.where(np.abs(ref_t[left] - t) <= np.abs(ref_t[j] - t), left, j)
    dist = np.abs(ref_t[nearest] - t)
    ok = dist <= MATCH_S + 1e-9
    # One beat per annotated beat: the nearest candidate wins.
    order = np.lexsort((dist, nearest))
    keep = np.zeros(t.size, dtype=bool)
    seen: set[int] = set()
    for i in order:
        if ok[i] and int(nearest[i]) not in seen:
            seen.add(int(nearest[i]))
            keep[i] = True
    return segs[keep], ref_c[nearest[keep]], r[keep]


def kaggle_beats(
    data_dir: Path, records: Sequence[str] | None = None, *, progress: bool = False, peaks: str = "paper"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_], npt.NDArray[np.str_]]:
    """Kaggle-style beats (Kachuee et al. 2018) of MITDB-format WFDB records.

    Parameters
    ----------
    data_dir : Path
        Folder with ``<record>.hea``/``.dat``/``.atr``.
    records : sequence of str, optional
        Records to use; default: every name in ``data_dir/RECORDS`` (else every ``.hea``
        with an ``.atr`` beside it), sorted.
    progress : bool, default False
        Show a per-record progress bar.
    peaks : {"paper", "annotations"}, default "paper"
        R peaks the beats start at: the paper's candidates (local maxima of the
        normalised window above 0.9), or the annotated beats (the variant that reproduces
        the published Kaggle set's class counts, see the module notes).

    Returns
    -------
    X : ndarray of float32, shape (n, 187)
        Beats in [0, 1], zero-padded (125 Hz, starting at the R peak).
    y : ndarray of str, shape (n,)
        AAMI class (``N``, ``S``, ``V``, ``F``, ``Q``) of the matched annotated beat.
    record : ndarray of str, shape (n,)
        Record of each beat.
    """
    data_dir = Path(data_dir)
    if records is None:
        listing = data_dir / "RECORDS"
        if listing.exists():
            names = sorted(s.strip() for s in listing.read_text().split() if s.strip())
        else:
            names = sorted(p.stem for p in data_dir.glob("*.hea") if p.with_suffix(".atr").exists())
    else:
        names = [str(r) for r in records]
    it: Any = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc="Kaggle beats", unit="record")
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[npt.NDArray[np.str_]] = []
    rs: list[npt.NDArray[np.str_]] = []
    for name in it:
        X, y, _ = _record_beats(data_dir, name, peaks)
        xs.append(X)
        ys.append(y)
        rs.append(np.full(y.size, name))
    if not xs:
        return np.zeros((0, BEAT_LEN), np.float32), np.zeros(0, "<U1"), np.zeros(0, "<U1")
    return np.concatenate(xs), np.concatenate(ys).astype(str), np.concatenate(rs).astype(str)


def _stratified_split(
    y: npt.NDArray[np.str_], fraction: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Random indices ``(rest, part)`` with ``part`` ≈ ``fraction`` of every class."""
    part: list[npt.NDArray[np.int64]] = []
    rest: list[npt.NDArray[np.int64]] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c)).astype(np.int64)
        k = round(fraction * idx.size)
        part.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(part))


def _build_net(n_classes: int, channels: int = 32) -> Any:
    """Kachuee et al.'s residual 1-D CNN (input ``(B, 187)``, output logits ``(B, n_classes)``)."""
    import torch
    from torch import nn

    class _Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv1d(channels, channels, 5, padding=2)
            self.c2 = nn.Conv1d(channels, channels, 5, padding=2)
            self.pool = nn.MaxPool1d(5, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.c2(torch.relu(self.c1(x)))
            return self.pool(torch.relu(x + y))

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv1d(1, channels, 5, padding=2)
            self.blocks = nn.Sequential(*[_Block() for _ in range(5)])
            length = BEAT_LEN
            for _ in range(5):
                length = (length - 5) // 2 + 1
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(channels * length, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                nn.Linear(32, n_classes),
            )  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.blocks(self.stem(x.unsqueeze(1))))

    return _Net()


def _predict(net: Any, X: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Class probabilities (prior-corrected logits) of ``X`` in batches."""
    import torch

    net.eval()
    out: list[npt.NDArray[np.float64]] = []
    b = torch.from_numpy(bias)
    with torch.no_grad():
        for i in range(0, X.shape[0], 2048):
            logits = net(torch.from_numpy(X[i : i + 2048])) + b
            out.append(torch.softmax(logits, dim=1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, bias.size))


def _binary_f1(y: npt.NDArray[np.str_], pred: npt.NDArray[np.str_]) -> float:
    t, p = y != "N", pred != "N"
    tp = int(np.sum(t & p))
    den = 2 * tp + int(np.sum(t != p))
    return 2 * tp / den if den else math.nan


def _multiclass(y: npt.NDArray[np.str_], pred: npt.NDArray[np.str_]) -> dict[str, Any]:
    f1s = []
    for c in CLASSES:
        tp = int(np.sum((y == c) & (pred == c)))
        den = 2 * tp + int(np.sum((y == c) != (pred == c)))
        if np.any(y == c):
            f1s.append(2 * tp / den if den else math.nan)
    conf = [[int(np.sum((y == a) & (pred == b))) for b in CLASSES] for a in CLASSES]
    acc = float(np.mean(y == pred)) if y.size else math.nan
    macro = float(np.mean(f1s)) if f1s else math.nan
    return {"accuracy": acc, "macro_f1": macro, "confusion": conf, "labels": list(CLASSES)}


def kaggle_splits(
    y: npt.NDArray[np.str_], seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], np.random.Generator]:
    """The protocol's split of labelled beats: 80/20 by beat stratified by class (test = the 20 %),
    then 10 % of the 80 % (stratified) for validation.

    Returns ``(train_idx, val_idx, test_idx, rng)``; ``rng`` is the seeded generator after the
    split (the N subsampling of :func:`train_kaggle_net` draws from it).
    """
    rng = np.random.default_rng(seed)
    fit_idx, test_idx = _stratified_split(y, 0.2, rng)
    tr_pos, val_pos = _stratified_split(y[fit_idx], 0.1, rng)
    return fit_idx[tr_pos], fit_idx[val_pos], test_idx, rng


def train_kaggle_net(
    X: npt.NDArray[np.float32],
    y: npt.NDArray[np.str_],
    train_idx: npt.NDArray[np.int64],
    val_idx: npt.NDArray[np.int64],
    rng: np.random.Generator,
    *,
    epochs: int = 40,
    seed: int = 0,
    progress: bool = True,
    max_train_n: int | None = 40000,
) -> tuple[Any, npt.NDArray[np.float32], npt.NDArray[np.int64], dict[str, Any]]:
    """Train Kachuee's CNN on ``X[train_idx]`` with model selection on ``X[val_idx]`` (best
    validation binary F1, patience 6 epochs).

    Returns ``(net, bias, train_idx, info)``: the network with the best epoch's weights, the
    prior correction added to its logits (``log`` of the N sampling ratio on the N logit), the
    training indices after the N subsampling, and ``epochs_run``, ``best_epoch``,
    ``val_binary_f1``, ``history``.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    # Subsample N in the training part only; remember the ratio for the prior correction.
    bias = np.zeros(len(CLASSES), np.float32)
    n_idx = train_idx[y[train_idx] == "N"]
    if max_train_n is not None and n_idx.size > max_train_n:
        kept = rng.choice(n_idx, size=max_train_n, replace=False)
        bias[CLASSES.index("N")] = math.log(n_idx.size / max_train_n)
        train_idx = np.sort(np.concatenate([train_idx[y[train_idx] != "N"], kept]))

    label = {c: i for i, c in enumerate(CLASSES)}
    Xt = torch.from_numpy(X[train_idx])
    yt = torch.from_numpy(np.array([label[c] for c in y[train_idx]], dtype=np.int64))
    net = _build_net(len(CLASSES))
    opt = torch.optim.Adam(net.parameters(), lr=_LR)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.92)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)

    best_f1, best_epoch, best_state, stale, history = -1.0, 0, None, 0, []
    bar = tqdm(range(1, epochs + 1), desc="Kaggle CNN", unit="epoch", disable=not progress)
    for epoch in bar:
        net.train()
        order = torch.randperm(Xt.shape[0], generator=gen)
        total = 0.0
        for i in range(0, order.numel(), _BATCH):
            b = order[i : i + _BATCH]
            opt.zero_grad()
            loss = loss_fn(net(Xt[b]), yt[b])
            loss.backward()
            opt.step()
            total += loss.item() * b.numel()
        sched.step()
        prob = _predict(net, X[val_idx], bias)
        pred = np.asarray(CLASSES)[prob.argmax(axis=1)]
        f1 = _binary_f1(y[val_idx], pred)
        history.append({"epoch": epoch, "train_loss": total / max(1, order.numel()), "val_binary_f1": f1})
        bar.set_postfix(loss=f"{total / max(1, order.numel()):.4f}", val_f1=f"{f1:.4f}")
        if f1 > best_f1:
            best_f1, best_epoch, stale = f1, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= _PATIENCE:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    info = {"epochs_run": len(history), "best_epoch": best_epoch, "val_binary_f1": best_f1, "history": history}
    return net, bias, train_idx, info


def score_kaggle(y: npt.NDArray[np.str_], prob: npt.NDArray[np.float64]) -> dict[str, Any]:
    """The protocol's scores of class probabilities ``prob`` (columns in :data:`CLASSES` order)
    against reference classes ``y``: ``classes`` (per-class Se/+P), ``binary`` (abnormal = not
    N, score 1 - P(N)) and ``multiclass`` (accuracy, macro F1, confusion)."""
    pred = np.asarray(CLASSES)[prob.argmax(axis=1)]
    return {
        "classes": class_report(y, pred, CLASSES)["classes"],
        "binary": binary_report(y != "N", pred != "N", score=1.0 - prob[:, CLASSES.index("N")]),
        "multiclass": _multiclass(y, pred),
    }


def evaluate_kaggle(
    data_dir: Path,
    *,
    epochs: int = 40,
    seed: int = 0,
    progress: bool = True,
    max_train_n: int | None = 40000,
    records: Sequence[str] | None = None,
    peaks: str = "paper",
) -> dict[str, Any]:
    """Train and score the beat-class model on Kaggle-style MITDB beats, random split (intra-patient).

    Parameters
    ----------
    data_dir : Path
        MITDB-format WFDB folder (``.hea``/``.dat``/``.atr``).
    epochs : int, default 40
        Largest number of training epochs (training stops earlier when the validation
        binary F1 has not improved for 6 epochs).
    seed : int, default 0
        Seed of the split, the N subsampling, the weight initialisation and the batches.
    progress : bool, default True
        Show progress bars (extraction, epochs).
    max_train_n : int or None, default 40000
        Largest number of class-N beats in the training part (None: all); the validation
        and test parts are never subsampled.
    records : sequence of str, optional
        Records to use (default: all of ``data_dir``).
    peaks : {"paper", "annotations"}, default "paper"
        Beat anchors of :func:`kaggle_beats`.

    Returns
    -------
    dict
        ``protocol``, ``split``, ``n_train``, ``n_val``, ``n_test``, ``classes`` (per AAMI
        class ``se``/``ppv`` in percent, plus ``tp``/``fn``/``fp``), ``binary``
        (:func:`~streamdx_inference.ecg.scoring.binary_report` of abnormal = not N, score
        1 - P(N)), ``multiclass`` (``accuracy``, ``macro_f1``, ``confusion`` rows = reference,
        columns = predicted, in ``CLASSES`` order), ``counts``, ``model``, ``extraction``
        and ``seconds``.
    """
    t0 = time.perf_counter()
    X, y, _ = kaggle_beats(Path(data_dir), records, progress=progress, peaks=peaks)
    if X.shape[0] == 0:
        raise ValueError(f"no labelled beats in {data_dir}")
    train_idx, val_idx, test_idx, rng = kaggle_splits(y, seed)
    net, bias, train_idx, info = train_kaggle_net(X, y, train_idx, val_idx, rng, epochs=epochs, seed=seed,
                                                  progress=progress, max_train_n=max_train_n)  # fmt: skip
    prob = _predict(net, X[test_idx], bias)
    counts = {part: {c: int(np.sum(y[idx] == c)) for c in CLASSES}
              for part, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}  # fmt: skip
    return {
        "protocol": "kaggle",
        "split": "random 80/20 by beat (intra-patient)",
        "n_train": int(train_idx.size),
        "n_val": int(val_idx.size),
        "n_test": int(test_idx.size),
        **score_kaggle(y[test_idx], prob),
        "counts": counts,
        "model": {
            "name": "Kachuee 2018 residual 1-D CNN",
            "parameters": int(sum(p.numel() for p in net.parameters())),
            "epochs_run": info["epochs_run"],
            "best_epoch": info["best_epoch"],
            "val_binary_f1": info["val_binary_f1"],
            "max_train_n": max_train_n,
            "n_prior_log_ratio": float(bias[CLASSES.index("N")]),
            "history": info["history"],
            "seed": seed,
        },
        "extraction": extraction_info(peaks, int(y.size)),
        "seconds": time.perf_counter() - t0,
    }


def extraction_info(peaks: str, n_beats: int) -> dict[str, Any]:
    """The extraction settings of :func:`kaggle_beats` (for reports and model metadata)."""
    return {
        "peaks": peaks,
        "fs": FS_KAGGLE,
        "beat_len": BEAT_LEN,
        "window_s": WINDOW_S,
        "peak_threshold": PEAK_THRESHOLD,
        "segment_periods": SEGMENT_PERIODS,
        "match_s": MATCH_S,
        "n_beats": n_beats,
    }


def print_kaggle_report(report: dict[str, Any]) -> None:
    """Print the binary table, per-class Se/+P and the confusion matrices of :func:`evaluate_kaggle`."""
    b = report["binary"]
    head = f"{report['n_train']} train, {report.get('n_val', '-')} validation, {report['n_test']} test beats"
    print(f"Kaggle-style MITDB beats ({report.get('extraction', {}).get('peaks', 'paper')} R peaks) — "
          f"{report['split']}: {head}")  # fmt: skip
    print("\nBinary (abnormal = not N)")
    print(format_table(["metric", "value"], [[k, b[k]] for k in ("accuracy", "precision", "recall", "f1", "kappa",
                                                                  "roc_auc")]))  # fmt: skip
    (tn, fp), (fn, tp) = b["confusion"]
    print()
    print(format_table(["reference \\ predicted", "N", "abnormal"], [["N", tn, fp], ["abnormal", fn, tp]]))
    print("\nPer class (percent)")
    rows = []
    for c in CLASSES:
        m = report["classes"].get(c, {})
        n = int(m.get("tp", 0)) + int(m.get("fn", 0)) if "tp" in m else "-"
        rows.append([c, n, m.get("se", math.nan), m.get("ppv", math.nan)])
    print(format_table(["class", "n", "Se", "+P"], rows))
    mc = report["multiclass"]
    print(f"\nMulti-class: accuracy {mc['accuracy']:.4f}, macro F1 {mc['macro_f1']:.4f}")
    labels = list(mc.get("labels", CLASSES))
    print(format_table(["reference \\ predicted", *labels], [[c, *r] for c, r in zip(labels, mc["confusion"],
                                                                                    strict=True)]))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamdx_inference.ecg.kaggle --data DIR [--out F]``: evaluate, print, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, required=True, help="MITDB-format WFDB folder")
    ap.add_argument("--out", type=report_path, help="JSON report path")
    ap.add_argument("--epochs", type=positive_int, default=40)
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--peaks", choices=PEAK_SOURCES, default="paper", help="beat anchors (see kaggle_beats)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    report = evaluate_kaggle(a.data, epochs=a.epochs, seed=a.seed, progress=not a.quiet, peaks=a.peaks)
    print_kaggle_report(report)
    if a.out is not None:
        write_report(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
