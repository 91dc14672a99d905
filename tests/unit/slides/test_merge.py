"""Cross-tile merge: glomeruli on tile borders come out once, whole, with no duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from streamdx_inference.slides.merge import merge_tiles
from streamdx_inference.slides.scoring import box_iou
from streamdx_inference.slides.tiling import tile_grid

W, H = 6000, 4600


def simulate_tiles(
    gt: np.ndarray, tiles: list[tuple[int, int, int, int]], rng: np.random.Generator, jitter: float = 2.0,
) -> list[tuple[int, int, int, int, np.ndarray, np.ndarray]]:
    """What a good detector reports per tile: the whole box where the object is whole in the tile,
    the visible part where a tile edge cuts it (both with a few px of noise)."""
    out = []
    for x, y, w, h in tiles:
        boxes, scores = [], []
        for g in gt:
            vis = np.array([max(g[0], x), max(g[1], y), min(g[2], x + w), min(g[3], y + h)])
            if vis[2] - vis[0] < 20 or vis[3] - vis[1] < 20:
                continue  # a sliver: a detector sees nothing
            b = vis - [x, y, x, y] + rng.normal(0, jitter, 4)
            b = np.clip(b, 0, [w, h, w, h])
            whole = np.allclose(vis, g)
            boxes.append(b)
            scores.append(rng.uniform(0.8, 0.99) if whole else rng.uniform(0.4, 0.8))
        out.append((x, y, w, h, np.asarray(boxes).reshape(-1, 4), np.asarray(scores)))
    return out


def border_glomeruli(rng: np.random.Generator) -> np.ndarray:
    """Glomeruli centred on inner tile edges (vertical, horizontal, and the corners where four tiles meet)."""
    tiles = tile_grid(W, H)
    xs = sorted({x for x, *_ in tiles})
    ys = sorted({y for _, y, *_ in tiles})
    edges_x = sorted({x for x in xs[1:]} | {x + 1600 for x in xs[:-1]})
    edges_y = sorted({y for y in ys[1:]} | {y + 1200 for y in ys[:-1]})
    centres = []
    for ex in edges_x:
        centres.append((ex, rng.uniform(300, H - 300)))
    for ey in edges_y:
        centres.append((rng.uniform(300, W - 300), ey))
    for ex, ey in zip(edges_x[::2], edges_y[::2], strict=False):
        centres.append((ex, ey))
    boxes: list[np.ndarray] = []
    for cx, cy in centres:
        d = rng.uniform(200, 500)  # 100-250 µm at 0.5 µm/px, some taller than the 400-px vertical overlap
        b = np.array([cx - d / 2, cy - d * 0.45, cx + d / 2, cy + d * 0.45])
        b = np.clip(b, 0, [W, H, W, H])
        if all(box_iou(b[None], o[None])[0, 0] == 0 and not _near(b, o) for o in boxes):
            boxes.append(b)
    return np.asarray(boxes)


def _near(a: np.ndarray, b: np.ndarray, gap: float = 30) -> bool:
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


def assert_each_once(gt: np.ndarray, boxes: np.ndarray, min_iou: float = 0.9) -> None:
    assert len(boxes) == len(gt), f"{len(boxes)} merged boxes for {len(gt)} glomeruli"
    iou = box_iou(gt, boxes)
    best = iou.max(axis=1)
    assert (best >= min_iou).all(), f"worst IoU {best.min():.3f}"
    # one-to-one: every merged box is the best match of exactly one glomerulus
    assert len(set(iou.argmax(axis=1).tolist())) == len(gt)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_glomeruli_on_tile_borders_come_out_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = border_glomeruli(rng)
    assert len(gt) >= 8
    tiles = tile_grid(W, H)
    results = simulate_tiles(gt, tiles, rng)
    # the test is meaningful: most glomeruli are cut in at least one tile
    n_cut = sum(1 for g in gt if any(
        (tx < g[2] and g[0] < tx + tw and ty < g[3] and g[1] < ty + th)
        and not (tx <= g[0] and ty <= g[1] and g[2] <= tx + tw and g[3] <= ty + th) for tx, ty, tw, th in tiles))
    assert n_cut == len(gt)
    raw = sum(len(r[4]) for r in results)
    assert raw > 2 * len(gt)  # many duplicates and pieces before the merge
    boxes, scores = merge_tiles(results, slide_w=W, slide_h=H)
    assert_each_once(gt, boxes)
    assert scores.shape == (len(boxes),) and (np.diff(scores) <= 0).all()


def test_rendered_glomeruli_through_simulated_tiles() -> None:
    from streamdx_inference.slides.render import render_slide

    s = render_slide(5000, 3800, seed=21, n_glomeruli=25)
    rng = np.random.default_rng(5)
    results = simulate_tiles(s.boxes, tile_grid(s.width, s.height), rng, jitter=1.0)
    boxes, _ = merge_tiles(results, slide_w=s.width, slide_h=s.height)
    assert_each_once(s.boxes, boxes)


def test_object_larger_than_the_overlap_is_joined_from_its_pieces() -> None:
    # 600 px tall: whole in no tile vertically (overlap 400 px) → pieces joined
    gt = np.array([[2000.0, 900.0, 2300.0, 1500.0]])
    results = simulate_tiles(gt, tile_grid(W, H), np.random.default_rng(0), jitter=0.0)
    boxes, _ = merge_tiles(results, slide_w=W, slide_h=H)
    assert len(boxes) == 1 and box_iou(gt, boxes)[0, 0] >= 0.95


def test_boxes_at_the_slide_edge_are_not_cut() -> None:
    # a glomerulus touching the slide's own edge is whole in its tile and kept
    tiles = tile_grid(W, H)
    gt = np.array([[0.0, 100.0, 300.0, 400.0], [W - 300.0, H - 300.0, W, H]])
    boxes, _ = merge_tiles(simulate_tiles(gt, tiles, np.random.default_rng(0), 0.0), slide_w=W, slide_h=H)
    assert_each_once(gt, boxes, 0.99)


def test_cut_piece_is_kept_when_no_tile_saw_the_object_whole() -> None:
    # a detector miss in the whole tile: the cut piece is better than nothing (recall)
    res = [(0, 0, 1600, 1200, np.array([[1450.0, 100.0, 1600.0, 300.0]]), np.array([0.6])),
           (1067, 0, 1600, 1200, np.zeros((0, 4)), np.zeros(0))]
    boxes, scores = merge_tiles(res, slide_w=4000, slide_h=3000)
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.6)


def test_duplicates_of_a_whole_object_are_fused() -> None:
    b = np.array([[1200.0, 500.0, 1450.0, 750.0]])
    res = [(0, 0, 1600, 1200, b, np.array([0.9])),
           (1067, 0, 1600, 1200, b - [1067, 0, 1067, 0] + 3, np.array([0.7]))]
    boxes, scores = merge_tiles(res, slide_w=4000, slide_h=3000)
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9)
    assert box_iou(b, boxes)[0, 0] > 0.97


def test_empty_and_bad_input() -> None:
    boxes, scores = merge_tiles([], slide_w=100, slide_h=100)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    boxes, _ = merge_tiles([(0, 0, 100, 100, np.zeros((0, 4)), np.zeros(0))], slide_w=100, slide_h=100)
    assert boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="boxes must be"):
        merge_tiles([(0, 0, 100, 100, np.zeros((2, 3)), np.zeros(2))], slide_w=100, slide_h=100)
    with pytest.raises(ValueError, match="expected"):
        merge_tiles([(0, 0, 100)], slide_w=100, slide_h=100)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="non-finite"):
        merge_tiles([(0, 0, 100, 100, np.array([[0, 0, np.nan, 5]]), np.array([0.5]))], slide_w=100, slide_h=100)
    with pytest.raises(ValueError, match="positive"):
        merge_tiles([], slide_w=0, slide_h=100)
