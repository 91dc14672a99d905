"""The slide detector decodes YOLOv5- and YOLOv8-layout ONNX outputs into the right tile boxes.

Each test builds a tiny ONNX graph with the ``onnx`` helper API whose output is a known set of
boxes in the network-input pixels of a letterboxed tile, scaled per image by the image's mean
intensity (so the output is a function of the input and a black tile emits nothing). The
expected tile boxes are the known input boxes mapped back through the letterbox geometry,
worked out by hand here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamdx_inference.slides.detector import (
    DetectorError,
    SlideDetector,
    decode_yolov5,
    decode_yolov8,
    detect_layout,
    letterbox,
    letterbox_unmap,
    nms,
)

INPUT = 640  # square network input
# A 1600 × 1200 tile letterboxed into 640 × 640: scale 0.4, 640 × 480 image, 80 px grey top and bottom.
TILE_W, TILE_H = 1600, 1200
SCALE, PAD_Y = 0.4, 80.0

#: Glomeruli in tile pixels (x0, y0, x1, y1), class index, score for a white tile.
TILE_BOXES = np.array([[100, 200, 400, 500], [900, 300, 1300, 650], [1200, 800, 1500, 1150]], np.float32)
CLASSES = np.array([0, 1, 0])
SCORES = np.array([0.9, 0.8, 0.6], np.float32)


def tile_to_input(b: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 tile px → cx, cy, w, h input px (the letterbox of a 1600 × 1200 tile)."""
    x0, y0, x1, y1 = (b * SCALE).T
    y0, y1 = y0 + PAD_Y, y1 + PAD_Y
    return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=1)


def v5_rows(nc: int = 2) -> np.ndarray:
    """YOLOv5 rows (cx, cy, w, h, obj, classes...): the three boxes, a weaker duplicate of the
    first (NMS drops it), a box of another class on top of the first (class-wise NMS keeps it)
    and a box under the confidence threshold."""
    xywh = tile_to_input(TILE_BOXES)
    rows = []
    for (cx, cy, w, h), c, s in zip(xywh, CLASSES, SCORES, strict=True):
        probs = np.full(nc, 0.01, np.float32)
        probs[c] = 1.0
        rows.append([cx, cy, w, h, s, *probs])
    cx, cy, w, h = xywh[0]
    rows.append([cx + 3, cy - 2, w, h, 0.5, 1.0, 0.01])  # duplicate of box 0, lower score
    rows.append([cx, cy, w * 0.9, h * 0.9, 0.7, 0.01, 1.0])  # class 1 on top of box 0
    rows.append([320, 320, 50, 50, 0.1, 1.0, 0.0])  # below conf 0.25
    return np.asarray(rows, np.float32)


