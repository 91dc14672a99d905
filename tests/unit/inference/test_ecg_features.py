"""The shared ECG feature function: batching invariance, causality, state round trip, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdx_inference.ecg.features import (
    AMP_ALPHA,
    CAUSAL_SCALARS,
    N_SCALARS,
    RESEED_AFTER,
    RR_ALPHA,
    RR_CONTEXT,
    SCALAR_RR_NEXT,
    TEMPLATE_ALPHA,
    EcgBeatBatch,
    EcgContext,
    EcgFeatures,
    ecg_beat_features,
    ecg_beat_features_batch,
    ecg_beat_features_many,
    ecg_context_init,
)

_T = np.linspace(-1, 2, 300)
#: A wide, inverted beat (PVC-like): its QRS deviates from a template of normal beats.
_ODD = (-1.5 * np.exp(-((_T - 0.02) / 0.12) ** 2)).astype(np.float32)


def _beats(n: int, seed: int = 0, odd: bool = False, gain: tuple[float, float] = (0.5, 2.0)) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Normal beats of random ``gain``; with ``odd``, PVC-like ones at 0, 20-26 (a run: the
    template is replaced) and 50, 52, 54 (bigeminy: it is not)."""
    rng = np.random.default_rng(seed)
    t = _T
    waves = np.stack([rng.uniform(*gain) * np.exp(-((t) / 0.03) ** 2) + 0.2 * np.exp(-((t + 0.5) / 0.05) ** 2)
                      + rng.normal(0, 0.02, 300) for _ in range(n)]).astype(np.float32)
    if odd:
        for i in (0, *range(20, 27), 50, 52, 54):
            if i < n:
                waves[i] = _ODD * rng.uniform(0.8, 1.2)
    rr = rng.uniform(0.5, 1.2, n)
    rr_next = np.concatenate((rr[1:], [0.8]))
    q = np.tile(np.array([0, 0, 0.01, 0.1, 0.95], np.float32), (n, 1))
    return waves, rr, rr_next, q


def _run(cuts: list[int], n: int, roundtrip: bool) -> EcgFeatures:
    w, rp, rn, q = _beats(n, odd=True)
    ctx = ecg_context_init()
    parts = []
    bounds = [0, *sorted(set(cuts)), n]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        ctx, f = ecg_beat_features(ctx, w[a:b], rp[a:b], rn[a:b], q[a:b])
        parts.append(f)
        if roundtrip:
            ctx = EcgContext.from_dict(ctx.to_dict())
    return EcgFeatures.concat(parts)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=79), max_size=8), st.booleans())
def test_features_do_not_depend_on_batching(cuts: list[int], roundtrip: bool) -> None:
    whole = _run([], 80, False)
    split = _run(cuts, 80, roundtrip)
    np.testing.assert_allclose(split.wave, whole.wave, atol=1e-5)
    np.testing.assert_allclose(split.rr, whole.rr, atol=1e-6)
    np.testing.assert_allclose(split.scalars, whole.scalars, atol=1e-5)


def test_shapes_and_causality() -> None:
    w, rp, rn, q = _beats(50)
    _, f = ecg_beat_features(ecg_context_init(), w, rp, rn, q)
    assert f.wave.shape == (50, 2, 300) and f.rr.shape == (50, 3, RR_CONTEXT) and f.scalars.shape == (50, N_SCALARS)
    assert f.wave.dtype == np.float32 and np.isfinite(f.scalars).all()
    # the RR context of beat i ends with its own RR_prev; the mask counts the known intervals
    assert f.rr[0, 1].sum() == 1 and f.rr[40, 1].sum() == RR_CONTEXT
    # changing later beats (and every RR_next) changes no causal feature of earlier beats
    w2, rp2, rn2 = w.copy(), rp.copy(), rn * 1.7
    w2[30:] *= 3.0
    rp2[30:] = 0.4
    _, g = ecg_beat_features(ecg_context_init(), w2, rp2, rn2, q)
    np.testing.assert_allclose(g.wave[:30], f.wave[:30])
    np.testing.assert_allclose(g.rr[:30], f.rr[:30])
    np.testing.assert_allclose(g.scalars[:30][:, list(CAUSAL_SCALARS)], f.scalars[:30][:, list(CAUSAL_SCALARS)])
    assert not np.allclose(g.scalars[:30][:, list(SCALAR_RR_NEXT)], f.scalars[:30][:, list(SCALAR_RR_NEXT)])


