"""Compiled kernels of the bounded-delay wavelet denoiser (:mod:`streamdx_dsp.core.wavelet_stream`).

The definitions are those of :func:`streamdx_dsp.core.wavelet_stream.ecg_wavelet_reference`
(plain numpy, the test oracle); these kernels compute the same values incrementally,
each coefficient once, without allocating in the per-hop loops.
"""

from __future__ import annotations

import numpy as np

from streamdx_dsp.core._kernels import _jit, _median_abs

__all__ = ["N_ROWS", "PIECE", "RING", "hop_plan", "periodic_shrink", "shrink_hop", "wavelet_stream_step"]


@_jit
def periodic_shrink(w, n, lo, hi, levels, lam, a, d, rec):
    """Soft-threshold shrinkage of ``w[:n]`` by a periodised ``levels``-level DWT, in place.

    Convention of ``pywt.wavedec(..., mode="periodization")`` for 8-tap filters:
    ``cA[k] = sum_j lo[j] x[(2k + 4 - j) mod n]`` (``cD`` with ``hi``); the inverse is the
    transpose. Details of every level are soft-thresholded at ``lam``; the approximation
    is kept. ``a``, ``d``, ``rec`` are scratch arrays of at least ``n + 8`` samples.
    """
    l0, l1, l2, l3, l4, l5, l6, l7 = lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7]
    g0, g1, g2, g3, g4, g5, g6, g7 = hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7]
    m = n
    off = 0
    for _ in range(levels):
        h = m // 2
        # periodic padding: rec[q] = w[(q - 4) mod m], q < m + 8
        for q in range(4):
            rec[q] = w[m - 4 + q]
            rec[m + 4 + q] = w[q]
        for q in range(m):
            rec[q + 4] = w[q]
        for k in range(h):
            b = 2 * k + 8
            x0, x1, x2, x3 = rec[b], rec[b - 1], rec[b - 2], rec[b - 3]
            x4, x5, x6, x7 = rec[b - 4], rec[b - 5], rec[b - 6], rec[b - 7]
            a[k] = l0 * x0 + l1 * x1 + l2 * x2 + l3 * x3 + l4 * x4 + l5 * x5 + l6 * x6 + l7 * x7
            c = g0 * x0 + g1 * x1 + g2 * x2 + g3 * x3 + g4 * x4 + g5 * x5 + g6 * x6 + g7 * x7
            if c > lam:
                c -= lam
            elif c < -lam:
                c += lam
            else:
                c = 0.0
            d[off + k] = c
        for k in range(h):
            w[k] = a[k]
        off += h
        m = h
    for _ in range(levels):
        h = m
        m = 2 * h
        off -= h
        # periodic padding of the approximation (a) and details (rec) by 2 on each side
        for q in range(2):
            a[q] = w[h - 2 + q]
            a[h + 2 + q] = w[q]
            rec[q] = d[off + h - 2 + q]
            rec[h + 2 + q] = d[off + q]
        for q in range(h):
            a[q + 2] = w[q]
            rec[q + 2] = d[off + q]
        for i in range(h):
            a0, a1_, a2_, a3, a4 = a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4]
            d0, d1_, d2_, d3, d4 = rec[i], rec[i + 1], rec[i + 2], rec[i + 3], rec[i + 4]
            w[2 * i] = l0 * a0 + g0 * d0 + l2 * a1_ + g2 * d1_ + l4 * a2_ + g4 * d2_ + l6 * a3 + g6 * d3
            w[2 * i + 1] = l1 * a1_ + g1 * d1_ + l3 * a2_ + g3 * d2_ + l5 * a3 + g5 * d3 + l7 * a4 + g7 * d4


@_jit
def _needed(idx, n_out_level):
    """Coefficient indices (mod the level's length) that synthesis of the samples ``idx`` of
    the level below reads: ``i-2..i+1`` for ``2i``, ``i-1..i+2`` for ``2i+1`` (sorted, unique)."""
    mark = np.zeros(n_out_level, np.bool_)
    for m in idx:
        i = m >> 1
        a = i - 2 if m & 1 == 0 else i - 1
        for q in range(4):
            mark[(a + q) % n_out_level] = True
    return np.nonzero(mark)[0]


