"""Tile grid over a whole slide and the tissue rule that skips background tiles.

Tiles are ``tile_w × tile_h`` pixels (1600 × 1200 by default) and neighbours overlap by
``overlap`` (1/3) of a tile in each direction, so the stride is 2/3 of a tile and every object
smaller than the overlap (533 × 400 px by default) lies whole in at least one tile. The last
column and row are shifted to end exactly at the slide edge (no padding, no tile past the
slide); a slide smaller than a tile gives one tile of the slide's size.

A tile is *tissue* when at least ``min_fraction`` of its pixels are stained: a pixel counts when
its colour saturation (max − min of R, G, B) is ≥ 20 grey levels, it is not near-white
(mean < 235) and its hue is not that of marker ink (green: G the largest channel; blue: G > R
and B > R + 50). Glass, dust, grey/black/green/blue pen marks stay out; PAS and H&E (pink to
purple: G the smallest channel) and brown DAB stay in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_TILE", "axis_starts", "is_tissue_tile", "tile_grid", "tissue_fraction",
           "tissue_mask"]

#: default tile width, height in pixels
DEFAULT_TILE = (1600, 1200)
#: default overlap of neighbouring tiles (fraction of a tile)
DEFAULT_OVERLAP = 1.0 / 3.0

_MIN_SATURATION = 20
_MAX_BRIGHTNESS = 235


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile start offsets along one axis (stride ``round(tile · (1 − overlap))``, last one at ``length − tile``)."""
    if length <= tile:
        return [0]
    stride = max(1, round(tile * (1.0 - overlap)))
    starts = list(range(0, length - tile, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_grid(
    width: int, height: int, *, tile_w: int = DEFAULT_TILE[0], tile_h: int = DEFAULT_TILE[1],
    overlap: float = DEFAULT_OVERLAP,
) -> list[tuple[int, int, int, int]]:
    """The tiles covering a slide.

    Parameters
    ----------
    width, height : int
        Slide size in pixels (level used for tiling).
    tile_w, tile_h : int
        Tile size in pixels.
    overlap : float
        Overlap of neighbouring tiles as a fraction of the tile, in ``[0, 0.9]``.

    Returns
    -------
    list of (x, y, w, h)
        Row-major tiles in slide pixels; ``w = min(tile_w, width)``, ``h = min(tile_h, height)``.

    Raises
    ------
    ValueError
        On a non-positive size or an overlap outside ``[0, 0.9]``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"slide size must be positive, got {width}×{height}")
    if tile_w <= 0 or tile_h <= 0:
        raise ValueError(f"tile size must be positive, got {tile_w}×{tile_h}")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must be in [0, 0.9], got {overlap}")
    w, h = min(tile_w, width), min(tile_h, height)
    xs = axis_starts(width, tile_w, overlap)
    ys = axis_starts(height, tile_h, overlap)
    return [(x, y, w, h) for y in ys for x in xs]


def tissue_mask(rgb: npt.NDArray[np.uint8], *, step: int = 1) -> npt.NDArray[np.bool_]:
    """Stained-tissue pixels of an RGB image (every ``step``-th pixel in each direction)."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    a = rgb[::step, ::step, :3]
    mx = a.max(axis=2)
    mn = a.min(axis=2)
    sat = mx.astype(np.int16) - mn.astype(np.int16)
    mean = a.mean(axis=2, dtype=np.float32)
    r, g, b = (a[..., k].astype(np.int16) for k in range(3))
    ink = ((g >= r) & (g >= b)) | ((g > r) & (b > r + 50))
    return (sat >= _MIN_SATURATION) & (mean < _MAX_BRIGHTNESS) & ~ink


def tissue_fraction(tile_rgb: npt.NDArray[np.uint8]) -> float:
    """Fraction (0–1) of a tile's pixels that are stained tissue (sampled on a 4-px grid)."""
    if tile_rgb.size == 0:
        return 0.0
    return float(tissue_mask(tile_rgb, step=4).mean())


def is_tissue_tile(tile_rgb: npt.NDArray[np.uint8], min_fraction: float = 0.02) -> bool:
    """Whether a tile holds enough tissue to be worth running the detector on."""
    return tissue_fraction(tile_rgb) >= min_fraction