def test_reset_clears_the_context() -> None:
    w, rp, rn, q = _beats(40)
    reset = np.zeros(40, bool)
    reset[25] = True
    _, f = ecg_beat_features(ecg_context_init(), w, rp, rn, q, reset)
    _, g = ecg_beat_features(ecg_context_init(), w[25:], rp[25:], rn[25:], q[25:])
    np.testing.assert_allclose(f.take(np.arange(25, 40)).scalars, g.scalars, atol=1e-6)
    np.testing.assert_allclose(f.take(np.arange(25, 40)).wave, g.wave, atol=1e-6)


def test_irregular_rr_shows_in_the_sequence() -> None:
    w, _, _, q = _beats(64)
    regular = np.full(64, 0.8)
    irregular = np.random.default_rng(3).uniform(0.4, 1.2, 64)
    _, f = ecg_beat_features(ecg_context_init(), w, regular, regular, q)
    _, g = ecg_beat_features(ecg_context_init(), w, irregular, irregular, q)
    assert np.abs(f.rr[-1, 0]).max() < 1e-6 and g.rr[-1, 0].std() > 0.2
    assert f.scalars[-1, 3] < 1e-6 < 0.2 < g.scalars[-1, 3]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda w, rp, rn, q: (w[:, :200], rp, rn, q), "expected"),
        (lambda w, rp, rn, q: (np.where(np.arange(300) == 5, np.nan, w), rp, rn, q), "finite"),
        (lambda w, rp, rn, q: (w, -rp, rn, q), "positive"),
        (lambda w, rp, rn, q: (w, rp, rn, q[:, :3]), "expected"),
    ],
)
def test_bad_input_is_rejected(mutate: object, match: str) -> None:
    args = mutate(*_beats(5))  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        ecg_beat_features(ecg_context_init(), *args)


def test_context_validation() -> None:
    ctx, _ = ecg_beat_features(ecg_context_init(), *_beats(5))
    d = ctx.to_dict()
    back = EcgContext.from_dict(d)
    np.testing.assert_array_equal(back.rr, ctx.rr)
    np.testing.assert_array_equal(back.dev, ctx.dev)
    assert back.rr.dtype == back.dev.dtype == np.float64 and back.rr.size == 5
    with pytest.raises(ValueError):
        EcgContext.from_dict({**d, "rr_mean_s": float("nan")})
    with pytest.raises(ValueError):
        EcgContext.from_dict({**d, "template": "AAAA"})
    assert EcgContext.from_dict({**d, "odd": 2}).odd == 2
    assert EcgContext.from_dict({k: v for k, v in d.items() if k != "odd"}).odd == 0  # a context saved before
    for bad in (-1, RESEED_AFTER, 1.5, "2", True):
        with pytest.raises(ValueError, match="odd"):
            EcgContext.from_dict({**d, "odd": bad})


def test_a_run_of_deviating_beats_replaces_the_template() -> None:
    """An atypical first beat, or a run of RESEED_AFTER beats of a new shape, becomes the template;
    isolated ectopic beats (bigeminy) do not."""
    w, rp, rn, q = _beats(60, odd=True, gain=(0.9, 1.1))
    ctx, f = ecg_beat_features(ecg_context_init(), w, rp, rn, q)
    dev = f.rr[:, 2, -1]
    gate = np.log1p(0.5)
    # beat 0 (odd) seeds the template: beats 1-4 deviate, the 4th of them replaces it
    assert (dev[1 : 1 + RESEED_AFTER] >= gate).all()
    np.testing.assert_array_equal(f.wave[RESEED_AFTER, 1], f.wave[RESEED_AFTER, 0])
    assert (dev[RESEED_AFTER + 1 : 20] < gate).all()
    # the run 20-26 takes over the template at its 4th beat; back to normal 4 beats after it
    assert (dev[20 : 20 + RESEED_AFTER] >= gate).all() and (dev[20 + RESEED_AFTER : 27] < gate).all()
    assert (dev[27 : 27 + RESEED_AFTER] >= gate).all() and (dev[27 + RESEED_AFTER : 50] < gate).all()
    # bigeminy: every odd beat deviates, every normal one does not
    assert (dev[[50, 52, 54]] >= gate).all() and (dev[[51, 53, 55]] < gate).all()
    assert ctx.odd == 0
    # without the re-seeding the first beat's shape would have stayed: a stream cut after 3 deviating
    # beats carries the count on
    c3, _ = ecg_beat_features(ecg_context_init(), w[:RESEED_AFTER], rp[:RESEED_AFTER], rn[:RESEED_AFTER],
                              q[:RESEED_AFTER])  # fmt: skip
    assert c3.odd == RESEED_AFTER - 1