@_jit
def hop_plan(n, keep0, keep_len):
    """Which level-1 and level-2 coefficients the kept samples ``[keep0, keep0 + keep_len)`` of a
    3-level periodic shrinkage of ``n`` samples depend on (see :func:`shrink_hop`)."""
    keep = np.arange(keep0, keep0 + keep_len)
    n1 = _needed(keep, n // 2)
    n2 = _needed(n1, n // 4)
    return n1, n2


@_jit
def _pad(src, n, p, dst):
    """``dst[q] = src[(q - p) mod n]`` for ``q < n + 2p``."""
    for q in range(p):
        dst[q] = src[n - p + q]
        dst[n + p + q] = src[q]
    for q in range(n):
        dst[p + q] = src[q]


@_jit
def _fir8(x, b, f):
    """``sum_j f[j] x[b - j]`` for an 8-tap filter."""
    return (f[0] * x[b] + f[1] * x[b - 1] + f[2] * x[b - 2] + f[3] * x[b - 3] + f[4] * x[b - 4] + f[5] * x[b - 5]
            + f[6] * x[b - 6] + f[7] * x[b - 7])  # fmt: skip


@_jit
def _syn_point(a, d, m, n, lo, hi):
    """Sample ``m`` of the periodic inverse step from ``a``/``d`` of length ``n`` (transpose of the analysis).

    ``n`` is a power of two, so the periodic index is a mask (an integer division per tap
    would cost more than the arithmetic). ``lo``/``hi`` are the filters as tuples.
    """
    i = m >> 1
    k = n - 1
    if m & 1 == 0:
        q = i - 2
        return (lo[0] * a[q & k] + hi[0] * d[q & k] + lo[2] * a[(q + 1) & k] + hi[2] * d[(q + 1) & k]
                + lo[4] * a[(q + 2) & k] + hi[4] * d[(q + 2) & k]
                + lo[6] * a[(q + 3) & k] + hi[6] * d[(q + 3) & k])  # fmt: skip
    q = i - 1
    return (lo[1] * a[q & k] + hi[1] * d[q & k] + lo[3] * a[(q + 1) & k] + hi[3] * d[(q + 1) & k]
            + lo[5] * a[(q + 2) & k] + hi[5] * d[(q + 2) & k]
            + lo[7] * a[(q + 3) & k] + hi[7] * d[(q + 3) & k])  # fmt: skip


@_jit
def shrink_hop(w, n, lo, hi, lam, keep0, keep_len, n1, n2, out, sc):
    """The samples ``[keep0, keep0 + keep_len)`` of :func:`periodic_shrink` (3 levels) of ``w[:n]``
    (``n`` a power of two).

    Same arithmetic, restricted to what those samples depend on: all approximations, the
    level-1 and level-2 details listed in ``n1``/``n2`` (from :func:`hop_plan`), all level-3
    details, and synthesis only where it is read. Writes ``out[:keep_len]``; ``sc`` is a
    scratch array of at least ``6 * (n + 8)`` samples.
    """
    lo = (lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7])  # values: no aliasing with the scratch
    hi = (hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7])
    m = n + 8
    wp = sc[0:m]
    a1 = sc[m : 2 * m]
    d1 = sc[2 * m : 3 * m]
    a2 = sc[3 * m : 4 * m]
    d2 = sc[4 * m : 5 * m]
    t = sc[5 * m : 6 * m]
    h1, h2, h3 = n // 2, n // 4, n // 8
    # analysis on the input padded periodically by 4 each side: x[(2k + 4 - j) mod n] = wp[2k + 8 - j]
    _pad(w, n, 4, wp)
    for k in range(h1):
        a1[k] = _fir8(wp, 2 * k + 8, lo)
    for k in n1:
        d1[k] = _shrink(_fir8(wp, 2 * k + 8, hi), lam)
    _pad(a1, h1, 4, wp)
    for k in range(h2):
        a2[k] = _fir8(wp, 2 * k + 8, lo)
    for k in n2:
        d2[k] = _shrink(_fir8(wp, 2 * k + 8, hi), lam)
    # level 3 (all): approximation in t[:h3], details in t[h3:2 h3]
    _pad(a2, h2, 4, wp)
    for k in range(h3):
        t[k] = _fir8(wp, 2 * k + 8, lo)
        t[h3 + k] = _shrink(_fir8(wp, 2 * k + 8, hi), lam)
    # synthesis only where it is read: level 2 at n2, level 1 at n1, the kept samples
    a3 = t[:h3]
    d3 = t[h3 : 2 * h3]
    for i2 in n2:
        a2[i2] = _syn_point(a3, d3, i2, h3, lo, hi)
    for i1 in n1:
        a1[i1] = _syn_point(a2, d2, i1, h2, lo, hi)
    for z in range(keep_len):
        out[z] = _syn_point(a1, d1, keep0 + z, h1, lo, hi)


