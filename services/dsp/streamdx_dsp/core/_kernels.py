"""Compiled (numba) kernels of the streaming ECG core.

The per-chunk pipeline is dominated by call overhead when written as many small numpy
operations (a 1-s chunk at 360 Hz is only 360 samples), so its inner loops are
compiled with numba: IIR filters, quality statistics, detector features, candidates and
decisions, beat resampling and window statistics (the bounded-delay denoiser's kernels are
in :mod:`._wavelet_kernels`, the fused per-chunk step in :mod:`._stream_kernels`). Each kernel reproduces the
arithmetic of the numpy/scipy/PyWavelets formulation it replaces (up to rounding in
the last bits), see the stage modules for the definitions.

Compilation is lazy (first call) and cached on disk (``cache=True``): in the package's
``__pycache__`` if writable, else in ``NUMBA_CACHE_DIR`` or the user cache directory;
when no cache location is writable (read-only container), kernels are compiled in
memory at every process start (a few seconds).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from streamdx.numba_jit import jit_kernel

__all__ = [
    "beat_rows",
    "beat_rows_fixed",
    "beat_windows",
    "condition_stream",
    "detector_candidates",
    "detector_candidates_steady",
    "detector_decide",
    "dwt_denoise",
    "fixed_window_emit",
    "lfilter_tf",
    "offset_input",
    "qrs_candidates",
    "qrs_features",
    "quality_bins",
    "sos_filter_tapped",
]

_F = TypeVar("_F", bound=Callable[..., Any])
#: The stream path's kernel modules, and ``detector_buf`` whose constants they compile in.
#: numba's on-disk cache is invalidated per source file only, so a kernel that calls (and
#: inlines) one from another of these files, or reads its constants, would keep stale machine
#: code after that file changed: the caches of all of them are dropped together.
_KERNEL_MODULES = ("_kernels", "_wavelet_kernels", "_stream_kernels", "detector_buf")


def _drop_stale_kernel_cache() -> None:
    """Delete the package-cache entries of the kernel modules when any of their sources changed."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    try:
        for name in _KERNEL_MODULES:
            with open(os.path.join(here, name + ".py"), "rb") as fh:
                digest.update(fh.read())
    except OSError:
        return
    cache = os.path.join(here, "__pycache__")
    stamp = os.path.join(cache, "streamdx-kernels.sha1")
    try:
        with open(stamp) as fh:
            if fh.read() == digest.hexdigest():
                return
    except OSError:
        pass
    try:
        for f in os.listdir(cache):
            if f.split(".")[0] in _KERNEL_MODULES and f.endswith((".nbi", ".nbc")):
                os.remove(os.path.join(cache, f))
        with open(stamp, "w") as fh:
            fh.write(digest.hexdigest())
    except OSError:  # no package cache (read-only install): nothing stale to drop there
        pass


_drop_stale_kernel_cache()


def _jit(fn: _F, fastmath: frozenset[str] = frozenset()) -> _F:
    """:func:`streamdx.numba_jit.jit_kernel` (``numba.njit`` with an on-disk cache where one
    can be written, see there)."""
    return jit_kernel(fn, fastmath)


def _jit_contract(fn: _F) -> _F:
    """:func:`_jit` allowing multiply-adds to be fused (FMA) only.

    For recursive filters, whose speed is bound by the latency of each sample's chain of
    dependent operations: a fused multiply-add shortens it. Results differ from the
    separate operations in the last bits and depend on the values alone.
    """
    return _jit(fn, fastmath=frozenset({"contract"}))


def _jit_reassoc(fn: _F) -> _F:
    """:func:`_jit` allowing floating-point reassociation and contraction (FMA) only.

    For dot products, which vectorise only when their sums may be reordered. The
    results differ from the sequential order in the last bits but depend on the values
    alone (the same inputs give the same outputs); no finite-math assumptions are made.
    """
    return _jit(fn, fastmath=frozenset({"reassoc", "contract"}))


@_jit
def _copy1(dst, src):
    """``dst[:] = src`` for 1-D arrays of equal length (explicit loop: compiles faster)."""
    for i in range(src.size):
        dst[i] = src[i]


@_jit
def _median_abs(x):
    """Median of ``|x|`` (mean of the two middle values for even length), by quickselect."""
    n = x.size
    v = np.abs(x)
    k = n // 2
    hi_val = _select(v, k)
    if n % 2:
        return hi_val
    lo_val = v[0]
    for i in range(1, k):
        if v[i] > lo_val:
            lo_val = v[i]
    return (lo_val + hi_val) / 2.0


@_jit
def _select(v, k):
    """``k``-th smallest of ``v`` (reordered in place: ``v[:k]`` <= result).

    Quickselect with a three-way partition (values below, equal to, above a median-of-3
    pivot; equal runs, e.g. of a flat line, end the search at once). The partition loops
    move values with selects instead of branches: which side a value falls on is
    unpredictable, and mispredicted branches cost more than the moves.
    """
    lo = 0
    hi = v.size - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        a, b, c = v[lo], v[mid], v[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        if v[mid] == pivot:
            v[mid], v[hi] = v[hi], v[mid]
        elif v[lo] == pivot:
            v[lo], v[hi] = v[hi], v[lo]
        lt = lo  # v[lo:lt] < pivot
        for i in range(lo, hi):
            t = v[i]
            s = v[lt]
            below = t < pivot
            v[i] = s if below else t
            v[lt] = t if below else s
            lt += 1 if below else 0
        if k < lt:
            hi = lt - 1
            continue
        eq = lt  # v[lt:eq] == pivot
        for i in range(lt, hi):
            t = v[i]
            s = v[eq]
            same = t == pivot
            v[i] = s if same else t
            v[eq] = t if same else s
            eq += 1 if same else 0
        v[eq], v[hi] = v[hi], v[eq]
        if k > eq:
            lo = eq + 1
        else:
            return pivot
    return v[k]


# ------------------------------------------------------------------------ wavelet


@_jit
def _wrap(i: int, n: int) -> int:
    while i < 0:
        i += n
    while i >= n:
        i -= n
    return i


@_jit
def _pad_periodic(x, h, left, right, out):
    """``out[q] = x[(q - left) mod h]`` for ``q < h + left + right`` (x of length h)."""
    for q in range(left):
        out[q] = x[_wrap(q - left, h)]
    for i in range(h):
        out[left + i] = x[i]
    for q in range(right):
        out[left + h + q] = x[_wrap(h + q, h)]


@_jit
def _dwt_step(cur, n, lo, hi, ca, cd):
    """One periodised analysis step of ``cur[:n]`` into ``ca``/``cd`` (n // 2 each).

    Polyphase form of ``c[k] = sum_j f[j] cur[(2k + 4 - j) mod n]`` for 8-tap filters
    (db4): even/odd phases padded periodically, contiguous loop over ``k``.
    """
    mh = lo.size // 2
    h = n // 2
    pad = mh + 1
    ev = np.empty(h)
    od = np.empty(h)
    for i in range(h):
        ev[i] = cur[2 * i]
        od[i] = cur[2 * i + 1]
    ep = np.empty(h + 2 * pad)
    op = np.empty(h + 2 * pad)
    _pad_periodic(ev, h, pad, pad, ep)
    _pad_periodic(od, h, pad, pad, op)
    # taps in registers, one pass over k (summation in tap order)
    l0, l1, l2, l3, l4, l5, l6, l7 = lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7]
    g0, g1, g2, g3, g4, g5, g6, g7 = hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7]
    for k in range(h):
        e0 = ep[k + 2 + pad]
        o0 = op[k + 1 + pad]
        e1 = ep[k + 1 + pad]
        o1 = op[k + pad]
        e2 = ep[k + pad]
        o2 = op[k - 1 + pad]
        e3 = ep[k - 1 + pad]
        o3 = op[k - 2 + pad]
        ca[k] = l0 * e0 + l1 * o0 + l2 * e1 + l3 * o1 + l4 * e2 + l5 * o2 + l6 * e3 + l7 * o3
        cd[k] = g0 * e0 + g1 * o0 + g2 * e1 + g3 * o1 + g4 * e2 + g5 * o2 + g6 * e3 + g7 * o3


