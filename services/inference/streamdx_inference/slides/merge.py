"""Merge per-tile detections into one set of slide detections.

Neighbouring tiles overlap (by 1/3), so an object is seen by up to four tiles: whole in some,
cut by a tile edge in others. :func:`merge_tiles`

1. maps every tile box to slide pixels;
2. marks a box as *cut* when it touches (within ``edge_px``) a tile edge that lies inside the
   slide — an object there may continue beyond the tile;
3. drops a cut box when a *whole* box of another tile covers it (≥ ``cover`` of the cut box's
   area) — that tile saw the object whole;
4. joins the cut boxes that are left (objects larger than the overlap are whole in no tile)
   when they come from different tiles and overlap by ≥ 1/2 of the smaller box, into their
   union — the pieces of one object;
5. fuses the duplicates (the same whole object in two to four tiles) with weighted box fusion
   (``ensemble-boxes``) at IoU ``iou``: coordinates are the score-weighted mean of a cluster,
   its score the cluster's maximum.

The result has each object once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["TileResult", "cut_flags", "merge_tiles"]

FloatArray = npt.NDArray[np.float64]
#: (x, y, w, h, boxes in tile pixels (k, 4), scores (k,))
TileResult = tuple[int, int, int, int, npt.ArrayLike, npt.ArrayLike]


def cut_flags(
    boxes_tile: FloatArray, x: int, y: int, w: int, h: int, slide_w: int, slide_h: int, edge_px: float,
) -> npt.NDArray[np.bool_]:
    """Whether each box (tile pixels) touches a tile edge that is not the slide's edge."""
    if len(boxes_tile) == 0:
        return np.zeros(0, bool)
    b = boxes_tile
    left = (b[:, 0] <= edge_px) & (x > 0)
    top = (b[:, 1] <= edge_px) & (y > 0)
    right = (b[:, 2] >= w - edge_px) & (x + w < slide_w)
    bottom = (b[:, 3] >= h - edge_px) & (y + h < slide_h)
    return np.asarray(left | top | right | bottom)