def build_model(rows: np.ndarray, layout: str, path: Path, *, batch: int | str = "N", obj_col: int | None) -> None:
    """An ONNX graph: images [N, 3, 640, 640] → constant rows with the score column(s) scaled by
    the image mean (YOLOv5 → [N, B, C]; YOLOv8 → [N, C, B])."""
    const = rows.astype(np.float32)
    scale_mask = np.zeros_like(const)
    if obj_col is not None:
        scale_mask[:, obj_col] = 1.0  # objectness × mean
    else:
        scale_mask[:, 4:] = 1.0  # every class score × mean
    base = np.where(scale_mask == 1, 0, const).astype(np.float32)
    scaled = np.where(scale_mask == 1, const, 0).astype(np.float32)
    if layout == "yolov8":
        base, scaled = base.T.copy(), scaled.T.copy()
    out_shape = [batch, *base.shape]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape3"], ["m3"]),
        helper.make_node("Mul", ["m3", "scaled"], ["s"]),
        helper.make_node("Add", ["s", "base"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, INPUT, INPUT])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=[
            numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
            numpy_helper.from_array(base[None], "base"),
            numpy_helper.from_array(scaled[None], "scaled"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def model_dir(tmp_path: Path, rows: np.ndarray, layout: str, *, with_layout: bool = True,
              batch: int | str = "N", nc: int = 2, **meta: object) -> Path:
    d = tmp_path / layout
    d.mkdir()
    build_model(rows, layout, d / "model.onnx", batch=batch, obj_col=4 if layout == "yolov5" else None)
    config: dict[str, object] = {"input_size": INPUT, "class_names": ["glomerulus", "other"][:nc],
                                 "conf_threshold": 0.25, "iou_threshold": 0.5, **meta}
    if with_layout:
        config["layout"] = layout
    (d / "model.json").write_text(json.dumps(config))
    return d


def white(w: int = TILE_W, h: int = TILE_H) -> np.ndarray:
    return np.full((h, w, 3), 255, np.uint8)


def mean_of_letterboxed(tile: np.ndarray) -> float:
    img, _ = letterbox(tile, INPUT)
    return float(img.astype(np.float64).mean() / 255.0)


def assert_expected(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, mean: float) -> None:
    """The three known boxes plus the class-1 box on top of box 0, nothing else."""
    order = np.lexsort((boxes[:, 0], -np.round(scores, 4)))
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    cx, cy, w, h = tile_to_input(TILE_BOXES[:1])[0]
    extra = np.array([[cx - w * 0.45, cy - h * 0.45, cx + w * 0.45, cy + h * 0.45]], np.float32)
    extra = ((extra - [0, PAD_Y, 0, PAD_Y]) / SCALE).astype(np.float32)
    exp_boxes = np.concatenate([TILE_BOXES[:2], extra, TILE_BOXES[2:]])
    exp_scores = np.array([0.9, 0.8, 0.7, 0.6]) * mean
    exp_classes = np.array([0, 1, 1, 0])
    assert boxes.shape == (4, 4)
    np.testing.assert_allclose(boxes, exp_boxes, atol=1.0)
    np.testing.assert_allclose(scores, exp_scores, rtol=1e-3)  # ONNX mean in float32
    np.testing.assert_array_equal(classes, exp_classes)


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_layout_decodes_known_boxes_in_tile_pixels(tmp_path: Path, layout: str) -> None:
    rows = v5_rows()
    if layout == "yolov8":
        rows = np.concatenate([rows[:, :4], rows[:, 4:5] * rows[:, 5:]], axis=1)  # no objectness
    det = SlideDetector.load(model_dir(tmp_path, rows, layout))
    assert det.layout == layout
    tile = white()
    ((boxes, scores, classes),) = det.detect_with_classes([tile])
    assert_expected(boxes, scores, classes, mean_of_letterboxed(tile))
    ((b2, s2),) = det.detect([tile])
    np.testing.assert_array_equal(b2, boxes)
    np.testing.assert_array_equal(s2, scores)


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_layout_detected_from_output_shape(tmp_path: Path, layout: str) -> None:
    # Real exports have thousands of box rows; 50 empty ones make the shape unambiguous
    # ([N, 57, 7] fits only YOLOv5 and [N, 6, 57] only YOLOv8 for 2 classes).
    rows = np.concatenate([v5_rows(), np.zeros((50, 7), np.float32)])
    if layout == "yolov8":
        rows = np.concatenate([rows[:, :4], rows[:, 4:5] * rows[:, 5:]], axis=1)
    det = SlideDetector.load(model_dir(tmp_path, rows, layout, with_layout=False))
    assert det.layout == layout
    ((boxes, scores, classes),) = det.detect_with_classes([white()])
    assert_expected(boxes, scores, classes, mean_of_letterboxed(white()))


@pytest.mark.parametrize(("layout", "batch"), [("yolov5", "N"), ("yolov8", "N"), ("yolov8", 1)])
def test_batch_of_tiles_each_mapped_by_its_own_geometry(tmp_path: Path, layout: str, batch: int | str) -> None:
    rows = v5_rows()
    if layout == "yolov8":
        rows = np.concatenate([rows[:, :4], rows[:, 4:5] * rows[:, 5:]], axis=1)
    det = SlideDetector.load(model_dir(tmp_path, rows, layout, batch=batch, max_batch=2))
    assert det.batch_size == (1 if batch == 1 else 2)
    big = white()
    half = white(800, 600)  # same aspect: every box at half the tile coordinates
    black = np.zeros((TILE_H, TILE_W, 3), np.uint8)  # mean 114/255 × 1/4 of the input: scores under conf
    tall = white(1200, 1600)  # portrait: letterboxed with padding left and right
    results = det.detect_with_classes([big, half, black, big, tall])
    assert len(results) == 5
    assert_expected(*results[0], mean_of_letterboxed(big))
    assert_expected(*results[3], mean_of_letterboxed(big))
    b_half = results[1][0]
    b_big = results[0][0]
    np.testing.assert_allclose(np.sort(b_half, axis=0), np.sort(b_big / 2, axis=0), atol=1.0)
    assert results[2][0].shape == (0, 4)
    # Portrait 1200 × 1600 → scale 0.4, 480 × 640, 80 px padding left: input box (x, y) ↦ ((x - 80) / 0.4, y / 0.4).
    b_tall = results[4][0]
    assert b_tall.shape[0] >= 1
    assert np.all(b_tall[:, [0, 2]] >= 0) and np.all(b_tall[:, [0, 2]] <= 1200)
    assert np.all(b_tall[:, [1, 3]] >= 0) and np.all(b_tall[:, [1, 3]] <= 1600)
    xywh = tile_to_input(TILE_BOXES[1:2])[0]
    exp = np.array([(xywh[0] - xywh[2] / 2 - 80) / 0.4, (xywh[1] - xywh[3] / 2) / 0.4,
                    (xywh[0] + xywh[2] / 2 - 80) / 0.4, (xywh[1] + xywh[3] / 2) / 0.4])
    assert np.min(np.abs(b_tall - exp).max(axis=1)) <= 1.0


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_empty_output(tmp_path: Path, layout: str) -> None:
    rows = np.zeros((0, 7 if layout == "yolov5" else 6), np.float32)
    det = SlideDetector.load(model_dir(tmp_path, rows, layout))
    results = det.detect([white(), white(640, 480)])
    assert [r[0].shape for r in results] == [(0, 4), (0, 4)]
    assert [r[1].shape for r in results] == [(0,), (0,)]
    assert det.detect([]) == []


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_nan_and_inf_rows_are_dropped(tmp_path: Path, layout: str) -> None:
    rows = v5_rows()
    bad = rows[:3].copy()
    bad[0, 0] = np.nan  # box coordinate
    bad[1, 4] = np.nan  # objectness / score
    bad[2, 3] = np.inf  # height
    rows = np.concatenate([rows, bad])
    if layout == "yolov8":
        rows = np.concatenate([rows[:, :4], rows[:, 4:5] * rows[:, 5:]], axis=1)
    det = SlideDetector.load(model_dir(tmp_path, rows, layout))
    ((boxes, scores, classes),) = det.detect_with_classes([white()])
    assert np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))
    assert_expected(boxes, scores, classes, mean_of_letterboxed(white()))


