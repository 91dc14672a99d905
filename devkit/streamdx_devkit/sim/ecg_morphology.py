"""Beat waveforms of the synthetic ECG: sums of Gaussians (ECGSYN-style).

Following McSharry et al. (2003), *A dynamical model for generating synthetic
electrocardiogram signals* (IEEE TBME 50:289), each beat is a sum of Gaussian waves
``a·exp(-(t - t_R - θ)² / 2b²)`` placed relative to the beat's R time ``t_R``. ECGSYN
integrates these Gaussians along a limit cycle in angle; here they are written directly in
time, which places every beat exactly where the rhythm generator says (so the ground truth is
exact), and wave timing is scaled with the preceding RR the way ECGSYN scales its angles:

* P: 0.10 … 0.20 mV at −PR · clip(RR, 0.3, 1.5)^0.2 (PR 0.14–0.18 s at RR = 1 s), σ 0.022 s;
* Q: −0.05 … −0.15 mV at −0.028 s, σ 0.009 s;
* R: 0.9 … 1.6 mV at 0, σ 0.010 s;
* S: −0.15 … −0.35 mV at +0.030 s, σ 0.011 s;
* T: two Gaussians (for its asymmetry), 0.8 × and 0.35 × of 0.2 … 0.4 mV, at 0.27 · √RR and
  0.31 · √RR s (Bazett-like QT scaling), σ 0.05 · √RR and 0.035 · √RR s.

Amplitudes are drawn once per record (one "patient", lead MLII-like), then modulated per
beat by respiration (±6 % on the QRS) and ±3 % jitter.

* **PAC** — premature P, inverted and narrower (−0.6 × P, σ 0.018 s) with a shorter PR
  (0.12 s); normal QRS-T.
* **PVC / VT** — no P; one ventricular focus per record: a wide main deflection (σ 0.028–
  0.036 s, 1.6–2.6 mV, random sign), a notch of the opposite sign 50 ms later (0.35 ×), and a
  broad discordant T (σ 0.07 · √RR s, −0.3 × main, at 0.30·√RR + 0.03 s).
* **AF** — no P wave (the f-waves are rendered separately by :func:`render_fwaves`).

Not modelled: axis/lead geometry (single lead), bundle-branch blocks, ST changes, U waves,
multifocal PVCs, fusion beats, QT hysteresis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Morphology", "beat_waves", "draw_morphology", "render_fwaves", "render_waves"]


@dataclass(frozen=True)
class Morphology:
    """Per-record wave parameters (amplitudes in mV, times in s)."""

    p_amp: float
    pr_s: float
    q_amp: float
    r_amp: float
    s_amp: float
    t_amp: float
    v_amp: float
    v_sigma: float
    v_sign: float


def draw_morphology(rng: np.random.Generator) -> Morphology:
    """Draw one record's morphology.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    """
    return Morphology(
        p_amp=float(rng.uniform(0.10, 0.20)),
        pr_s=float(rng.uniform(0.14, 0.18)),
        q_amp=float(-rng.uniform(0.05, 0.15)),
        r_amp=float(rng.uniform(0.9, 1.6)),
        s_amp=float(-rng.uniform(0.15, 0.35)),
        t_amp=float(rng.uniform(0.2, 0.4)),
        v_amp=float(rng.uniform(1.6, 2.6)),
        v_sigma=float(rng.uniform(0.028, 0.036)),
        v_sign=1.0 if rng.random() < 0.6 else -1.0,
    )


