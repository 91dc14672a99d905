"""Object detector for slide tiles: letterbox, ONNX run, YOLOv5 / YOLOv8 decode, NMS.

Pure core of the slides inference worker (numpy, OpenCV and onnxruntime; no Kafka, Redis or
HTTP). It runs any single-output detector exported in one of the two standard layouts, so a
model trained on real slides can be dropped in unchanged:

* **YOLOv5** (``ultralytics/yolov5`` ``export.py``): output ``[N, num_boxes, 5 + nc]`` with
  ``cx, cy, w, h, objectness, class_1 .. class_nc`` per box; score = objectness × class
  probability.
* **YOLOv8** (``ultralytics`` ``export format=onnx``, also YOLO11): output
  ``[N, 4 + nc, num_boxes]`` with ``cx, cy, w, h, class_1 .. class_nc``; no objectness.

Box coordinates are pixels of the (letterboxed) network input, as both exporters emit them
(``"boxes_normalized": true`` in ``model.json`` for a model that emits 0..1 instead).

Pre-processing is the usual YOLO *letterbox*: the tile is resized keeping its aspect ratio to
fit the network input and padded evenly on both sides with grey (114); detections are mapped
back to tile pixels by undoing the padding and the scale (:func:`letterbox_unmap`).

A model directory holds ``model.onnx`` and ``model.json``::

    {
      "format": "onnx-detector",
      "layout": "yolov8",             # or "yolov5"; omitted → detected from the output shape
      "input_size": [512, 384],       # network input width, height in pixels (or one int: square)
      "class_names": ["glomerulus"],
      "keep_classes": ["glomerulus"], # optional: classes reported (default all)
      "conf_threshold": 0.25,         # score below which a box is dropped before NMS
      "iou_threshold": 0.5,           # class-wise NMS IoU
      "interpolation": "linear",      # resize filter: "linear" (YOLO default) or "area"
      "boxes_normalized": false,
      "max_batch": 8                  # tiles per onnxruntime call (a fixed-batch export → its size)
    }

Only ``input_size`` is required when the ONNX input has a fixed spatial size (it is then read
from the model); everything else has the defaults above.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "LAYOUTS",
    "Decoded",
    "DetectorConfig",
    "DetectorError",
    "Letterbox",
    "SlideDetector",
    "decode",
    "decode_yolov5",
    "decode_yolov8",
    "detect_layout",
    "letterbox",
    "letterbox_unmap",
    "nms",
]

Layout = Literal["yolov5", "yolov8"]
LAYOUTS: tuple[Layout, ...] = ("yolov5", "yolov8")
#: Grey of the letterbox padding (the YOLO exporters' value).
PAD_VALUE = 114
#: Boxes kept per image before NMS (highest scores), bounding the NMS cost on a noisy output.
MAX_CANDIDATES = 10_000
#: Boxes kept per image after NMS.
MAX_DETECTIONS = 1_000

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
#: One image's detections: boxes (k, 4) x0, y0, x1, y1; scores (k,); class indices (k,).
Decoded = tuple[FloatArray, FloatArray, IntArray]


class DetectorError(ValueError):
    """A model directory, model output or input image that the detector cannot use."""


# --------------------------------------------------------------------------- letterbox


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterboxed image.

    Attributes
    ----------
    scale : float
        Network-input pixels per source pixel (same in x and y).
    pad_x, pad_y : float
        Padding added on the left / top, in network-input pixels.
    src_w, src_h : int
        Source image size in pixels (boxes are clipped to it when mapped back).
    """

    scale: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int


