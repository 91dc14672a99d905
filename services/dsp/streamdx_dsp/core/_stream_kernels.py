"""The stream's fused compiled step: one call per chunk once the detector has learned.

Chains the kernels of the stages (:mod:`._wavelet_kernels` denoising,
:func:`._kernels.condition_stream` band-pass / quality / detector features,
:func:`._kernels.detector_candidates` and :func:`._kernels.detector_decide`, and for the
fixed window :func:`._kernels.fixed_window_emit`) so that a chunk costs one dispatch from
Python instead of five; each stage's arithmetic stays in its own kernel.
"""

from __future__ import annotations

import math

import numpy as np

from streamdx_dsp.core._kernels import (
    _jit,
    condition_stream,
    detector_candidates,
    detector_decide,
    fixed_window_emit,
)
from streamdx_dsp.core._wavelet_kernels import wavelet_stream_step

__all__ = ["stream_step"]


@_jit
def stream_step(
    x, offset, ring, wcnt, sig, lo, hi, hop_m, hop_s, wpar, lam_fac,
    run, rail, sos, bp_zi, qb, qa, rp_zi, f_tail, sq_tail, fs, qpar, min_ptp, h_ecg, h_bins, h_start,
    feat, feat_start, cand_next, dpar_i, spk, npk, last_r, last_slope, rr_d, rr_dn, sb, sb_next, dpar_f,
    fixed, pending, prev_r, rr_b, rr_bn, u, v, pre, post,
):  # fmt: skip
    """Denoise, condition, detect and (fixed window) segment one chunk ``x``.

    ``x - offset``, rounded to float32, is processed (offset removal). A chunk holding a
    NaN or inf is refused before anything is changed: ``n_new`` is then -1.

    ``wpar`` = (h2, l2, r2, p2, sig_block, look, qbin, pad); ``qpar`` = (flat_min,
    clip_min, qbin); ``dpar_i`` = (w, mw, rb, refr, twave, sb_extra, sb_step, sb_age,
    sb_max); ``dpar_f`` = (c, min_amp, sb_k, twave_slope, twave_height, decay). The
    conditioned samples of one call must fit the history (the caller cuts long chunks).
    Arrays are updated in place; returns ``(n_new, feat, feat_start, cand_next, r_peaks,
    spk, npk, last_r, last_slope, rr_dn, sb, sb_next, pending, prev_r, rr_bn, ready,
    waves, values)`` where ``ready``/``waves``/``values`` are the fixed-window beats
    completed by the chunk (see ``beat_rows_fixed``).
    """
    n_x = x.size
    xo = np.empty(n_x)
    finite = True
    for i in range(n_x):
        xi = x[i]
        if not math.isfinite(xi):
            finite = False
            break
        xo[i] = np.float64(np.float32(xi - offset))
    n_new = -1
    r_peaks = np.zeros(0, np.int64)
    ready = np.zeros(0, np.int64)
    waves = np.zeros((0, u.size), np.float32)
    values = np.zeros((0, 8))
    if finite:
        den, raw, ahead = wavelet_stream_step(
            xo,
            ring,
            wcnt,
            sig,
            lo,
            hi,
            hop_m,
            hop_s,
            wpar[0],
            wpar[1],
            wpar[2],
            lam_fac,
            wpar[4],
            wpar[5],
            wpar[6],
            wpar[7],
        )
        n_new = den.size
        if n_new:
            mwi, adv = condition_stream(
                den,
                raw,
                ahead,
                run,
                rail,
                sos,
                bp_zi,
                1,
                qb,
                qa,
                rp_zi,
                f_tail,
                sq_tail,
                fs,
                qpar[0],
                qpar[1],
                min_ptp,
                qpar[2],
                h_ecg,
                h_bins,
            )
            h_start += n_new
            feat, feat_start, cand_next, cands = detector_candidates(
                feat, mwi, adv, feat_start, cand_next, dpar_i[0], dpar_i[1], False, h_ecg, h_start, dpar_i[2]
            )
            r_peaks, spk, npk, last_r, last_slope, rr_dn, sb, sb_next = detector_decide(
                cands,
                cand_next,
                spk,
                npk,
                last_r,
                last_slope,
                rr_d,
                rr_dn,
                sb,
                sb_next,
                dpar_f[0],
                dpar_i[3],
                dpar_i[4],
                dpar_f[1],
                dpar_f[2],
                dpar_i[5],
                dpar_i[6],
                dpar_i[7],
                dpar_f[3],
                dpar_f[4],
                dpar_f[5],
                dpar_i[8],
            )
        if fixed:
            pending, prev_r, rr_bn, ready, waves, values = fixed_window_emit(
                pending, r_peaks, prev_r, rr_b, rr_bn, h_ecg, h_start, h_bins, qpar[2], u, v, pre, post, fs
            )
    return (
        n_new, feat, feat_start, cand_next, r_peaks, spk, npk, last_r, last_slope, rr_dn, sb, sb_next,
        pending, prev_r, rr_bn, ready, waves, values,
    )  # fmt: skip