def beat_waves(
    m: Morphology,
    t_r: npt.NDArray[np.float64],
    symbols: tuple[str, ...],
    rr_prev: npt.NDArray[np.float64],
    has_p: npt.NDArray[np.bool_],
    qrs_scale: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """List the Gaussian waves of every beat.

    Parameters
    ----------
    m : Morphology
        Record morphology.
    t_r : numpy.ndarray
        R times (s).
    symbols : tuple of str
        Beat symbols (``"N"``, ``"A"``, ``"V"``).
    rr_prev : numpy.ndarray
        Preceding RR (s), used for wave timing.
    has_p : numpy.ndarray of bool
        Whether a normal beat has a sinus P wave (False during AF).
    qrs_scale : numpy.ndarray
        Per-beat amplitude factor (respiration and jitter).

    Returns
    -------
    amp, centre, sigma : numpy.ndarray
        Amplitude (mV), centre time (s) and width (s) of each wave.
    beat : numpy.ndarray
        Index of the beat each wave belongs to.
    """
    amps: list[float] = []
    cents: list[float] = []
    sigs: list[float] = []
    owner: list[int] = []

    def add(i: int, a: float, c: float, s: float) -> None:
        amps.append(a)
        cents.append(c)
        sigs.append(s)
        owner.append(i)

    for i, (t, sym) in enumerate(zip(t_r.tolist(), symbols, strict=True)):
        rr = float(np.clip(rr_prev[i], 0.3, 2.0))
        k = float(qrs_scale[i])
        sq = np.sqrt(rr)
        if sym == "V":
            v = m.v_sign * m.v_amp * k
            add(i, v, t, m.v_sigma)
            add(i, -0.35 * v, t + 0.05, 0.025)
            add(i, -0.3 * v, t + 0.30 * sq + 0.03, 0.07 * sq)
            continue
        if sym == "A":
            add(i, -0.6 * m.p_amp, t - 0.12, 0.018)
        elif has_p[i]:
            pr = m.pr_s * float(np.clip(rr, 0.3, 1.5)) ** 0.2
            add(i, m.p_amp, t - pr, 0.022)
        add(i, m.q_amp * k, t - 0.028, 0.009)
        add(i, m.r_amp * k, t, 0.010)
        add(i, m.s_amp * k, t + 0.030, 0.011)
        add(i, 0.8 * m.t_amp, t + 0.27 * sq, 0.05 * sq)
        add(i, 0.35 * m.t_amp, t + 0.31 * sq, 0.035 * sq)
    return (
        np.asarray(amps, dtype=np.float64),
        np.asarray(cents, dtype=np.float64),
        np.asarray(sigs, dtype=np.float64),
        np.asarray(owner, dtype=np.int64),
    )


def render_waves(
    n: int,
    fs: float,
    amp: npt.NDArray[np.float64],
    centre_s: npt.NDArray[np.float64],
    sigma_s: npt.NDArray[np.float64],
    *,
    block: int = 2048,
) -> npt.NDArray[np.float64]:
    """Sum Gaussian waves sampled at ``k / fs``, each truncated at ±5 σ.

    Parameters
    ----------
    n : int
        Number of samples.
    fs : float
        Sampling frequency (Hz).
    amp, centre_s, sigma_s : numpy.ndarray
        Amplitude (mV), centre (s) and width σ (s) of each wave.
    block : int
        Waves rendered per vectorised block (bounds memory).

    Returns
    -------
    numpy.ndarray
        float64 signal (mV), shape ``(n,)``.
    """
    out = np.zeros(n, dtype=np.float64)
    if amp.size == 0 or n == 0:
        return out
    # Narrow (QRS) and wide (P/T) waves get their own window so blocks stay small.
    for mask in (sigma_s < 0.02, sigma_s >= 0.02):
        a_all, c_all, s_all = amp[mask], centre_s[mask], sigma_s[mask]
        if a_all.size == 0:
            continue
        half = int(np.ceil(5.0 * float(s_all.max()) * fs)) + 1
        offs = np.arange(-half, half + 1)
        for b in range(0, a_all.size, block):
            a, c, s = a_all[b : b + block], c_all[b : b + block], s_all[b : b + block]
            idx = np.round(c * fs).astype(np.int64)[:, None] + offs[None, :]
            z = (idx / fs - c[:, None]) / s[:, None]
            val = a[:, None] * np.exp(-0.5 * z * z)
            val[np.abs(z) > 5.0] = 0.0
            ok = (idx >= 0) & (idx < n)
            out += np.bincount(idx[ok], weights=val[ok], minlength=n)
    return out


def render_fwaves(
    n: int,
    fs: float,
    spans: list[tuple[int, int]],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Fibrillatory waves of atrial fibrillation over the given sample spans.

    Each span gets a dominant frequency f0 ~ U(5, 8) Hz that wanders by ±0.7 Hz (kept within
    4–9 Hz), a second harmonic at 0.3 ×, amplitude 0.03–0.08 mV modulated ±30 %, and 0.2 s
    raised-cosine fades at the ends.

    Parameters
    ----------
    n : int
        Number of samples.
    fs : float
        Sampling frequency (Hz).
    spans : list of (int, int)
        Half-open sample spans of AF.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        float64 f-wave signal (mV), zero outside the spans.
    """
    out = np.zeros(n, dtype=np.float64)
    for s, e in spans:
        s, e = max(0, s), min(n, e)
        if e <= s:
            continue
        t = np.arange(e - s, dtype=np.float64) / fs
        f0 = rng.uniform(5.0, 8.0)
        f_inst = np.clip(f0 + 0.7 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 6.3)), 4, 9)
        phase = 2 * np.pi * np.cumsum(f_inst) / fs + rng.uniform(0, 2 * np.pi)
        a0 = rng.uniform(0.03, 0.08)
        env = a0 * (1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3)))
        wave = env * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
        ramp = min(round(0.2 * fs), (e - s) // 2)
        if ramp > 0:
            r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
            wave[:ramp] *= r
            wave[e - s - ramp :] *= r[::-1]
        out[s:e] += wave
    return out
