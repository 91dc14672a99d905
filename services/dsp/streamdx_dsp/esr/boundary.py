"""Plasma / red-cell boundary tracking in camera frames of a vertical ESR tube (pure core).

Pipeline per frame (after Westergren 1921's visual reading, automated as in seed 000):

1. **Tube ROI** — configured, or detected once on the first frame as the largest
   red-dominant blob (``R - G`` high), shrunk to its central half horizontally to avoid the
   walls, graduation ticks and specular stripe, and padded vertically so that the meniscus and
   the plunger face stay inside under small camera shifts.
2. **Row profile** — the per-row median over the ROI columns of the green channel (plasma is
   bright in green, red cells and the plunger are dark) and of the red channel (red cells are
   bright in red, the plunger is dark).
3. **Per-frame Otsu** (Otsu 1979) on the ROI green values splits bright (plasma / air) from
   dark (cells / plunger); the class separability ``eta = sigma_B^2 / sigma_T^2`` feeds the
   confidence and the threshold brackets the search.
4. **Boundary** — the strongest bright→dark transition along gravity (most negative forward
   difference of the lightly smoothed green profile) above the plunger face, with sub-pixel
   refinement by a parabola through the difference peak and its neighbours. The plunger face
   (strongest red→dark transition of the red profile) is found the same way and is the
   reference that cancels small vertical camera shifts.
5. **Normalisation and temporal consistency** — ``height = (bottom - boundary) /
   (bottom_0 - boundary_0)``, relative to the first tracked frame. The boundary cannot rise
   (red cells only settle), so a height above an earlier one (or below a later one, for
   out-of-order frames) is clamped to the bound and the confidence is lowered by the
   violation.

All positions use the pixel-centre convention: row ``i`` spans ``[i - 0.5, i + 0.5]``.

References
----------
Westergren A. Acta Med Scand 1921;54:247–282.
Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst Man Cybern
    1979;9:62–66.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BoundaryResult",
    "EsrTrackerState",
    "Roi",
    "boundary_error_px",
    "esr_boundary_track",
    "esr_roi_detect",
    "esr_tracker_init",
]

#: Tolerance (pixels) on an apparent rise of the boundary before the confidence drops.
RISE_TOLERANCE_PX = 0.5
#: Smallest column (pixels) accepted as a first-frame reference.
MIN_COLUMN_PX = 20.0


@dataclass(frozen=True)
class Roi:
    """Tube region of interest ``[x0, x1) x [y0, y1)`` in frame pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if self.x1 - self.x0 < 1 or self.y1 - self.y0 < 8 or self.x0 < 0 or self.y0 < 0:
            raise ValueError(f"invalid ROI {self}")


@dataclass(frozen=True)
class BoundaryResult:
    """Boundary measured in one frame.

    Attributes
    ----------
    minute : int
        Minute of the frame.
    boundary_px : float
        Boundary row in the frame (pixels, sub-pixel), after temporal consistency.
    height : float
        Red-cell column height normalised to the first tracked frame (= 1 there).
    confidence : float
        0..1 — Otsu separability x edge contrast x temporal consistency.
    bottom_px : float
        Row of the plunger face (bottom of the column) found in this frame.
    raw_boundary_px : float
        Boundary before the temporal-consistency clamp.
    """

    minute: int
    boundary_px: float
    height: float
    confidence: float
    bottom_px: float
    raw_boundary_px: float