@_jit
def _idwt_step(ca, cd, h, lo, hi, rec):
    """Inverse of :func:`_dwt_step` (its transpose, orthogonal 8-tap wavelet) into ``rec[:2h]``."""
    mh = lo.size // 2
    s2 = lo.size // 4
    pad = mh + 1
    ap = np.empty(h + 2 * pad)
    dp = np.empty(h + 2 * pad)
    _pad_periodic(ca, h, pad, pad, ap)
    _pad_periodic(cd, h, pad, pad, dp)
    # taps in registers, written straight to rec
    l0, l1, l2, l3, l4, l5, l6, l7 = lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7]
    g0, g1, g2, g3, g4, g5, g6, g7 = hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7]
    for i in range(h):
        q = i - s2 + pad
        a0, a1, a2, a3, a4 = ap[q], ap[q + 1], ap[q + 2], ap[q + 3], ap[q + 4]
        d0, d1, d2, d3, d4 = dp[q], dp[q + 1], dp[q + 2], dp[q + 3], dp[q + 4]
        rec[2 * i] = (((l0 * a0 + g0 * d0) + (l2 * a1 + g2 * d1)) + (l4 * a2 + g4 * d2)) + (l6 * a3 + g6 * d3)
        rec[2 * i + 1] = (((l1 * a1 + g1 * d1) + (l3 * a2 + g3 * d2)) + (l5 * a3 + g5 * d3)) + (l7 * a4 + g7 * d4)


