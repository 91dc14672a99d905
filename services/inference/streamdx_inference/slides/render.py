"""Generated PAS-stained kidney-biopsy slides with glomeruli at known positions.

No open glomerulus image set is reachable here, so the slide pipeline is proven on slides
rendered with exact ground truth. :func:`render_slide` paints a periodic-acid–Schiff (PAS)
section of renal cortex at ``mpp`` µm per pixel (0.5 µm/px ≈ a 20× scan):

* **tissue** — one large section or several needle cores with ragged edges on a near-white
  glass background;
* **tubules** — packed cross-sections (and some longitudinal ones): pink epithelium on a
  magenta (PAS-positive) basement membrane, a pale lumen with a magenta brush border in
  proximal tubules, epithelial nuclei around the ring, occasional PAS-positive casts;
* **interstitium** — pale pink, fibrous texture, sparse nuclei; a few arteries (thick
  nucleated media, elastic lamina, small lumen) as round look-alikes;
* **glomeruli** — a lobulated tuft of capillary loops (pale lumina in magenta walls) packed
  with nuclei, inside Bowman's capsule (thin magenta line) with a pale Bowman's space of
  varying width; 100–250 µm across, round to oval, some sclerosed (solid magenta, few
  loops), some tangentially cut (no space, smaller); never overlapping;
* **variation and artefacts** — per-slide stain vectors and strength, low-frequency stain and
  focus fields, tissue folds (double density), tears, pen marks, air bubbles and dust.

Colour is formed like light through a stained section (Beer–Lambert): two stain
concentration maps (PAS magenta, haematoxylin blue) are drawn with OpenCV at full resolution,
then each row band is turned into optical density and RGB with vectorised numpy/OpenCV, so a
20,000 × 15,000 slide (0.9 GB of RGB) renders in well under a minute on two cores.

The ground-truth box of a glomerulus is the bounding box of its Bowman's capsule (how
annotators outline one), in slide pixels ``x0, y0, x1, y1`` (``x1``, ``y1`` exclusive).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streamdx_inference.slides.annotations import read_annotations, write_geojson
from streamdx_inference.slides.pyramid import write_pyramidal_tiff

__all__ = [
    "GeneratedSlide",
    "SlideStyle",
    "generate_slides",
    "read_annotations",
    "render_slide",
    "write_pyramidal_tiff",
]

U8 = npt.NDArray[np.uint8]
#: internal float planes (OpenCV's stubs type its results loosely, so these stay loose too).
F32 = npt.NDArray[Any]

#: concentration maps are stored as uint8 with this many units per OD-concentration 1.0.
_SCALE = 100.0
#: the low-frequency fields (tissue outline, stain strength, focus, folds) are drawn this much coarser.
_LOW = 16
#: rows composed at once (memory ∝ band × width × 3 × 4 bytes per float plane).
_BAND = 1024


@dataclass(frozen=True)
class GeneratedSlide:
    """A rendered slide and its ground truth.

    Attributes
    ----------
    image : ndarray of uint8, shape (H, W, 3)
        RGB pixels.
    boxes : ndarray of float64, shape (n, 4)
        Glomerulus boxes ``x0, y0, x1, y1`` in slide pixels (``x1``, ``y1`` exclusive).
    mpp : float
        Resolution in µm per pixel.
    tissue_mask : ndarray of uint8, shape (ceil(H/16), ceil(W/16))
        Tissue (255) vs glass (0) at 1/16 of the slide resolution.
    seed : int
        The seed that reproduces this slide.
    """

    image: U8
    boxes: npt.NDArray[np.float64]
    mpp: float
    tissue_mask: U8
    seed: int

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class SlideStyle:
    """Per-slide staining and scanning parameters (drawn from the seed)."""

    pas_od: F32  # unit optical-density vector (R, G, B) of the PAS (magenta) stain
    h_od: F32  # unit OD vector of haematoxylin (nuclei)
    pas_gain: float  # overall PAS strength
    h_gain: float  # overall haematoxylin strength
    glass_od: F32  # OD of the empty glass (a faint tint)
    blur_sigma: float  # baseline focus blur in pixels
    defocus_sigma: float  # blur in the out-of-focus regions, pixels
    noise_sigma: float  # sensor noise, grey levels


def _unit(v: npt.ArrayLike) -> F32:
    a = np.asarray(v, dtype=np.float32)
    return (a / np.linalg.norm(a)).astype(np.float32)


def _draw_style(rng: np.random.Generator, mpp: float) -> SlideStyle:
    pas = np.array([0.17, 0.93, 0.32]) + rng.normal(0, [0.05, 0.03, 0.07])
    hem = np.array([0.62, 0.70, 0.33]) + rng.normal(0, [0.05, 0.04, 0.06])
    glass = np.abs(rng.normal(0.035, 0.01, 3)) + np.array([0.0, 0.01, 0.0])
    px_per_half_um = 0.5 / mpp
    return SlideStyle(
        pas_od=_unit(np.clip(pas, 0.05, None)),
        h_od=_unit(np.clip(hem, 0.05, None)),
        pas_gain=float(rng.uniform(0.75, 1.3)),
        h_gain=float(rng.uniform(0.7, 1.3)),
        glass_od=glass.astype(np.float32),
        blur_sigma=float(rng.uniform(0.5, 1.2) * px_per_half_um),
        defocus_sigma=float(rng.uniform(2.0, 3.5) * px_per_half_um),
        noise_sigma=float(rng.uniform(1.5, 3.5)),
    )


# --------------------------------------------------------------------------------------------
# low-resolution fields
# --------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    n: F32 = rng.standard_normal(shape).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    sd = float(n.std()) or 1.0
    return (n / sd).astype(np.float32)


def _tissue_field(rng: np.random.Generator, lh: int, lw: int, mpp: float) -> F32:
    """Low-resolution signed tissue field: > 0 inside tissue (smooth, ragged edges)."""
    shape: F32 = np.zeros((lh, lw), np.float32)
    px_low = mpp * _LOW  # µm per low-res pixel
    kind = rng.choice(["section", "cores"], p=[0.45, 0.55])
    if kind == "section" or min(lh, lw) * px_low < 1500:
        # one large section, an irregular ellipse filling 55-85 % of the slide
        cx, cy = lw * rng.uniform(0.42, 0.58), lh * rng.uniform(0.42, 0.58)
        ax, ay = lw * rng.uniform(0.33, 0.45), lh * rng.uniform(0.33, 0.45)
        cv2.ellipse(shape, (int(cx), int(cy)), (int(ax), int(ay)), float(rng.uniform(-15, 15)), 0, 360, 1.0, -1)
        # a notch or two out of the outline
        for _ in range(int(rng.integers(0, 3))):
            t = rng.uniform(0, 2 * np.pi)
            nx, ny = cx + ax * math.cos(t), cy + ay * math.sin(t)
            r = int(min(ax, ay) * rng.uniform(0.15, 0.35))
            cv2.circle(shape, (int(nx), int(ny)), r, 0.0, -1)
    else:
        # needle cores: 2-4 long strips ~1-1.6 mm wide, gently curved
        n = int(rng.integers(2, 5))
        width_px = rng.uniform(1000, 1600) / px_low
        horizontal = lw >= lh
        span = lh if horizontal else lw
        slots = np.linspace(0, span, n + 1)
        for i in range(n):
            c = (slots[i] + slots[i + 1]) / 2 + rng.uniform(-0.1, 0.1) * span / n
            w = min(width_px * rng.uniform(0.8, 1.2), 0.8 * span / n)
            length = (lw if horizontal else lh) * rng.uniform(0.6, 0.92)
            start = rng.uniform(0.03, 0.97 - length / (lw if horizontal else lh)) * (lw if horizontal else lh)
            tt = np.linspace(0, 1, 40)
            along = start + tt * length
            bend = c + rng.uniform(-0.25, 0.25) * w * np.sin(np.pi * tt * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))
            pts = np.stack([along, bend] if horizontal else [bend, along], axis=1).astype(np.int32)
            cv2.polylines(shape, [pts], False, 1.0, max(2, int(w)))
            for end in (pts[0], pts[-1]):  # rounded, slightly ragged ends
                cv2.circle(shape, (int(end[0]), int(end[1])), max(1, int(w / 2)), 1.0, -1)
    shape = cv2.GaussianBlur(shape, (0, 0), max(1.0, 60 / px_low))
    ragged = _smooth_noise(rng, (lh, lw), max(1.0, 40 / px_low)) * 0.09
    ragged += _smooth_noise(rng, (lh, lw), max(1.0, 150 / px_low)) * 0.12
    return (shape - 0.5 + ragged).astype(np.float32)


def _draw_folds_and_tears(
    rng: np.random.Generator, density: F32, tissue: F32, mpp: float,
) -> None:
    """Folds (double tissue, ×1.7–2.1 density) and tears (white cracks) on the low-res fields."""
    px_low = mpp * _LOW
    inside = np.argwhere(tissue > 0.1)
    if len(inside) == 0:
        return
    for _ in range(int(rng.integers(0, 3))):  # folds
        y, x = inside[rng.integers(len(inside))]
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(800, 4000) / px_low
        t = np.linspace(-0.5, 0.5, 20)[:, None]
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        pts = np.array([x, y]) + t * length * d + nrm * (np.sin(t * rng.uniform(2, 5)) * length * 0.08)
        width = max(1, int(rng.uniform(40, 220) / px_low))
        cv2.polylines(density, [pts.astype(np.int32)], False, float(rng.uniform(0.7, 1.1)), width)
    for _ in range(int(rng.integers(0, 4))):  # tears: thin jagged cracks
        y, x = inside[rng.integers(len(inside))]
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(300, 1800) / px_low
        steps = 12
        walk = np.cumsum(rng.normal(0, 0.35, steps))
        t = np.linspace(0, 1, steps)
        pts = np.stack([x + (t * length) * math.cos(ang) - walk * 3 * math.sin(ang),
                        y + (t * length) * math.sin(ang) + walk * 3 * math.cos(ang)], axis=1)
        cv2.polylines(tissue, [pts.astype(np.int32)], False, -1.5, max(1, int(rng.uniform(15, 50) / px_low)))


def _draw_pen(rng: np.random.Generator, ink: F32, tissue: F32, mpp: float) -> F32:
    """Marker strokes (green, blue or black ink), mostly beside the tissue; returns the ink OD vector."""
    px_low = mpp * _LOW
    colour = rng.choice(3)
    od = [np.array([0.9, 0.25, 0.75]), np.array([1.0, 0.55, 0.12]), np.array([0.8, 0.8, 0.8])][colour]
    area_mm2 = ink.size * px_low ** 2 / 1e6
    if rng.random() < 0.55 * min(1.0, area_mm2 / 25.0):
        for _ in range(int(rng.integers(1, 3))):
            # a dot or short stroke near the tissue outline (pathologists circle or tick regions)
            outside = np.argwhere((tissue < -0.05) & (tissue > -0.35))
            if len(outside) == 0:
                break
            y, x = outside[rng.integers(len(outside))]
            n = int(rng.integers(3, 12))
            pts = np.stack([x + np.cumsum(rng.normal(0, 200 / px_low, n)),
                            y + np.cumsum(rng.normal(0, 200 / px_low, n))], axis=1)
            cv2.polylines(ink, [pts.astype(np.int32)], False, float(rng.uniform(0.5, 1.2)),
                          max(1, int(rng.uniform(100, 300) / px_low)))
    return od.astype(np.float32)


def _lowres_to_band(
    low: F32, y0: int, rows: int, width: int, cval: float | None = None, scale: int = _LOW,
) -> F32:
    """Bilinear up-sampling of a 1/``scale`` field onto full-resolution rows ``y0 .. y0+rows`` (seamless)."""
    inv = 1.0 / scale
    m = np.array([[inv, 0.0, 0.5 * inv - 0.5], [0.0, inv, (y0 + 0.5) * inv - 0.5]], np.float32)
    border = cv2.BORDER_REPLICATE if cval is None else cv2.BORDER_CONSTANT
    return cv2.warpAffine(low, m, (width, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0.0 if cval is None else cval)


# --------------------------------------------------------------------------------------------
# structures (full-resolution concentration maps, uint8 × _SCALE)
# --------------------------------------------------------------------------------------------


def _c(v: float) -> int:
    return int(np.clip(round(v * _SCALE), 0, 255))


def _ellipse(img: U8, c: tuple[float, float], ax: tuple[float, float], ang: float, val: int, th: int = -1) -> None:
    cv2.ellipse(img, (round(c[0]), round(c[1])), (max(1, round(ax[0])), max(1, round(ax[1]))), ang, 0, 360,
                val, th, cv2.LINE_8)


def _draw_tubules(rng: np.random.Generator, pas: U8, hem: U8, tissue_low: F32, um: float) -> None:
    """Packed tubule cross-sections on a jittered grid over the tissue (``um`` = pixels per µm)."""
    h, w = pas.shape
    spacing = 54 * um
    gy, gx = np.mgrid[0:h + spacing:spacing, 0:w + spacing:spacing]
    gx = gx.astype(np.float64) + (np.arange(gy.shape[0])[:, None] % 2) * spacing / 2
    cx = (gx + rng.uniform(-0.22, 0.22, gx.shape) * spacing).ravel()
    cy = (gy + rng.uniform(-0.22, 0.22, gy.shape) * spacing).ravel()
    lx = np.clip((cx / _LOW).astype(int), 0, tissue_low.shape[1] - 1)
    ly = np.clip((cy / _LOW).astype(int), 0, tissue_low.shape[0] - 1)
    keep = tissue_low[ly, lx] > -0.15
    cx, cy = cx[keep], cy[keep]
    order = rng.permutation(len(cx))
    cx, cy = cx[order], cy[order]
    n = len(cx)
    # a smooth "orientation" field makes patches of longitudinally cut tubules (medullary rays)
    ray = _smooth_noise(rng, tissue_low.shape, 12.0)
    longit = ray[np.clip((cy / _LOW).astype(int), 0, tissue_low.shape[0] - 1),
                 np.clip((cx / _LOW).astype(int), 0, tissue_low.shape[1] - 1)] > 1.1
    ray_ang = float(rng.uniform(0, 180))
    kind = rng.choice(3, size=n, p=[0.7, 0.22, 0.08])  # proximal, distal, collecting duct
    a = spacing * np.where(kind == 0, rng.uniform(0.5, 0.64, n), rng.uniform(0.38, 0.5, n))
    b = a * rng.uniform(0.75, 1.0, n)
    ang = rng.uniform(0, 180, n)
    a = np.where(longit, a * rng.uniform(2.0, 3.5, n), a)
    b = np.where(longit, b * 0.8, b)
    ang = np.where(longit, ray_ang + rng.normal(0, 8, n), ang)
    epi = np.where(kind == 0, rng.uniform(0.5, 0.7, n), rng.uniform(0.34, 0.46, n))
    lumen_f = np.where(kind == 0, rng.uniform(0.18, 0.42, n), rng.uniform(0.42, 0.62, n))
    collapsed = rng.random(n) < np.where(kind == 0, 0.4, 0.1)
    cast = rng.random(n) < 0.02
    bm = np.maximum(1, np.round(rng.uniform(0.8, 1.6, n) * um)).astype(int)
    nuc_r = 3.0 * um
    for i in range(n):
        c = (cx[i], cy[i])
        ai, bi = a[i], b[i]
        _ellipse(pas, c, (ai, bi), ang[i], _c(epi[i] * rng.uniform(0.9, 1.1)))
        _ellipse(pas, c, (ai, bi), ang[i], _c(rng.uniform(1.1, 1.5)), int(bm[i]))
        la, lb = ai * lumen_f[i], bi * lumen_f[i]
        if collapsed[i]:
            lb = max(1.0, lb * rng.uniform(0.08, 0.3))
        off = rng.uniform(-0.1, 0.1, 2) * (ai, bi)
        lc = (c[0] + off[0], c[1] + off[1])
        if kind[i] == 0 and not cast[i]:  # brush border
            _ellipse(pas, lc, (la + 2.0 * um, lb + 2.0 * um), ang[i], _c(rng.uniform(0.8, 1.05)))
        if cast[i]:
            lum_val = _c(rng.uniform(1.0, 1.4))
        elif kind[i] == 0:
            lum_val = _c(rng.uniform(0.08, 0.22))
        else:
            lum_val = _c(rng.uniform(0.02, 0.08))
        _ellipse(pas, lc, (la, lb), ang[i], lum_val)
        # epithelial nuclei around the ring between lumen and basement membrane
        k = int(np.clip((ai + bi) * math.pi / (9.0 * um) * (1.4 if kind[i] == 2 else 1.0), 5, 60))
        th = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.1, k)
        lo = min(0.8, lumen_f[i] + 0.2) if not collapsed[i] else 0.2
        rad = rng.uniform(lo, 0.84, k)
        ca, sa = math.cos(math.radians(ang[i])), math.sin(math.radians(ang[i]))
        ex, ey = ai * rad * np.cos(th), bi * rad * np.sin(th)
        px = c[0] + ex * ca - ey * sa
        py = c[1] + ex * sa + ey * ca
        drop = rng.random(k) < 0.25
        hv = _c(rng.uniform(0.9, 1.3))
        for j in range(k):
            if not drop[j]:
                r = nuc_r * rng.uniform(0.8, 1.2)
                _ellipse(hem, (px[j], py[j]), (r, r * rng.uniform(0.7, 1.0)), float(rng.uniform(0, 180)), hv)


def _draw_interstitial_nuclei(rng: np.random.Generator, hem: U8, pas: U8, tissue_low: F32, um: float) -> None:
    """Sparse fibroblast / inflammatory nuclei in the interstitium, with patchy infiltrates."""
    h, w = hem.shape
    area_mm2 = float((tissue_low > 0).sum()) * (_LOW / um / 1000) ** 2
    n = int(area_mm2 * rng.uniform(300, 800))
    xs = rng.uniform(0, w, n)
    ys = rng.uniform(0, h, n)
    # infiltrate clusters
    for _ in range(int(rng.integers(0, 6))):
        cxx, cyy = rng.uniform(0, w), rng.uniform(0, h)
        m = int(rng.integers(100, 500))
        xs = np.concatenate([xs, cxx + rng.normal(0, 80 * um, m)])
        ys = np.concatenate([ys, cyy + rng.normal(0, 60 * um, m)])
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    xs, ys = xs[ok], ys[ok]
    # only in interstitium (pas map still at interstitial level there)
    interstitial = pas[ys.astype(int), xs.astype(int)] < _c(0.34)
    for x, y in zip(xs[interstitial], ys[interstitial], strict=True):
        r = 2.4 * um * rng.uniform(0.8, 1.2)
        _ellipse(hem, (x, y), (r, r * rng.uniform(0.45, 1.0)), float(rng.uniform(0, 180)), _c(rng.uniform(1.0, 1.4)))


def _place_round(
    rng: np.random.Generator, tissue_low: F32, radii: npt.NDArray[np.float64], taken: list[tuple[float, float, float]],
    margin: float,
) -> list[tuple[float, float, float]]:
    """Centres for discs of the given radii (px) fully inside tissue and apart from ``taken`` and each other."""
    inside = (tissue_low > 0.05).astype(np.uint8)
    placed: list[tuple[float, float, float]] = []
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 5) * _LOW  # full-res px to the tissue edge
    for r in radii:
        cand = np.argwhere(dist > r + 10)
        if len(cand) == 0:
            continue
        for _ in range(40):
            y, x = cand[rng.integers(len(cand))]
            px = (x + rng.random()) * _LOW
            py = (y + rng.random()) * _LOW
            ok = all(math.hypot(px - qx, py - qy) > r + qr + margin for qx, qy, qr in taken + placed)
            if ok:
                placed.append((px, py, float(r)))
                break
    return placed


def _paste(dst: U8, src: U8, mask: npt.NDArray[np.bool_], x0: int, y0: int) -> None:
    """``dst[y0:, x0:][mask] = src[mask]`` clipped to the slide."""
    h, w = dst.shape
    sh, sw = src.shape
    ax0, ay0 = max(0, x0), max(0, y0)
    ax1, ay1 = min(w, x0 + sw), min(h, y0 + sh)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    s = (slice(ay0 - y0, ay1 - y0), slice(ax0 - x0, ax1 - x0))
    region = dst[ay0:ay1, ax0:ax1]
    np.copyto(region, src[s], where=mask[s])


def _draw_glomerulus(
    rng: np.random.Generator, pas: U8, hem: U8, cx: float, cy: float, r: float, um: float,
) -> tuple[float, float, float, float]:
    """One glomerulus centred at (cx, cy) with capsule outer radius ``r`` px; returns its box."""
    variant = rng.choice(["normal", "sclerosed", "tangential", "hypercellular"], p=[0.7, 0.08, 0.1, 0.12])
    aspect = rng.uniform(0.78, 1.0)
    ang = float(rng.uniform(0, 180))
    ra, rb = r, r * aspect
    pad = int(r + 12 * um) + 2
    size = 2 * pad + 1
    lp = np.full((size, size), _c(rng.uniform(0.3, 0.42)), np.uint8)  # periglomerular fibrous rim
    lh = np.zeros((size, size), np.uint8)
    c = (float(pad), float(pad))
    rim = 6 * um * rng.uniform(0.6, 1.4)
    outer = np.zeros((size, size), np.uint8)
    _ellipse(outer, c, (ra + rim, rb + rim), ang, 1)
    caps = np.zeros((size, size), np.uint8)
    _ellipse(caps, c, (ra, rb), ang, 1)
    # Bowman's space and capsule
    _ellipse(lp, c, (ra, rb), ang, _c(rng.uniform(0.02, 0.09)))
    cap_th = max(1, round(rng.uniform(1.5, 3.0) * um))
    if variant == "sclerosed":
        cap_th = max(cap_th, round(rng.uniform(3, 6) * um))
    _ellipse(lp, c, (ra - cap_th / 2, rb - cap_th / 2), ang, _c(rng.uniform(1.15, 1.5)), cap_th)
    # parietal epithelial nuclei: flat, along the capsule
    k = int(2 * np.pi * r / (25 * um))
    th = rng.uniform(0, 2 * np.pi, k)
    ca, sa = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    for t in th:
        ex, ey = (ra - cap_th - 1.5 * um) * math.cos(t), (rb - cap_th - 1.5 * um) * math.sin(t)
        px, py = c[0] + ex * ca - ey * sa, c[1] + ex * sa + ey * ca
        tang = math.degrees(math.atan2(ex * sa + (rb / ra) * ey * ca, ex * ca - ey * sa)) + 90
        _ellipse(lh, (px, py), (3.2 * um, 1.3 * um), tang, _c(1.1))
    # tuft: a union of lobules, filling 70-95 % of the capsule
    fill = {"normal": rng.uniform(0.72, 0.9), "sclerosed": rng.uniform(0.8, 0.92),
            "tangential": rng.uniform(0.9, 0.97), "hypercellular": rng.uniform(0.82, 0.95)}[variant]
    rt = (ra - cap_th) * fill
    slack = (ra - cap_th) - rt
    tc = (c[0] + rng.uniform(-0.8, 0.8) * slack, c[1] + rng.uniform(-0.8, 0.8) * slack * aspect)
    tuft = np.zeros((size, size), np.uint8)
    _ellipse(tuft, tc, (rt * 0.62, rt * aspect * 0.62), ang, 1)
    n_lob = int(rng.integers(4, 9))
    for t in np.linspace(0, 2 * np.pi, n_lob, endpoint=False) + rng.uniform(0, 6):
        d = rt * rng.uniform(0.42, 0.6)
        lr = rt - d
        lx, ly = tc[0] + d * math.cos(t), tc[1] + d * math.sin(t) * aspect
        lax = (lr * rng.uniform(0.9, 1.1), lr * rng.uniform(0.8, 1.0))
        _ellipse(tuft, (lx, ly), lax, float(rng.uniform(0, 180)), 1)
    tuft &= caps
    tmask = tuft.astype(bool)
    base = {"normal": 0.75, "sclerosed": 1.25, "tangential": 0.8, "hypercellular": 0.8}[variant]
    tp = np.full((size, size), _c(base * rng.uniform(0.9, 1.1)), np.uint8)
    th_ = np.zeros((size, size), np.uint8)
    ys, xs = np.nonzero(tmask)
    area = len(xs)
    if area:
        loop_r = rng.uniform(2.2, 3.8) * um
        n_loops = int(area / (np.pi * loop_r ** 2) * {"normal": 0.75, "sclerosed": 0.12, "tangential": 0.6,
                                                       "hypercellular": 0.45}[variant])
        idx = rng.integers(0, area, n_loops)
        wall = _c(rng.uniform(1.2, 1.6))
        lum = _c(rng.uniform(0.06, 0.2))
        rbc = rng.random(n_loops) < 0.25
        for j, i in enumerate(idx):
            rr = loop_r * rng.uniform(0.6, 1.35)
            e = rng.uniform(0.55, 1.0)
            a_ = float(rng.uniform(0, 180))
            _ellipse(tp, (xs[i], ys[i]), (rr + 1.2 * um, (rr + 1.2 * um) * e), a_, wall)
            _ellipse(tp, (xs[i], ys[i]), (rr, rr * e), a_, _c(0.32) if rbc[j] else lum)
        density = {"normal": 1 / 90, "sclerosed": 1 / 500, "tangential": 1 / 110, "hypercellular": 1 / 45}[variant]
        n_nuc = int(area / um ** 2 * density)
        idx = rng.integers(0, area, n_nuc)
        hv = _c(rng.uniform(1.0, 1.4))
        for i in idx:
            rr = rng.uniform(1.9, 2.9) * um
            _ellipse(th_, (xs[i], ys[i]), (rr, rr * rng.uniform(0.6, 1.0)), float(rng.uniform(0, 180)), hv)
    np.copyto(lp, tp, where=tmask)
    np.copyto(lh, th_, where=tmask)
    x0, y0 = round(cx) - pad, round(cy) - pad
    _paste(pas, lp, outer.astype(bool), x0, y0)
    _paste(hem, lh, outer.astype(bool), x0, y0)
    yy, xx = np.nonzero(caps)
    h, w = pas.shape
    return (float(max(0, x0 + xx.min())), float(max(0, y0 + yy.min())),
            float(min(w, x0 + xx.max() + 1)), float(min(h, y0 + yy.max() + 1)))


def _draw_artery(rng: np.random.Generator, pas: U8, hem: U8, cx: float, cy: float, r: float, um: float) -> None:
    """An interlobular artery: adventitia, nucleated muscular media, elastic lamina, narrow lumen."""
    pad = int(r + 4) + 2
    size = 2 * pad + 1
    c = (float(pad), float(pad))
    aspect = rng.uniform(0.7, 1.0)
    ang = float(rng.uniform(0, 180))
    lp = np.zeros((size, size), np.uint8)
    lh = np.zeros((size, size), np.uint8)
    outer = np.zeros((size, size), np.uint8)
    _ellipse(outer, c, (r, r * aspect), ang, 1)
    _ellipse(lp, c, (r, r * aspect), ang, _c(0.5))
    media = r * rng.uniform(0.72, 0.85)
    _ellipse(lp, c, (media, media * aspect), ang, _c(0.62))
    lum = media * rng.uniform(0.3, 0.55)
    _ellipse(lp, c, (lum + 2 * um, (lum + 2 * um) * aspect), ang, _c(1.4))  # internal elastic lamina
    _ellipse(lp, c, (lum, lum * aspect), ang, _c(0.3) if rng.random() < 0.5 else _c(0.05))
    # smooth-muscle nuclei: elongated, circumferential
    n = int(np.pi * (media ** 2 - lum ** 2) / (120 * um ** 2))
    rad = rng.uniform(lum + 3 * um, media - 2 * um, n)
    th = rng.uniform(0, 2 * np.pi, n)
    for rr, t in zip(rad, th, strict=True):
        px, py = c[0] + rr * math.cos(t), c[1] + rr * math.sin(t) * aspect
        _ellipse(lh, (px, py), (4.0 * um, 1.3 * um), math.degrees(t) + 90, _c(1.1))
    m = outer.astype(bool)
    _paste(pas, lp, m, round(cx) - pad, round(cy) - pad)
    _paste(hem, lh, m, round(cx) - pad, round(cy) - pad)


def _draw_dirt(rng: np.random.Generator, dirt: U8, um: float) -> None:
    """Air bubbles (dark rims) and dust specks as neutral optical density."""
    h, w = dirt.shape
    for _ in range(int(rng.poisson(0.5 * w * h * 0.25e-8 / um ** 2 + 0.3))):  # bubbles
        r = rng.uniform(80, 400) * um
        cxx, cyy = rng.uniform(0, w), rng.uniform(0, h)
        _ellipse(dirt, (cxx, cyy), (r, r * rng.uniform(0.85, 1.0)), float(rng.uniform(0, 180)),
                 _c(rng.uniform(0.25, 0.6)), max(2, round(rng.uniform(3, 9) * um)))
    n = int(rng.poisson(w * h / 4e6))
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    for x, y in zip(xs, ys, strict=True):  # dust: small dark irregular specks, a few fibres
        if rng.random() < 0.1:
            L = rng.uniform(20, 120) * um
            t = rng.uniform(0, np.pi)
            cv2.line(dirt, (round(x), round(y)), (round(x + L * math.cos(t)), round(y + L * math.sin(t))),
                     _c(rng.uniform(0.3, 0.8)), max(1, round(um)))
        else:
            r = rng.uniform(1.5, 9) * um
            val = _c(rng.uniform(0.4, 1.6))
            _ellipse(dirt, (x, y), (r, r * rng.uniform(0.4, 1.0)), float(rng.uniform(0, 180)), val)


# --------------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------------


def _compose_band(
    out: U8, y0: int, y1: int, *, pas: U8, hem: U8, dirt: U8, fields: dict[str, F32], style: SlideStyle,
    ink_od: F32, seed: int,
) -> None:
    """RGB of rows ``y0 .. y1`` from the concentration maps (Beer–Lambert), focus blur and noise."""
    h, w = pas.shape
    focus_low = fields["focus"]
    lo, hi = max(0, (y0 - 64) // _LOW), min(focus_low.shape[0], (y1 + 64) // _LOW + 2)
    defocus = float(focus_low[lo:hi].max()) > 0.02
    m = (int(3 * style.defocus_sigma) if defocus else int(3 * style.blur_sigma)) + 2
    a0, a1 = max(0, y0 - m), min(h, y1 + m)
    rows = a1 - a0
    tissue = _lowres_to_band(fields["tissue"], a0, rows, w, cval=-1.0)
    # a crisp but anti-aliased tissue edge, frayed at fine scale; the same grain textures the stain
    cv2.setRNGSeed((seed * 7919 + a0) % (2**31 - 1))
    grain = np.empty((rows, w), np.float32)
    cv2.randn(grain, np.zeros(1), np.ones(1))
    grain = cv2.GaussianBlur(grain, (0, 0), 1.3)
    mottle = _lowres_to_band(fields["mottle"], a0, rows, w, scale=4)
    tmask = cv2.addWeighted(tissue, 40.0, grain, 0.8, 0.5)
    np.clip(tmask, 0.0, 1.0, out=tmask)
    k = cv2.multiply(tmask, _lowres_to_band(fields["density"], a0, rows, w))
    kp = cv2.multiply(k, _lowres_to_band(fields["pas_gain"], a0, rows, w), scale=style.pas_gain / _SCALE)
    kh = cv2.multiply(k, _lowres_to_band(fields["h_gain"], a0, rows, w), scale=style.h_gain / _SCALE)
    texture = cv2.addWeighted(grain, 0.22, mottle, 0.18, 1.0)
    cp = cv2.multiply(cv2.multiply(pas[a0:a1], kp, dtype=cv2.CV_32F), texture)
    ch = cv2.multiply(hem[a0:a1], kh, dtype=cv2.CV_32F)
    cd = dirt[a0:a1].astype(np.float32)
    ink = _lowres_to_band(fields["ink"], a0, rows, w, cval=0.0)
    conc = cv2.merge([cp, ch, cd, ink])
    del cp, ch, cd, ink, kp, kh, k, texture, tissue, tmask
    mat = np.zeros((3, 5), np.float32)
    mat[:, 0] = -style.pas_od
    mat[:, 1] = -style.h_od
    mat[:, 2] = -0.8 / _SCALE
    mat[:, 3] = -ink_od
    mat[:, 4] = -style.glass_od
    od = cv2.transform(conc, mat)
    del conc
    rgb = cv2.exp(od)
    del od
    rgb = cv2.GaussianBlur(rgb, (0, 0), style.blur_sigma)
    if defocus:
        focus = _lowres_to_band(focus_low, a0, rows, w)
        blurred = cv2.GaussianBlur(rgb, (0, 0), style.defocus_sigma)
        rgb += cv2.merge([focus, focus, focus]) * (blurred - rgb)
        del blurred
    r0, r1 = y0 - a0, y1 - a0
    res: F32 = rgb[r0:r1]
    noise = grain[r0:r1] * (style.noise_sigma / 255.0 * 2.0)
    res += noise[..., None]
    out[y0:y1] = cv2.convertScaleAbs(res, alpha=255.0)


def render_slide(
    width: int, height: int, *, seed: int, mpp: float = 0.5, n_glomeruli: int | None = None,
) -> GeneratedSlide:
    """Render a PAS-stained kidney-biopsy slide with glomeruli at known positions.

    Parameters
    ----------
    width, height : int
        Slide size in pixels (≥ 256 each).
    seed : int
        Random seed; the same seed and arguments give the same slide.
    mpp : float
        Resolution in µm per pixel (0.5 ≈ 20×); physical sizes (tubules 35–75 µm, glomeruli
        100–250 µm, nuclei 5–7 µm) scale with it.
    n_glomeruli : int, optional
        Glomeruli to place; default ≈ 1.5–3 per mm² of tissue. Fewer are placed when the tissue
        cannot hold them apart.

    Returns
    -------
    GeneratedSlide
        The RGB image, the glomerulus boxes (slide pixels) and the resolution.

    Raises
    ------
    ValueError
        On a size below 256 px, a non-positive ``mpp`` or a negative ``n_glomeruli``.
    """
    if width < 256 or height < 256:
        raise ValueError(f"slide size {width}×{height} px is below the 256×256 minimum")
    if not (mpp > 0 and math.isfinite(mpp)):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp}")
    if n_glomeruli is not None and n_glomeruli < 0:
        raise ValueError(f"n_glomeruli must be ≥ 0, got {n_glomeruli}")
    rng = np.random.default_rng(seed)
    um = 1.0 / mpp  # pixels per µm
    style = _draw_style(rng, mpp)
    lh, lw = -(-height // _LOW), -(-width // _LOW)
    tissue = _tissue_field(rng, lh, lw, mpp)
    density: F32 = np.zeros((lh, lw), np.float32)
    _draw_folds_and_tears(rng, density, tissue, mpp)
    density = cv2.GaussianBlur(density, (0, 0), 1.0)
    ink: F32 = np.zeros((lh, lw), np.float32)
    ink_od = _draw_pen(rng, ink, tissue, mpp)
    ink = cv2.GaussianBlur(ink, (0, 0), 1.0) * (1.0 + 0.25 * _smooth_noise(rng, (lh, lw), 1.0))
    fields = {
        "tissue": tissue,
        "density": density + 1.0,
        "mottle": _smooth_noise(rng, (-(-height // 4), -(-width // 4)), 1.2),
        "ink": np.clip(ink, 0, None).astype(np.float32),
        "pas_gain": np.clip(1.0 + 0.16 * _smooth_noise(rng, (lh, lw), 25.0), 0.6, 1.5).astype(np.float32),
        "h_gain": np.clip(1.0 + 0.14 * _smooth_noise(rng, (lh, lw), 25.0), 0.6, 1.5).astype(np.float32),
        "focus": np.clip(_smooth_noise(rng, (lh, lw), 30.0) * 0.6 - rng.uniform(0.2, 0.8), 0, 1).astype(np.float32),
    }
    # full-resolution concentration maps
    pas = np.full((height, width), _c(rng.uniform(0.22, 0.32)), np.uint8)
    hem = np.zeros((height, width), np.uint8)
    dirt = np.zeros((height, width), np.uint8)
    # glomeruli and arteries: positions first (so neither overlaps), drawn after the tubules
    area_mm2 = float((tissue > 0).sum()) * (_LOW * mpp / 1000) ** 2
    n_g = round(area_mm2 * rng.uniform(1.5, 3.0)) if n_glomeruli is None else n_glomeruli
    diam_um = np.clip(rng.normal(165, 35, n_g), 100, 250)
    placed_g = _place_round(rng, tissue, np.sort(diam_um)[::-1] / 2 * um, [], 25 * um)
    n_a = int(rng.poisson(max(0.5, area_mm2 * 0.15)))
    placed_a = _place_round(rng, tissue, rng.uniform(45, 110, n_a) * um, placed_g, 20 * um)
    _draw_tubules(rng, pas, hem, tissue, um)
    _draw_interstitial_nuclei(rng, hem, pas, tissue, um)
    for ax_, ay_, ar in placed_a:
        _draw_artery(rng, pas, hem, ax_, ay_, ar, um)
    boxes = [_draw_glomerulus(rng, pas, hem, gx, gy, gr, um) for gx, gy, gr in placed_g]
    _draw_dirt(rng, dirt, um)
    image = np.empty((height, width, 3), np.uint8)
    for y0 in range(0, height, _BAND):
        _compose_band(image, y0, min(height, y0 + _BAND), pas=pas, hem=hem, dirt=dirt, fields=fields,
                      style=style, ink_od=ink_od, seed=seed)
    tissue_mask = ((tissue > 0) * 255).astype(np.uint8)
    arr = np.asarray(boxes, np.float64).reshape(-1, 4)
    return GeneratedSlide(image=image, boxes=arr, mpp=float(mpp), tissue_mask=tissue_mask, seed=int(seed))


# --------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------


def _slide_seed(seed: int, split: str, i: int) -> int:
    return (seed * 1_000_003 + (0 if split == "train" else 500_000) + i) % (2 ** 31)


def generate_slides(
    out_dir: str | Path, *, n_train: int, n_test: int, width: int, height: int, seed: int, mpp: float = 0.5,
    compression: str = "jpeg", progress: Callable[[str], None] | None = None,
) -> dict[str, list[str]]:
    """Write a train/test set of generated slides (pyramidal TIFF + QuPath GeoJSON).

    ``out_dir/train/<name>.tif`` + ``<name>.geojson`` and the same under ``test/``; the split is by
    slide and fixed by ``seed`` (train slide *i* and test slide *i* have disjoint seeds, so adding
    train slides never changes the test set). ``out_dir/manifest.json`` records the parameters,
    slide names, seeds and glomerulus counts. Slides already present with the same parameters are
    kept, so an interrupted run resumes.

    Parameters
    ----------
    out_dir : str or Path
        Destination folder (created).
    n_train, n_test : int
        Number of slides per split (≥ 0).
    width, height : int
        Slide size in pixels.
    seed : int
        Data-set seed.
    mpp : float
        µm per pixel.
    compression : {"jpeg", "deflate"}
        Tile compression of the TIFF.
    progress : callable, optional
        Called with a one-line message after each slide.

    Returns
    -------
    dict
        ``{"train": [paths...], "test": [paths...]}`` of the written TIFF files.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be ≥ 0")
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    params = {"width": width, "height": height, "seed": seed, "mpp": mpp, "compression": compression}
    old: dict[str, object] = {}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
    same = old.get("params") == params
    old_slides = old.get("slides", {}) if same else {}
    slides: dict[str, dict[str, object]] = dict(old_slides) if isinstance(old_slides, dict) else {}
    written: dict[str, list[str]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        (out / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{split}_{i:03d}"
            tif = out / split / f"{name}.tif"
            geo = out / split / f"{name}.geojson"
            s = _slide_seed(seed, split, i)
            if name in slides and tif.exists() and geo.exists():
                written[split].append(str(tif))
                continue
            t0 = time.perf_counter()
            slide = render_slide(width, height, seed=s, mpp=mpp)
            t1 = time.perf_counter()
            tmp = tif.with_suffix(".tif.part")
            write_pyramidal_tiff(tmp, slide.image, mpp, compression=compression)
            tmp.replace(tif)
            write_geojson(geo, slide.boxes)
            slides[name] = {"split": split, "seed": s, "n_glomeruli": len(slide.boxes)}
            manifest_path.write_text(json.dumps({"params": params, "slides": slides}, indent=1))
            written[split].append(str(tif))
            if progress:
                progress(f"{split}/{name}: {len(slide.boxes)} glomeruli, render {t1 - t0:.1f} s, "
                         f"write {time.perf_counter() - t1:.1f} s")
    manifest_path.write_text(json.dumps({"params": params, "slides": slides}, indent=1))
    return written