#: Ring capacity of each coefficient sequence (a power of two); input is consumed in
#: pieces of at most ``_PIECE`` samples so that no live value is overwritten. Values
#: before index 0 are read from the never-written end of the ring, i.e. as zeros (the
#: stream is preceded by zeros), which holds while the stream is younger than the ring.
RING = 256
_MASK = RING - 1
_PIECE = 128
PIECE = _PIECE
_SIG_RING = 16
#: rows of the ring: input, cA1, cD1, shrunk cD1, cA2, shrunk cD2, denoised cA2, denoised cA1
_X, _A1, _D1, _D1S, _A2, _D2S, _A2D, _A1D = 0, 1, 2, 3, 4, 5, 6, 7
N_ROWS = 8
#: counters: x, level 1, level 2, denoised cA2, denoised cA1, output, noise blocks
_CX, _C1, _C2, _CB, _C1D, _CY, _CS = 0, 1, 2, 3, 4, 5, 6


@_jit
def _lam(sig, sb, lam_fac):
    """Threshold from the noise scale of cD1 block ``sb`` (0 before the first block)."""
    if sb < 0:
        return 0.0
    return sig[sb & (_SIG_RING - 1)] * lam_fac


@_jit
def _shrink(c, lam):
    """Soft threshold ``sign(c) max(|c| - lam, 0)``, branch-free (``c - clip(c, -lam, lam)``, the same
    values): the detail coefficients of ECG fall on either side of ``lam`` unpredictably."""
    return c - min(max(c, -lam), lam)


@_jit
def _ring_pair(r, b, lo, hi):
    """``(sum_j lo[j] r[b - j], sum_j hi[j] r[b - j])`` over a ring buffer (indices masked)."""
    x0, x1, x2, x3 = r[b & _MASK], r[(b - 1) & _MASK], r[(b - 2) & _MASK], r[(b - 3) & _MASK]
    x4, x5, x6, x7 = r[(b - 4) & _MASK], r[(b - 5) & _MASK], r[(b - 6) & _MASK], r[(b - 7) & _MASK]
    a = lo[0] * x0 + lo[1] * x1 + lo[2] * x2 + lo[3] * x3 + lo[4] * x4 + lo[5] * x5 + lo[6] * x6 + lo[7] * x7
    d = hi[0] * x0 + hi[1] * x1 + hi[2] * x2 + hi[3] * x3 + hi[4] * x4 + hi[5] * x5 + hi[6] * x6 + hi[7] * x7
    return a, d


@_jit
def _ring_syn(ar, dr, m, lo, hi):
    """Sample ``m`` of an inverse step from approximation/detail rings (indices ``m//2 - 2 .. + 2``)."""
    i = m >> 1
    if m & 1 == 0:
        c = i - 2
        return (lo[0] * ar[c & _MASK] + hi[0] * dr[c & _MASK] + lo[2] * ar[(c + 1) & _MASK]
                + hi[2] * dr[(c + 1) & _MASK] + lo[4] * ar[(c + 2) & _MASK] + hi[4] * dr[(c + 2) & _MASK]
                + lo[6] * ar[(c + 3) & _MASK] + hi[6] * dr[(c + 3) & _MASK])  # fmt: skip
    c = i - 1
    return (lo[1] * ar[c & _MASK] + hi[1] * dr[c & _MASK] + lo[3] * ar[(c + 1) & _MASK]
            + hi[3] * dr[(c + 1) & _MASK] + lo[5] * ar[(c + 2) & _MASK] + hi[5] * dr[(c + 2) & _MASK]
            + lo[7] * ar[(c + 3) & _MASK] + hi[7] * dr[(c + 3) & _MASK])  # fmt: skip


