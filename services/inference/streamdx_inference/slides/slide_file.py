"""Read regions of a slide file: OpenSlide formats or a plain image.

Whole-slide formats (SVS, NDPI, MRXS, SCN, pyramidal/tiled TIFF, …) are read lazily with
OpenSlide at level 0; plain PNG/JPEG and untiled TIFF files are decoded whole (OpenCV,
tifffile) — fine for the sizes such files have. Any failure (not an image, truncated file,
unreadable tile) raises :class:`SlideReadError` with the file and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["SLIDE_SUFFIXES", "SlideFile", "SlideReadError", "open_slide_file"]

#: file suffixes taken as slides when listing a folder
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
                  ".png", ".jpg", ".jpeg")
_PLAIN = (".png", ".jpg", ".jpeg")
#: plain images above this many pixels are refused (a whole-slide image belongs in a tiled format)
MAX_PLAIN_PIXELS = 1_000_000_000


class SlideReadError(ValueError):
    """A slide file that cannot be opened or read."""


@dataclass
class SlideFile:
    """An open slide: level-0 size, resolution and region reads."""

    path: Path
    width: int
    height: int
    mpp: float | None
    _osr: Any = field(default=None, repr=False)
    _image: npt.NDArray[np.uint8] | None = field(default=None, repr=False)

    def read(self, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        """RGB uint8 pixels of the level-0 region ``(x, y, w, h)`` (zero-filled outside the slide)."""
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {w}×{h}")
        if self._image is not None:
            out = np.zeros((h, w, 3), np.uint8)
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(self.width, x + w), min(self.height, y + h)
            if x1 > x0 and y1 > y0:
                out[y0 - y:y1 - y, x0 - x:x1 - x] = self._image[y0:y1, x0:x1]
            return out
        import openslide

        try:
            region = self._osr.read_region((int(x), int(y)), 0, (int(w), int(h)))
        except openslide.OpenSlideError as e:
            raise SlideReadError(f"{self.path}: cannot read region {x},{y} {w}×{h} ({e})") from e
        rgba = np.asarray(region)
        rgb = rgba[..., :3].copy()
        # transparent (no data) → white glass, as a scanner shows it
        rgb[rgba[..., 3] == 0] = 255
        return rgb

    def close(self) -> None:
        if self._osr is not None:
            self._osr.close()
            self._osr = None
        self._image = None

    def __enter__(self) -> SlideFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(path: Path) -> SlideFile:
    img: npt.NDArray[Any] | None
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            img = tifffile.imread(path, key=0)
        except Exception as e:  # tifffile raises several types for bad files
            raise SlideReadError(f"{path}: not a readable TIFF ({e})") from e
    else:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise SlideReadError(f"{path}: not a readable image")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img is None or img.ndim not in (2, 3):
        raise SlideReadError(f"{path}: not a 2-D image")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] not in (3, 4):
        raise SlideReadError(f"{path}: {img.shape[2]} channels, expected RGB")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img // 257).astype(np.uint8)
        else:
            raise SlideReadError(f"{path}: pixel type {img.dtype} is not supported")
    img = np.ascontiguousarray(img[..., :3])
    if img.shape[0] * img.shape[1] > MAX_PLAIN_PIXELS:
        raise SlideReadError(f"{path}: plain image over {MAX_PLAIN_PIXELS} pixels; use a tiled format")
    return SlideFile(path=path, width=int(img.shape[1]), height=int(img.shape[0]), mpp=None, _image=img)


def open_slide_file(path: str | Path) -> SlideFile:
    """Open a slide for reading.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    SlideFile
        Level-0 ``width``, ``height``, ``mpp`` (µm/px from the file, ``None`` when it has none).

    Raises
    ------
    SlideReadError
        Missing file, not an image, truncated or unsupported.
    """
    p = Path(path)
    if not p.is_file():
        raise SlideReadError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise SlideReadError(f"{p}: empty file")
    if p.suffix.lower() not in _PLAIN:
        import openslide

        try:
            osr = openslide.OpenSlide(str(p))
        except (openslide.OpenSlideUnsupportedFormatError, openslide.OpenSlideError) as e:
            if p.suffix.lower() in (".tif", ".tiff"):
                return _plain(p)  # an untiled TIFF
            raise SlideReadError(f"{p}: not a slide OpenSlide can read ({e})") from e
        mpp: float | None = None
        try:
            v = float(osr.properties.get("openslide.mpp-x", "nan"))
            mpp = v if math.isfinite(v) and v > 0 else None
        except ValueError:
            mpp = None
        w, h = osr.dimensions
        sf = SlideFile(path=p, width=int(w), height=int(h), mpp=mpp, _osr=osr)
        # touch one pixel of the last tiles: a truncated file fails here rather than mid-run
        sf.read(max(0, w - 1), max(0, h - 1), 1, 1)
        return sf
    return _plain(p)
