"""Tiny synthetic ECG for the DSP unit tests (sum of Gaussian P, Q, R, S, T waves)."""

from __future__ import annotations

import numpy as np

__all__ = ["synth_ecg"]

# (offset from R in s, width in s, amplitude in mV)
_WAVES = (
    (-0.20, 0.025, 0.15),  # P
    (-0.03, 0.010, -0.12),  # Q
    (0.00, 0.012, 1.20),  # R
    (0.03, 0.010, -0.25),  # S
    (0.28, 0.060, 0.30),  # T
)


def synth_ecg(
    fs: float,
    duration_s: float,
    hr_bpm: float = 72.0,
    rr_jitter: float = 0.05,
    noise_mv: float = 0.01,
    wander_mv: float = 0.1,
    seed: int = 0,
    offset_mv: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (signal in mV, true R-peak sample indices)."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * fs)
    t = np.arange(n) / fs
    rr0 = 60.0 / hr_bpm
    r_times = []
    tr = 0.6
    while tr < duration_s - 0.3:
        r_times.append(tr)
        tr += rr0 * (1.0 + rr_jitter * rng.standard_normal())
    x = np.zeros(n)
    for tr in r_times:
        lo = max(0, int((tr - 0.45) * fs))
        hi = min(n, int((tr + 0.6) * fs))
        tt = t[lo:hi] - tr
        for off, width, amp in _WAVES:
            x[lo:hi] += amp * np.exp(-0.5 * ((tt - off) / width) ** 2)
    x += wander_mv * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 2 * np.pi))
    x += noise_mv * rng.standard_normal(n)
    x += offset_mv
    r_idx = np.round(np.asarray(r_times) * fs).astype(np.int64)
    return x, r_idx
