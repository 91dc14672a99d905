"""Noise stress test in the manner of PhysioNet's ``nst`` (Moody, Muldrow & Mark 1984).

Reimplements what ``nst -i REC NOISE -s SNR`` (WFDB software, app/nst.c and
app/sigamp.c) does for the first ECG channel, in physical units:

- **signal amplitude** ``A_s`` (``sigamp -a atr``): for the first 300 NORMAL beats
  (ecgmap ``map1`` NORMAL: N, L, R, B, e, j, n, /), the peak-to-peak amplitude of the
  ECG over ``[t - 50 ms, t + 50 ms]`` around the annotation; the trimmed mean after
  discarding the lowest and highest 5 % (``n/20`` values at each end);
- **noise amplitude** ``A_n`` (``sigamp`` without annotations): RMS of the noise
  channel (matching channel index modulo the number of noise channels) about its
  mean in the first 300 consecutive 1-s windows, trimmed mean as above;
- **gain**: nst converts the SNR to ``nsr = 10**(-SNR/20) * sqrt(2) / 4`` and scales
  the noise by ``g = nsr * A_s / A_n``. Equivalently
  ``SNR = 10 log10(S / N)`` with ``S = (A_s)^2 / 8`` (the power of a sinusoid of
  peak-to-peak ``A_s``) and ``N = (g A_n)^2`` (the mean-square added noise);
- **protocol**: no noise for the first 5 min, then noise switched on and off every
  2 min (on 5:00-7:00, off 7:00-9:00, on 9:00-11:00, ...) until the record ends;
- **continuity**: at every gain change the output keeps its last value, i.e.
  ``out[t] = ecg[t] + g * noise[t] - z`` where ``z`` is updated at each change so that
  ``g_new * noise[t0-1] - z_new = g_old * noise[t0-1] - z_old`` (nst's ``z[i]``);
- the noise record is aligned sample-for-sample with the ECG (starting at its first
  sample), repeated if shorter, and resampled (polyphase) if its sampling frequency
  differs by more than 10 %.

Differences from nst: output is not re-quantised to integers.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal

from streamdx_dsp.evaluation.records import read_record

__all__ = ["NORMAL_SYMBOLS", "add_nst_noise", "nst_gain", "nst_noise_rms", "nst_signal_amplitude", "read_nst_noise"]

NORMAL_SYMBOLS = frozenset("NLRBejn/")
_NMAX = 300


def _trimmed_mean(v: npt.NDArray[np.float64]) -> float:
    v = np.sort(v)
    lo = v.size // 20
    hi = v.size - lo
    return float(v[lo:hi].mean()) if hi > lo else 0.0


def nst_signal_amplitude(
    x_mv: npt.NDArray[np.float64], fs: float, ann_samples: npt.NDArray[np.int64], ann_symbols: list[str]
) -> float:
    """Trimmed-mean QRS peak-to-peak amplitude (mV) of the first 300 normal beats (``sigamp -a``)."""
    dt = round(0.05 * fs)
    amps = []
    for s, c in zip(ann_samples.tolist(), ann_symbols, strict=True):
        if c not in NORMAL_SYMBOLS:
            continue
        a, b = s - dt, s + dt + 1
        if a < 0 or b > x_mv.size:
            continue
        seg = x_mv[a:b]
        amps.append(float(seg.max() - seg.min()))
        if len(amps) >= _NMAX:
            break
    if not amps:
        raise ValueError("no normal beats to measure the QRS amplitude")
    return _trimmed_mean(np.asarray(amps))


def nst_noise_rms(n_mv: npt.NDArray[np.float64], fs: float) -> float:
    """Trimmed-mean RMS (mV) of the first 300 one-second windows, each about its mean (``sigamp``)."""
    w = max(1, round(fs))
    k = min(_NMAX, n_mv.size // w)
    if k == 0:
        raise ValueError("noise record shorter than one second")
    seg = n_mv[: k * w].reshape(k, w)
    rms = np.sqrt(((seg - seg.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    return _trimmed_mean(rms)


def nst_gain(snr_db: float, signal_amp_mv: float, noise_rms_mv: float) -> float:
    """nst's noise scale factor ``10**(-SNR/20) * sqrt(2)/4 * A_s / A_n``."""
    return 10.0 ** (-snr_db / 20.0) * math.sqrt(2.0) / 4.0 * signal_amp_mv / noise_rms_mv


def read_nst_noise(noise_dir: Path, kind: str, fs: float, n: int) -> npt.NDArray[np.float64]:
    """NSTDB noise record ``kind`` (channel 0, mV) resampled to ``fs`` and tiled/cut to ``n`` samples."""
    rec = read_record(noise_dir, kind, channels=[0])
    z = np.nan_to_num(np.asarray(rec.p_signal[:, 0], dtype=np.float64))
    nfs = float(rec.fs)
    if not 0.9 * fs <= nfs <= 1.1 * fs:
        frac = Fraction(fs / nfs).limit_denominator(1000)
        z = signal.resample_poly(z, frac.numerator, frac.denominator)
    if z.size < n:
        z = np.resize(z, n)
    return z[:n]


def add_nst_noise(
    x_mv: npt.NDArray[np.float64],
    fs: float,
    ann_samples: npt.NDArray[np.int64],
    ann_symbols: list[str],
    noise_dir: Path,
    kind: str,
    snr_db: float,
) -> tuple[npt.NDArray[np.float64], dict[str, float]]:
    """Return the ECG with NSTDB noise added per the nst protocol, and the parameters used."""
    n = x_mv.size
    z = read_nst_noise(noise_dir, kind, fs, n)
    a_s = nst_signal_amplitude(x_mv, fs, ann_samples, ann_symbols)
    a_n = nst_noise_rms(z, fs)
    g_on = nst_gain(snr_db, a_s, a_n)
    t0, dt = round(300 * fs), round(120 * fs)
    out = x_mv.copy()
    g, zoff = 0.0, 0.0
    t = t0
    while t < n:
        g_new = g_on - g  # nst toggles g between r and 0
        zoff = zoff + (g_new - g) * z[t - 1]
        g = g_new
        end = min(t + dt, n)
        if g:
            out[t:end] += g * z[t:end] - zoff
        else:
            out[t:end] -= zoff
        t = end
    return out, {"signal_amplitude_mv": a_s, "noise_rms_mv": a_n, "gain": g_on, "snr_db": snr_db}
