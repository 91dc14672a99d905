"""``streamdx train slides`` pieces: tile ground truth, target assignment, loss, and the ONNX export
decoded by :class:`SlideDetector` (YOLOv8 layout) — on tiny synthetic data, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamdx_inference.slides.detector import SlideDetector  # noqa: E402
from streamdx_inference.slides.detector_net import (  # noqa: E402
    STRIDE,
    TinyDet,
    assign_targets,
    decode_raw,
    detection_loss,
    grid_points,
)
from streamdx_inference.slides.training import cut_tiles, export_onnx, tile_targets, train  # noqa: E402


def test_tile_targets_keep_visible_boxes_and_ignore_fragments() -> None:
    boxes = np.array([[100, 100, 300, 300], [1500, 100, 1700, 300], [1580, 500, 1780, 700]], np.float32)
    targets, ignored = tile_targets(boxes, 0, 0, 1600, 1200)
    np.testing.assert_array_equal(targets, [[100, 100, 300, 300], [1500, 100, 1600, 300]])  # 50 % visible: kept
    np.testing.assert_array_equal(ignored, [[1580, 500, 1600, 700]])  # 10 % visible: ignored


def test_assign_targets_centre_cells_smallest_box_wins() -> None:
    pts = grid_points(18, 24).numpy()
    big = np.array([[64, 64, 192, 192]], np.float32)
    small = np.array([[112, 112, 144, 144]], np.float32)
    pos, tgt, ign = assign_targets(pts, np.concatenate([big, small]), np.zeros((0, 4), np.float32))
    assert pos.sum() >= 2
    centre = np.argmin(np.abs(pts - 128).sum(axis=1))
    np.testing.assert_array_equal(tgt[pos & (np.abs(pts - 128).max(axis=1) < 16)][0], small[0])
    assert pos[centre]
    # cells inside the big box but outside its centre region are ignored, not negatives
    assert ign[(np.abs(pts - 72).max(axis=1) < 9)].all()
    pos2, _, ign2 = assign_targets(pts, np.zeros((0, 4), np.float32), big)
    assert not pos2.any() and ign2.sum() == 64  # 8 × 8 cells of 16 px inside a 128-px box


def test_loss_decreases_on_one_batch() -> None:
    torch.manual_seed(0)
    net = TinyDet()
    x = torch.rand(2, 3, 96, 128)
    pts = grid_points(96 // STRIDE, 128 // STRIDE).numpy()
    boxes = [np.array([[20, 20, 70, 60]], np.float32), np.zeros((0, 4), np.float32)]
    pos, tgt, ign = zip(*(assign_targets(pts, b, np.zeros((0, 4), np.float32)) for b in boxes), strict=True)
    pos_t, tgt_t, ign_t = (torch.from_numpy(np.stack(v)) for v in (pos, tgt, ign))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        loss, parts = detection_loss(net(x), pos_t, tgt_t, ign_t)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first is not None and float(loss.detach()) < first
    assert parts["pos"] >= 1


def _blob_slide(rng: np.random.Generator, w: int = 2400, h: int = 1800) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    img = np.full((h, w, 3), (235, 200, 220), np.uint8)
    boxes = []
    for _ in range(6):
        r = int(rng.integers(90, 150))
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        cv2.circle(img, (cx, cy), r, (150, 40, 120), -1)
        boxes.append([cx - r, cy - r, cx + r + 1, cy + r + 1])
    return img, np.asarray(boxes, np.float32)


def test_training_export_and_detector_round_trip(tmp_path: Path) -> None:
    """A few epochs on blob 'slides' learn to find blobs; the export decodes through SlideDetector."""
    rng = np.random.default_rng(0)
    size = (128, 96)
    fit = cut_tiles(*_blob_slide(rng), input_size=size, rng=rng, n_random=30, per_object=4)
    val_img, val_boxes = _blob_slide(rng)
    val = cut_tiles(val_img, val_boxes, input_size=size, rng=None)
    net, history = train(fit, val, epochs=6, minutes=2, batch=8, lr=5e-3, seed=0, log=lambda _m: None)
    assert len(history) >= 1
    export_onnx(net, tmp_path / "model.onnx", size)
    (tmp_path / "model.json").write_text(
        '{"input_size": [128, 96], "layout": "yolov8", "class_names": ["glomerulus"], "conf_threshold": 0.05,'
        ' "interpolation": "area"}'
    )
    det = SlideDetector.load(tmp_path)
    assert det.layout == "yolov8"
    (out,) = det.session.run(None, {"images": np.zeros((3, 3, 96, 128), np.float32)})
    assert out.shape == (3, 5, (96 // STRIDE) * (128 // STRIDE))
    results = det.detect([val_img[:1200, :1600], val_img[600:, 800:]])
    assert len(results) == 2
    for boxes, scores in results:
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and np.all(scores >= 0.05) and np.all(scores <= 1)
        assert np.all(boxes[:, 2] <= 1600) and np.all(boxes[:, 3] <= 1200)
    with torch.no_grad():
        b, logits = decode_raw(net(torch.zeros(1, 3, 96, 128)))
    assert b.shape == (1, 48, 4) and logits.shape == (1, 48)
