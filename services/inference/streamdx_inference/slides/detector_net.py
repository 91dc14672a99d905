"""The small glomerulus detector trained by ``streamdx train slides`` (PyTorch, training only).

Architecture (``TinyDet``): a plain CNN backbone (3×3 Conv–BatchNorm–ReLU, five stride-2
stages, 16 → 96 channels), a one-step feature pyramid (stride-32 features upsampled and added
to the stride-16 ones) and an anchor-free head at stride 16 that predicts per grid cell one
class logit and the distances (left, top, right, bottom) from the cell centre to the box edges,
like YOLOv8/FCOS with a single level — glomeruli span a narrow size range (about 25–160 px at
the network input), so one level suffices.

Training targets (:func:`assign_targets`): a cell is positive for a ground-truth box when its
centre lies inside the box and within its central region (``CENTER_FRAC`` of the box size from
the centre, at least ``CENTER_MIN`` strides); a cell claimed by several boxes takes the smallest.
Boxes mostly outside the tile (visible area below the kept fraction) are *ignored*: their cells
are neither positive nor negative. Loss (:func:`detection_loss`): quality focal loss on the
class logit (the target is the IoU of the predicted box with its ground truth, 0 for negatives,
so the score ranks boxes by quality) plus GIoU loss on the positives.

:class:`ExportYolov8` wraps the net for ONNX export in the YOLOv8 layout ``[N, 5, cells]``
(cx, cy, w, h in input pixels, sigmoid score), which :mod:`streamdx_inference.slides.detector`
decodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

__all__ = [
    "CENTER_FRAC",
    "CENTER_MIN",
    "STRIDE",
    "ExportYolov8",
    "TinyDet",
    "assign_targets",
    "detection_loss",
    "giou",
    "grid_points",
]

#: Stride of the prediction grid in input pixels.
STRIDE = 16
#: Positive cells lie within this fraction of the box width/height from the box centre …
CENTER_FRAC = 0.25
#: … or within this many strides, whichever is larger (so every box has a positive cell).
CENTER_MIN = 0.75


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyDet(nn.Module):
    """Single-class anchor-free detector; ``forward`` → raw map (N, 5, H/16, W/16): ltrb logits, class logit."""

    def __init__(self, width: Sequence[int] = (16, 32, 48, 64, 96), neck: int = 64) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = width
        self.stem = _cbr(3, c1, 3, 2)
        self.s2 = nn.Sequential(_cbr(c1, c2, 3, 2), _cbr(c2, c2))
        self.s3 = nn.Sequential(_cbr(c2, c3, 3, 2), _cbr(c3, c3))
        self.s4 = nn.Sequential(_cbr(c3, c4, 3, 2), _cbr(c4, c4))
        self.s5 = nn.Sequential(_cbr(c4, c5, 3, 2), _cbr(c5, c5), _cbr(c5, c5))
        self.lat5 = _cbr(c5, neck, 1)
        self.lat4 = _cbr(c4, neck, 1)
        self.fuse = _cbr(neck, neck)
        self.head = nn.Sequential(_cbr(neck, neck), nn.Conv2d(neck, 5, 1))
        self.stride = STRIDE
        with torch.no_grad():
            last = self.head[-1]
            assert isinstance(last, nn.Conv2d) and last.bias is not None
            last.bias[:4] = 1.0  # softplus(1) × 2 strides ≈ 2.6 strides from centre to edge
            last.bias[4] = -4.6  # prior probability 0.01

    def forward(self, x: Tensor) -> Tensor:
        f4 = self.s4(self.s3(self.s2(self.stem(x))))
        f5 = self.s5(f4)
        p = self.lat4(f4) + nnf.interpolate(self.lat5(f5), size=f4.shape[-2:], mode="nearest")
        out: Tensor = self.head(self.fuse(p))
        return out


def grid_points(h: int, w: int, stride: int = STRIDE, device: torch.device | None = None) -> Tensor:
    """Cell centres (h·w, 2) x, y in input pixels, row-major."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def decode_raw(raw: Tensor, stride: int = STRIDE) -> tuple[Tensor, Tensor]:
    """Raw map (N, 5, h, w) → boxes (N, h·w, 4) x0, y0, x1, y1 in input pixels and class logits (N, h·w)."""
    n, _, h, w = raw.shape
    pts = grid_points(h, w, stride, raw.device)
    flat = raw.reshape(n, 5, h * w)
    dist = nnf.softplus(flat[:, :4]).transpose(1, 2) * (2 * stride)  # (N, P, 4) l, t, r, b
    x0y0 = pts[None] - dist[..., :2]
    x1y1 = pts[None] + dist[..., 2:]
    return torch.cat([x0y0, x1y1], dim=2), flat[:, 4]