def test_an_ectopic_shape_deviates_from_the_template() -> None:
    w, rp, rn, q = _beats(40)
    t = np.linspace(-1, 2, 300)
    w[30] = (-1.5 * np.exp(-((t - 0.02) / 0.12) ** 2)).astype(np.float32)  # wide, inverted: PVC-like
    _, f = ecg_beat_features(ecg_context_init(), w, rp, rn, q)
    dev = f.rr[:, 2, -1]  # each beat's own deviation is the last entry of its context
    assert dev[30] > 3 * np.median(dev[5:30]) and dev[30] > 0.5
    np.testing.assert_allclose(f.rr[31, 2, -2], dev[30])  # and it stays in the next beats' context


def _reference_sequential(ctx: EcgContext, w: np.ndarray, rp: np.ndarray, reset: np.ndarray) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, EcgContext
]:  # fmt: skip
    """The feature function's sequential part written as the plain per-beat loop of its definition
    (module docstring): normalised waves, templates, RR windows and QRS-deviation windows."""
    a_run, m_run, hist, t, dh = ctx.amp_mv, ctx.rr_mean_s, list(ctx.rr), ctx.template.copy(), list(ctx.dev)
    odd = ctx.odd
    waves, tpls, rrw, devw = [], [], [], []
    rp = np.clip(rp, 0.1, 10.0)
    for i in range(rp.size):
        if reset[i]:
            a_run, m_run, hist, t, dh, odd = 0.0, 0.0, [], np.zeros(0, np.float32), [], 0
        x = w[i] - np.median(w[i])
        amp = max(float(np.abs(x[95:106]).max()), 1e-3)
        scale = a_run if a_run > 0 else amp
        a_run = amp if a_run <= 0 else a_run + AMP_ALPHA * (amp - a_run)
        m_run = rp[i] if m_run <= 0 else m_run + RR_ALPHA * (rp[i] - m_run)
        hist = [*hist, float(rp[i])][-RR_CONTEXT:]
        x = np.clip(x / np.float32(scale), -8, 8).astype(np.float32)
        if t.size == 0:
            t = x.copy()
        diff = (x - t)[70:160].astype(np.float64)
        tq = t[70:160].astype(np.float64)
        dev = float(np.log1p(min(10.0, np.sqrt(diff @ diff / (tq @ tq + 1e-6)))))
        dh = [*dh, dev][-RR_CONTEXT:]
        odd = 0 if dev < np.log1p(0.5) else odd + 1
        if odd >= RESEED_AFTER:  # a run of deviating beats replaces the template
            t, odd = x.copy(), 0
        else:
            rate = TEMPLATE_ALPHA if dev < np.log1p(0.5) else TEMPLATE_ALPHA / 4
            t = (t + np.float32(rate) * (x - t)).astype(np.float32)
        waves.append(x)
        tpls.append(t)
        rrw.append(np.r_[np.full(RR_CONTEXT - len(hist), np.nan), hist])
        devw.append(np.r_[np.zeros(RR_CONTEXT - len(dh)), dh])
    out = EcgContext(rr=np.array(hist, np.float64), rr_mean_s=m_run, amp_mv=a_run, template=t,
                     dev=np.array(dh, np.float64), odd=odd)  # fmt: skip
    return np.array(waves), np.array(tpls), np.array(rrw), np.array(devw), out


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1)), min_size=1, max_size=6), min_size=1,
                max_size=6), st.integers(0, 1000))  # fmt: skip
