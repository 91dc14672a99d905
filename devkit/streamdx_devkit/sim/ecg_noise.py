"""Noise and artefact models for the synthetic ECG.

Every function here is pure (numpy/scipy only) and draws its randomness from an explicit
:class:`numpy.random.Generator`.

Models
------
* **Baseline wander** — a sum of three sinusoids in 0.1–0.5 Hz (one at the respiration
  frequency), random phases; ``baseline_wander_mv`` is the bound on its absolute value.
* **Muscle (EMG) noise** — white Gaussian noise band-passed to 20 Hz … min(250 Hz, 0.45 fs)
  (4th-order Butterworth), scaled to ``emg_mv`` RMS and amplitude-modulated by a slow
  (< 1 Hz) log-normal envelope so that it comes and goes like muscle activity.
* **Amplifier noise** — white Gaussian, ``white_mv`` RMS.
* **Powerline** — a sinusoid at ``powerline_hz`` (optional, off by default) with a 10 %
  third harmonic when that is below Nyquist; no anti-alias filter is modelled, so a
  powerline frequency above fs/2 aliases, as it would on a device without one.
* **Artefact episodes** (:class:`Artefact`):

  - ``"noise"`` — an EMG burst of ``amplitude_mv`` RMS plus electrode-motion bumps
    (Gaussian bumps of 0.2–0.8 s width up to ±3·``amplitude_mv``), tapered over 50 ms;
  - ``"saturation"`` — an offset of ``amplitude_mv`` (default twice full scale) that rises in
    ~30 ms, holds, and decays with τ = 0.3 s, so the front end clips at its rail;
  - ``"flat"`` — the output is exactly 0 mV (a stuck / disconnected amplifier);
  - ``"leadoff"`` — the output is pinned at the positive rail, and on reconnection an offset of
    1.5 × full scale decays with τ = 0.3 s (the classic DC-coupled lead-off recovery).

Not modelled: electrode-motion artefact with realistic MIT-BIH NSTDB spectra, amplifier
high-pass filtering (the wander is not removed), quantisation (see ``mv_to_adc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

__all__ = [
    "ARTEFACT_KINDS",
    "Artefact",
    "ArtefactKind",
    "NoiseSpec",
    "apply_artefacts",
    "render_noise",
]

ArtefactKind = Literal["noise", "saturation", "flat", "leadoff"]
ARTEFACT_KINDS: tuple[str, ...] = ("noise", "saturation", "flat", "leadoff")

#: Time constant (s) of the offset recovery after saturation / lead-off.
_RECOVERY_TAU_S = 0.3


@dataclass(frozen=True)
class NoiseSpec:
    """Amplitudes of the continuous noise sources added to the whole record.

    Parameters
    ----------
    baseline_wander_mv : float
        Bound (mV) on the absolute value of the 0.1–0.5 Hz baseline wander.
    emg_mv : float
        RMS (mV) of broadband muscle noise.
    white_mv : float
        RMS (mV) of white amplifier noise.
    powerline_mv : float
        Amplitude (mV) of powerline interference; 0 disables it.
    powerline_hz : float
        Powerline frequency (Hz), usually 50 or 60.
    """

    baseline_wander_mv: float = 0.1
    emg_mv: float = 0.01
    white_mv: float = 0.005
    powerline_mv: float = 0.0
    powerline_hz: float = 50.0

    def __post_init__(self) -> None:
        for name in ("baseline_wander_mv", "emg_mv", "white_mv", "powerline_mv"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not np.isfinite(self.powerline_hz) or self.powerline_hz <= 0:
            raise ValueError(f"powerline_hz must be > 0, got {self.powerline_hz!r}")

    @classmethod
    def none(cls) -> NoiseSpec:
        """A spec with every source switched off (a clean, noise-free signal)."""
        return cls(baseline_wander_mv=0.0, emg_mv=0.0, white_mv=0.0, powerline_mv=0.0)


@dataclass(frozen=True)
class Artefact:
    """One artefact episode ``[start_s, end_s)``.

    Parameters
    ----------
    kind : {"noise", "saturation", "flat", "leadoff"}
        What happens to the signal (see the module docstring).
    start_s, end_s : float
        Episode bounds (s from the start of the record).
    amplitude_mv : float or None
        ``"noise"``: EMG RMS (mV, default 0.25); ``"saturation"``: offset (mV, default twice
        full scale; the sign is random). Ignored for ``"flat"`` and ``"leadoff"``.
    """

    kind: ArtefactKind
    start_s: float
    end_s: float
    amplitude_mv: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARTEFACT_KINDS:
            raise ValueError(f"unknown artefact kind {self.kind!r}; expected one of {ARTEFACT_KINDS}")
        if not (np.isfinite(self.start_s) and np.isfinite(self.end_s)) or self.end_s <= self.start_s:
            raise ValueError(f"artefact needs start_s < end_s, got {self.start_s!r}, {self.end_s!r}")
        if self.start_s < 0:
            raise ValueError("artefact start_s must be >= 0")
        if self.amplitude_mv is not None and (not np.isfinite(self.amplitude_mv) or self.amplitude_mv < 0):
            raise ValueError("artefact amplitude_mv must be finite and >= 0")


def _band_noise(n: int, fs: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Unit-RMS white noise band-passed to 20 Hz … min(250, 0.45 fs) Hz."""
    white = rng.standard_normal(n)
    high = min(250.0, 0.45 * fs)
    sos = sps.butter(4, [20.0, high], btype="bandpass", fs=fs, output="sos")
    out: npt.NDArray[np.float64] = sps.sosfilt(sos, white)
    rms = float(np.sqrt(np.mean(out**2))) if n else 0.0
    return out / rms if rms > 0 else out