def test_decoders_directly() -> None:
    rows = v5_rows()
    (v5,) = decode_yolov5(rows[None], conf=0.25, iou=0.5, input_size=INPUT)
    v8_rows = np.concatenate([rows[:, :4], rows[:, 4:5] * rows[:, 5:]], axis=1)
    (v8,) = decode_yolov8(v8_rows.T[None], conf=0.25, iou=0.5, input_size=INPUT)
    for boxes, scores, classes in (v5, v8):
        assert boxes.shape == (4, 4)
        np.testing.assert_allclose(np.sort(scores)[::-1], [0.9, 0.8, 0.7, 0.6], atol=1e-6)
        assert sorted(classes.tolist()) == [0, 0, 1, 1]
    assert decode_yolov5(np.zeros((2, 0, 6)), input_size=INPUT)[1][0].shape == (0, 4)
    assert decode_yolov8(np.zeros((3, 5, 0)))[2][1].shape == (0,)
    (all_nan,) = decode_yolov8(np.full((1, 5, 10), np.nan))
    assert all_nan[0].shape == (0, 4)
    with pytest.raises(DetectorError):
        decode_yolov5(np.zeros((1, 10, 4)))
    with pytest.raises(DetectorError):
        decode_yolov8(np.zeros((1, 10)), conf=2.0)


def test_detect_layout_rules() -> None:
    assert detect_layout([1, 25200, 6]) == "yolov5"
    assert detect_layout([1, 5, 8400]) == "yolov8"
    assert detect_layout(["N", 5, "boxes"], num_classes=1) == "yolov8"
    assert detect_layout(["N", "boxes", 85], num_classes=80) == "yolov5"
    with pytest.raises(DetectorError, match="neither"):
        detect_layout([1, 5, 8400], num_classes=3)
    with pytest.raises(DetectorError):
        detect_layout([1, 8400])


def test_letterbox_round_trip_and_nms() -> None:
    tile = np.zeros((1200, 1600, 3), np.uint8)
    img, geom = letterbox(tile, (512, 384))
    assert img.shape == (384, 512, 3) and geom.pad_x == 0 and geom.pad_y == 0
    np.testing.assert_allclose(geom.scale, 0.32)
    back = letterbox_unmap(np.array([[32.0, 64.0, 160.0, 320.0]]), geom)
    np.testing.assert_allclose(back, [[100, 200, 500, 1000]], atol=1e-3)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, [0.9, 0.8, 0.7, 0.6], 0.5, classes=[0, 0, 1, 0])
    assert keep.tolist() == [0, 2, 3]
    with pytest.raises(DetectorError):
        letterbox(np.zeros((10, 10, 3), np.float32), 64)
    with pytest.raises(DetectorError):
        letterbox(np.zeros((10, 10, 5), np.uint8), 64)


def test_bad_model_dirs(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match=r"no model\.onnx"):
        SlideDetector.load(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="cannot load"):
        SlideDetector.load(tmp_path)
    d = model_dir(tmp_path, v5_rows(), "yolov5", interpolation="sinc")
    with pytest.raises(DetectorError, match="interpolation"):
        SlideDetector.load(d)
    (d / "model.json").write_text("{not json")
    with pytest.raises(DetectorError, match="JSON"):
        SlideDetector.load(d)