def _size_wh(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        w = h = int(size)
    else:
        if len(size) != 2:
            raise DetectorError(f"input size must be an int or [width, height], got {size!r}")
        w, h = int(size[0]), int(size[1])
    if w < 8 or h < 8 or w > 8192 or h > 8192:
        raise DetectorError(f"input size {w}x{h} px is outside 8..8192")
    return w, h


def letterbox(
    image: npt.NDArray[np.uint8],
    size: int | Sequence[int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[npt.NDArray[np.uint8], Letterbox]:
    """Resize an image keeping its aspect ratio and pad it to the network input size.

    Parameters
    ----------
    image : ndarray, uint8, (H, W, 3) or (H, W)
        RGB (or grey) tile.
    size : int or (width, height)
        Network input size in pixels.
    interpolation : int
        OpenCV resize filter.

    Returns
    -------
    out : ndarray, uint8, (height, width, 3)
        The letterboxed image (padding grey 114, centred as the YOLO exporters do).
    geometry : Letterbox
        Scale and padding, for :func:`letterbox_unmap`.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DetectorError(f"tile must be an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise DetectorError(f"tile must be uint8, got {arr.dtype}")
    arr = arr[:, :, :3]
    out_w, out_h = _size_wh(size)
    src_h, src_w = arr.shape[:2]
    scale = min(out_w / src_w, out_h / src_h)
    new_w = max(1, min(out_w, round(src_w * scale)))
    new_h = max(1, min(out_h, round(src_h * scale)))
    resized = arr if (new_w, new_h) == (src_w, src_h) else cv2.resize(arr, (new_w, new_h), interpolation=interpolation)
    pad_x = (out_w - new_w) / 2
    pad_y = (out_h - new_h) / 2
    left, top = round(pad_x - 0.1), round(pad_y - 0.1)
    out = np.full((out_h, out_w, 3), PAD_VALUE, dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = resized
    return out, Letterbox(scale=scale, pad_x=float(left), pad_y=float(top), src_w=src_w, src_h=src_h)


def letterbox_unmap(boxes: npt.ArrayLike, geometry: Letterbox) -> FloatArray:
    """Map boxes from network-input pixels back to source (tile) pixels.

    Parameters
    ----------
    boxes : array, (k, 4)
        x0, y0, x1, y1 in letterboxed input pixels.
    geometry : Letterbox
        From :func:`letterbox`.

    Returns
    -------
    ndarray, float32, (k, 4)
        x0, y0, x1, y1 in tile pixels, clipped to the tile.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - geometry.pad_x) / geometry.scale
    b[:, [1, 3]] = (b[:, [1, 3]] - geometry.pad_y) / geometry.scale
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, geometry.src_w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, geometry.src_h)
    return b


# --------------------------------------------------------------------------- NMS


def nms(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, iou: float, classes: npt.ArrayLike | None = None
) -> IntArray:
    """Greedy non-maximum suppression, class-wise (boxes of different classes never suppress each other).

    Parameters
    ----------
    boxes : array, (k, 4)
        x0, y0, x1, y1 (any pixel unit).
    scores : array, (k,)
    iou : float
        A box overlapping a higher-scored box of its class by more than this IoU is dropped.
    classes : array of int, (k,), optional
        Class index per box (default: one class).

    Returns
    -------
    ndarray, int64
        Indices of the kept boxes, highest score first.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise DetectorError(f"{b.shape[0]} boxes but {s.shape[0]} scores")
    if b.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if classes is not None:
        # Offsetting each class by more than the whole extent separates classes in one pass.
        c = np.asarray(classes, dtype=np.float64).reshape(-1)
        span = float(np.max(b) - np.min(b)) + 1.0
        b = b + (c * span)[:, None]
    x0, y0, x1, y1 = b.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        w = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0)
        h = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0)
        inter = w * h
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


# --------------------------------------------------------------------------- decode


def _empty() -> Decoded:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _check_output(output: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    out = np.asarray(output)
    if out.ndim == 2:
        out = out[None]
    if out.ndim != 3:
        raise DetectorError(f"{what} output must be 3-D [N, ., .], got shape {out.shape}")
    if not np.issubdtype(out.dtype, np.number):
        raise DetectorError(f"{what} output must be numeric, got {out.dtype}")
    return out.astype(np.float32, copy=False)


def _finish(
    xywh: FloatArray,
    scores: FloatArray,
    classes: IntArray,
    *,
    conf: float,
    iou: float,
    input_size: int | Sequence[int] | None,
    normalized: bool,
) -> Decoded:
    """Confidence filter, non-finite rows dropped, cxcywh → xyxy, clip, NMS for one image."""
    ok = np.isfinite(scores) & np.all(np.isfinite(xywh), axis=1) & (scores >= conf)
    ok &= (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    if not np.any(ok):
        return _empty()
    xywh, scores, classes = xywh[ok], scores[ok], classes[ok]
    if scores.shape[0] > MAX_CANDIDATES:
        top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
        xywh, scores, classes = xywh[top], scores[top], classes[top]
    if normalized:
        if input_size is None:
            raise DetectorError("normalised boxes need the input size")
        w_in, h_in = _size_wh(input_size)
        xywh = xywh * np.array([w_in, h_in, w_in, h_in], np.float32)
    half = xywh[:, 2:4] / 2
    boxes = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1).astype(np.float32)
    if input_size is not None:
        w_in, h_in = _size_wh(input_size)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w_in)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h_in)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
    keep = nms(boxes, scores, iou, classes)[:MAX_DETECTIONS]
    return boxes[keep], scores[keep].astype(np.float32), classes[keep].astype(np.int64)


def _check_thresholds(conf: float, iou: float) -> None:
    if not (math.isfinite(conf) and 0 <= conf <= 1):
        raise DetectorError(f"conf must be in 0..1, got {conf}")
    if not (math.isfinite(iou) and 0 < iou <= 1):
        raise DetectorError(f"iou must be in (0, 1], got {iou}")


def decode_yolov5(
    output: npt.ArrayLike,
    *,
    conf: float = 0.25,
    iou: float = 0.5,
    input_size: int | Sequence[int] | None = None,
    normalized: bool = False,
) -> list[Decoded]:
    """Decode a YOLOv5-layout output ``[N, num_boxes, 5 + nc]``.

    Parameters
    ----------
    output : array, (N, num_boxes, 5 + nc)
        Per box cx, cy, w, h (input pixels), objectness, nc class probabilities.
    conf : float
        Minimum score (objectness × best class probability).
    iou : float
        Class-wise NMS IoU threshold.
    input_size : int or (width, height), optional
        Network input size in pixels; boxes are clipped to it (and scaled by it when
        ``normalized``).
    normalized : bool
        Coordinates are fractions of the input size instead of pixels.

    Returns
    -------
    list of (boxes, scores, classes), one per image
        boxes float32 (k, 4) x0, y0, x1, y1 in input pixels; scores float32 (k,); classes int64 (k,).
        Rows with NaN or infinite values are dropped.
    """
    _check_thresholds(conf, iou)
    out = _check_output(output, "YOLOv5")
    if out.shape[2] < 6:
        raise DetectorError(f"YOLOv5 output needs 5 + nc ≥ 6 values per box, got shape {out.shape}")
    results: list[Decoded] = []
    for img in out:
        with np.errstate(invalid="ignore", over="ignore"):
            cls_scores = img[:, 5:] * img[:, 4:5]
        cls_clean = np.where(np.isfinite(cls_scores), cls_scores, -np.inf)
        classes = np.argmax(cls_clean, axis=1).astype(np.int64)
        scores = np.take_along_axis(cls_scores, classes[:, None], axis=1)[:, 0] if img.shape[0] else np.zeros(0)
        results.append(_finish(img[:, :4], scores.astype(np.float32), classes, conf=conf, iou=iou,
                               input_size=input_size, normalized=normalized))
    return results


def decode_yolov8(
    output: npt.ArrayLike,
    *,
    conf: float = 0.25,
    iou: float = 0.5,
    input_size: int | Sequence[int] | None = None,
    normalized: bool = False,
) -> list[Decoded]:
    """Decode a YOLOv8-layout output ``[N, 4 + nc, num_boxes]``.

    Parameters
    ----------
    output : array, (N, 4 + nc, num_boxes)
        Per box (along the last axis) cx, cy, w, h (input pixels) and nc class scores (no objectness).
    conf, iou, input_size, normalized
        As in :func:`decode_yolov5`; the score is the best class score.

    Returns
    -------
    list of (boxes, scores, classes), one per image
        As in :func:`decode_yolov5`.
    """
    _check_thresholds(conf, iou)
    out = _check_output(output, "YOLOv8")
    if out.shape[1] < 5:
        raise DetectorError(f"YOLOv8 output needs 4 + nc ≥ 5 rows, got shape {out.shape}")
    results: list[Decoded] = []
    for img in out:
        rows = img.T  # (num_boxes, 4 + nc)
        cls_scores = rows[:, 4:]
        cls_clean = np.where(np.isfinite(cls_scores), cls_scores, -np.inf)
        classes = np.argmax(cls_clean, axis=1).astype(np.int64)
        scores = np.take_along_axis(cls_scores, classes[:, None], axis=1)[:, 0] if rows.shape[0] else np.zeros(0)
        results.append(_finish(np.ascontiguousarray(rows[:, :4]), scores.astype(np.float32), classes,
                               conf=conf, iou=iou, input_size=input_size, normalized=normalized))
    return results


def detect_layout(shape: Sequence[int | str | None], num_classes: int | None = None) -> Layout:
    """Tell a YOLOv5 from a YOLOv8 output by its shape.

    Parameters
    ----------
    shape : sequence
        Output shape ``[N, a, b]`` (symbolic dimensions as ``str`` / ``None``).
    num_classes : int, optional
        Number of classes (from ``model.json``): YOLOv5 has ``b == 5 + nc``, YOLOv8 ``a == 4 + nc``.

    Returns
    -------
    "yolov5" or "yolov8"

    Raises
    ------
    DetectorError
        When the shape fits neither layout, or fits both (set ``layout`` in ``model.json``).
    """
    if len(shape) != 3:
        raise DetectorError(f"detector output must be 3-D [N, ., .], got shape {list(shape)}")
    a, b = shape[1], shape[2]
    a_i = a if isinstance(a, int) and a > 0 else None
    b_i = b if isinstance(b, int) and b > 0 else None
    if num_classes is not None:
        v5 = b_i == 5 + num_classes
        v8 = a_i == 4 + num_classes
        if v5 and not v8:
            return "yolov5"
        if v8 and not v5:
            return "yolov8"
        if not v5 and not v8:
            raise DetectorError(
                f"output shape {list(shape)} fits neither YOLOv5 [N, boxes, {5 + num_classes}] nor "
                f"YOLOv8 [N, {4 + num_classes}, boxes] for {num_classes} class(es)"
            )
    # Without the class count (or when both fit): boxes far outnumber the per-box values.
    if a_i is not None and (b_i is None or a_i < b_i) and (num_classes is None or a_i == 4 + num_classes):
        return "yolov8"
    if b_i is not None and (a_i is None or b_i < a_i) and (num_classes is None or b_i == 5 + num_classes):
        return "yolov5"
    raise DetectorError(f"cannot tell the layout of output shape {list(shape)}: set \"layout\" in model.json")


def decode(
    output: npt.ArrayLike,
    *,
    layout: Layout | None = None,
    num_classes: int | None = None,
    conf: float = 0.25,
    iou: float = 0.5,
    input_size: int | Sequence[int] | None = None,
    normalized: bool = False,
) -> list[Decoded]:
    """Decode either layout (``layout=None`` → :func:`detect_layout` on the output's shape)."""
    arr = np.asarray(output)
    chosen = layout or detect_layout(arr.shape, num_classes)
    if chosen not in LAYOUTS:
        raise DetectorError(f"unknown layout {chosen!r} (choose from {', '.join(LAYOUTS)})")
    fn = decode_yolov5 if chosen == "yolov5" else decode_yolov8
    return fn(arr, conf=conf, iou=iou, input_size=input_size, normalized=normalized)


# --------------------------------------------------------------------------- ONNX model


_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class DetectorConfig:
    """The settings of a detector model (``model.json``); see the module docstring."""

    input_size: tuple[int, int]
    layout: Layout | None = None
    class_names: tuple[str, ...] = ("glomerulus",)
    keep_classes: tuple[str, ...] | None = None
    conf_threshold: float = 0.25
    iou_threshold: float = 0.5
    interpolation: str = "linear"
    boxes_normalized: bool = False
    max_batch: int = 8
    name: str = "detector"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, meta: dict[str, Any], *, input_size: tuple[int, int] | None = None) -> DetectorConfig:
        """Validate ``model.json`` (``input_size`` fallback: the ONNX input's fixed spatial size)."""
        if not isinstance(meta, dict):
            raise DetectorError("model.json must hold a JSON object")
        size_raw = meta.get("input_size", input_size)
        if size_raw is None:
            raise DetectorError("model.json needs \"input_size\" (the ONNX input has no fixed size)")
        size = _size_wh(size_raw)
        layout = meta.get("layout")
        if layout is not None and layout not in LAYOUTS:
            raise DetectorError(f"model.json layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        names_raw = meta.get("class_names", ["glomerulus"])
        if not isinstance(names_raw, list) or not names_raw or not all(isinstance(n, str) for n in names_raw):
            raise DetectorError("model.json class_names must be a non-empty list of strings")
        keep_raw = meta.get("keep_classes")
        if keep_raw is not None and (not isinstance(keep_raw, list) or not set(keep_raw) <= set(names_raw)):
            raise DetectorError(f"model.json keep_classes {keep_raw!r} must be names from class_names")
        conf = float(meta.get("conf_threshold", 0.25))
        iou = float(meta.get("iou_threshold", 0.5))
        _check_thresholds(conf, iou)
        interp = str(meta.get("interpolation", "linear"))
        if interp not in _INTERPOLATIONS:
            raise DetectorError(f"model.json interpolation {interp!r} is not one of {', '.join(_INTERPOLATIONS)}")
        max_batch = int(meta.get("max_batch", 8))
        if max_batch < 1:
            raise DetectorError("model.json max_batch must be ≥ 1")
        return cls(
            input_size=size,
            layout=layout,
            class_names=tuple(names_raw),
            keep_classes=tuple(keep_raw) if keep_raw is not None else None,
            conf_threshold=conf,
            iou_threshold=iou,
            interpolation=interp,
            boxes_normalized=bool(meta.get("boxes_normalized", False)),
            max_batch=max_batch,
            name=str(meta.get("name", "detector"))[:100],
            extra=meta,
        )


def _fixed_dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


class SlideDetector:
    """An ONNX object detector for slide tiles (YOLOv5 or YOLOv8 output layout).

    Use :meth:`load`; :meth:`detect` takes RGB tiles of any size and returns boxes in each
    tile's pixels.
    """

    def __init__(self, session: Any, config: DetectorConfig, *, model_dir: Path | None = None) -> None:
        self.session = session
        self.config = config
        self.model_dir = model_dir
        inp = session.get_inputs()[0]
        self.input_name: str = inp.name
        batch = _fixed_dim(inp.shape[0]) if len(inp.shape) == 4 else None
        #: Tiles per onnxruntime call: a fixed-batch export runs exactly its batch size.
        self.fixed_batch: int | None = batch
        self.batch_size = batch or config.max_batch
        outs = [o for o in session.get_outputs() if len(o.shape) == 3]
        if not outs:
            raise DetectorError("the ONNX model has no 3-D output [N, ., .]")
        self.output_name: str = outs[0].name
        self.layout: Layout = config.layout or detect_layout(list(outs[0].shape), len(config.class_names))
        keep = config.keep_classes
        self._keep_idx: IntArray | None = (
            None if keep is None else np.array([config.class_names.index(k) for k in keep], np.int64)
        )

    @property
    def name(self) -> str:
        """Model name for ``SlideDetectionsV1.model`` (``model.json`` ``name``)."""
        return self.config.name

    @classmethod
    def load(cls, model_dir: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
             *, threads: int | None = None) -> SlideDetector:
        """Load ``model.onnx`` + ``model.json`` from a directory.

        Parameters
        ----------
        model_dir : path
            Directory holding ``model.onnx`` and ``model.json``.
        providers : sequence of str
            onnxruntime execution providers, in order of preference.
        threads : int, optional
            onnxruntime intra-op threads (default: onnxruntime's choice).

        Raises
        ------
        DetectorError
            Missing or invalid files.
        """
        import onnxruntime as ort

        d = Path(model_dir)
        onnx_path, meta_path = d / "model.onnx", d / "model.json"
        if not onnx_path.is_file():
            raise DetectorError(f"no model.onnx in {d}")
        meta: dict[str, Any] = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise DetectorError(f"{meta_path}: not valid JSON ({exc})") from exc
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(f"{onnx_path}: cannot load the ONNX model ({exc})") from exc
        inp = session.get_inputs()[0]
        shape_size: tuple[int, int] | None = None
        if len(inp.shape) == 4:
            h, w = _fixed_dim(inp.shape[2]), _fixed_dim(inp.shape[3])
            if h and w:
                shape_size = (w, h)
        else:
            raise DetectorError(f"the ONNX input must be 4-D [N, 3, H, W], got {inp.shape}")
        config = DetectorConfig.from_json(meta, input_size=shape_size)
        if shape_size is not None and shape_size != config.input_size:
            raise DetectorError(f"model.json input_size {config.input_size} differs from the ONNX input {shape_size}")
        return cls(session, config, model_dir=d)

    def preprocess(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> tuple[FloatArray, list[Letterbox]]:
        """Letterbox tiles into one float32 NCHW batch scaled to 0..1."""
        interp = _INTERPOLATIONS[self.config.interpolation]
        w, h = self.config.input_size
        batch = np.empty((len(tiles), 3, h, w), np.float32)
        geoms: list[Letterbox] = []
        for i, tile in enumerate(tiles):
            img, geom = letterbox(tile, (w, h), interpolation=interp)
            batch[i] = img.transpose(2, 0, 1)
            geoms.append(geom)
        batch *= 1.0 / 255.0
        return batch, geoms

    def detect_with_classes(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[Decoded]:
        """Like :meth:`detect`, also returning each box's class index (into ``class_names``)."""
        results: list[Decoded] = []
        cfg = self.config
        for start in range(0, len(tiles), self.batch_size):
            chunk = list(tiles[start : start + self.batch_size])
            batch, geoms = self.preprocess(chunk)
            n = batch.shape[0]
            if self.fixed_batch is not None and n < self.fixed_batch:
                batch = np.concatenate([batch, np.zeros((self.fixed_batch - n, *batch.shape[1:]), np.float32)])
            output = self.session.run([self.output_name], {self.input_name: batch})[0]
            decoded = decode(output, layout=self.layout, conf=cfg.conf_threshold, iou=cfg.iou_threshold,
                             input_size=cfg.input_size, normalized=cfg.boxes_normalized)[:n]
            for (boxes, scores, classes), geom in zip(decoded, geoms, strict=True):
                if self._keep_idx is not None:
                    sel = np.isin(classes, self._keep_idx)
                    boxes, scores, classes = boxes[sel], scores[sel], classes[sel]
                tile_boxes = letterbox_unmap(boxes, geom)
                ok = (tile_boxes[:, 2] > tile_boxes[:, 0]) & (tile_boxes[:, 3] > tile_boxes[:, 1])
                results.append((tile_boxes[ok], np.clip(scores[ok], 0, 1).astype(np.float32), classes[ok]))
        return results

    def detect(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[tuple[FloatArray, FloatArray]]:
        """Detect objects in RGB tiles, in batches of :attr:`batch_size`.

        Parameters
        ----------
        tiles : sequence of ndarray, uint8, (H, W, 3)
            RGB tiles of any size (each is letterboxed to the network input).

        Returns
        -------
        list of (boxes, scores), one per tile
            boxes float32 (k, 4) x0, y0, x1, y1 in that tile's pixels; scores float32 (k,) in 0..1.
        """
        return [(b, s) for b, s, _ in self.detect_with_classes(tiles)]
