"""The stream's fused compiled step: one call per chunk once the detector has learned.

Chains the kernels of the stages (:mod:`._wavelet_kernels` denoising,
:func:`._kernels.condition_stream` band-pass / quality / detector features,
:func:`._kernels.detector_candidates_steady` and :func:`._kernels.detector_decide`, and for the
fixed window :func:`._kernels.fixed_window_emit`) so that a chunk costs one dispatch from
Python instead of five; each stage's arithmetic stays in its own kernel.
"""

from __future__ import annotations

import math

import numpy as np

from streamdx_dsp.core import detector_buf as db
from streamdx_dsp.core._kernels import (
    _jit,
    condition_stream,
    detector_candidates_steady,
    detector_decide,
    fixed_window_emit,
)
from streamdx_dsp.core._wavelet_kernels import wavelet_stream_step

__all__ = ["stream_step"]


@_jit
def stream_step(
    x, offset, ring, wcnt, sig, run, rail, bp_zi, h_ecg, h_bins, h_start, dbuf, feat, rr_d, sb,
    fixed, pending, pending_n, prev_r, rr_b, rr_bn, ipar, fpar,
):  # fmt: skip
    """Denoise, condition, detect and (fixed window) segment one chunk ``x``.

    ``x - offset``, rounded to float32, is processed (offset removal). A chunk holding a
    NaN or inf is refused before anything is changed: ``n_new`` is then -1. The step
    applies to a learned detector whose feature buffer ``feat`` has its steady length
    (``2 w + mw + 1``, ending ``w`` samples after ``cand_next``): it is then updated in
    place. Otherwise ``n_new`` is -2 and nothing is changed (the caller takes the general
    path of the stages). ``dbuf`` is the detector's state vector (``detector_buf``), read
    and updated in place.

    Constants (see ``stream._fused_params``), two vectors because numba unboxes every
    argument: ``ipar`` = (h2, l2, r2, sig_block, look, qbin, pad, flat_min, clip_min, w,
    mw, rb, refr, twave, sb_extra, sb_step, sb_age, sb_max, n_seg, n_hop, n_core, n_det, sb_cap);
    ``fpar`` = (c, min_amp, sb_k, twave_slope, twave_height, decay, lam_fac, fs, min_ptp,
    pre, post), then the db4 analysis filters (8 + 8), the QRS filter (5 + 5), the
    band-pass sections (2 x 6), the beat resampling grids ``u`` and ``v`` (``n_seg``
    each) and the hop matrices (``n_hop`` x ``n_core`` and ``n_det`` x ``h2``).

    The conditioned samples of one call must fit the history (the caller cuts long
    chunks). Arrays, including the fixed-capacity search-back pool ``sb`` and queue
    ``pending``, are updated in place (only new arrays are returned: numba boxes every
    returned array and unboxes every argument); returns ``(n_new, pending_n, prev_r, rr_bn,
    rows, waves)``: ``rows``
    (k, 9) are the fixed-window beats completed by the chunk, R sample then the values of
    ``beat_rows_fixed``, with their ``waves``; for the RR window the R peaks accepted
    (first column only, no waves). ``pending_n`` is -1 if the queue overflowed its
    capacity (it cannot: R peaks are a refractory period apart).
    """
    o = 11 + 26  # the parameters, then the filters
    filt = fpar[11:o]
    sos = fpar[o : o + 12].reshape((2, 6))
    o += 12
    u = fpar[o : o + ipar[18]]
    v = fpar[o + ipar[18] : o + 2 * ipar[18]]
    o += 2 * ipar[18]
    hop_m = fpar[o : o + ipar[19] * ipar[20]].reshape((ipar[19], ipar[20]))
    o += ipar[19] * ipar[20]
    hop_s = fpar[o : o + ipar[21] * ipar[0]].reshape((ipar[21], ipar[0]))
    n_x = x.size
    n_feat = feat.shape[1]
    feat_start = int(dbuf[db.BUF_FEAT_START])
    cand_next = int(dbuf[db.BUF_CAND_NEXT])
    if n_feat != 2 * ipar[9] + ipar[10] + 1 or cand_next != feat_start + n_feat - ipar[9]:
        return -2, pending_n, prev_r, rr_bn, np.zeros((0, 9)), np.zeros((0, ipar[18]), np.float32)
    xo = np.empty(n_x)
    for i in range(n_x):
        xi = x[i]
        if not math.isfinite(xi):
            return -1, pending_n, prev_r, rr_bn, np.zeros((0, 9)), np.zeros((0, ipar[18]), np.float32)
        xo[i] = np.float64(np.float32(xi - offset))
    fs = fpar[7]
    qbin = ipar[5]
    den, raw, ahead = wavelet_stream_step(
        xo, ring, wcnt, sig, filt[0:8], filt[8:16], hop_m, hop_s, ipar[0], ipar[1], ipar[2], fpar[6], ipar[3],
        ipar[4], qbin, ipar[6],
    )  # fmt: skip
    n_new = den.size
    if n_new:
        mwi, adv = condition_stream(
            den, raw, ahead, run, rail, sos, bp_zi, filt[16:21], filt[21:26], dbuf[db.BUF_ZI : db.BUF_F_TAIL],
            dbuf[db.BUF_F_TAIL : db.BUF_SQ_TAIL], dbuf[db.BUF_SQ_TAIL :], fs, ipar[7], ipar[8], fpar[8], qbin, h_ecg,
            h_bins,
        )  # fmt: skip
        h_start += n_new
        feat_start, cand_next, cands = detector_candidates_steady(
            feat, mwi, adv, feat_start, cand_next, ipar[9], ipar[10], h_ecg, h_start, ipar[11]
        )
        r_peaks, spk, npk, last_r, last_slope, rr_dn, sb_n, sb_next = detector_decide(
            cands, cand_next, dbuf[db.BUF_SPK], dbuf[db.BUF_NPK], int(dbuf[db.BUF_LAST_R]),
            dbuf[db.BUF_LAST_SLOPE], rr_d, int(dbuf[db.BUF_RR_N]), sb, int(dbuf[db.BUF_SB_N]),
            int(dbuf[db.BUF_SB_NEXT]), fpar[0], ipar[12],
            ipar[13], fpar[1], fpar[2], ipar[14], ipar[15], ipar[16], fpar[3], fpar[4], fpar[5], ipar[17], ipar[22],
        )  # fmt: skip
        dbuf[db.BUF_FEAT_START] = feat_start
        dbuf[db.BUF_CAND_NEXT] = cand_next
        dbuf[db.BUF_SPK] = spk
        dbuf[db.BUF_NPK] = npk
        dbuf[db.BUF_LAST_R] = last_r
        dbuf[db.BUF_LAST_SLOPE] = last_slope
        dbuf[db.BUF_RR_N] = rr_dn
        dbuf[db.BUF_SB_N] = sb_n
        dbuf[db.BUF_SB_NEXT] = sb_next
    else:
        r_peaks = np.zeros(0, np.int64)
    if fixed:
        pending_n, prev_r, rr_bn, waves, rows = fixed_window_emit(
            pending, pending_n, r_peaks, prev_r, rr_b, rr_bn, h_ecg, h_start, h_bins, qbin, u, v, fpar[9],
            fpar[10], fs,
        )  # fmt: skip
    else:
        waves = np.zeros((0, u.size), np.float32)
        rows = np.zeros((r_peaks.size, 9))
        for k in range(r_peaks.size):
            rows[k, 0] = r_peaks[k]
    return n_new, pending_n, prev_r, rr_bn, rows, waves