@_jit
def wavelet_stream_step(x_new, ring, cnt, sig, lo, hi, h2, l2, r2, p2, lam_fac, sig_block, look, qbin, pad, scratch):
    """Advance the bounded-delay denoiser by ``x_new`` (see ``wavelet_stream.py`` for the definition).

    ``ring`` (8, RING) holds the recent values of the padded stream's sequences (input,
    cA1, cD1, shrunk cD1, cA2, shrunk cD2, denoised cA2, denoised cA1), value ``i`` of a
    sequence at column ``i & (RING - 1)``; ``cnt`` (int64[7]) their counts and the number
    of noise-scale blocks; ``sig`` the recent noise scales (ring of 16). Updated in place.
    A detail coefficient at cD1 position ``q`` is shrunk with the scale of block
    ``q // sig_block - 1``, known when it is computed (``sig_block`` is 128). Returns the
    denoised output ``den`` and the raw input aligned with it ``raw`` (a multiple of
    ``qbin`` samples in all) and ``ahead``, the ``look`` input samples after them.
    """
    n_new = x_new.size
    lo_a, hi_a = lo, hi
    lo = (lo_a[0], lo_a[1], lo_a[2], lo_a[3], lo_a[4], lo_a[5], lo_a[6], lo_a[7])  # values: no aliasing with rings
    hi = (hi_a[0], hi_a[1], hi_a[2], hi_a[3], hi_a[4], hi_a[5], hi_a[6], hi_a[7])
    den = np.empty(n_new + RING)
    raw = np.empty(n_new + RING)
    n_out = 0
    nW = l2 + h2 + r2 + p2
    w = scratch[0]
    n1, n2 = hop_plan(nW, l2, h2)
    hop_out = np.empty(h2)
    sc6 = np.empty(6 * (nW + 8))
    xr = ring[_X]
    a1r = ring[_A1]
    d1r = ring[_D1]
    d1s = ring[_D1S]
    a2r = ring[_A2]
    d2s = ring[_D2S]
    a2dr = ring[_A2D]
    a1dr = ring[_A1D]
    pos = 0
    while pos < n_new:
        e = min(pos + _PIECE, n_new)
        nX = cnt[_CX]
        for i in range(pos, e):
            xr[(nX + i - pos) & _MASK] = x_new[i]
        nX += e - pos
        cnt[_CX] = nX
        pos = e
        # level 1: c[k] = sum_j f[j] x[2k + 4 - j] once x[2k + 4] is known
        nA1 = cnt[_C1]
        nsb = cnt[_CS]
        k_end = (nX - 5) // 2 + 1
        lam = _lam(sig, (nA1 >> 7) - 1, lam_fac)
        for k in range(nA1, k_end):
            a1r[k & _MASK], d = _ring_pair(xr, 2 * k + 4, lo, hi)
            if k & (sig_block - 1) == 0 and k > 0:
                # block nsb = k // sig_block - 1 is complete: its noise scale
                for q in range(sig_block):
                    w[q] = d1r[(k - sig_block + q) & _MASK]
                sig[nsb & (_SIG_RING - 1)] = _median_abs(w[:sig_block]) / 0.6745
                nsb += 1
                lam = _lam(sig, (k >> 7) - 1, lam_fac)
            d1r[k & _MASK] = d
            d1s[k & _MASK] = _shrink(d, lam)
        if k_end > nA1:
            nA1 = k_end
            cnt[_C1] = nA1
        cnt[_CS] = nsb
        # level 2 (shrunk cD2 at cD1 position 2k)
        nA2 = cnt[_C2]
        k_end = (nA1 - 5) // 2 + 1
        for k in range(nA2, k_end):
            a2r[k & _MASK], d = _ring_pair(a1r, 2 * k + 4, lo, hi)
            d2s[k & _MASK] = _shrink(d, _lam(sig, ((2 * k) >> 7) - 1, lam_fac))
        if k_end > nA2:
            nA2 = k_end
            cnt[_C2] = nA2
        # levels 3-5: windows of cA2 (left l2, hop h2, right r2, mirror p2)
        nB = cnt[_CB]
        b_end = ((nA2 - r2) // h2) * h2
        core = l2 + h2 + r2
        for s in range(nB, b_end, h2):
            base = s - l2
            for q in range(core):
                w[q] = a2r[(base + q) & _MASK]
            for q in range(p2):
                w[core + q] = w[core - 1 - q]
            shrink_hop(w, nW, lo_a, hi_a, _lam(sig, ((2 * s) >> 7) - 1, lam_fac), l2, h2, n1, n2, hop_out, sc6)
            for q in range(h2):
                a2dr[(s + q) & _MASK] = hop_out[q]
        if b_end > nB:
            nB = b_end
            cnt[_CB] = nB
        # level 2 -> 1: a1d[2i] reads indices i-2..i+1, a1d[2i+1] reads i-1..i+2 (all < lim)
        nA1d = cnt[_C1D]
        lim = min(nB, nA2)
        m_end = 2 * (lim - 2) + 1
        for m in range(nA1d, m_end):
            a1dr[m & _MASK] = _ring_syn(a2dr, d2s, m, lo, hi)
        if m_end > nA1d:
            nA1d = m_end
            cnt[_C1D] = nA1d
        # level 1 -> output, released in whole quality bins with ``look`` input samples after
        nY = cnt[_CY]
        n_end = min(2 * (min(nA1d, nA1) - 2) + 1, nX - look)
        n_end = pad + ((n_end - pad) // qbin) * qbin if n_end > pad else nY
        for n in range(nY, n_end):
            v = _ring_syn(a1dr, d1s, n, lo, hi)
            den[n_out] = v
            raw[n_out] = xr[n & _MASK]
            n_out += 1
        if n_end > nY:
            cnt[_CY] = n_end
    nY = cnt[_CY]
    ahead = np.empty(look)
    for q in range(look):
        ahead[q] = xr[(nY + q) & _MASK]
    return den[:n_out].copy(), raw[:n_out].copy(), ahead
