"""Glomerulus annotations: QuPath GeoJSON and COCO JSON → boxes, and GeoJSON export.

Boxes are ``x0, y0, x1, y1`` in level-0 slide pixels (float64 array of shape ``(n, 4)``).

* **GeoJSON** (QuPath "Export objects as GeoJSON"): a ``FeatureCollection``, a list of
  features or one feature; each ``Polygon``/``MultiPolygon``/``LineString``/``MultiPoint``
  geometry becomes the bounding box of its coordinates. Features whose
  ``properties.classification.name`` (or ``properties.name``/``label``) is set and does not
  contain the wanted label (default ``"glomerul"``, case-insensitive) are skipped; unclassified
  features are kept.
* **COCO** (``images``, ``annotations``, ``categories``): ``bbox`` = ``[x, y, w, h]``. With
  several images, the one whose ``file_name`` stem equals ``image`` is taken; categories are
  filtered by the same label rule when names are given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["AnnotationError", "boxes_to_geojson", "read_annotations", "write_geojson"]

Boxes = npt.NDArray[np.float64]


class AnnotationError(ValueError):
    """An annotation file that cannot be read as GeoJSON or COCO boxes."""


def boxes_to_geojson(
    boxes: npt.ArrayLike, scores: Sequence[float] | None = None, *, label: str = "Glomerulus",
) -> dict[str, Any]:
    """QuPath-compatible GeoJSON ``FeatureCollection`` of rectangles.

    Parameters
    ----------
    boxes : array_like, shape (n, 4)
        ``x0, y0, x1, y1`` in slide pixels.
    scores : sequence of float, optional
        Detection confidences, written as the ``measurements`` ``score`` of each object.
    label : str
        Classification name.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    features = []
    for i, (x0, y0, x1, y1) in enumerate(b.tolist()):
        props: dict[str, Any] = {
            "objectType": "annotation" if scores is None else "detection",
            "classification": {"name": label, "color": [200, 0, 120]},
        }
        if scores is not None:
            props["measurements"] = {"score": float(scores[i])}
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append({"type": "Feature", "id": f"glom-{i}", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, boxes: npt.ArrayLike, scores: Sequence[float] | None = None) -> None:
    """Write :func:`boxes_to_geojson` to ``path``."""
    Path(path).write_text(json.dumps(boxes_to_geojson(boxes, scores)))


def _coords(obj: Any) -> Iterable[tuple[float, float]]:
    if isinstance(obj, (list, tuple)) and len(obj) >= 2 and all(isinstance(v, (int, float)) for v in obj[:2]):
        yield float(obj[0]), float(obj[1])
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _coords(o)


def _label_ok(name: Any, label: str | None) -> bool:
    return label is None or not isinstance(name, str) or not name or label.lower() in name.lower()


def _feature_label(props: Any) -> Any:
    if not isinstance(props, dict):
        return None
    cls = props.get("classification")
    if isinstance(cls, dict):
        return cls.get("name")
    if isinstance(cls, str):
        return cls
    return props.get("name") or props.get("label")


def _from_geojson(doc: Any, label: str | None, src: str) -> Boxes:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    elif isinstance(doc, list):
        feats = doc
    else:
        raise AnnotationError(f"{src}: not a GeoJSON FeatureCollection, feature list or COCO file")
    if not isinstance(feats, list):
        raise AnnotationError(f"{src}: 'features' is not a list")
    out = []
    for i, f in enumerate(feats):
        if not isinstance(f, dict) or not isinstance(f.get("geometry"), dict):
            raise AnnotationError(f"{src}: feature {i} has no geometry object")
        if not _label_ok(_feature_label(f.get("properties")), label):
            continue
        pts = list(_coords(f["geometry"].get("coordinates")))
        if not pts:
            raise AnnotationError(f"{src}: feature {i} has no coordinates")
        a = np.asarray(pts, np.float64)
        if not np.isfinite(a).all():
            raise AnnotationError(f"{src}: feature {i} has non-finite coordinates")
        x0, y0 = a.min(axis=0)
        x1, y1 = a.max(axis=0)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return np.asarray(out, np.float64).reshape(-1, 4)


def _from_coco(doc: dict[str, Any], label: str | None, image: str | None, src: str) -> Boxes:
    images = doc.get("images") or []
    anns = doc.get("annotations")
    if not isinstance(anns, list) or not isinstance(images, list):
        raise AnnotationError(f"{src}: COCO 'images' and 'annotations' must be lists")
    cats = {c.get("id"): c.get("name") for c in doc.get("categories") or [] if isinstance(c, dict)}
    image_id: Any = None
    if image is not None:
        stem = Path(image).stem
        ids = [im.get("id") for im in images if isinstance(im, dict)
               and Path(str(im.get("file_name", ""))).stem == stem]
        if not ids:
            raise AnnotationError(f"{src}: no COCO image with file name {stem!r}")
        image_id = ids[0]
    elif len(images) > 1:
        raise AnnotationError(f"{src}: {len(images)} images in the COCO file; say which one")
    out = []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise AnnotationError(f"{src}: annotation {i} is not an object")
        if image_id is not None and a.get("image_id") != image_id:
            continue
        if not _label_ok(cats.get(a.get("category_id")), label):
            continue
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)):
            raise AnnotationError(f"{src}: annotation {i} has no [x, y, w, h] bbox")
        x, y, w, h = (float(v) for v in bb)
        if w > 0 and h > 0:
            out.append((x, y, x + w, y + h))
    return np.asarray(out, np.float64).reshape(-1, 4)


def read_annotations(path: str | Path, *, image: str | None = None, label: str | None = "glomerul") -> Boxes:
    """Glomerulus boxes of a GeoJSON or COCO JSON file.

    Parameters
    ----------
    path : str or Path
        The annotation file.
    image : str, optional
        For a COCO file with several images: the slide file name whose boxes are wanted.
    label : str or None
        Keep objects whose class name contains this (case-insensitive); ``None`` keeps all.

    Returns
    -------
    ndarray of float64, shape (n, 4)
        ``x0, y0, x1, y1`` in slide pixels.

    Raises
    ------
    AnnotationError
        The file is missing, not JSON, or neither GeoJSON nor COCO.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise AnnotationError(f"{p}: no such annotation file") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{p}: not a JSON file ({e})") from e
    if isinstance(doc, dict) and "annotations" in doc and "type" not in doc:
        return _from_coco(doc, label, image, str(p))
    return _from_geojson(doc, label, str(p))
