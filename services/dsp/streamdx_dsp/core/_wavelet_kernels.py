"""Compiled kernels of the bounded-delay wavelet denoiser (:mod:`streamdx_dsp.core.wavelet_stream`).

The definitions are those of :func:`streamdx_dsp.core.wavelet_stream.ecg_wavelet_reference`
(plain numpy, the test oracle); these kernels compute the same values incrementally,
each coefficient once, without allocating in the per-hop loops.
"""

from __future__ import annotations

import numpy as np

from streamdx_dsp.core._kernels import _jit, _jit_reassoc, _median_abs, _select

__all__ = ["N_ROWS", "PIECE", "RING", "hop_shrink", "periodic_shrink", "wavelet_stream_step"]


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
def _median_abs_near(x, guess, buf):
    """Median of ``|x|``, exactly as :func:`._kernels._median_abs`, faster when ``guess`` is close.

    One branch-free pass counts the values below ``0.75 guess`` and gathers those within
    ``[0.75, 1.33] guess`` into ``buf``; when the middle rank(s) fall among the gathered
    values (the noise scale of consecutive blocks rarely changes by more than a third),
    only those are searched. Otherwise, or without a guess (``guess <= 0``), the full search.
    """
    n = x.size
    k = n // 2
    if guess > 0.0:
        lo_b = guess * 0.75
        hi_b = guess * 1.33
        below = 0
        m = 0
        for i in range(n):
            a = abs(x[i])
            below += 1 if a < lo_b else 0
            buf[m] = a
            m += 1 if (a >= lo_b) and (a <= hi_b) else 0
        first = k - 1 if n % 2 == 0 else k
        if below <= first and below + m > k:
            v = buf[:m]
            hv = _select(v, k - below)
            if n % 2:
                return hv
            lv = v[0]
            for i in range(1, k - below):
                if v[i] > lv:
                    lv = v[i]
            return (lv + hv) / 2.0
    return _median_abs(x)


@_jit
def _gather(r, first, n, out):
    """``out[t] = r[(first + t) & (RING - 1)]`` for ``t < n`` (a ring segment as a linear array)."""
    for t in range(n):
        out[t] = r[(first + t) & _MASK]


@_jit
def _analysis(xs, n, lo, hi, a, d):
    """``a[i] = sum_j lo[j] xs[2i + 7 - j]`` (``d`` with ``hi``) for ``i < n``: one DWT level on a linear array."""
    l0, l1, l2, l3, l4, l5, l6, l7 = lo
    g0, g1, g2, g3, g4, g5, g6, g7 = hi
    for i in range(n):
        b = 2 * i + 7
        x0, x1, x2, x3 = xs[b], xs[b - 1], xs[b - 2], xs[b - 3]
        x4, x5, x6, x7 = xs[b - 4], xs[b - 5], xs[b - 6], xs[b - 7]
        a[i] = l0 * x0 + l1 * x1 + l2 * x2 + l3 * x3 + l4 * x4 + l5 * x5 + l6 * x6 + l7 * x7
        d[i] = g0 * x0 + g1 * x1 + g2 * x2 + g3 * x3 + g4 * x4 + g5 * x5 + g6 * x6 + g7 * x7


@_jit_reassoc
def hop_shrink(core, hop_m, hop_s, lam, out):
    """Denoised hop of one cA2 window by the matrices of ``wavelet_stream.hop_matrices``.

    ``y = hop_m @ core``: its first ``h`` values are the hop synthesised from the
    level-5 approximation alone, the others the detail coefficients the hop depends on;
    ``out = y[:h] + soft(y[h:], lam) @ hop_s``. Equal (up to rounding) to the kept part
    of :func:`periodic_shrink` of the mirrored window. The dot products may be
    reassociated (vectorised): the result depends on the window's values only, never on
    how the stream was cut.
    """
    ny, nc = hop_m.shape
    h = out.size
    for o in range(h):
        acc = 0.0
        for q in range(nc):
            acc += hop_m[o, q] * core[q]
        out[o] = acc
    for c in range(ny - h):
        acc = 0.0
        for q in range(nc):
            acc += hop_m[h + c, q] * core[q]
        v = _shrink(acc, lam)
        for o in range(h):
            out[o] += hop_s[c, o] * v


