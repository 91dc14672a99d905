"""RR-interval features of a beat.

For beat ``i`` with RR intervals known up to ``RR_next = R_{i+1} - R_i``:

- ``rr_prev_s``, ``rr_next_s``: the intervals before and after the beat (s);
- ``rr_local_mean_s``: mean of the last ``RR_LOCAL_N`` (= 8) intervals ending with
  ``RR_next`` (fewer at the start of a stream) (s);
- ``rr_irregularity``: RMSSD of those intervals divided by their mean (unitless;
  about 0.02-0.05 in sinus rhythm, > 0.1 in atrial fibrillation or ectopy). RMSSD is
  the root mean square of successive RR differences (Task Force of the ESC/NASPE 1996,
  Circulation 93(5):1043-1065).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["RR_LOCAL_N", "ecg_rr_features"]

RR_LOCAL_N = 8


def ecg_rr_features(rr_samples: Sequence[int], fs: float) -> tuple[float, float]:
    """Local mean RR (s) and normalised RMSSD of the given intervals.

    Parameters
    ----------
    rr_samples : sequence of int
        The last (up to ``RR_LOCAL_N``) RR intervals in samples, oldest first, at
        least one.
    fs : float
        Sampling frequency (Hz).

    Returns
    -------
    rr_local_mean_s : float
        Mean RR (s).
    rr_irregularity : float
        RMSSD / mean RR (unitless), 0 with fewer than two intervals.
    """
    n = len(rr_samples)
    mean = sum(rr_samples) / n / fs
    if n < 2 or mean <= 0.0:
        return mean, 0.0
    ss = sum((rr_samples[i + 1] - rr_samples[i]) ** 2 for i in range(n - 1)) / (n - 1)
    return mean, math.sqrt(ss) / fs / mean