def _slow_envelope(t: npt.NDArray[np.float64], rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A positive, unit-mean-square envelope varying below 1 Hz (log-normal sum of sines)."""
    log_env = np.zeros_like(t)
    for _ in range(3):
        f = rng.uniform(0.05, 0.8)
        log_env += 0.35 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    env = np.exp(log_env)
    ms = float(np.mean(env**2)) if env.size else 1.0
    return env / np.sqrt(ms)


def render_noise(
    n: int, fs: float, spec: NoiseSpec, rng: np.random.Generator, *, resp_hz: float
) -> npt.NDArray[np.float64]:
    """Render the continuous noise of ``spec`` for ``n`` samples.

    Parameters
    ----------
    n : int
        Number of samples.
    fs : float
        Sampling frequency (Hz).
    spec : NoiseSpec
        Noise amplitudes (mV).
    rng : numpy.random.Generator
        Source of randomness.
    resp_hz : float
        Respiration frequency (Hz), one of the baseline-wander components.

    Returns
    -------
    numpy.ndarray
        float64 noise (mV), shape ``(n,)``.
    """
    t = np.arange(n, dtype=np.float64) / fs
    out = np.zeros(n, dtype=np.float64)
    # Draw every random number unconditionally so that switching one source off does not
    # change the realisation of the others.
    wander_f = np.array([resp_hz, rng.uniform(0.1, 0.2), rng.uniform(0.25, 0.5)])
    wander_w = rng.dirichlet(np.ones(3) * 2.0)
    wander_ph = rng.uniform(0, 2 * np.pi, 3)
    emg_rng, white_rng = rng.spawn(2)
    pl_phase = rng.uniform(0, 2 * np.pi)
    if spec.baseline_wander_mv > 0:
        for f, w, ph in zip(wander_f, wander_w, wander_ph, strict=True):
            out += spec.baseline_wander_mv * w * np.sin(2 * np.pi * f * t + ph)
    if spec.emg_mv > 0 and n > 0:
        out += spec.emg_mv * _band_noise(n, fs, emg_rng) * _slow_envelope(t, emg_rng)
    if spec.white_mv > 0:
        out += spec.white_mv * white_rng.standard_normal(n)
    if spec.powerline_mv > 0:
        pl = np.sin(2 * np.pi * spec.powerline_hz * t + pl_phase)
        if 3 * spec.powerline_hz < fs / 2:
            pl += 0.1 * np.sin(2 * np.pi * 3 * spec.powerline_hz * t + 3 * pl_phase)
        out += spec.powerline_mv * pl * (1.0 + 0.1 * np.sin(2 * np.pi * 0.05 * t))
    return out


def _taper(length: int, ramp: int) -> npt.NDArray[np.float64]:
    """A window of ``length`` samples with raised-cosine ramps of ``ramp`` samples."""
    w = np.ones(length, dtype=np.float64)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        w[:ramp] = r
        w[length - ramp :] = r[::-1]
    return w


def _span(a: Artefact, fs: float, n: int) -> tuple[int, int]:
    return min(n, round(a.start_s * fs)), min(n, round(a.end_s * fs))


def apply_artefacts(
    x_mv: npt.NDArray[np.float64],
    fs: float,
    artefacts: tuple[Artefact, ...],
    rng: np.random.Generator,
    *,
    full_scale_mv: float,
) -> tuple[npt.NDArray[np.float64], list[tuple[int, int]]]:
    """Add artefact episodes to ``x_mv``, clip at ±``full_scale_mv``, then apply flat/lead-off.

    Parameters
    ----------
    x_mv : numpy.ndarray
        Signal (mV); not modified.
    fs : float
        Sampling frequency (Hz).
    artefacts : tuple of Artefact
        Episodes to apply.
    rng : numpy.random.Generator
        Source of randomness.
    full_scale_mv : float
        Front-end range (mV): the output is clipped to ``[-full_scale_mv, full_scale_mv]``.

    Returns
    -------
    signal : numpy.ndarray
        The new signal (mV).
    noisy_spans : list of (int, int)
        Half-open sample spans whose signal quality is degraded (noise bursts, saturation and
        its recovery, lead-off recovery) — the ``"NOISE"`` overlays of the ground truth.
    """
    n = x_mv.size
    y = x_mv.astype(np.float64, copy=True)
    t = np.arange(n, dtype=np.float64) / fs
    noisy: list[tuple[int, int]] = []
    tau = round(_RECOVERY_TAU_S * fs)
    decay_len = 6 * tau
    # Additive artefacts first (they are clipped together with the ECG).
    for a in artefacts:
        s, e = _span(a, fs, n)
        if e <= s:
            continue
        if a.kind == "noise":
            amp = 0.25 if a.amplitude_mv is None else a.amplitude_mv
            seg = amp * _band_noise(e - s, fs, rng)
            n_bumps = max(1, round((e - s) / fs / 1.5))
            for _ in range(n_bumps):
                c = rng.uniform(t[s], t[e - 1] + 1.0 / fs)
                w = rng.uniform(0.1, 0.4)
                seg += rng.uniform(-3.0, 3.0) * amp * np.exp(-0.5 * ((t[s:e] - c) / w) ** 2)
            y[s:e] += seg * _taper(e - s, round(0.05 * fs))
            noisy.append((s, e))
        elif a.kind == "saturation":
            amp = 2.0 * full_scale_mv if a.amplitude_mv is None else a.amplitude_mv
            amp *= 1.0 if rng.random() < 0.5 else -1.0
            end = min(n, e + decay_len)
            off = np.zeros(end - s)
            rise = np.arange(end - s) / fs
            off += amp * 0.5 * (1.0 + np.tanh((rise - 0.03) / 0.01))
            tail = np.arange(end - e) / fs
            off[e - s :] = off[e - s :] * np.exp(-tail / _RECOVERY_TAU_S)
            y[s:end] += off
            noisy.append((s, end))
    np.clip(y, -full_scale_mv, full_scale_mv, out=y)
    # Replacement artefacts last: nothing of the ECG survives them.
    for a in artefacts:
        s, e = _span(a, fs, n)
        if e <= s:
            continue
        if a.kind == "flat":
            y[s:e] = 0.0
        elif a.kind == "leadoff":
            y[s:e] = full_scale_mv
            end = min(n, e + decay_len)
            if end > e:
                tail = np.arange(end - e) / fs
                y[e:end] = np.clip(
                    y[e:end] + 1.5 * full_scale_mv * np.exp(-tail / _RECOVERY_TAU_S),
                    -full_scale_mv,
                    full_scale_mv,
                )
                noisy.append((e, end))
    return y, noisy
