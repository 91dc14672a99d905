"""ESR camera pipeline: plasma / red-cell boundary tracking core (pure; cv2 + numpy)."""

from streamdx_dsp.esr.boundary import (
    BoundaryResult,
    EsrTrackerState,
    Roi,
    boundary_error_px,
    esr_boundary_track,
    esr_roi_detect,
    esr_tracker_init,
)

__all__ = [
    "BoundaryResult",
    "EsrTrackerState",
    "Roi",
    "boundary_error_px",
    "esr_boundary_track",
    "esr_roi_detect",
    "esr_tracker_init",
]