@dataclass(frozen=True)
class EsrTrackerState:
    """Serialisable per-tube tracker state.

    Attributes
    ----------
    roi : Roi or None
        Configured or detected ROI (``None`` until the first frame when detecting).
    roi_configured : bool
        Whether the ROI was given by configuration.
    bottom0_px, boundary0_px : float or None
        Reference plunger face and boundary of the first tracked frame.
    heights : dict of int to float
        Reported height of every tracked minute (for the monotonicity constraint).
    """

    roi: Roi | None = None
    roi_configured: bool = False
    bottom0_px: float | None = None
    boundary0_px: float | None = None
    heights: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary (minute keys as strings)."""
        d = asdict(self)
        d["heights"] = {str(k): v for k, v in self.heights.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EsrTrackerState:
        """Inverse of :meth:`to_dict`."""
        roi = d.get("roi")
        return cls(
            roi=Roi(**roi) if roi is not None else None,
            roi_configured=bool(d.get("roi_configured", False)),
            bottom0_px=d.get("bottom0_px"),
            boundary0_px=d.get("boundary0_px"),
            heights={int(k): float(v) for k, v in d.get("heights", {}).items()},
        )

    def dumps(self) -> str:
        """JSON string of :meth:`to_dict`."""
        return json.dumps(self.to_dict())

    @classmethod
    def loads(cls, s: str | bytes) -> EsrTrackerState:
        """Inverse of :meth:`dumps`."""
        return cls.from_dict(json.loads(s))


def esr_tracker_init(roi: Roi | None = None) -> EsrTrackerState:
    """New tracker state, with a configured ROI or ``None`` to detect it on the first frame."""
    return EsrTrackerState(roi=roi, roi_configured=roi is not None)


def esr_roi_detect(image_bgr: NDArray[np.uint8]) -> Roi:
    """Detect the tube ROI as the largest red-dominant blob, shrunk/padded (see module notes).

    Parameters
    ----------
    image_bgr : ndarray of uint8, shape (H, W, 3)
        A frame in which red cells are visible.

    Returns
    -------
    Roi

    Raises
    ------
    ValueError
        When no red column is found.
    """
    img = image_bgr.astype(np.int16)
    redness = img[:, :, 2] - img[:, :, 1]
    mask = np.asarray(
        cv2.morphologyEx((redness > 50).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)),
        dtype=np.uint8,
    )
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        raise ValueError("no red-cell column found in the frame")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    if h < MIN_COLUMN_PX or w < 3:
        raise ValueError("red-cell column too small")
    H, W = image_bgr.shape[:2]
    cx = x + w / 2.0
    half = max(1.0, w / 4.0)
    pad = max(8, int(0.04 * h))
    return Roi(
        x0=max(0, round(cx - half)),
        y0=max(0, y - pad),
        x1=min(W, round(cx + half)),
        y1=min(H, y + h + pad),
    )


def _subpixel_min(d: NDArray[np.float64], k: int) -> float:
    """Parabolic refinement of the minimum of ``d`` at index ``k`` (offset in -0.5..0.5)."""
    if k <= 0 or k >= d.shape[0] - 1:
        return 0.0
    a, b, c = d[k - 1], d[k], d[k + 1]
    den = a - 2.0 * b + c
    if den <= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def _otsu(values: NDArray[np.uint8]) -> tuple[float, float]:
    """Otsu threshold and separability ``eta`` (between-class / total variance)."""
    thr, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    v = values.astype(np.float64).ravel()
    tot = v.var()
    if tot <= 1e-9:
        return float(thr), 0.0
    lo, hi = v[v <= thr], v[v > thr]
    if lo.size == 0 or hi.size == 0:
        return float(thr), 0.0
    w0, w1 = lo.size / v.size, hi.size / v.size
    between = w0 * w1 * (lo.mean() - hi.mean()) ** 2
    return float(thr), float(np.clip(between / tot, 0.0, 1.0))


def _measure(image_bgr: NDArray[np.uint8], roi: Roi) -> tuple[float, float, float] | None:
    """Raw (boundary_px, bottom_px, confidence) of one frame, or ``None`` if not found."""
    crop = image_bgr[roi.y0 : roi.y1, roi.x0 : roi.x1]
    if crop.shape[0] < 8 or crop.shape[1] < 1:
        return None
    green = crop[:, :, 1]
    red = crop[:, :, 2].astype(np.float64)
    thr, eta = _otsu(green)
    g_med = np.median(green.astype(np.float64), axis=1)
    r_med = np.median(red, axis=1)
    g_prof = np.asarray(cv2.GaussianBlur(g_med.reshape(-1, 1), (1, 5), 0.8), dtype=np.float64).ravel()
    r_prof = np.asarray(cv2.GaussianBlur(r_med.reshape(-1, 1), (1, 5), 0.8), dtype=np.float64).ravel()
    # Plunger face: the lowest strong drop of red going down (at least half the strongest one;
    # the plasma→cells edge also drops in red but always lies above the plunger face).
    dr = np.diff(r_prof)
    strong = np.flatnonzero(dr <= 0.5 * dr.min())
    if dr.min() >= 0 or strong.size == 0:
        return None
    last = int(strong[-1])
    lo = max(0, last - 4)
    kb = lo + int(np.argmin(dr[lo : last + 1]))
    bottom = kb + 0.5 + _subpixel_min(dr, kb)
    # Boundary: strongest bright→dark drop of green above the plunger face whose upper side is
    # in Otsu's bright class and lower side in the dark class.
    dg = np.diff(g_prof)
    limit = max(1, kb - 2)
    cand = dg[:limit].copy()
    above = g_prof[:limit]
    below = g_prof[1 : limit + 1]
    cand[~((above > thr - 10) & (below < thr + 10))] = 0.0
    if cand.size == 0 or cand.min() >= 0:
        return None
    k = int(np.argmin(cand))
    boundary = k + 0.5 + _subpixel_min(dg, k)
    # Edge contrast: plasma level above vs cell level below, over a few rows.
    up = g_prof[max(0, k - 6) : k - 1]
    dn = g_prof[k + 3 : min(limit, k + 9)]
    contrast = float(np.median(up) - np.median(dn)) if up.size and dn.size else 0.0
    conf = eta * float(np.clip(contrast / 80.0, 0.0, 1.0))
    return roi.y0 + boundary, roi.y0 + bottom, conf


def esr_boundary_track(
    state: EsrTrackerState, image_bgr: NDArray[np.uint8], minute: int
) -> tuple[EsrTrackerState, BoundaryResult]:
    """Track the boundary in one frame.

    Parameters
    ----------
    state : EsrTrackerState
        Current per-tube state (not modified; a new state is returned).
    image_bgr : ndarray of uint8, shape (H, W, 3)
        Decoded BGR frame.
    minute : int
        Minute after filling.

    Returns
    -------
    EsrTrackerState
        Updated state.
    BoundaryResult
        Measurement of this frame (confidence 0 when no boundary could be found; the height
        is then carried over from the nearest earlier minute).
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError("expected an (H, W, 3) BGR image")
    roi = state.roi
    if roi is None:
        try:
            roi = esr_roi_detect(image_bgr)
        except ValueError:
            return state, BoundaryResult(minute, float("nan"), _carry(state, minute), 0.0, float("nan"), float("nan"))
        state = replace(state, roi=roi)
    meas = _measure(image_bgr, roi)
    if meas is None:
        return state, BoundaryResult(minute, float("nan"), _carry(state, minute), 0.0, float("nan"), float("nan"))
    boundary, bottom, conf = meas
    if state.bottom0_px is None or state.boundary0_px is None:
        if bottom - boundary < MIN_COLUMN_PX:
            return state, BoundaryResult(minute, boundary, 1.0, 0.0, bottom, boundary)
        state = replace(state, bottom0_px=bottom, boundary0_px=boundary)
    assert state.bottom0_px is not None and state.boundary0_px is not None
    col0 = state.bottom0_px - state.boundary0_px
    raw_h = (bottom - boundary) / col0
    upper = min((h for m, h in state.heights.items() if m < minute), default=np.inf)
    lower = max((h for m, h in state.heights.items() if m > minute), default=-np.inf)
    h = float(np.clip(raw_h, lower, upper)) if lower <= upper else float(raw_h)
    violation_px = abs(raw_h - h) * col0
    conf *= float(np.exp(-max(violation_px - RISE_TOLERANCE_PX, 0.0)))
    heights = dict(state.heights)
    heights[minute] = h
    state = replace(state, heights=heights)
    result = BoundaryResult(
        minute=minute,
        boundary_px=float(bottom - h * col0),
        height=h,
        confidence=float(np.clip(conf, 0.0, 1.0)),
        bottom_px=float(bottom),
        raw_boundary_px=float(boundary),
    )
    return state, result


def _carry(state: EsrTrackerState, minute: int) -> float:
    earlier = [m for m in state.heights if m <= minute]
    return state.heights[max(earlier)] if earlier else 1.0


def boundary_error_px(results: list[BoundaryResult], truths_px: list[float]) -> NDArray[np.float64]:
    """Absolute boundary errors (pixels) of tracked frames against ground-truth rows."""
    if len(results) != len(truths_px):
        raise ValueError("results and truths differ in length")
    return np.abs(np.array([r.boundary_px for r in results]) - np.asarray(truths_px, dtype=np.float64))