def _inter(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection areas of every box in ``a`` with every box in ``b``: (len(a), len(b))."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def _area(b: FloatArray) -> FloatArray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _check(result: Any, i: int) -> tuple[int, int, int, int, FloatArray, FloatArray]:
    try:
        x, y, w, h, boxes, scores = result
    except (TypeError, ValueError) as e:
        raise ValueError(f"tile result {i}: expected (x, y, w, h, boxes, scores)") from e
    b = np.asarray(boxes, np.float64)
    s = np.asarray(scores, np.float64).reshape(-1)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4 or len(b) != len(s):
        raise ValueError(f"tile result {i}: boxes must be (k, 4) with k scores, got {b.shape} and {s.shape}")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise ValueError(f"tile result {i}: non-finite box or score")
    return int(x), int(y), int(w), int(h), b, s


def merge_tiles(
    tile_results: Sequence[TileResult], *, slide_w: int, slide_h: int, iou: float = 0.5, edge_px: float = 8.0,
    cover: float = 0.6,
) -> tuple[FloatArray, FloatArray]:
    """Slide-level boxes from per-tile detections, each object once.

    Parameters
    ----------
    tile_results : sequence of (x, y, w, h, boxes, scores)
        Tile origin and size in slide pixels, its boxes ``x0, y0, x1, y1`` in tile pixels
        (shape ``(k, 4)``) and scores (``(k,)``, 0–1).
    slide_w, slide_h : int
        Slide size in pixels (to tell inner tile edges from the slide's edges).
    iou : float
        IoU above which boxes of overlapping tiles are fused.
    edge_px : float
        A box within this many pixels of an inner tile edge counts as cut.
    cover : float
        A cut box is dropped when a whole box of another tile covers this fraction of it.

    Returns
    -------
    boxes : ndarray of float64, shape (n, 4)
        ``x0, y0, x1, y1`` in slide pixels, by descending score.
    scores : ndarray of float64, shape (n,)

    Raises
    ------
    ValueError
        On malformed tile results or slide size.
    """
    if slide_w <= 0 or slide_h <= 0:
        raise ValueError(f"slide size must be positive, got {slide_w}×{slide_h}")
    all_b, all_s, all_cut, all_tile = [], [], [], []
    for i, r in enumerate(tile_results):
        x, y, w, h, b, s = _check(r, i)
        if len(b) == 0:
            continue
        b = np.clip(b, 0, None)
        b[:, [0, 2]] = np.minimum(b[:, [0, 2]], w)
        b[:, [1, 3]] = np.minimum(b[:, [1, 3]], h)
        all_cut.append(cut_flags(b, x, y, w, h, slide_w, slide_h, edge_px))
        all_b.append(b + np.array([x, y, x, y], np.float64))
        all_s.append(s)
        all_tile.append(np.full(len(b), i))
    if not all_b:
        return np.zeros((0, 4)), np.zeros(0)
    boxes = np.concatenate(all_b)
    scores = np.clip(np.concatenate(all_s), 0.0, 1.0)
    cut = np.concatenate(all_cut)
    tile = np.concatenate(all_tile)
    ok = _area(boxes) > 0
    boxes, scores, cut, tile = boxes[ok], scores[ok], cut[ok], tile[ok]

    whole_i = np.flatnonzero(~cut)
    cut_i = np.flatnonzero(cut)
    keep_cut: list[int] = []
    if len(cut_i):
        if len(whole_i):
            frac = _inter(boxes[cut_i], boxes[whole_i]) / np.maximum(_area(boxes[cut_i]), 1e-9)[:, None]
            other = tile[cut_i][:, None] != tile[whole_i][None, :]
            covered = ((frac >= cover) & other).any(axis=1)
        else:
            covered = np.zeros(len(cut_i), bool)
        keep_cut = [int(i) for i in cut_i[~covered]]

    # pieces of one object cut in several tiles → their union
    pieces_b: list[FloatArray] = []
    pieces_s: list[float] = []
    if keep_cut:
        kb = boxes[keep_cut]
        parent = list(range(len(keep_cut)))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        inter = _inter(kb, kb)
        ar = _area(kb)
        small = np.minimum(ar[:, None], ar[None, :])
        kt = tile[keep_cut]
        join = (inter >= 0.5 * small) & (kt[:, None] != kt[None, :])
        for a, b2 in zip(*np.nonzero(np.triu(join, 1)), strict=True):
            parent[find(int(a))] = find(int(b2))
        groups: dict[int, list[int]] = {}
        for k in range(len(keep_cut)):
            groups.setdefault(find(k), []).append(k)
        for g in groups.values():
            gb = kb[g]
            pieces_b.append(np.array([gb[:, 0].min(), gb[:, 1].min(), gb[:, 2].max(), gb[:, 3].max()]))
            pieces_s.append(float(scores[keep_cut][g].max()))

    fb = np.concatenate([boxes[whole_i], np.asarray(pieces_b).reshape(-1, 4)])
    fs = np.concatenate([scores[whole_i], np.asarray(pieces_s, np.float64)])
    if len(fb) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    from ensemble_boxes import weighted_boxes_fusion

    norm = np.array([slide_w, slide_h, slide_w, slide_h], np.float64)
    nb = np.clip(fb / norm, 0.0, 1.0)
    out_b, out_s, _ = weighted_boxes_fusion([nb.tolist()], [fs.tolist()], [[0] * len(fs)], iou_thr=iou,
                                            skip_box_thr=0.0, conf_type="max")
    ob = np.asarray(out_b, np.float64).reshape(-1, 4) * norm
    os_ = np.asarray(out_s, np.float64).reshape(-1)
    order = np.argsort(-os_, kind="stable")
    return ob[order], os_[order]
