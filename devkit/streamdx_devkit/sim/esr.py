"""Simulated erythrocyte sedimentation (ESR) tubes and rendered camera frames.

Everything produced here is **simulated** (``simulated=True`` on every object): no real tube
data is available to StreamDx, so this module supplies a documented, physics-motivated
generator for tests, demos and the model comparison in
``streamdx_inference.esr.evaluation``. Labs with real series use ``streamdx train esr --csv``.

Physics (fixed before any model was compared; never tuned toward a model)
-------------------------------------------------------------------------
The plasma / red-cell boundary of anticoagulated blood standing in a vertical column falls
in three phases (Fabry 1987; Woodland et al. 1996; Pribush et al. 2010):

1. **Lag (aggregation) phase** — red cells form rouleaux; the settling velocity grows from
   zero while aggregates grow. Modelled as ``a(t) = (1 - exp(-t / tau_a))**2`` with an
   aggregation time constant ``tau_a`` that shortens as the aggregation tendency grows.
2. **Constant-rate phase** — aggregates settle at a hindered Stokes velocity. Following
   Richardson & Zaki (1954) the hindered velocity is ``v_s = v_stokes * (1 - phi)**n`` with
   ``n = 4.65``; the Stokes term scales with aggregate size, i.e. with the aggregation
   tendency ``A`` (driven mainly by fibrinogen; Fabry 1987).
3. **Packing phase** — the falling boundary meets the sediment rising from the bottom and
   decelerates towards the packed height ``h_p = L * phi0 / phi_max`` (volume conservation,
   Kynch 1952). Modelled as the factor ``1 - exp(-(h - h_p) / delta)`` with a compaction length
   ``delta`` proportional to the column length.

So ``dh/dt = -v_s * a(t) * (1 - exp(-(h - h_p) / delta))``, integrated with explicit Euler at
``dt = 0.02 min``.

Per-tube physiology: haematocrit by sex (women lower; both lowered by the anaemia of
inflammation), citrate dilution 4:1 as in the Westergren method (ICSH 1993), fibrinogen rising
with age, slightly higher in women and strongly with a random inflammation level, and a
log-normal factor for the other plasma proteins (immunoglobulins, etc.). These reproduce the
empirical rule for the upper reference limit of the Westergren ESR (Miller, Green & Robinson
1983: men ``age/2``, women ``(age + 10)/2`` mm/h) in the healthy part of the population, and
the inflamed part reaches > 100 mm/h.

The reported ``esr_mm_h`` is the Westergren-equivalent value: the same kinetics integrated in
a standard 200 mm Westergren column (Westergren 1921; ICSH 1993). The camera tube is a 1 mL
syringe whose blood column (50–58 mm) is much shorter, so its normalised heights saturate at
the packed height earlier — the column-length effect described by Woodland et al. (1996).

Frames
------
:func:`esr_frame_render` draws the syringe (air, meniscus, yellow plasma, red cells with an
anti-aliased boundary at the true height, dark plunger, graduation ticks on the wall), a
lighting gradient, Gaussian blur, sensor noise, JPEG/PNG compression and a small random camera
shift, and returns the exact boundary row of that frame as :class:`FrameTruth`.

References
----------
Westergren A. Studies of the suspension stability of the blood in pulmonary tuberculosis.
    Acta Med Scand 1921;54:247–282.
Kynch GJ. A theory of sedimentation. Trans Faraday Soc 1952;48:166–176.
Richardson JF, Zaki WN. Sedimentation and fluidisation: Part I. Trans Inst Chem Eng
    1954;32:35–53.
Miller A, Green M, Robinson D. Simple rule for calculating normal erythrocyte sedimentation
    rate. BMJ 1983;286:266.
Fabry TL. Mechanism of erythrocyte aggregation and sedimentation. Blood 1987;70:1572–1576.
ICSH. Recommendations for measurement of erythrocyte sedimentation rate. J Clin Pathol
    1993;46:198–203.
Woodland NB, Cordatos K, Hung WT, Reuben A, Holley L. Erythrocyte sedimentation in columns
    and the significance of ESR. Biorheology 1996;33:477–488.
Pribush A, Meyerstein D, Meyerstein N. The mechanism of erythrocyte sedimentation.
    Colloids Surf B 2010;75:214–223.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MINUTES",
    "WESTERGREN_COLUMN_MM",
    "FrameTruth",
    "SedimentationParams",
    "SimulatedTube",
    "TubeGeometry",
    "esr_cohort_simulate",
    "esr_frame_render",
    "esr_frame_render_array",
    "sedimentation_curve",
]

#: Minutes simulated per tube (0..60 inclusive → 61 samples).
MINUTES = 60
#: Length of the standard Westergren column (mm).
WESTERGREN_COLUMN_MM = 200.0
#: Citrate dilution of the Westergren method (4 volumes blood + 1 citrate).
CITRATE_DILUTION = 0.8
#: Richardson–Zaki hindered-settling exponent (spheres, low Reynolds number).
RZ_EXPONENT = 4.65
#: Reference settling velocity (mm/min) at ``A = 1`` and diluted haematocrit ``PHI_REF``.
V_REF_MM_MIN = 0.18
PHI_REF = 0.36
#: Aggregation time constant (min) at ``A = 1``.
TAU_REF_MIN = 8.0
#: Fibrinogen sensitivity of the aggregation tendency (per g/L) and its reference (g/L).
KAPPA_FIB = 0.45
FIB_REF = 2.5
_DT_MIN = 0.02

Sex = Literal["F", "M"]


@dataclass(frozen=True)
class SedimentationParams:
    """Physical parameters of one simulated tube.

    Attributes
    ----------
    haematocrit : float
        Whole-blood haematocrit (fraction).
    phi0 : float
        Initial red-cell volume fraction in the column after citrate dilution.
    fibrinogen_g_l : float
        Plasma fibrinogen (g/L).
    aggregation : float
        Aggregation tendency ``A`` (dimensionless, 1 = reference adult).
    v_settle_mm_min : float
        Constant-phase hindered settling velocity ``v_s`` (mm/min).
    tau_agg_min : float
        Aggregation (lag) time constant (min).
    phi_max : float
        Red-cell volume fraction of the packed sediment.
    delta_frac : float
        Compaction length as a fraction of the column length.
    """

    haematocrit: float
    phi0: float
    fibrinogen_g_l: float
    aggregation: float
    v_settle_mm_min: float
    tau_agg_min: float
    phi_max: float
    delta_frac: float


@dataclass(frozen=True)
class TubeGeometry:
    """Geometry of the camera tube (a 1 mL syringe) and of its image.

    Attributes
    ----------
    column_mm : float
        Blood column length at minute 0 (mm).
    inner_diameter_mm : float
        Syringe inner diameter (mm).
    px_per_mm : float
        Image scale (pixels per mm).
    width_px, height_px : int
        Frame size (pixels).
    center_x_px : float
        Tube axis column in the frame (pixels).
    bottom_px : float
        Row of the plunger face = bottom of the blood column (pixels, unshifted).
    """

    column_mm: float
    inner_diameter_mm: float
    px_per_mm: float
    width_px: int
    height_px: int
    center_x_px: float
    bottom_px: float


@dataclass(frozen=True)
class SimulatedTube:
    """One simulated tube: patient covariates, physics, and the 61 per-minute heights.

    Attributes
    ----------
    tube_id : str
        Identifier, unique within a cohort.
    age : float
        Age (years).
    sex : {"F", "M"}
        Sex.
    inflammation : float
        Latent inflammation level in [0, 1] (simulation only; unobservable).
    params : SedimentationParams
        Physical parameters.
    geometry : TubeGeometry
        Syringe and image geometry.
    heights : tuple of float
        True normalised red-cell column heights for minutes 0..60 (``heights[0] == 1``).
    heights_observed : tuple of float
        ``heights`` with Gaussian read-out noise (``noise_mm`` / column), clamped non-increasing
        and ``heights_observed[0] == 1`` — what a boundary tracker reports.
    esr_mm_h : float
        Westergren-equivalent ESR at 60 min (mm/h) from the same kinetics in a 200 mm column.
    seed : int
        Seed of this tube (frames derive their own seeds from it).
    simulated : bool
        Always ``True``.
    """

    tube_id: str
    age: float
    sex: Sex
    inflammation: float
    params: SedimentationParams
    geometry: TubeGeometry
    heights: tuple[float, ...]
    heights_observed: tuple[float, ...]
    esr_mm_h: float
    seed: int
    simulated: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulatedTube:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["params"] = SedimentationParams(**d["params"])
        d["geometry"] = TubeGeometry(**d["geometry"])
        d["heights"] = tuple(d["heights"])
        d["heights_observed"] = tuple(d["heights_observed"])
        return cls(**d)

    def dumps(self) -> str:
        """JSON string."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one rendered frame.

    Attributes
    ----------
    minute : int
        Minute after filling.
    boundary_px : float
        Row of the plasma / red-cell boundary in the frame, pixel-centre convention (row ``i``
        spans ``[i - 0.5, i + 0.5]``), including the camera shift.
    bottom_px : float
        Row of the bottom of the blood column (plunger face) in the frame.
    top_px : float
        Row of the meniscus on the tube axis in the frame.
    height : float
        True normalised height at this minute.
    shift_px : tuple of float
        Camera shift (dx, dy) applied to this frame (pixels).
    roi : tuple of int
        Tube interior ``(x0, y0, x1, y1)`` in frame pixels (half-open), for reference.
    simulated : bool
        Always ``True``.
    """

    minute: int
    boundary_px: float
    bottom_px: float
    top_px: float
    height: float
    shift_px: tuple[float, float]
    roi: tuple[int, int, int, int]
    simulated: bool = True


def sedimentation_curve(params: SedimentationParams, column_mm: float, minutes: int = MINUTES) -> NDArray[np.float64]:
    """Boundary height (mm above the column bottom) at each whole minute.

    Parameters
    ----------
    params : SedimentationParams
        Tube physics.
    column_mm : float
        Initial column length (mm).
    minutes : int
        Last minute (inclusive).

    Returns
    -------
    ndarray of shape (minutes + 1,)
        Heights in mm, non-increasing, ``[0] == column_mm``.

    Notes
    -----
    ``dh/dt = -v_s (1 - exp(-t/tau_a))^2 (1 - exp(-(h - h_p)/delta))`` (see module notes;
    Fabry 1987, Richardson & Zaki 1954, Kynch 1952), explicit Euler with dt = 0.02 min.
    """
    return _curves(
        np.array([params.v_settle_mm_min]),
        np.array([params.tau_agg_min]),
        np.array([params.phi0 / params.phi_max]),
        np.array([params.delta_frac]),
        np.array([column_mm]),
        minutes,
    )[0]


def _curves(
    v: NDArray[np.float64],
    tau: NDArray[np.float64],
    packed_frac: NDArray[np.float64],
    delta_frac: NDArray[np.float64],
    column_mm: NDArray[np.float64],
    minutes: int,
) -> NDArray[np.float64]:
    """Vectorised Euler integration of the boundary ODE for many tubes (mm, shape (n, m+1))."""
    h_p = column_mm * packed_frac
    delta = delta_frac * column_mm
    steps_per_min = round(1.0 / _DT_MIN)
    out = np.empty((v.shape[0], minutes + 1))
    h = column_mm.astype(np.float64).copy()
    out[:, 0] = h
    for m in range(minutes):
        for k in range(steps_per_min):
            t_mid = (m * steps_per_min + k + 0.5) * _DT_MIN
            a = (1.0 - np.exp(-t_mid / tau)) ** 2
            pack = 1.0 - np.exp(-np.maximum(h - h_p, 0.0) / delta)
            h = h - _DT_MIN * v * a * pack
        out[:, m + 1] = h
    return out


def _sample_params(rng: np.random.Generator, age: float, sex: Sex, inflammation: float) -> SedimentationParams:
    female = 1.0 if sex == "F" else 0.0
    hct = rng.normal(0.41 if female else 0.45, 0.03) - 0.10 * inflammation
    hct = float(np.clip(hct, 0.22, 0.56))
    phi0 = CITRATE_DILUTION * hct
    fib = 2.3 + 0.02 * (age - 20.0) + 0.15 * female + 5.5 * inflammation + rng.normal(0.0, 0.3)
    fib = float(max(fib, 1.5))
    other_proteins = float(np.exp(rng.normal(0.0, 0.25)))
    agg = float(np.exp(KAPPA_FIB * (fib - FIB_REF)) * other_proteins)
    hindrance = ((1.0 - phi0) / (1.0 - PHI_REF)) ** RZ_EXPONENT
    v_s = V_REF_MM_MIN * agg * hindrance
    tau = float(np.clip(TAU_REF_MIN / np.sqrt(agg), 2.0, 25.0))
    phi_max = float(np.clip(rng.normal(0.62, 0.03), 0.55, 0.70))
    delta_frac = float(rng.uniform(0.04, 0.10))
    return SedimentationParams(
        haematocrit=hct,
        phi0=phi0,
        fibrinogen_g_l=fib,
        aggregation=agg,
        v_settle_mm_min=float(v_s),
        tau_agg_min=tau,
        phi_max=phi_max,
        delta_frac=delta_frac,
    )


def _sample_geometry(rng: np.random.Generator) -> TubeGeometry:
    column_mm = float(rng.uniform(50.0, 58.0))
    px_per_mm = float(rng.uniform(7.0, 8.0))
    width = 160
    height = 560
    bottom = float(rng.uniform(490.0, 505.0))
    return TubeGeometry(
        column_mm=column_mm,
        inner_diameter_mm=4.7,
        px_per_mm=px_per_mm,
        width_px=width,
        height_px=height,
        center_x_px=float(rng.uniform(70.0, 90.0)),
        bottom_px=bottom,
    )


def esr_cohort_simulate(n: int, seed: int, noise_mm: float = 0.1) -> list[SimulatedTube]:
    """Simulate a cohort of ``n`` tubes (labelled *simulated*).

    Parameters
    ----------
    n : int
        Number of tubes.
    seed : int
        Seed; the same ``(n, seed)`` always gives the same cohort, and tube ``i`` of a cohort
        does not depend on ``n``.
    noise_mm : float
        Standard deviation of the read-out noise added to ``heights_observed`` (mm).

    Returns
    -------
    list of SimulatedTube
        Ages uniform 18–90 years, sexes 1:1, inflammation ``Beta(0.6, 1.8)`` (most tubes near
        normal, a long tail of inflamed tubes with ESR > 100 mm/h).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    root = np.random.SeedSequence(seed)
    drawn = []
    for child in root.spawn(n):
        rng = np.random.default_rng(child)
        age = float(np.round(rng.uniform(18.0, 90.0), 1))
        sex: Sex = "F" if rng.random() < 0.5 else "M"
        inflammation = float(rng.beta(0.6, 1.8))
        params = _sample_params(rng, age, sex, inflammation)
        geom = _sample_geometry(rng)
        drawn.append((rng, age, sex, inflammation, params, geom))
    if n == 0:
        return []
    v = np.array([d[4].v_settle_mm_min for d in drawn])
    tau = np.array([d[4].tau_agg_min for d in drawn])
    packed = np.array([d[4].phi0 / d[4].phi_max for d in drawn])
    dfrac = np.array([d[4].delta_frac for d in drawn])
    col = np.array([d[5].column_mm for d in drawn])
    h_mm = _curves(v, tau, packed, dfrac, col, MINUTES)
    west = _curves(v, tau, packed, dfrac, np.full(n, WESTERGREN_COLUMN_MM), MINUTES)
    tubes: list[SimulatedTube] = []
    for i, (rng, age, sex, inflammation, params, geom) in enumerate(drawn):
        heights = h_mm[i] / geom.column_mm
        esr = float(WESTERGREN_COLUMN_MM - west[i, -1])
        noisy = heights + rng.normal(0.0, noise_mm / geom.column_mm, size=heights.shape)
        noisy[0] = 1.0
        noisy = np.minimum.accumulate(noisy)
        tube_seed = int(rng.integers(0, 2**31 - 1))
        tubes.append(
            SimulatedTube(
                tube_id=f"sim-{seed}-{i:05d}",
                age=age,
                sex=sex,
                inflammation=inflammation,
                params=params,
                geometry=geom,
                heights=tuple(float(x) for x in heights),
                heights_observed=tuple(float(x) for x in noisy),
                esr_mm_h=esr,
                seed=tube_seed,
            )
        )
    return tubes


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Look:
    plasma_bgr: tuple[float, float, float]
    cells_bgr: tuple[float, float, float]
    background_bgr: tuple[float, float, float]
    wall_bgr: tuple[float, float, float]
    plunger_bgr: tuple[float, float, float]
    blur_sigma: float
    noise_sigma: float
    light_slope: float
    jpeg_quality: int
    meniscus_px: float


