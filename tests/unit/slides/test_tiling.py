"""Tile grid (1/3 overlap, edge alignment, coverage) and the tissue rule."""

from __future__ import annotations

import numpy as np
import pytest

from streamdx_inference.slides.tiling import is_tissue_tile, tile_grid, tissue_fraction


@pytest.mark.parametrize(("width", "height"), [(20000, 15000), (5000, 4000), (1600, 1200), (3333, 2501), (1601, 1199)])
def test_grid_covers_slide_with_overlap_and_edge_alignment(width: int, height: int) -> None:
    tiles = tile_grid(width, height)
    cover = np.zeros((height, width), bool) if width * height <= 30_000_000 else None
    xs = sorted({x for x, _, _, _ in tiles})
    ys = sorted({y for _, y, _, _ in tiles})
    for x, y, w, h in tiles:
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
        assert (w, h) == (min(1600, width), min(1200, height))
        if cover is not None:
            cover[y:y + h, x:x + w] = True
    if cover is not None:
        assert cover.all()
    # last column / row end exactly at the slide edge
    assert xs[-1] + min(1600, width) == width and ys[-1] + min(1200, height) == height
    assert xs[0] == 0 and ys[0] == 0
    # full grid, row-major
    assert len(tiles) == len(xs) * len(ys)
    # inner strides are 2/3 of a tile (overlap 1/3); the edge-aligned one only overlaps more
    for starts, t in ((xs, 1600), (ys, 1200)):
        steps = np.diff(starts)
        if len(steps):
            assert (steps[:-1] == round(t * 2 / 3)).all()
            assert 0 < steps[-1] <= round(t * 2 / 3)


def test_every_small_object_is_whole_in_some_tile() -> None:
    width, height = 7000, 5000
    tiles = tile_grid(width, height)
    rng = np.random.default_rng(0)
    for _ in range(2000):  # objects up to the overlap (533 × 400 px)
        w, h = rng.uniform(50, 533), rng.uniform(50, 400)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        assert any(tx <= x0 and ty <= y0 and x0 + w <= tx + tw and y0 + h <= ty + th for tx, ty, tw, th in tiles)


def test_overlap_and_tile_size_options() -> None:
    tiles = tile_grid(4000, 3000, tile_w=1000, tile_h=1000, overlap=0.5)
    assert sorted({x for x, *_ in tiles}) == [0, 500, 1000, 1500, 2000, 2500, 3000]
    assert tile_grid(4000, 3000, overlap=0.0)[1][0] == 1600


@pytest.mark.parametrize("bad", [dict(width=0, height=10), dict(width=10, height=-1)])
def test_grid_rejects_bad_sizes(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        tile_grid(**bad)


def test_grid_rejects_bad_overlap() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(5000, 4000, overlap=0.95)


def test_tissue_rule_skips_blank_and_pen_only_tiles() -> None:
    rng = np.random.default_rng(1)
    glass = np.clip(rng.normal(243, 2, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    assert tissue_fraction(glass) == 0.0
    assert not is_tissue_tile(glass)
    dusty = glass.copy()
    dusty[100:110, 100:110] = 40  # a dust speck
    dusty[500:800, 200:1400] = (60, 60, 60)  # a black pen stroke: dark but not stained
    assert not is_tissue_tile(dusty)
    inked = glass.copy()
    inked[:, :800] = (110, 170, 120)  # green marker
    inked[:, 800:] = (94, 147, 226)  # blue marker
    assert tissue_fraction(inked) == 0.0
    stained = glass.copy()
    stained[:, :400] = (214, 140, 196)  # PAS pink over a quarter of the tile
    assert tissue_fraction(stained) == pytest.approx(0.25, abs=0.01)
    assert is_tissue_tile(stained)
    assert tissue_fraction(np.zeros((0, 0, 3), np.uint8)) == 0.0


def test_tissue_rule_on_a_rendered_slide() -> None:
    from streamdx_inference.slides.render import render_slide

    s = render_slide(3200, 2400, seed=4)
    fr = [tissue_fraction(s.image[y:y + h, x:x + w]) for x, y, w, h in tile_grid(3200, 2400)]
    assert max(fr) > 0.3
    # tiles judged by the rule agree with the renderer's own tissue outline
    lowres = s.tissue_mask.astype(bool)
    for (x, y, w, h), f in zip(tile_grid(3200, 2400), fr, strict=True):
        truth = lowres[y // 16:(y + h) // 16, x // 16:(x + w) // 16].mean()
        assert abs(f - truth) < 0.2