def test_batched_streams_equal_the_per_beat_definition(calls: list[list[tuple[int, float]]], seed: int) -> None:
    """Several streams per call, any number of beats each (0 too), resets anywhere: the
    rank-vectorised sequential part equals the plain per-beat loop, stream by stream."""
    n_streams = max(len(c) for c in calls)
    w, rp, rn, q = _beats(200, seed, odd=True)
    rng = np.random.default_rng(seed)
    ctxs = [ecg_context_init() for _ in range(n_streams)]
    refs = [ecg_context_init() for _ in range(n_streams)]
    pos = 0
    for call in calls:
        spec = call + [(0, 1.0)] * (n_streams - len(call))
        counts = [k for k, _ in spec]
        idx = (pos + np.arange(sum(counts))) % 200
        pos += sum(counts)
        reset = rng.random(idx.size) < np.repeat([p for _, p in spec], counts) * 0.3
        batch = EcgBeatBatch.of(counts, w[idx], rp[idx], rn[idx], q[idx], reset)
        ctxs, f = ecg_beat_features_batch(ctxs, batch)
        assert len(f) == idx.size
        start = 0
        for s, k in enumerate(counts):
            sl = slice(start, start + k)
            rw, rt, rr, rd, refs[s] = _reference_sequential(refs[s], w[idx][sl], rp[idx][sl], reset[sl])
            start += k
            if k == 0:
                continue
            np.testing.assert_allclose(f.wave[sl, 0], rw, atol=1e-5)
            np.testing.assert_allclose(f.wave[sl, 1], rt, atol=1e-5)
            med = np.nanmedian(rr, axis=1, keepdims=True)
            np.testing.assert_allclose(f.rr[sl, 0], np.where(np.isnan(rr), 0.0, np.log(rr / med)), atol=1e-5)
            np.testing.assert_array_equal(f.rr[sl, 1], ~np.isnan(rr))
            np.testing.assert_allclose(f.rr[sl, 2], rd, atol=1e-4)
        for c, r in zip(ctxs, refs, strict=True):
            np.testing.assert_allclose(c.rr, r.rr)
            np.testing.assert_allclose(c.dev, r.dev, atol=1e-4)
            assert c.amp_mv == pytest.approx(r.amp_mv) and c.rr_mean_s == pytest.approx(r.rr_mean_s)
            np.testing.assert_allclose(c.template, r.template, atol=1e-5)
            assert c.odd == r.odd


def test_many_streams_equal_one_stream_at_a_time() -> None:
    w, rp, rn, q = _beats(60, 3)
    cuts = (0, 20, 40)
    ctxs, feats = ecg_beat_features_many(
        [(ecg_context_init(), w[a:a + 20], rp[a:a + 20], rn[a:a + 20], q[a:a + 20], None) for a in cuts])
    for a, ctx, f in zip(cuts, ctxs, feats, strict=True):
        c1, f1 = ecg_beat_features(ecg_context_init(), w[a:a + 20], rp[a:a + 20], rn[a:a + 20], q[a:a + 20])
        np.testing.assert_array_equal(c1.rr, ctx.rr)
        np.testing.assert_array_equal(c1.dev, ctx.dev)
        np.testing.assert_array_equal(c1.template, ctx.template)
        np.testing.assert_array_equal(f1.wave, f.wave)
        np.testing.assert_array_equal(f1.scalars, f.scalars)


def test_a_batch_whose_counts_do_not_add_up_is_rejected() -> None:
    w, rp, rn, q = _beats(5)
    with pytest.raises(ValueError, match="do not add up"):
        EcgBeatBatch.of([2, 2], w, rp, rn, q)
    with pytest.raises(ValueError, match="contexts for"):
        ecg_beat_features_batch([ecg_context_init()], EcgBeatBatch.of([2, 3], w, rp, rn, q))


def test_returned_contexts_own_their_arrays() -> None:
    """A stream's context must not keep the whole batch's arrays alive (an idle stream would pin them)."""
    w, rp, rn, q = _beats(40, 5)
    ctxs, _ = ecg_beat_features_many([(ecg_context_init(), w[a:a + 20], rp[a:a + 20], rn[a:a + 20], q[a:a + 20], None)
                                      for a in (0, 20)])  # fmt: skip
    for c in ctxs:
        for arr in (c.rr, c.dev, c.template):
            assert arr.base is None and arr.flags.owndata
    assert not np.shares_memory(ctxs[0].template, ctxs[1].template)