def _look(rng: np.random.Generator) -> _Look:
    def jitter(c: tuple[float, float, float], s: float) -> tuple[float, float, float]:
        a = np.clip(np.asarray(c) + rng.normal(0.0, s, 3), 0, 255)
        return (float(a[0]), float(a[1]), float(a[2]))

    return _Look(
        plasma_bgr=jitter((70.0, 185.0, 225.0), 10.0),
        cells_bgr=jitter((35.0, 30.0, 150.0), 8.0),
        background_bgr=jitter((205.0, 205.0, 200.0), 8.0),
        wall_bgr=jitter((180.0, 185.0, 185.0), 6.0),
        plunger_bgr=jitter((30.0, 30.0, 32.0), 4.0),
        blur_sigma=float(rng.uniform(0.7, 1.4)),
        noise_sigma=float(rng.uniform(1.5, 4.0)),
        light_slope=float(rng.uniform(-0.15, 0.15)),
        jpeg_quality=int(rng.integers(80, 95)),
        meniscus_px=float(rng.uniform(3.0, 7.0)),
    )


def _coverage_below(rows: NDArray[np.float64], edge: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Fraction of each pixel row (pixel-centre convention) lying below ``edge``."""
    return np.clip(rows + 0.5 - edge, 0.0, 1.0)


def esr_frame_render_array(
    tube: SimulatedTube, minute: int, seed: int | None = None
) -> tuple[NDArray[np.uint8], FrameTruth]:
    """Render one frame as an uncompressed BGR array (before encoding).

    Parameters
    ----------
    tube : SimulatedTube
        The tube.
    minute : int
        Minute 0..60.
    seed : int, optional
        Seed of the per-frame randomness (noise, camera shift); default derives from the
        tube seed and the minute. The per-tube look (colours, blur, lighting) depends only on
        the tube seed.

    Returns
    -------
    image : ndarray of uint8, shape (H, W, 3)
        BGR frame.
    truth : FrameTruth
        Ground truth of this frame.
    """
    if not 0 <= minute <= MINUTES:
        raise ValueError(f"minute must be in 0..{MINUTES}")
    g = tube.geometry
    look = _look(np.random.default_rng([tube.seed, 7]))
    frng = np.random.default_rng([tube.seed, 11, minute] if seed is None else [seed, 11, minute])
    dx, dy = (0.0, 0.0) if minute == 0 else (float(frng.normal(0, 0.6)), float(frng.normal(0, 0.6)))
    H, W = g.height_px, g.width_px
    rows = np.arange(H, dtype=np.float64)[:, None]
    cols = np.arange(W, dtype=np.float64)[None, :]
    ppm = g.px_per_mm
    cx = g.center_x_px + dx
    bottom = g.bottom_px + dy
    top = bottom - g.column_mm * ppm
    height = tube.heights[minute]
    boundary = bottom - height * g.column_mm * ppm
    r_in = 0.5 * g.inner_diameter_mm * ppm
    wall = 0.6 * ppm
    # Horizontal coverage of the tube interior and of the walls (anti-aliased).
    dist = np.abs(cols + 0.0 - cx)
    inside = np.clip(r_in + 0.5 - dist, 0.0, 1.0)
    in_wall = np.clip(r_in + wall + 0.5 - dist, 0.0, 1.0) - inside
    # Meniscus: concave surface, higher at the wall (row decreases towards the wall).
    rel = np.clip(dist / r_in, 0.0, 1.0)
    men = top - look.meniscus_px * rel**4
    liquid = _coverage_below(rows, men) * (1.0 - _coverage_below(rows, bottom))
    cells = _coverage_below(rows, np.full_like(cols, boundary)) * (1.0 - _coverage_below(rows, bottom))
    plasma = np.clip(liquid - cells, 0.0, 1.0)
    plunger = _coverage_below(rows, bottom) * (1.0 - _coverage_below(rows, bottom + 6.0 * ppm))
    air = 1.0 - liquid - plunger
    img = np.zeros((H, W, 3))
    for ch in range(3):
        interior = (
            plasma * look.plasma_bgr[ch]
            + cells * look.cells_bgr[ch]
            + plunger * look.plunger_bgr[ch]
            + air * (look.background_bgr[ch] - 15.0)
        )
        img[:, :, ch] = (
            inside * interior + in_wall * look.wall_bgr[ch] + (1.0 - inside - in_wall) * look.background_bgr[ch]
        )
    # Graduation ticks on the left wall every 0.1 mL (~5.7 mm), printed on the barrel.
    tick_pitch = 0.1 / (np.pi * (0.5 * g.inner_diameter_mm / 10.0) ** 2) * 10.0 * ppm
    y = g.bottom_px + dy
    while y > 8:
        y0 = round(y)
        x_a = round(cx - r_in - wall)
        x_b = round(cx - r_in + 0.35 * r_in)
        img[y0 : y0 + 1, max(x_a, 0) : max(x_b, 0)] *= 0.45
        y -= tick_pitch
    # Lighting: cylindrical shading across the tube, a vertical gradient and a specular stripe.
    shade = 1.0 - 0.25 * (np.clip((cols - cx) / (r_in + wall), -1, 1)) ** 2
    vert = 1.0 + look.light_slope * (rows / H - 0.5)
    stripe = 1.0 + 0.25 * np.exp(-0.5 * ((cols - (cx + 0.55 * r_in)) / 1.5) ** 2)
    img *= (shade * vert * stripe)[:, :, None]
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), look.blur_sigma), dtype=np.float64)
    img += frng.normal(0.0, look.noise_sigma, img.shape)
    img += np.sqrt(np.clip(img, 0, None)) * frng.normal(0.0, 0.25, img.shape)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    x0 = int(np.ceil(cx - r_in))
    x1 = int(np.floor(cx + r_in)) + 1
    truth = FrameTruth(
        minute=minute,
        boundary_px=float(boundary),
        bottom_px=float(bottom),
        top_px=float(top),
        height=float(height),
        shift_px=(dx, dy),
        roi=(x0, int(np.floor(top - look.meniscus_px)), x1, int(np.ceil(bottom))),
    )
    return out, truth


def esr_frame_render(
    tube: SimulatedTube,
    minute: int,
    seed: int | None = None,
    fmt: Literal["jpeg", "png"] = "jpeg",
) -> tuple[bytes, FrameTruth]:
    """Render and encode one camera frame of ``tube`` at ``minute`` (simulated).

    Parameters
    ----------
    tube : SimulatedTube
        The tube.
    minute : int
        Minute 0..60.
    seed : int, optional
        Per-frame seed (noise, camera shift); default derived from the tube.
    fmt : {"jpeg", "png"}
        Encoding; JPEG quality is drawn per tube in 80–94.

    Returns
    -------
    bytes
        Encoded image file.
    FrameTruth
        Ground truth of the frame.
    """
    img, truth = esr_frame_render_array(tube, minute, seed=seed)
    if fmt == "jpeg":
        q = _look(np.random.default_rng([tube.seed, 7])).jpeg_quality
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", img)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    if not ok:  # pragma: no cover - cv2 failure
        raise RuntimeError("image encoding failed")
    return bytes(buf.tobytes()), truth