@_jit
def wavelet_stream_step(x_new, ring, cnt, sig, lo, hi, hop_m, hop_s, h2, l2, r2, lam_fac, sig_block, look, qbin, pad):
    """Advance the bounded-delay denoiser by ``x_new`` (see ``wavelet_stream.py`` for the definition).

    ``ring`` (8, RING) holds the recent values of the padded stream's sequences (input,
    cA1, cD1, shrunk cD1, cA2, shrunk cD2, denoised cA2, denoised cA1), value ``i`` of a
    sequence at column ``i & (RING - 1)``; ``cnt`` (int64[7]) their counts and the number
    of noise-scale blocks; ``sig`` the recent noise scales (ring of 16). Updated in place.
    A detail coefficient at cD1 position ``q`` is shrunk with the scale of block
    ``q // sig_block - 1``, known when it is computed (``sig_block`` is 128). Levels 3-5
    of a hop use ``hop_m``/``hop_s`` (:func:`hop_shrink`; windows of ``l2 + h2 + r2``
    cA2 values). Levels 1-2 are computed on linear copies of the ring segments they
    read. Returns the denoised output ``den`` and the raw input aligned with it ``raw``
    (a multiple of ``qbin`` samples in all) and ``ahead``, the ``look`` input samples
    after them.
    """
    n_new = x_new.size
    lo = (lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7])  # values: no aliasing with rings
    hi = (hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7])
    cap = n_new + RING
    outs = np.empty(2 * cap)  # one allocation: denoised output, raw input aligned with it
    den = outs[:cap]
    raw = outs[cap:]
    n_out = 0
    core = l2 + h2 + r2
    # scratch, one allocation: linear input / cA1 segments, coefficients, median blocks,
    # hop windows, a hop, the look-ahead
    n_win = _PIECE // 2 + core + h2
    sc = np.empty(2 * _PIECE + 16 + 2 * _PIECE + 2 * sig_block + n_win + h2 + look)
    xs = sc[: 2 * _PIECE + 16]
    o = xs.size
    ca = sc[o : o + _PIECE]
    cd = sc[o + _PIECE : o + 2 * _PIECE]
    o += 2 * _PIECE
    blk = sc[o : o + sig_block]
    blk2 = sc[o + sig_block : o + 2 * sig_block]
    o += 2 * sig_block
    win = sc[o : o + n_win]
    hop_out = sc[o + n_win : o + n_win + h2]
    ahead = sc[o + n_win + h2 : o + n_win + h2 + look]
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
        k_end = (nX - 5) // 2 + 1
        nk = k_end - nA1
        if nk > 0:
            _gather(xr, 2 * nA1 - 3, 2 * nk + 6, xs)
            _analysis(xs, nk, lo, hi, ca, cd)
            for i in range(nk):
                a1r[(nA1 + i) & _MASK] = ca[i]
                d1r[(nA1 + i) & _MASK] = cd[i]
            # shrink, block by block: at the start of block b, the scale of block b - 1 is complete
            nsb = cnt[_CS]
            k = nA1
            while k < k_end:
                if k & (sig_block - 1) == 0 and k > 0:
                    _gather(d1r, k - sig_block, sig_block, blk)
                    guess = sig[(nsb - 1) & (_SIG_RING - 1)] * 0.6745 if nsb > 0 else 0.0
                    sig[nsb & (_SIG_RING - 1)] = _median_abs_near(blk, guess, blk2) / 0.6745
                    nsb += 1
                lam = _lam(sig, (k >> 7) - 1, lam_fac)
                seg_end = min(k_end, (k // sig_block + 1) * sig_block)
                for q in range(k, seg_end):
                    d1s[q & _MASK] = _shrink(cd[q - nA1], lam)
                k = seg_end
            cnt[_CS] = nsb
            nA1 = k_end
            cnt[_C1] = nA1
        # level 2 (shrunk cD2 at cD1 position 2k)
        nA2 = cnt[_C2]
        k_end = (nA1 - 5) // 2 + 1
        nk = k_end - nA2
        if nk > 0:
            _gather(a1r, 2 * nA2 - 3, 2 * nk + 6, xs)
            _analysis(xs, nk, lo, hi, ca, cd)
            for i in range(nk):
                k = nA2 + i
                a2r[k & _MASK] = ca[i]
                d2s[k & _MASK] = _shrink(cd[i], _lam(sig, ((2 * k) >> 7) - 1, lam_fac))
            nA2 = k_end
            cnt[_C2] = nA2
        # levels 3-5: windows of cA2 (left l2, hop h2, right r2, mirrored)
        nB = cnt[_CB]
        b_end = ((nA2 - r2) // h2) * h2
        if b_end > nB:
            _gather(a2r, nB - l2, b_end - nB + l2 + r2, win)
            for s in range(nB, b_end, h2):
                hop_shrink(win[s - nB : s - nB + core], hop_m, hop_s, _lam(sig, ((2 * s) >> 7) - 1, lam_fac), hop_out)
                for q in range(h2):
                    a2dr[(s + q) & _MASK] = hop_out[q]
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
            den[n_out] = _ring_syn(a1dr, d1s, n, lo, hi)
            raw[n_out] = xr[n & _MASK]
            n_out += 1
        if n_end > nY:
            cnt[_CY] = n_end
    nY = cnt[_CY]
    for q in range(look):
        ahead[q] = xr[(nY + q) & _MASK]
    return den[:n_out], raw[:n_out], ahead
