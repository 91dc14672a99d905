"""Layout of the R-peak detector's numeric state vector (:attr:`RPeakState.buf`).

The detector's decision scalars and its QRS-filter memories live in one float64 vector,
so that the stream's compiled step reads and updates them in place instead of receiving
nine scalars and three arrays from Python and returning the scalars (numba unboxes every
argument and boxes every result). Integer entries are sample indices or counts, exact in
float64 (below 2**53).
"""

from __future__ import annotations

__all__ = [
    "BUF_CAND_NEXT",
    "BUF_FEAT_START",
    "BUF_F_TAIL",
    "BUF_LAST_R",
    "BUF_LAST_SLOPE",
    "BUF_NPK",
    "BUF_RR_N",
    "BUF_SB_N",
    "BUF_SB_NEXT",
    "BUF_SPK",
    "BUF_SQ_TAIL",
    "BUF_ZI",
    "buf_length",
]

BUF_FEAT_START = 0
BUF_CAND_NEXT = 1
BUF_SPK = 2
BUF_NPK = 3
BUF_LAST_R = 4
BUF_LAST_SLOPE = 5
BUF_RR_N = 6
BUF_SB_N = 7
BUF_SB_NEXT = 8
#: QRS filter state (4 values, transposed direct form II).
BUF_ZI = 9
#: Last 4 QRS-filtered samples (derivative memory).
BUF_F_TAIL = 13
#: Last ``mwi - 1`` absolute-slope samples (integration memory), to the end.
BUF_SQ_TAIL = 17


def buf_length(mwi: int) -> int:
    """Length of the state vector for a moving-window integral of ``mwi`` samples."""
    return BUF_SQ_TAIL + mwi - 1
