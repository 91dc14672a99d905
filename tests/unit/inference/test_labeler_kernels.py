"""The labeler's compiled decision pass against the Python loop it replaced (pure unit test)."""

from __future__ import annotations

import numpy as np
import pytest

from streamdx_inference.ecg._labeler_kernels import label_pass
from streamdx_inference.ecg.labeler import AF_SMOOTH_ALPHA, QUALITY_SMOOTH_ALPHA


def _python_loop(counts, reset, bad, pq, pa, af0, q0, qt, at):  # type: ignore[no-untyped-def]
    """The former per-beat loop of ``EcgLabeler.label_batch``."""
    ok, prob, in_af, af_end, q_end = [], [], [], [], []
    k = 0
    for s, n in enumerate(counts):
        smooth, qs = af0[s], q0[s]
        for _ in range(n):
            if reset[k]:
                smooth, qs = -1.0, 1.0
            p_q = pq[k]
            qs += QUALITY_SMOOTH_ALPHA * ((1.0 if bad[k] else p_q) - qs)
            raw = pa[k]
            if bad[k] or p_q > qt or qs > qt:
                ok.append(False), prob.append(raw), in_af.append(False)
            else:
                smooth = raw if smooth < 0 else smooth + AF_SMOOTH_ALPHA * (raw - smooth)
                ok.append(True), prob.append(smooth), in_af.append(smooth > at)
            k += 1
        af_end.append(smooth)
        q_end.append(qs)
    return ok, prob, in_af, af_end, q_end


@pytest.mark.parametrize("seed", range(8))
def test_label_pass_is_the_python_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, rng.integers(1, 12)).astype(np.int64)
    n = int(counts.sum())
    reset = rng.random(n) < 0.08
    bad = rng.random(n) < 0.15
    pq = np.where(rng.random(n) < 0.7, rng.random(n) * 0.2, rng.random(n))  # mostly readable
    pa = rng.random(n)
    af0 = np.where(rng.random(counts.size) < 0.3, -1.0, rng.random(counts.size))
    q0 = rng.random(counts.size)
    qt, at = 0.5, float(rng.uniform(0.3, 0.7))
    ref = _python_loop(counts.tolist(), reset.tolist(), bad.tolist(), pq.tolist(), pa.tolist(), af0.tolist(),
                       q0.tolist(), qt, at)  # fmt: skip
    ok, prob, in_af = np.empty(n, bool), np.empty(n), np.empty(n, bool)
    af_s, q_s = af0.copy(), q0.copy()
    label_pass(counts, reset, bad, pq, pa, af_s, q_s, qt, at, QUALITY_SMOOTH_ALPHA, AF_SMOOTH_ALPHA, ok, prob, in_af)
    assert ok.tolist() == ref[0] and prob.tolist() == ref[1] and in_af.tolist() == ref[2]  # bit for bit
    assert af_s.tolist() == ref[3] and q_s.tolist() == ref[4]