class ExportYolov8(nn.Module):
    """The net with its box decode, output in the YOLOv8 layout (N, 5, cells): cx, cy, w, h (input px), score."""

    def __init__(self, net: TinyDet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        boxes, logits = decode_raw(self.net(x), self.net.stride)
        cxcy = (boxes[..., :2] + boxes[..., 2:]) / 2
        wh = boxes[..., 2:] - boxes[..., :2]
        return torch.cat([cxcy, wh, torch.sigmoid(logits)[..., None]], dim=2).transpose(1, 2)


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of paired boxes (…, 4) x0, y0, x1, y1 → (…)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / (hull + 1e-7)


def assign_targets(
    points: npt.NDArray[np.float32],
    boxes: npt.NDArray[np.float32],
    ignore: npt.NDArray[np.float32],
    stride: int = STRIDE,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Positive cells and their boxes for one image.

    Parameters
    ----------
    points : ndarray, (P, 2)
        Cell centres x, y in input pixels.
    boxes : ndarray, (G, 4)
        Ground-truth boxes x0, y0, x1, y1 in input pixels.
    ignore : ndarray, (I, 4)
        Boxes whose cells are excluded from the loss (objects mostly outside the tile).
    stride : int
        Grid stride in input pixels.

    Returns
    -------
    positive : ndarray of bool, (P,)
    target : ndarray, (P, 4)
        The assigned box of each positive cell (zeros elsewhere).
    ignored : ndarray of bool, (P,)
        Cells excluded from the classification loss.
    """
    p = points.shape[0]
    positive = np.zeros(p, bool)
    target = np.zeros((p, 4), np.float32)
    ignored = np.zeros(p, bool)
    px, py = points[:, 0:1], points[:, 1:2]
    if boxes.shape[0]:
        x0, y0, x1, y1 = (boxes[:, i][None] for i in range(4))
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
        central = (np.abs(px - cx) <= np.maximum(CENTER_FRAC * w, CENTER_MIN * stride)) & (
            np.abs(py - cy) <= np.maximum(CENTER_FRAC * h, CENTER_MIN * stride)
        )
        ok = inside & central
        area = np.where(ok, (w * h), np.inf)
        best = np.argmin(area, axis=1)
        positive = ok.any(axis=1)
        target[positive] = boxes[best[positive]]
        # Any cell inside a box but outside its centre region: neither positive nor negative.
        ignored |= inside.any(axis=1) & ~positive
    if ignore.shape[0]:
        ix0, iy0, ix1, iy1 = (ignore[:, i][None] for i in range(4))
        ignored |= ((px > ix0) & (px < ix1) & (py > iy0) & (py < iy1)).any(axis=1) & ~positive
    return positive, target, ignored


def detection_loss(
    raw: Tensor, positive: Tensor, target: Tensor, ignored: Tensor, *, box_weight: float = 2.0
) -> tuple[Tensor, dict[str, float]]:
    """Quality focal loss + GIoU loss, normalised by the number of positive cells.

    Parameters
    ----------
    raw : Tensor, (N, 5, h, w)
        Network output.
    positive, ignored : Tensor of bool, (N, h·w)
    target : Tensor, (N, h·w, 4)
        Assigned boxes in input pixels.
    box_weight : float
        Weight of the GIoU term.
    """
    boxes, logits = decode_raw(raw)
    n_pos = max(float(positive.sum()), 1.0)
    quality = torch.zeros_like(logits)
    box_loss = logits.new_zeros(())
    if positive.any():
        g = giou(boxes[positive], target[positive])
        iou_t = giou_to_iou(boxes[positive].detach(), target[positive])
        quality[positive] = iou_t.clamp(min=0.05)
        box_loss = (1 - g).sum() / n_pos
    prob = torch.sigmoid(logits)
    qfl = nnf.binary_cross_entropy_with_logits(logits, quality, reduction="none") * (prob - quality).abs().pow(2)
    cls_loss = (qfl * (~ignored).float()).sum() / n_pos
    total = cls_loss + box_weight * box_loss
    return total, {"cls": float(cls_loss.detach()), "box": float(box_loss.detach()), "pos": n_pos}


def giou_to_iou(a: Tensor, b: Tensor) -> Tensor:
    """Plain IoU of paired boxes (…, 4) → (…)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + 1e-7)