@_jit
def dwt_denoise(x, lo, hi, level, out_start, out_len):
    """Soft universal-threshold shrinkage of ``x`` (periodised DWT, see ``ecg_wavelet_denoise``).

    Same convention as ``pywt.wavedec``/``waverec`` with ``mode="periodization"``:
    ``cA[k] = sum_j lo[j] x[(2k + 4 - j) mod n]``, idem ``cD`` with ``hi``, for an
    orthogonal 8-tap wavelet (db4); the inverse is the transpose. ``len(x)``
    must be a multiple of ``2**level``. Returns ``y[out_start:out_start + out_len]``.
    """
    n0 = x.size
    w = np.empty(n0)  # [cA_L | cD_L | ... | cD_1]
    cur = np.empty(n0)
    tmp = np.empty(n0)
    for i in range(n0):
        cur[i] = x[i]
    n = n0
    for _ in range(level):
        h = n // 2
        _dwt_step(cur, n, lo, hi, tmp[:h], w[h:n])
        _copy1(cur[:h], tmp[:h])
        n = h
    _copy1(w[:n], cur[:n])
    # noise scale from the finest details, universal threshold
    sigma = _median_abs(w[n0 // 2 : n0]) / 0.6745
    lam = sigma * math.sqrt(2.0 * math.log(n0))
    na = n0 >> level
    if lam > 0.0:
        for i in range(na, n0):
            c = w[i]
            m = abs(c) - lam
            if m < 0.0:
                m = 0.0
            w[i] = math.copysign(m, c)
    # inverse
    _copy1(cur[:na], w[:na])
    n = na
    for _ in range(level):
        _idwt_step(cur[:n], w[n : 2 * n], n, lo, hi, tmp)
        _copy1(cur[: 2 * n], tmp[: 2 * n])
        n = 2 * n
    return cur[out_start : out_start + out_len].copy()


# ------------------------------------------------------------------------ filters


@_jit
def sos_filter_tapped(sos, x, zi, n_tap):
    """Cascade of biquads in transposed direct form II (``scipy.signal.sosfilt``).

    Filters section by section (the same arithmetic as sample by sample through the
    cascade), keeping coefficients and delay line in registers. ``zi`` (n_sections, 2)
    is updated in place. Returns the output and the signal after the first ``n_tap``
    sections (the input itself if ``n_tap`` is 0).
    """
    ns = sos.shape[0]
    n = x.size
    y = x.copy()
    tap = y
    for s in range(ns):
        a0 = sos[s, 3]
        b0 = sos[s, 0] / a0
        b1 = sos[s, 1] / a0
        b2 = sos[s, 2] / a0
        a1 = sos[s, 4] / a0
        a2 = sos[s, 5] / a0
        z0 = zi[s, 0]
        z1 = zi[s, 1]
        for i in range(n):
            v = y[i]
            u = b0 * v + z0
            z0 = b1 * v - a1 * u + z1
            z1 = b2 * v - a2 * u
            y[i] = u
        zi[s, 0] = z0
        zi[s, 1] = z1
        if s + 1 == n_tap:
            tap = y.copy()
    if n_tap == 0:
        tap = x.copy()
    return y, tap


@_jit
def lfilter_tf(b, a, x, zi):
    """``scipy.signal.lfilter(b, a, x, zi=zi)`` (transposed direct form II, ``a[0]`` = 1).

    ``zi`` (len(a) - 1,) is updated in place.
    """
    order = a.size - 1
    n = x.size
    y = np.empty(n)
    if order == 4:  # the QRS filter: delay line in registers
        b0, b1, b2, b3, b4 = b[0], b[1], b[2], b[3], b[4]
        a1, a2, a3, a4 = a[1], a[2], a[3], a[4]
        z0, z1, z2, z3 = zi[0], zi[1], zi[2], zi[3]
        for i in range(n):
            v = x[i]
            u = b0 * v + z0
            z0 = b1 * v - a1 * u + z1
            z1 = b2 * v - a2 * u + z2
            z2 = b3 * v - a3 * u + z3
            z3 = b4 * v - a4 * u
            y[i] = u
        zi[0], zi[1], zi[2], zi[3] = z0, z1, z2, z3
        return y
    for i in range(n):
        v = x[i]
        u = b[0] * v + zi[0]
        for k in range(order - 1):
            zi[k] = b[k + 1] * v - a[k + 1] * u + zi[k + 1]
        zi[order - 1] = b[order] * v - a[order] * u
        y[i] = u
    return y


# ------------------------------------------------------------------------ detector


@_jit
def qrs_features(y, b, a, zi, f_tail, sq_tail, fs):
    """QRS band-pass (5-10 Hz), five-point derivative, absolute slope, moving-window integral.

    ``zi``, ``f_tail`` (last 4 filtered samples) and ``sq_tail`` (last ``mwi - 1``
    absolute slopes) are updated in place. Returns ``(mwi, |slope|)``, both (len(y),).
    """
    return _slope_mwi(lfilter_tf(b, a, y, zi), f_tail, sq_tail, fs)


@_jit
def _slope_mwi(f, f_tail, sq_tail, fs):
    """Derivative, absolute slope and moving-window integral of the QRS-filtered ``f``."""
    n = f.size
    fx = np.empty(n + 4)
    _copy1(fx[:4], f_tail)
    _copy1(fx[4:], f)
    k = fs / 8.0
    adv = np.empty(n)
    for i in range(n):
        adv[i] = abs((2.0 * fx[i + 4] + fx[i + 3] - fx[i + 1] - 2.0 * fx[i]) * k)
    for i in range(4):
        f_tail[i] = fx[n + i]
    m1 = sq_tail.size
    mw = m1 + 1
    sx = np.empty(m1 + n)
    _copy1(sx[:m1], sq_tail)
    _copy1(sx[m1:], adv)
    cs = np.empty(m1 + n + 1)
    cs[0] = 0.0
    acc = 0.0
    for i in range(m1 + n):
        acc += sx[i]
        cs[i + 1] = acc
    mwi = np.empty(n)
    for i in range(n):
        mwi[i] = (cs[i + mw] - cs[i]) / mw
    for i in range(m1):
        sq_tail[i] = sx[n + i]
    return mwi, adv


@_jit
def qrs_candidates(seg, w, n_eval, t0, y_hist, y_start, rb, slope, slope_start, mw):
    """Candidate peaks of the integrated signal and their features.

    Sample ``seg[w + i]`` (absolute index ``t0 + i``, ``0 <= i < n_eval``) is a
    candidate if it is > 1e-12, strictly larger than the ``w`` samples before it and
    not smaller than the ``w`` samples after it. Returns rows ``(t, height, r, slope,
    amplitude)``: ``r`` is the first largest ``|y|`` in ``[t - rb, t]``, amplitude the
    peak-to-peak of ``y`` there (float32), slope the max of ``slope`` over
    ``[t - mw, t]`` (``slope[0]`` is absolute index ``slope_start``).
    """
    idx = np.empty(n_eval, np.int64)
    cnt = 0
    for i in range(n_eval):
        v = seg[w + i]
        if not (v > 1e-12 and v > seg[w + i - 1] and v >= seg[w + i + 1]):
            continue
        ok = True
        for j in range(i, i + w):
            if seg[j] >= v:
                ok = False
                break
        if ok:
            for j in range(w + i + 1, 2 * w + i + 1):
                if seg[j] > v:
                    ok = False
                    break
        if ok:
            idx[cnt] = i
            cnt += 1
    out = np.empty((cnt, 5))
    for c in range(cnt):
        i = idx[c]
        t = t0 + i
        a0 = t - y_start - rb
        best = -1.0
        bi = 0
        hi = y_hist[a0]
        lo = y_hist[a0]
        for j in range(rb + 1):
            v32 = y_hist[a0 + j]
            av = abs(v32)
            if av > best:
                best = av
                bi = j
            if v32 > hi:
                hi = v32
            if v32 < lo:
                lo = v32
        s0 = t - slope_start - mw
        sm = slope[s0]
        for j in range(1, mw + 1):
            if slope[s0 + j] > sm:
                sm = slope[s0 + j]
        out[c, 0] = t
        out[c, 1] = seg[w + i]
        out[c, 2] = t - rb + bi
        out[c, 3] = sm
        out[c, 4] = hi - lo
    return out


# ------------------------------------------------------------------------ quality


@_jit
def _sum8(x, a):
    """Sum of ``x[a:a+8]`` in numpy's pairwise order."""
    return ((x[a] + x[a + 1]) + (x[a + 2] + x[a + 3])) + ((x[a + 4] + x[a + 5]) + (x[a + 6] + x[a + 7]))


@_jit
def quality_bins(ctx, den, ecg, hp, overlap, flat_min, clip_min, min_ptp, qbin):
    """Per-bin quality statistics of one block (see ``ecg_quality_bins``), (6, block // qbin)."""
    n = ctx.size
    m = n - 2 * overlap
    nb = m // qbin
    out = np.zeros((6, nb), np.float32)
    hf2 = np.empty(m)
    e2 = np.empty(m)
    base = np.empty(m)
    for i in range(m):
        d = ctx[overlap + i] - den[i]
        hf2[i] = d * d
        e2[i] = ecg[i] * ecg[i]
        base[i] = den[i] - hp[i]
    for k in range(nb):
        a = k * qbin
        if qbin == 8:
            out[0, k] = _sum8(hf2, a)
            out[1, k] = _sum8(e2, a)
        else:
            s0 = 0.0
            s1 = 0.0
            for j in range(a, a + qbin):
                s0 += hf2[j]
                s1 += e2[j]
            out[0, k] = s0
            out[1, k] = s1
        lo = base[a]
        hi = base[a]
        for j in range(a + 1, a + qbin):
            if base[j] < lo:
                lo = base[j]
            if base[j] > hi:
                hi = base[j]
        out[2, k] = lo
        out[3, k] = hi
    # runs of identical raw samples
    longest = 1
    run = 1
    for i in range(1, n):
        if ctx[i] == ctx[i - 1]:
            run += 1
        else:
            run = 1
        if run > longest:
            longest = run
    if longest < clip_min:
        return out
    lengths = np.empty(n, np.int64)
    s = 0
    for i in range(1, n + 1):
        if i == n or ctx[i] != ctx[i - 1]:
            for j in range(s, i):
                lengths[j] = i - s
            s = i
    hi_x = ctx[0]
    lo_x = ctx[0]
    for i in range(n):
        if ctx[i] > hi_x:
            hi_x = ctx[i]
        if ctx[i] < lo_x:
            lo_x = ctx[i]
    check_rail = hi_x - lo_x > min_ptp
    for i in range(m):
        lc = lengths[overlap + i]
        k = i // qbin
        if lc >= flat_min:
            out[4, k] += 1.0
        if check_rail and lc >= clip_min:
            xc = ctx[overlap + i]
            if xc >= hi_x or xc <= lo_x:
                out[5, k] += 1.0
    return out


# ------------------------------------------------------------------------ beats


@_jit
def beat_windows(x, x_start, bins, qbin, r, pre, post, u, v):
    """Resampled beats and window statistics (see ``ecg_segment_beats``, ``ecg_quality_windows``).

    Returns ``waves`` (k, len(u)) float32 and ``stats`` (k, 7) float64.
    """
    k = r.size
    nl = u.size
    waves = np.empty((k, nl), np.float32)
    stats = np.empty((k, 7))
    top = x.size - 1.000001
    nb = bins.shape[1]
    for b in range(k):
        rel = float(r[b] - x_start)
        p3 = pre[b] / 3.0
        q3 = 2.0 * post[b] / 3.0
        for j in range(nl):
            pos = rel + p3 * u[j]
            pos += q3 * v[j]
            if pos < 0.0:
                pos = 0.0
            if pos > top:
                pos = top
            i0 = int(pos)
            frac = pos - i0
            x0 = x[i0]
            dx = x[i0 + 1] - x0
            waves[b, j] = np.float32(np.float64(x0) + frac * np.float64(dx))
        a = (math.floor(r[b] - pre[b] / 3.0) - x_start) // qbin
        e = -((-(math.ceil(r[b] + 2.0 * post[b] / 3.0) - x_start)) // qbin)
        a = min(max(a, 0), nb - 1)
        e = min(max(e, a + 1), nb)
        s0 = 0.0
        s1 = 0.0
        s4 = 0.0
        s5 = 0.0
        mn = bins[2, a]
        mx = bins[3, a]
        for c in range(a, e):
            s0 += bins[0, c]
            s1 += bins[1, c]
            s4 += bins[4, c]
            s5 += bins[5, c]
            if bins[2, c] < mn:
                mn = bins[2, c]
            if bins[3, c] > mx:
                mx = bins[3, c]
        stats[b, 0] = s0
        stats[b, 1] = s1
        stats[b, 2] = mn
        stats[b, 3] = mx
        stats[b, 4] = s4
        stats[b, 5] = (e - a) * qbin
        stats[b, 6] = s5
    return waves, stats


@_jit
def quality_score(e_hf, e_ecg, bmin, bmax, n_flat, ns, n_clip):
    """The signal-quality rule of one beat window (the one definition; see ``quality.py``).

    Returns ``(flat, saturated, hf_noise, baseline_excursion_mv, score)``: flat when at least
    half the window is flat, saturated on any clipped sample, ``hf_noise`` = high-frequency /
    total energy, and score = (1 - hf_noise / 0.5) x (1 - (excursion - 1 mV) / 2 mV), each
    clipped to [0, 1], or 0 when flat or saturated.
    """
    flat = ns > 0 and n_flat >= 0.5 * ns
    saturated = n_clip > 0
    total = e_hf + e_ecg
    hf_noise = e_hf / total if total > 0.0 else 0.0
    excursion = bmax - bmin if ns > 0 else 0.0
    if flat or saturated:
        score = 0.0
    else:
        s_hf = min(max(1.0 - hf_noise / 0.5, 0.0), 1.0)
        s_bw = min(max(1.0 - max(excursion - 1.0, 0.0) / 2.0, 0.0), 1.0)
        score = s_hf * s_bw
    return flat, saturated, hf_noise, excursion, score


# ------------------------------------------------------------------------ fused stream steps


@_jit
def _keep_last(tail, new):
    """``tail[:] = concatenate((tail, new))[-len(tail):]`` in place (a fixed-length history)."""
    nt = tail.size
    m = new.size
    if m >= nt:
        for q in range(nt):
            tail[q] = new[m - nt + q]
    else:
        _shift_left(tail, m)
        for q in range(m):
            tail[nt - m + q] = new[q]


@_jit
def _shift_left(a, k):
    """``a[:-k] = a[k:]`` for a 1-D array, eight values at a time when ``k >= 8``.

    Written out because a loop ``a[i] = a[i + k]`` with ``k`` known only at run time
    compiles to one scalar copy per value (the overlap prevents vector copies); loading
    eight values before storing them is correct for any ``k >= 8`` and vectorises.
    """
    n = a.size
    last = n - k
    i = 0
    if k >= 8:
        while i + 8 <= last:
            s = i + k
            v0, v1, v2, v3 = a[s], a[s + 1], a[s + 2], a[s + 3]
            v4, v5, v6, v7 = a[s + 4], a[s + 5], a[s + 6], a[s + 7]
            a[i], a[i + 1], a[i + 2], a[i + 3] = v0, v1, v2, v3
            a[i + 4], a[i + 5], a[i + 6], a[i + 7] = v4, v5, v6, v7
            i += 8
    for j in range(i, last):
        a[j] = a[j + k]


@_jit_contract
def condition_stream(
    den, raw, ahead, run, rail, sos, bp_zi, b, a, rp_zi, f_tail, sq_tail, fs,
    flat_min, clip_min, min_ptp, qbin, h_ecg, h_bins,
):  # fmt: skip
    """Band-pass, quality bins, history and detector features of newly denoised samples.

    ``den`` (denoised, a multiple of ``qbin``) and ``raw`` (the input aligned with it) are
    followed by ``ahead`` (the next ``len(ahead)`` input samples). ``run`` = (value,
    length) of the run of identical input samples ending before ``raw``; ``rail`` the
    input samples before ``raw`` (fixed length) for the clipping test. A sample's run
    length counts its run backwards without limit and at most ``len(ahead)`` samples
    forwards, so it does not depend on how the stream was cut. Updates in place the
    band-pass state, the history (shifted left, the new samples appended), ``run``,
    ``rail`` and the detector memories. Returns ``(mwi, |slope|)``.

    Requires the 2-section band-pass of ``ecg_bandpass_sos`` (the high-passed signal
    after its first section is the quality rule's baseline reference)
    and the 4th-order QRS filter ``b``/``a``. One loop over the samples runs the three
    recursions (transposed direct form II, the arithmetic of :func:`sos_filter_tapped` and
    :func:`lfilter_tf` with multiply-adds fused, which shortens each sample's dependency
    chain), the per-bin quality sums and the five-point derivative; their independent
    dependency chains overlap in the CPU.
    """
    m = den.size
    look = ahead.size
    nbq = m // qbin
    hm = h_ecg.size
    mb = h_bins.shape[1]
    # history: shift left, the new samples and bins are written in place at the end
    _shift_left(h_ecg, m)
    for r in range(6):
        row = h_bins[r]
        _shift_left(row, nbq)
        for i in range(mb - nbq, mb):
            row[i] = 0.0
    e0 = hm - m
    k0 = mb - nbq
    c0 = sos[0, 3]
    p0, p1, p2, p4, p5 = sos[0, 0] / c0, sos[0, 1] / c0, sos[0, 2] / c0, sos[0, 4] / c0, sos[0, 5] / c0
    c1 = sos[1, 3]
    q0, q1, q2, q4, q5 = sos[1, 0] / c1, sos[1, 1] / c1, sos[1, 2] / c1, sos[1, 4] / c1, sos[1, 5] / c1
    u0, u1 = bp_zi[0, 0], bp_zi[0, 1]
    v0, v1 = bp_zi[1, 0], bp_zi[1, 1]
    b0, b1, b2, b3, b4 = b[0], b[1], b[2], b[3], b[4]
    a1, a2, a3, a4 = a[1], a[2], a[3], a[4]
    z0, z1, z2, z3 = rp_zi[0], rp_zi[1], rp_zi[2], rp_zi[3]
    f4, f3, f2, f1 = f_tail[0], f_tail[1], f_tail[2], f_tail[3]  # QRS-filtered, oldest first
    kd = fs / 8.0
    # absolute slope, its cumulative sums after the detector's tail, moving-window integral
    m1 = sq_tail.size
    mw = m1 + 1
    feats = np.empty(3 * m + m1 + 1)  # one allocation
    adv = feats[:m]
    mwi = feats[m : 2 * m]
    cs = feats[2 * m :]
    cs[0] = 0.0
    acc = 0.0
    for i in range(m1):
        acc += sq_tail[i]
        cs[i + 1] = acc
    for kb in range(nbq):
        s0 = 0.0
        s1 = 0.0
        lo = np.inf
        hi = -np.inf
        for i in range(kb * qbin, (kb + 1) * qbin):
            xi = den[i]
            t = p0 * xi + u0
            u0 = p1 * xi - p4 * t + u1
            u1 = p2 * xi - p5 * t
            yi = q0 * t + v0
            v0 = q1 * t - q4 * yi + v1
            v1 = q2 * t - q5 * yi
            fi = b0 * yi + z0
            z0 = b1 * yi - a1 * fi + z1
            z1 = b2 * yi - a2 * fi + z2
            z2 = b3 * yi - a3 * fi + z3
            z3 = b4 * yi - a4 * fi
            h_ecg[e0 + i] = yi
            # quality bin sums: high-frequency residue, ECG energy, baseline extremes
            dd = raw[i] - xi
            base = xi - t
            s0 += dd * dd
            s1 += yi * yi
            lo = min(lo, base)
            hi = max(hi, base)
            # five-point derivative of the QRS-filtered signal, absolute slope
            ai = abs((2.0 * fi + f1 - f3 - 2.0 * f4) * kd)
            adv[i] = ai
            acc += ai
            cs[m1 + i + 1] = acc
            f4, f3, f2, f1 = f3, f2, f1, fi
        h_bins[0, k0 + kb] = s0
        h_bins[1, k0 + kb] = s1
        h_bins[2, k0 + kb] = lo
        h_bins[3, k0 + kb] = hi
    bp_zi[0, 0], bp_zi[0, 1] = u0, u1
    bp_zi[1, 0], bp_zi[1, 1] = v0, v1
    rp_zi[0], rp_zi[1], rp_zi[2], rp_zi[3] = z0, z1, z2, z3
    f_tail[0], f_tail[1], f_tail[2], f_tail[3] = f4, f3, f2, f1
    # runs of identical input samples: a sample's run length counts its run backwards
    # without limit and at most ``look`` samples forwards. First one branch-free pass for
    # the longest run (with the carried run and ``ahead``): usually too short to flag.
    n_ext = m + look
    prev = run[0]
    back = int(run[1])
    c = back + 1 if back > 0 and raw[0] == prev else 1
    longest = c
    for j in range(1, m):
        c = c + 1 if raw[j] == raw[j - 1] else 1
        longest = max(longest, c)
    back_end = c
    pv = raw[m - 1]
    for j in range(look):
        c = c + 1 if ahead[j] == pv else 1
        pv = ahead[j]
        longest = max(longest, c)
    nr = rail.size
    if longest < clip_min:
        prev = raw[m - 1]
        back = back_end
    else:
        j = 0
        while j < m:
            rj = raw[j]
            b0 = back + 1 if back > 0 and rj == prev else 1  # run length up to j
            e = j + 1  # end of the run within raw + ahead
            while e < n_ext and (raw[e] if e < m else ahead[e - m]) == rj:
                e += 1
            stop = min(e, m)
            if b0 + e - 1 - j >= clip_min:  # the longest run length of its samples
                for q in range(j, stop):
                    lc = b0 + q - j + min(e - 1 - q, look)
                    if lc >= flat_min:
                        h_bins[4, k0 + q // qbin] += 1.0
                    if lc >= clip_min:
                        # rail: the extreme of the input over [q - len(rail), q + look]
                        hx = rj
                        lx = rj
                        for cq in range(q + 1, q + look + 1):
                            vc = raw[cq] if cq < m else ahead[cq - m]
                            hx = max(hx, vc)
                            lx = min(lx, vc)
                        for cq in range(q - nr, q):
                            vc = rail[nr + cq] if cq < 0 else raw[cq]
                            hx = max(hx, vc)
                            lx = min(lx, vc)
                        if hx - lx > min_ptp and (rj >= hx or rj <= lx):
                            h_bins[5, k0 + q // qbin] += 1.0
            back = b0 + stop - 1 - j
            prev = rj
            j = stop
    run[0] = prev
    run[1] = back
    _keep_last(rail, raw)  # the clipping test's input history
    # moving-window integral of the absolute slope (sums as in :func:`_slope_mwi`)
    for i in range(m):
        mwi[i] = (cs[i + mw] - cs[i]) / mw
    _keep_last(sq_tail, adv)
    return mwi, adv


@_jit
def _rr_stats(hist, a, b, fs):
    """Mean (s) and irregularity (RMSSD / mean) of the RR intervals ``hist[a:b]`` (samples)."""
    cnt = b - a
    tot = 0
    for i in range(a, b):
        tot += hist[i]
    mean = tot / cnt / fs
    irr = 0.0
    if cnt >= 2 and mean > 0.0:
        ss = 0
        for i in range(a, b - 1):
            d = hist[i + 1] - hist[i]
            ss += d * d
        irr = math.sqrt(ss / (cnt - 1)) / fs / mean
    return mean, irr


@_jit
def _quality_columns(stats_row, out, col):
    """The quality rule of one window into ``out[col:col + 5]`` (flat, saturated, hf, excursion, score)."""
    e_hf, e_ecg, bmin, bmax, n_flat, ns, n_clip = stats_row
    flat, saturated, hf_noise, excursion, score = quality_score(e_hf, e_ecg, bmin, bmax, n_flat, ns, n_clip)
    out[col] = 1.0 if flat else 0.0
    out[col + 1] = 1.0 if saturated else 0.0
    out[col + 2] = hf_noise
    out[col + 3] = excursion
    out[col + 4] = score


@_jit
def beat_rows_fixed(r, prev_r, rr, rr_n, x, x_start, bins, qbin, u, v, pre, post, fs):
    """Numeric part of fixed-window beat emission for the R peaks ``r`` (time order).

    ``prev_r`` is the R peak before ``r[0]`` (RR_prev of the first). ``rr`` (last
    ``rr_n`` valid intervals in samples, oldest first) is updated in place with each
    beat's RR_prev. Returns ``(waves, values, rr_n)`` with ``values`` columns ``r``
    (the R sample), ``rr_prev_s, rr_local_mean_s, rr_irregularity, flat, saturated,
    hf_noise, baseline_excursion_mv, score``; the local mean and irregularity (RMSSD /
    mean) are over the last ``len(rr)`` intervals ending with RR_prev.
    """
    n = r.size
    spans = np.empty(2 * n)  # one allocation: pre, post
    spans[:n] = pre
    spans[n:] = post
    waves, stats = beat_windows(x, x_start, bins, qbin, r, spans[:n], spans[n:], u, v)
    values = np.empty((n, 9))
    cap = rr.size
    for k in range(n):
        rp = r[k] - (prev_r if k == 0 else r[k - 1])
        for i in range(cap - 1):
            rr[i] = rr[i + 1]
        rr[cap - 1] = rp
        rr_n = min(rr_n + 1, cap)
        mean, irr = _rr_stats(rr, cap - rr_n, cap, fs)
        values[k, 0] = r[k]
        values[k, 1] = rp / fs
        values[k, 2] = mean
        values[k, 3] = irr
        _quality_columns(stats[k], values[k], 4)
    return waves, values, rr_n


@_jit
def fixed_window_emit(pending, pending_n, r_peaks, prev_r, rr, rr_n, x, x_start, bins, qbin, u, v, pre, post, fs):
    """Fixed-window emission: queue ``r_peaks`` after ``pending`` and segment those whose window is complete.

    A beat's window ends at ``ceil(R + 2 post / 3)`` (plus one sample for the interpolation);
    it is complete when the history ``x`` (from absolute index ``x_start``) reaches it.
    ``pending`` is the queue (its capacity, the first ``pending_n`` valid), updated in
    place. ``prev_r`` is the last R taken off the queue (-1: none; the stream's first R is
    only the RR_prev reference of the second). Returns ``(pending_n, prev_r, rr_n, waves,
    rows)`` with the rows of :func:`beat_rows_fixed` (R sample first) of the R peaks whose
    window is complete; ``pending_n`` is -1, and nothing is changed, if the queue would
    exceed its capacity.
    """
    pend = np.empty(pending_n + r_peaks.size, np.int64)
    pend[:pending_n] = pending[:pending_n]
    pend[pending_n:] = r_peaks
    end = x_start + x.size
    need = int(np.ceil(2.0 * post / 3.0)) + 1
    k = 0
    while k < pend.size and pend[k] + need <= end:
        k += 1
    if pend.size - k > pending.size:
        return -1, prev_r, rr_n, np.zeros((0, u.size), np.float32), np.zeros((0, 9))
    first = 1 if prev_r < 0 else 0  # the stream's first R is only a reference
    if k > first:
        ref = pend[0] if first else prev_r
        waves, values, rr_n = beat_rows_fixed(pend[first:k], ref, rr, rr_n, x, x_start, bins, qbin, u, v, pre, post, fs)
    else:
        waves, values = np.zeros((0, u.size), np.float32), np.zeros((0, 9))
    if k:
        prev_r = pend[k - 1]
    for i in range(k, pend.size):
        pending[i - k] = pend[i]
    return pend.size - k, prev_r, rr_n, waves, values


@_jit
def beat_rows(
    chain,
    first_rr_prev,
    frozen0,
    frozen_wave,
    frozen_stats,
    rr,
    rr_n,
    x,
    x_start,
    bins,
    qbin,
    u,
    v,
    cap,
    fs,
    fixed_pre=0.0,
    fixed_post=0.0,
):
    """Numeric part of beat emission for R peaks ``chain[0..n]`` (beat k = ``chain[k]``, k < n).

    ``first_rr_prev`` is the RR_prev of ``chain[0]`` (<= 0: none, the beat is not
    emitted); ``frozen0``: take the waveform/statistics of beat 0 from
    ``frozen_wave``/``frozen_stats``. ``rr`` (last ``rr_n`` valid, oldest first) is
    updated in place; returns ``(emit, waves, values, rr_n)`` with ``values`` columns
    ``rr_prev_s, rr_next_s, rr_local_mean_s, rr_irregularity, flat, saturated,
    hf_noise, baseline_excursion_mv, score`` (see ``ecg_rr_features`` and
    ``ecg_quality_score``). ``fixed_pre``/``fixed_post`` > 0 replace the capped RR
    intervals of the window formula (fixed-span window, see ``beat_window_span``).
    """
    n = chain.size - 1
    rr_prev = np.empty(n, np.int64)
    rr_next = np.empty(n, np.int64)
    for k in range(n):
        rr_next[k] = chain[k + 1] - chain[k]
        rr_prev[k] = first_rr_prev if k == 0 else rr_next[k - 1]
    emit = np.zeros(n, np.bool_)
    calc = np.zeros(n, np.bool_)
    nc = 0
    for k in range(n):
        if rr_prev[k] > 0:
            emit[k] = True
            if not (k == 0 and frozen0):
                calc[k] = True
                nc += 1
    r = np.empty(nc, np.int64)
    pre = np.empty(nc)
    post = np.empty(nc)
    j = 0
    for k in range(n):
        if calc[k]:
            r[j] = chain[k]
            if fixed_pre > 0.0:
                pre[j] = fixed_pre
                post[j] = fixed_post
            else:
                pre[j] = min(float(rr_prev[k]), cap)
                post[j] = min(float(rr_next[k]), cap)
            j += 1
    w_c, s_c = beat_windows(x, x_start, bins, qbin, r, pre, post, u, v)
    nl = u.size
    waves = np.zeros((n, nl), np.float32)
    stats = np.zeros((n, 7))
    j = 0
    for k in range(n):
        if calc[k]:
            _copy1(waves[k], w_c[j])
            _copy1(stats[k], s_c[j])
            j += 1
        elif emit[k]:
            _copy1(waves[k], frozen_wave)
            _copy1(stats[k], frozen_stats)
    values = np.zeros((n, 9))
    cap_n = rr.size
    hist = np.zeros(cap_n + n, np.int64)
    hn = 0
    for i in range(cap_n - rr_n, cap_n):
        hist[hn] = rr[i]
        hn += 1
    h0 = 0
    for k in range(n):
        hist[hn] = rr_next[k]
        hn += 1
        if hn - h0 > cap_n:
            h0 += 1
        if not emit[k]:
            continue
        mean, irr = _rr_stats(hist, h0, hn, fs)
        values[k, 0] = rr_prev[k] / fs
        values[k, 1] = rr_next[k] / fs
        values[k, 2] = mean
        values[k, 3] = irr
        _quality_columns(stats[k], values[k], 4)
    cnt = hn - h0
    for i in range(cap_n):
        rr[i] = 0
    for i in range(cnt):
        rr[cap_n - cnt + i] = hist[h0 + i]
    return emit, waves, values, cnt


@_jit
def _candidates_appended(feat, mwi, adv, feat_start, cand_next, w, mw, final, y_hist, y_start, rb):
    """``feat`` with the block appended, the decidable candidates and the new ``cand_next``
    (see :func:`detector_candidates`)."""
    nf = feat.shape[1]
    nb = mwi.size
    f = np.empty((2, nf + nb))
    _copy1(f[0, :nf], feat[0])
    _copy1(f[1, :nf], feat[1])
    _copy1(f[0, nf:], mwi)
    _copy1(f[1, nf:], adv)
    horizon = feat_start + nf + nb
    last_eval = horizon if final else horizon - w
    if last_eval > cand_next:
        a = cand_next - w - feat_start
        m = nf + nb - a
        seg = np.zeros(m + (w if final else 0))
        _copy1(seg[:m], f[0, a:])
        cands = qrs_candidates(seg, w, last_eval - cand_next, cand_next, y_hist, y_start, rb, f[1], feat_start, mw)
        cand_next = last_eval
    else:
        cands = np.zeros((0, 5))
    return f, cand_next, cands


@_jit
def detector_candidates(feat, mwi, adv, feat_start, cand_next, w, mw, final, y_hist, y_start, rb):
    """Append a block of detector features and extract the candidates that became decidable.

    ``feat`` (2, L) holds the integrated signal and absolute slope from absolute index
    ``feat_start``; candidates are tested up to ``w`` samples before the end (to the
    end with ``final``, the signal continued with zeros). Returns ``(feat, feat_start,
    cand_next, cands)`` with the features no longer needed dropped.
    """
    f, cand_next, cands = _candidates_appended(feat, mwi, adv, feat_start, cand_next, w, mw, final, y_hist, y_start, rb)
    keep_from = cand_next - w - mw - 1 - feat_start
    if keep_from > 0:
        f = f[:, keep_from:].copy()
        feat_start += keep_from
    return f, feat_start, cand_next, cands


@_jit
def detector_candidates_steady(feat, mwi, adv, feat_start, cand_next, w, mw, y_hist, y_start, rb):
    """:func:`detector_candidates` (not final) for a learned detector in its steady state,
    ``feat`` updated in place: returns ``(feat_start, cand_next, cands)``.

    Steady state: ``feat`` holds ``2 w + mw + 1`` samples and ends ``w`` after
    ``cand_next``, as every call with new samples leaves it; it then keeps that length.
    The caller checks it (``ecg_stream``'s fused step).
    """
    f, cand_next, cands = _candidates_appended(feat, mwi, adv, feat_start, cand_next, w, mw, False, y_hist, y_start, rb)
    keep_from = f.shape[1] - feat.shape[1]  # = cand_next - w - mw - 1 - feat_start in the steady state
    for j in range(feat.shape[1]):
        feat[0, j] = f[0, keep_from + j]
        feat[1, j] = f[1, keep_from + j]
    return feat_start + keep_from, cand_next, cands


@_jit
def _sb_trigger(last_r, rrl, r0, rn, sb_k, sb_extra, sb_cap):
    """First search-back time after ``last_r``: ``min(sb_k RR_avg, RR_avg + sb_extra, sb_cap)``
    later; ``sb_cap`` later while no RR interval is known (after the first QRS)."""
    if rn <= r0:
        return last_r + sb_cap
    tot = 0
    for i in range(r0, rn):
        tot += rrl[i]
    rr_avg = tot / (rn - r0)
    return last_r + int(min(sb_k * rr_avg, rr_avg + sb_extra, sb_cap))


@_jit
def detector_decide(
    cands,
    clock,
    spk,
    npk,
    last_r,
    last_slope,
    rr,
    rr_n,
    sb,
    sb_n,
    sb_next,
    c,
    refr,
    twave,
    min_amp,
    sb_k,
    sb_extra,
    sb_step,
    sb_age,
    twave_slope,
    twave_height,
    decay,
    sb_max,
    sb_cap,
):
    """Pan-Tompkins decisions over candidates in time order (see ``rpeaks._decide``).

    Search-back happens at fixed times ``sb_next`` (absolute candidate positions): the
    first ``min(sb_k RR_avg, RR_avg + sb_extra, sb_cap)`` after the last QRS (``sb_cap``
    after the first QRS, before any RR interval is known), then every
    ``sb_step`` while it finds nothing; it picks the largest rejected candidate tested
    before that time whose R lies at most ``sb_age`` before it. It runs before the first
    candidate at or after ``sb_next`` and, at the end, when ``clock`` (the first position
    not yet tested) has passed it, so the decisions do not depend on how the signal was
    cut into blocks. ``rr`` (last ``rr_n`` valid, oldest first) and the search-back pool
    ``sb`` (capacity ``sb_max`` rows, the first ``sb_n`` valid) are updated in place.
    Returns ``(r_peaks, spk, npk, last_r, last_slope, rr_n, sb_n, sb_next)``.
    """
    nc = cands.shape[0]
    cap = rr.size
    rrl = np.zeros(cap + sb_n + 2 * nc + 64, np.int64)
    r0 = 0
    rn = 0
    for i in range(cap - rr_n, cap):
        rrl[rn] = rr[i]
        rn += 1
    pool = np.empty((sb_n + nc + 1, 5))
    pn = sb_n
    for q in range(pn):
        _copy1(pool[q], sb[q])
    out = np.empty(sb_n + 2 * nc + 64, np.int64)
    no = 0
    for ci in range(nc + 1):
        t_now = clock if ci == nc else int(cands[ci, 0])
        # search-back events due before this candidate (or before the clock)
        while last_r >= 0 and no < out.size:
            if sb_next < 0:
                sb_next = _sb_trigger(last_r, rrl, r0, rn, sb_k, sb_extra, sb_cap)
            if t_now < sb_next:
                break
            thr2 = 0.5 * (npk + c * (spk - npk))
            best = -1
            best_h = thr2
            for q in range(pn):
                d = pool[q, 2] - last_r
                if (
                    pool[q, 0] < sb_next
                    and sb_next - pool[q, 2] <= sb_age
                    and pool[q, 1] > best_h
                    and d > refr
                    and pool[q, 4] >= min_amp
                    and (d > twave or pool[q, 3] >= 0.5 * last_slope)
                ):
                    best = q
                    best_h = pool[q, 1]
            if best < 0:
                # nothing to take: decay SPK if a candidate was rejected in the last step
                for q in range(pn):
                    if sb_next - sb_step <= pool[q, 0] < sb_next:
                        spk = npk + decay * (spk - npk)
                        break
                sb_next += sb_step
                continue
            spk = 0.25 * best_h + 0.75 * spk
            rbest = int(pool[best, 2])
            rrl[rn] = rbest - last_r
            rn += 1
            if rn - r0 > cap:
                r0 += 1
            last_r = rbest
            last_slope = pool[best, 3]
            out[no] = rbest
            no += 1
            sb_next = -1
            k = 0
            for q in range(pn):
                if pool[q, 2] > last_r:
                    _copy1(pool[k], pool[q])
                    k += 1
            pn = k
        if ci == nc:
            break
        h = cands[ci, 1]
        r = int(cands[ci, 2])
        s = cands[ci, 3]
        amp = cands[ci, 4]
        if last_r >= 0 and r - last_r < refr:
            continue
        thr = npk + c * (spk - npk)
        if h > thr and amp >= min_amp:
            if last_r >= 0 and r - last_r < twave and s < twave_slope * last_slope and h < twave_height * spk:
                npk = 0.125 * h + 0.875 * npk
                _copy1(pool[pn], cands[ci])
                pn += 1
            else:
                spk = 0.125 * h + 0.875 * spk
                if last_r >= 0:
                    rrl[rn] = r - last_r
                    rn += 1
                    if rn - r0 > cap:
                        r0 += 1
                last_r = r
                last_slope = s
                out[no] = r
                no += 1
                pn = 0
                sb_next = -1
        else:
            # a rejected candidate raises NPK at most towards SPK / 2 (see rpeaks step 5)
            npk = 0.125 * min(h, 0.5 * spk) + 0.875 * npk
            _copy1(pool[pn], cands[ci])
            pn += 1
        if pn > sb_max:
            for q in range(sb_max):
                _copy1(pool[q], pool[pn - sb_max + q])
            pn = sb_max
        if rn - r0 > 2 * cap or rn >= rrl.size - 2:
            # keep the RR list short (only the last ``cap`` are used)
            for i in range(cap):
                rrl[i] = rrl[rn - cap + i]
            r0 = 0
            rn = cap
    cnt = min(rn - r0, cap)
    for i in range(cap):
        rr[i] = 0
    for i in range(cnt):
        rr[cap - cnt + i] = rrl[rn - cnt + i]
    for q in range(pn):  # pn <= sb_max <= the capacity of sb
        _copy1(sb[q], pool[q])
    return out[:no], spk, npk, last_r, last_slope, cnt, pn, sb_next


@_jit
def offset_input(x, offset):
    """``x - offset`` rounded to float32 (as float64), and whether every sample of ``x`` is finite.

    One compiled pass for the finiteness check and the offset removal of a chunk.
    """
    n = x.size
    out = np.empty(n)
    for i in range(n):
        v = x[i]
        if not math.isfinite(v):
            return out, False
        out[i] = np.float64(np.float32(v - offset))
    return out, True
