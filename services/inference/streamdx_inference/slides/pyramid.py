"""Pyramidal tiled TIFF writing (tifffile) that OpenSlide reads with its resolution.

Level 0 is the full image; each further level halves width and height (OpenCV area
averaging) until the longer side is ≤ ``min_size``. Every level is a tiled page of the main
IFD chain (``NewSubfileType`` 1 = reduced resolution for the levels below 0), which is the
layout of OpenSlide's *generic tiled TIFF*. ``XResolution``/``YResolution`` are written in
pixels per centimetre (``ResolutionUnit`` = CENTIMETER), from which OpenSlide reports
``openslide.mpp-x``/``openslide.mpp-y``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["write_pyramidal_tiff"]


def write_pyramidal_tiff(
    path: str | Path, image: npt.NDArray[np.uint8], mpp: float, *,
    compression: Literal["jpeg", "deflate"] | str = "jpeg", quality: int = 88, tile: int = 512,
    min_size: int = 1024,
) -> list[tuple[int, int]]:
    """Write an RGB image as a tiled pyramidal TIFF.

    Parameters
    ----------
    path : str or Path
        Output file (BigTIFF when the level-0 image is over 2 GB uncompressed).
    image : ndarray of uint8, shape (H, W, 3)
        RGB level-0 pixels.
    mpp : float
        Level-0 resolution in µm per pixel (> 0).
    compression : {"jpeg", "deflate"}
        Tile compression: lossy JPEG (``quality``, RGB-coded tiles) or lossless deflate.
    quality : int
        JPEG quality 1–100.
    tile : int
        Tile edge in pixels (multiple of 16).
    min_size : int
        Stop adding levels once the longer side is ≤ this many pixels.

    Returns
    -------
    list of (width, height)
        The size of every level written.

    Raises
    ------
    ValueError
        On a non-RGB or non-uint8 image, ``mpp`` ≤ 0, an unknown compression or a bad tile size.
    """
    import tifffile

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if not (mpp > 0 and math.isfinite(mpp)):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp}")
    if compression not in ("jpeg", "deflate"):
        raise ValueError(f"compression must be 'jpeg' or 'deflate', got {compression!r}")
    if tile <= 0 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    kwargs: dict[str, Any]
    if compression == "jpeg":
        # RGB-coded JPEG tiles: tifffile + imagecodecs YCbCr output decodes with shifted colours
        # in OpenSlide (and in tifffile itself), RGB round-trips within ~1 grey level at quality 88.
        kwargs = {"compression": "jpeg", "compressionargs": {"level": int(quality)}, "photometric": "rgb"}
    else:
        kwargs = {"compression": "deflate", "compressionargs": {"level": 6}, "photometric": "rgb",
                  "predictor": True}
    sizes: list[tuple[int, int]] = []
    bigtiff = image.nbytes > 2**31
    workers = max(1, min(4, os.cpu_count() or 1))
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        level: npt.NDArray[Any] = image
        downsample = 1
        while True:
            h, w = level.shape[:2]
            res = 1e4 / (mpp * downsample)  # pixels per cm
            tw.write(level, tile=(tile, tile), resolution=(res, res), resolutionunit="CENTIMETER",
                     subfiletype=0 if downsample == 1 else 1, maxworkers=workers,
                     software="streamdx slides", metadata=None, **kwargs)
            sizes.append((w, h))
            if max(w, h) <= min_size or min(w, h) < 2:
                break
            level = cv2.resize(level, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            downsample *= 2
    return sizes
