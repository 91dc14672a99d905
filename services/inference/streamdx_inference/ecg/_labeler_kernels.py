"""Compiled (numba) kernel of the labeler's decisions (:mod:`streamdx_inference.ecg.labeler`).

The per-stream recurrences of :meth:`~streamdx_inference.ecg.labeler.EcgLabeler.label_batch`
(the smoothed probability of unreadable signal, the smoothed AF probability, stream
restarts), beat by beat in float64, the same arithmetic as the Python loop they replaced
(a test compares them).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamdx.numba_jit import jit_kernel

__all__ = ["label_pass"]


@jit_kernel
def label_pass(
    counts: npt.NDArray[np.int64], reset: npt.NDArray[np.bool_], dsp_bad: npt.NDArray[np.bool_],
    pq: npt.NDArray[np.float64], pa: npt.NDArray[np.float64], af_state: npt.NDArray[np.float64],
    q_state: npt.NDArray[np.float64], q_threshold: float, af_threshold: float, q_alpha: float, af_alpha: float,
    ok: npt.NDArray[np.bool_], prob: npt.NDArray[np.float64], in_af: npt.NDArray[np.bool_],
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Each stream's beats in order: ``ok`` (readable), ``prob`` (the smoothed AF probability of a
    readable beat, the raw one of an unreadable beat) and ``in_af``; ``af_state`` and ``q_state``
    (one per stream: the smoothed AF probability, -1 before the first readable beat, and the
    smoothed unreadable probability) are updated in place."""
    g = 0
    for s in range(counts.size):
        smooth = af_state[s]
        qs = q_state[s]
        for _ in range(counts[s]):
            if reset[g]:
                smooth = -1.0
                qs = 1.0
            p_q = pq[g]
            qs += q_alpha * ((1.0 if dsp_bad[g] else p_q) - qs)
            raw = pa[g]
            if dsp_bad[g] or p_q > q_threshold or qs > q_threshold:
                ok[g] = False
                prob[g] = raw
                in_af[g] = False
            else:
                smooth = raw if smooth < 0 else smooth + af_alpha * (raw - smooth)
                ok[g] = True
                prob[g] = smooth
                in_af[g] = smooth > af_threshold
            g += 1
        af_state[s] = smooth
        q_state[s] = qs
