"""Open an uploaded slide file, validate it and read regions of it — the core of ``POST /v1/slides``.

Formats (sniffed from the first bytes, never from the file name):

* **OpenSlide** (``openslide-python`` + ``openslide-bin``): SVS, NDPI, SCN, BIF and tiled
  pyramidal TIFF (TIFF magic), and MRXS uploaded as a **zip** of the ``.mrxs`` file and its
  folder. Regions are read lazily, so a slide of any size costs a tile's memory.
* **Plain images**: PNG, JPEG (Pillow) and TIFFs OpenSlide does not take, e.g. stripped or
  single-level ones (``tifffile``), decoded whole — so they are capped at
  ``max_decoded_pixels``.

Every problem raises :class:`SlideError` with the HTTP status it deserves and a message for the
uploader: 415 when the bytes are no image format we read; 422 for a truncated or corrupt file
(for TIFF-based files every strip/tile of the chosen level must lie inside the file — checked
from the TIFF directory before anything is decoded), an empty (0-byte, 0-pixel) or absurdly
large slide, a level the slide does not have, or a zip without a slide.

Coordinates are pixels of the chosen level; ``downsample`` maps them to level 0.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "ACCEPTED_FORMATS",
    "SlideError",
    "SlideFormat",
    "SlideSource",
    "remove_quietly",
    "slide_open",
    "slide_sniff",
]

SlideFormat = Literal["tiff", "png", "jpeg", "zip"]
#: What the uploader is told is accepted.
ACCEPTED_FORMATS = ("SVS, NDPI, SCN, BIF, pyramidal TIFF (OpenSlide), MRXS as a .zip of the .mrxs file "
                    "and its folder, or a plain PNG, JPEG or TIFF")
_MAGIC: tuple[tuple[bytes, SlideFormat], ...] = (
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"PK\x03\x04", "zip"),
)
#: Most bytes a zip may unpack to, relative to the limit on uploads (zip-bomb guard).
_ZIP_EXPANSION = 4
_ZIP_MAX_MEMBERS = 100_000


class SlideError(ValueError):
    """The uploaded slide cannot be used; ``status`` is the HTTP status (415 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SlideSource(Protocol):
    """An opened slide level: its size, resolution and regions as RGB."""

    width: int
    height: int
    level: int
    downsample: float
    mpp: float | None
    backend: str

    def read(self, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        """RGB uint8 ``(h, w, 3)`` of the region at ``(x, y)`` (level pixels); white outside the scan."""
        ...

    def thumbnail(self, max_side: int) -> npt.NDArray[np.uint8]:
        """RGB uint8 image of the whole level, its longer side at most ``max_side`` pixels."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


def slide_sniff(head: bytes) -> SlideFormat:
    """The container format from the first bytes of a file.

    Raises
    ------
    SlideError
        422 for an empty file, 415 for anything that is not TIFF, PNG, JPEG or zip.
    """
    if not head:
        raise SlideError(422, "the upload is empty (0 bytes)")
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    raise SlideError(415, f"not a slide image: expected {ACCEPTED_FORMATS}")


# ------------------------------------------------------------------------------- OpenSlide


@dataclass
class _OpenSlideSource:
    slide: Any
    level: int
    width: int
    height: int
    downsample: float
    mpp: float | None
    backend: str = "openslide"

    def read(self, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        ds = self.downsample
        region = self.slide.read_region((round(x * ds), round(y * ds)), self.level, (w, h))
        return _rgba_on_white(np.asarray(region))

    def thumbnail(self, max_side: int) -> npt.NDArray[np.uint8]:
        scale = max_side / max(self.width, self.height)
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        thumb = self.slide.get_thumbnail(size).convert("RGB")
        return np.ascontiguousarray(np.asarray(thumb, dtype=np.uint8))

    def close(self) -> None:
        self.slide.close()


def _rgba_on_white(rgba: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    rgb = np.array(rgba[..., :3], dtype=np.uint8)
    if rgba.shape[-1] == 4:
        rgb[rgba[..., 3] == 0] = 255  # outside the scanned area
    return rgb


def _openslide_mpp(props: Any, downsample: float) -> float | None:
    try:
        mpp = float(props.get("openslide.mpp-x", "") or "nan")
    except ValueError:
        return None
    return mpp * downsample if math.isfinite(mpp) and mpp > 0 else None


def _try_openslide(path: Path, level: int, max_side: int) -> _OpenSlideSource | None:
    """The slide through OpenSlide, or ``None`` when OpenSlide does not take this file."""
    import openslide

    try:
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        return None
    except openslide.OpenSlideError as exc:
        raise SlideError(422, f"the slide file is corrupt: {exc}") from exc
    try:
        if level >= slide.level_count:
            raise SlideError(422, f"level {level} does not exist: the slide has levels 0–{slide.level_count - 1}")
        w, h = slide.level_dimensions[level]
        _check_size(w, h, max_side)
        ds = float(slide.level_downsamples[level])
        return _OpenSlideSource(slide, level, int(w), int(h), max(1.0, ds), _openslide_mpp(slide.properties, ds))
    except BaseException:
        slide.close()
        raise


# --------------------------------------------------------------------------- plain arrays


@dataclass
class _ArraySource:
    image: npt.NDArray[np.uint8]
    mpp: float | None
    level: int = 0
    downsample: float = 1.0
    backend: str = "array"
    width: int = field(init=False)
    height: int = field(init=False)

    def __post_init__(self) -> None:
        self.height, self.width = (int(v) for v in self.image.shape[:2])

    def read(self, x: int, y: int, w: int, h: int) -> npt.NDArray[np.uint8]:
        out = np.full((h, w, 3), 255, np.uint8)
        part = self.image[y : y + h, x : x + w]
        out[: part.shape[0], : part.shape[1]] = part
        return out

    def thumbnail(self, max_side: int) -> npt.NDArray[np.uint8]:
        scale = min(1.0, max_side / max(self.width, self.height))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        return np.ascontiguousarray(cv2.resize(self.image, size, interpolation=cv2.INTER_AREA))

    def close(self) -> None:
        self.image = np.zeros((1, 1, 3), np.uint8)


def _check_size(w: int, h: int, max_side: int) -> None:
    if w < 1 or h < 1:
        raise SlideError(422, f"the slide is empty ({w} × {h} pixels)")
    if w > max_side or h > max_side:
        raise SlideError(422, f"the slide is {w} × {h} pixels; at most {max_side} pixels per side are accepted")


def _check_decoded(w: int, h: int, max_side: int, max_pixels: int) -> None:
    _check_size(w, h, max_side)
    if w * h > max_pixels:
        raise SlideError(
            422, f"the image is {w} × {h} = {w * h / 1e6:.0f} MP; plain images are decoded whole and limited "
            f"to {max_pixels / 1e6:.0f} MP — upload a tiled pyramidal TIFF (or SVS/NDPI/MRXS) instead",
        )


def _to_rgb(arr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        else:
            raise SlideError(422, f"unsupported sample type {arr.dtype}; use 8- or 16-bit RGB or grey")
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.ascontiguousarray(arr[..., :3])
    raise SlideError(422, f"unsupported image layout {arr.shape}; use RGB or grey")


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _check_complete(path: Path) -> None:
    """422 unless a PNG ends with its IEND chunk and a JPEG with its EOI marker.

    Checked on the bytes, not left to Pillow: a library imported in the same process may set
    Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` (WeasyPrint does), after which a
    truncated file would decode with its missing rows filled in.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 64))
        tail = f.read().rstrip(b"\x00")
    if head.startswith(b"\x89PNG") and not tail.endswith(_PNG_END):
        raise SlideError(422, "the PNG file is truncated: it does not end with its IEND chunk")
    if head.startswith(b"\xff\xd8\xff") and not tail.endswith(b"\xff\xd9"):
        raise SlideError(422, "the JPEG file is truncated: it does not end with its end-of-image marker")


def _open_pil(path: Path, max_side: int, max_pixels: int, mpp: float | None) -> _ArraySource:
    from PIL import Image

    _check_complete(path)
    Image.MAX_IMAGE_PIXELS = None  # our own limit is checked before decoding
    try:
        with Image.open(path) as img:
            _check_decoded(img.width, img.height, max_side, max_pixels)
            img.load()  # raises on truncated data (LOAD_TRUNCATED_IMAGES stays off)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except SlideError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise SlideError(422, f"the image is truncated or corrupt: {exc}") from exc
    return _ArraySource(np.ascontiguousarray(rgb), mpp)


def _tiff_mpp(page: Any) -> float | None:
    tags = page.tags
    res, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
    if res is None or unit is None:
        return None
    num, den = res.value if isinstance(res.value, tuple) else (res.value, 1)
    per_unit = num / den if den else 0.0
    um = {2: 25_400.0, 3: 10_000.0}.get(int(unit.value))
    return um / per_unit if um and per_unit > 0 else None


def _tiff_check(path: Path, level: int) -> Any:
    """The TIFF page of ``level`` after checking that its strips/tiles lie inside the file."""
    import tifffile

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise SlideError(422, "the TIFF file holds no image")
            levels = tif.series[0].levels
            if level >= len(levels):
                raise SlideError(422, f"level {level} does not exist: the TIFF has levels 0–{len(levels) - 1}")
            pages = [p for lv in levels for p in lv.pages if p is not None]
            for page in pages:
                offsets, counts = page.dataoffsets, page.databytecounts
                if not offsets or any(c == 0 for c in counts):
                    raise SlideError(422, "the TIFF file is corrupt: an image has missing strips or tiles")
                end = max(o + c for o, c in zip(offsets, counts, strict=False))
                if end > size:
                    raise SlideError(
                        422, f"the TIFF file is truncated: its image data ends at byte {end} but the file has "
                        f"{size} bytes",
                    )
            return levels[level]
    except SlideError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise SlideError(422, f"the TIFF file is corrupt: {exc}") from exc


def _open_tifffile(path: Path, level: int, max_side: int, max_pixels: int, mpp: float | None) -> _ArraySource:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0].levels[level]
            shape = series.shape
            axes = series.axes
            w, h = int(shape[axes.index("X")]), int(shape[axes.index("Y")])
            _check_decoded(w, h, max_side, max_pixels)
            arr = series.asarray()
            page = series.pages[0] if series.pages else None
            file_mpp = _tiff_mpp(page) if page is not None else None
    except SlideError:
        raise
    except Exception as exc:
        raise SlideError(422, f"the TIFF file cannot be decoded: {exc}") from exc
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):  # planar (samples first)
        arr = np.moveaxis(arr, 0, -1)
    return _ArraySource(_to_rgb(arr), mpp if mpp is not None else file_mpp, level=level)


# ------------------------------------------------------------------------------------- zip


def _unzip_slide(path: Path, dest: Path, max_bytes: int) -> Path:
    """Unpack an MRXS zip into ``dest``; return the ``.mrxs`` file (or the only other file)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if not members or len(members) > _ZIP_MAX_MEMBERS:
                raise SlideError(422, f"the zip holds {len(members)} entries")
            if sum(m.file_size for m in members) > max_bytes * _ZIP_EXPANSION:
                raise SlideError(422, "the zip unpacks to more than the upload limit allows")
            for m in members:
                name = Path(m.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise SlideError(422, f"the zip holds an unsafe path {m.filename!r}")
            dest.mkdir(parents=True, exist_ok=False)
            zf.extractall(dest)
    except SlideError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise SlideError(422, f"the zip is truncated or corrupt: {exc}") from exc
    found = sorted(p for p in dest.rglob("*.mrxs") if p.is_file())
    if len(found) != 1:
        raise SlideError(422, f"the zip must hold exactly one .mrxs slide with its folder (found {len(found)})")
    return found[0]


# ------------------------------------------------------------------------------------ open


def slide_open(
    path: Path, *, level: int = 0, mpp: float | None = None, max_side: int = 300_000,
    max_decoded_pixels: int = 400_000_000, max_zip_bytes: int = 4 << 30, unpack_dir: Path | None = None,
) -> SlideSource:
    """Open and validate an uploaded slide.

    Parameters
    ----------
    path : Path
        The uploaded file.
    level : int
        Pyramid level to tile (0 = full resolution).
    mpp : float, optional
        Resolution in µm per pixel of level 0, overriding the file's (plain images rarely state one).
    max_side : int
        Longest accepted side of the level in pixels.
    max_decoded_pixels : int
        Most pixels of an image that has to be decoded whole (PNG, JPEG, non-pyramidal TIFF).
    max_zip_bytes : int
        Upload limit (bytes); a zip may unpack to at most 4× that.
    unpack_dir : Path, optional
        Where a zip is unpacked (a fresh folder; required for zips). The caller removes it.

    Returns
    -------
    SlideSource
        The opened level; the caller closes it.

    Raises
    ------
    SlideError
        415 / 422 as described in the module docstring.
    """
    if level < 0:
        raise SlideError(422, "level must be ≥ 0")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise SlideError(422, "mpp must be a positive number of µm per pixel")
    with path.open("rb") as f:
        head = f.read(16)
    fmt = slide_sniff(head)
    source: SlideSource | None
    if fmt == "zip":
        if unpack_dir is None:
            raise SlideError(422, "zip uploads need an unpack folder")
        mrxs = _unzip_slide(path, unpack_dir, max_zip_bytes)
        source = _try_openslide(mrxs, level, max_side)
        if source is None:
            raise SlideError(422, "OpenSlide cannot read the .mrxs slide in the zip")
    elif fmt == "tiff":
        _tiff_check(path, level)
        source = _try_openslide(path, level, max_side)
        if source is None:
            source = _open_tifffile(path, level, max_side, max_decoded_pixels, mpp)
    else:
        if level != 0:
            raise SlideError(422, f"a plain {fmt.upper()} image has only level 0")
        source = _open_pil(path, max_side, max_decoded_pixels, mpp)
    assert source is not None
    if mpp is not None:
        source.mpp = mpp * source.downsample
    return source


def remove_quietly(*paths: Path) -> None:
    """Delete files or folders, ignoring those already gone."""
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

