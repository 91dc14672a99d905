"""The feature function's compiled kernels against the numpy formulation they replaced (pure unit tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamdx_inference.ecg._feature_kernels import beat_context_pass, center_beats
from streamdx_inference.ecg.features import AMP_ALPHA, RESEED_AFTER, RR_ALPHA, RR_CONTEXT, TEMPLATE_ALPHA

QRS, CLIP, DEV_MAX, DEV_GATE = (70, 160), 8.0, 10.0, math.log1p(0.5)


@pytest.mark.parametrize("length", [300, 301, 2, 1])
def test_center_beats_is_numpys_median_bit_for_bit(length: int) -> None:
    rng = np.random.default_rng(length)
    w = rng.normal(0, 1, (200, length)).astype(np.float32)
    w[:20] = np.round(w[:20])  # many equal values
    w[20:30] = 0.25  # all equal
    w[30:40, : length // 2] = -3.0
    out, amp = np.empty_like(w), np.empty(len(w))
    center_beats(w, out, amp, 95, 106)
    ref = w - np.median(w, axis=1, keepdims=True)
    assert np.array_equal(out, ref)
    span = ref[:, 95:106]
    ref_amp = np.maximum(np.abs(span).max(axis=1).astype(np.float64), 1e-3) if span.shape[1] else np.full(len(w), 1e-3)
    assert np.array_equal(amp, ref_amp)


def _numpy_pass(counts, starts, w, rp, amp, reset, a_run, m_run, hist, devh, tpl_run, has_tpl, n_odd):  # type: ignore[no-untyped-def]
    """The per-rank numpy loop the kernel replaced (every stream's i-th beat at once), with the
    template's re-seeding after ``RESEED_AFTER`` deviating beats in a row."""
    total = w.shape[0]
    scale, mean_prev = np.empty(total), np.empty(total)
    win, dwin = np.empty((total, RR_CONTEXT)), np.empty((total, RR_CONTEXT))
    tpl = np.empty_like(w)
    a_fast, a_slow = np.float32(TEMPLATE_ALPHA), np.float32(TEMPLATE_ALPHA / 4.0)
    lo, hi = QRS
    for i in range(int(counts.max())):
        act = np.flatnonzero(counts > i)
        g = starts[act] + i
        cleared = act[reset[g]]
        a_run[cleared], m_run[cleared], hist[cleared], devh[cleared], has_tpl[cleared] = 0.0, 0.0, np.nan, 0.0, False
        n_odd[cleared] = 0
        av, rv, ar, mr = amp[g], rp[g], a_run[act], m_run[act]
        sc = np.where(ar > 0, ar, av)
        scale[g] = sc
        mean_prev[g] = np.where(mr > 0, mr, rv)
        a_run[act] = np.where(ar > 0, ar + AMP_ALPHA * (av - ar), av)
        m_run[act] = np.where(mr > 0, mr + RR_ALPHA * (rv - mr), rv)
        hist[act, :-1] = hist[act, 1:]
        hist[act, -1] = rv
        win[g] = hist[act]
        wg = np.clip(w[g] / sc[:, None].astype(np.float32), -CLIP, CLIP)
        w[g] = wg
        new = ~has_tpl[act]
        tpl_run[act[new]] = wg[new]
        has_tpl[act[new]] = True
        t = tpl_run[act]
        tq = t[:, lo:hi]
        diff = wg[:, lo:hi] - tq
        ratio = np.sqrt((diff * diff).sum(axis=1, dtype=np.float64) / ((tq * tq).sum(axis=1, dtype=np.float64) + 1e-6))
        dev = np.log1p(np.minimum(DEV_MAX, ratio))
        devh[act, :-1] = devh[act, 1:]
        devh[act, -1] = dev
        dwin[g] = devh[act]
        rate = np.where(dev < DEV_GATE, a_fast, a_slow).astype(np.float32)
        t = t + rate[:, None] * (wg - t)
        odd = np.where(dev < DEV_GATE, 0, n_odd[act] + 1)
        reseed = odd >= RESEED_AFTER
        t[reseed] = wg[reseed]
        n_odd[act] = np.where(reseed, 0, odd)
        tpl_run[act] = t
        tpl[g] = t
    return w, tpl, scale, mean_prev, win, dwin, a_run, m_run, hist, devh, tpl_run, has_tpl, n_odd


def test_the_context_pass_matches_the_numpy_formulation() -> None:
    rng = np.random.default_rng(3)
    counts = np.array([5, 0, 17, 1, 40], np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    n, s = int(counts.sum()), counts.size
    base = np.exp(-(((np.arange(300) - 100) / 6.0) ** 2)).astype(np.float32)
    w = (base * rng.uniform(0.5, 2.0, (n, 1)) + rng.normal(0, 0.05, (n, 300))).astype(np.float32)
    w[::7] = rng.normal(0, 1, (len(w[::7]), 300))  # beats unlike the template (slow template updates)
    rp, amp = rng.uniform(0.3, 1.5, n), rng.uniform(0.2, 2.0, n)
    reset = rng.random(n) < 0.08
    # some streams carry a context from earlier beats, some start empty
    a_run, m_run = np.array([0.0, 1.1, 0.9, 0.0, 1.3]), np.array([0.0, 0.8, 0.7, 0.0, 1.0])
    hist = np.full((s, RR_CONTEXT), np.nan)
    hist[2, -5:] = rng.uniform(0.5, 1.0, 5)
    hist[4, :] = rng.uniform(0.5, 1.0, RR_CONTEXT)
    devh = np.zeros((s, RR_CONTEXT))
    devh[4] = rng.uniform(0, 1, RR_CONTEXT)
    tpl_run = np.zeros((s, 300), np.float32)
    tpl_run[[2, 4]] = base
    has_tpl = np.array([False, True, True, False, True])
    n_odd = np.array([0, 2, 3, 0, 1], np.int64)  # streams part-way into a run of deviating beats
    state = (a_run, m_run, hist, devh, tpl_run, has_tpl, n_odd)
    ref = _numpy_pass(counts, starts, w.copy(), rp, amp, reset, *(x.copy() for x in state))
    k_w, k_state = w.copy(), [x.copy() for x in state]
    outs = (np.empty_like(w), np.empty(n), np.empty(n), np.empty((n, RR_CONTEXT)), np.empty((n, RR_CONTEXT)))
    n_rr, n_dev = np.zeros(s, np.int64), np.zeros(s, np.int64)
    beat_context_pass(counts, starts, k_w, rp, amp, reset, k_state[0], k_state[1], k_state[2], k_state[3], n_rr, n_dev,
                      k_state[4], k_state[5], k_state[6], *outs, AMP_ALPHA, RR_ALPHA, TEMPLATE_ALPHA, CLIP, QRS[0],
                      QRS[1], DEV_MAX, DEV_GATE, RESEED_AFTER)  # fmt: skip
    got = (k_w, *outs, *k_state)
    for name, a, b in zip(("w", "tpl", "scale", "mean_prev", "win", "dwin", "a_run", "m_run", "hist", "devh",
                           "tpl_run", "has_tpl", "n_odd"), got, ref, strict=True):  # fmt: skip
        if name in ("dwin", "devh"):
            # log1p: numpy's vectorised one and the C library's may differ in the last bit of a double
            # (the model reads these as float32); the sums and the template are exact
            assert np.allclose(a, b, rtol=4e-16, atol=0), name
            assert np.array_equal(a.astype(np.float32), b.astype(np.float32)), name
        else:
            assert np.array_equal(a, b, equal_nan=True), name
    # beats since the stream's last reset (the reset beat included), capped at the context length
    expect = []
    for st, c in zip(starts.tolist(), counts.tolist(), strict=True):
        r = np.flatnonzero(reset[st : st + c])
        expect.append(min(RR_CONTEXT, c - (int(r[-1]) if r.size else 0)))
    assert n_rr.tolist() == expect and n_dev.tolist() == expect
