"""Pure helpers of the tiling job: tissue tiles, tile JPEGs under the message limit, tissue area.

The tile grid and the tissue rule are engineer A's (``streamdx_inference.slides.tiling``), the
same functions ``streamdx eval slides`` uses, so the service cuts and skips exactly the tiles the
evaluation measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from streamdx_inference.slides.tiling import is_tissue_tile, tile_grid, tissue_fraction

__all__ = ["TileTooLarge", "tile_jpeg", "tissue_area_mm2", "tissue_tiles_estimate"]

#: JPEG qualities tried in turn until a tile fits the byte budget.
JPEG_QUALITIES = (90, 85, 80, 70, 60, 50, 40)

Box = tuple[int, int, int, int]


class TileTooLarge(ValueError):
    """A tile does not fit the byte budget even at the lowest JPEG quality."""


def tile_jpeg(rgb: npt.NDArray[np.uint8], *, max_bytes: int, qualities: Sequence[int] = JPEG_QUALITIES) -> bytes:
    """Encode an RGB tile as JPEG, lowering the quality until it is at most ``max_bytes``.

    Parameters
    ----------
    rgb : numpy.ndarray
        uint8 ``(h, w, 3)`` RGB tile.
    max_bytes : int
        Byte budget of the encoded tile (the message limit less its base64 and JSON overhead).
    qualities : sequence of int
        JPEG qualities (0–100) to try, best first.

    Raises
    ------
    TileTooLarge
        When even the last quality exceeds ``max_bytes``.
    """
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    size = 0
    for q in qualities:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise TileTooLarge("the tile could not be JPEG-encoded")
        size = int(buf.size)
        if size <= max_bytes:
            return buf.tobytes()
    raise TileTooLarge(f"a {rgb.shape[1]}×{rgb.shape[0]} tile is {size} bytes at JPEG quality {qualities[-1]}, "
                       f"over the {max_bytes}-byte budget")


def tissue_tiles_estimate(
    thumb: npt.NDArray[np.uint8], width: int, height: int, *, tile_w: int, tile_h: int, overlap: float,
    min_tissue: float,
) -> int:
    """How many tiles of the slide's grid hold tissue, judged on a thumbnail.

    The grid of a ``width × height`` slide is scaled to the thumbnail and the tissue rule applied
    to each scaled tile. Used before answering an upload, to refuse blank slides at once; the
    tiling job applies the rule again on the full-resolution tiles.

    Parameters
    ----------
    thumb : numpy.ndarray
        RGB uint8 thumbnail of the whole slide level.
    width, height : int
        Size of the slide level in pixels.
    tile_w, tile_h : int
        Tile size in level pixels.
    overlap : float
        Overlap of neighbouring tiles as a fraction of the tile size.
    min_tissue : float
        Least tissue fraction of a kept tile.
    """
    sy, sx = thumb.shape[0] / height, thumb.shape[1] / width
    n = 0
    for x, y, w, h in tile_grid(width, height, tile_w=tile_w, tile_h=tile_h, overlap=overlap):
        x0, y0 = int(x * sx), int(y * sy)
        x1, y1 = max(x0 + 1, round((x + w) * sx)), max(y0 + 1, round((y + h) * sy))
        part = thumb[y0:y1, x0:x1]
        if part.size and is_tissue_tile(part, min_tissue):
            n += 1
    return n


def tissue_area_mm2(thumb: npt.NDArray[np.uint8], width: int, height: int, mpp: float | None) -> float | None:
    """Tissue area of the slide in mm²: the thumbnail's tissue fraction × the slide area.

    Parameters
    ----------
    thumb : numpy.ndarray
        RGB uint8 thumbnail of the whole slide level.
    width, height : int
        Size of the slide level in pixels.
    mpp : float or None
        µm per pixel of the level; ``None`` → ``None``.
    """
    if mpp is None:
        return None
    return float(tissue_fraction(thumb)) * width * height * (mpp / 1000.0) ** 2
