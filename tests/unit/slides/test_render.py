"""The slide renderer: ground truth inside the slide, no overlaps, sizes, determinism, data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamdx_inference.slides.render import generate_slides, read_annotations, render_slide
from streamdx_inference.slides.scoring import box_iou


@pytest.fixture(scope="module")
def slide():  # type: ignore[no-untyped-def]
    return render_slide(6000, 4500, seed=3)


def test_image_and_boxes(slide) -> None:  # type: ignore[no-untyped-def]
    assert slide.image.shape == (4500, 6000, 3) and slide.image.dtype == np.uint8
    assert slide.mpp == 0.5
    b = slide.boxes
    assert len(b) >= 3
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 6000).all() and (b[:, 3] <= 4500).all()
    size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    assert (size >= 150).all() and (size <= 520).all()  # 100-250 µm at 0.5 µm/px (+ capsule line)
    iou = box_iou(b, b)
    np.fill_diagonal(iou, 0)
    assert iou.max() == 0.0  # never overlapping


def test_looks_like_a_stained_section(slide) -> None:  # type: ignore[no-untyped-def]
    img = slide.image.astype(int)
    glass = slide.tissue_mask == 0
    g = img[::16, ::16][: glass.shape[0], : glass.shape[1]]
    assert g[glass].mean() > 225  # near-white glass
    tissue = g[~glass]
    assert tissue[:, 1].mean() < tissue[:, 0].mean() - 15  # PAS magenta: green absorbed most
    assert tissue[:, 1].mean() < tissue[:, 2].mean() - 10
    # glomeruli are darker (dense nuclei, loops) than the slide's tissue on average
    x0, y0, x1, y1 = slide.boxes[0].astype(int)
    assert img[y0:y1, x0:x1].std() > 20


def test_deterministic_and_seed_dependent() -> None:
    a = render_slide(1024, 768, seed=5, n_glomeruli=2)
    b = render_slide(1024, 768, seed=5, n_glomeruli=2)
    c = render_slide(1024, 768, seed=6, n_glomeruli=2)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


def test_mpp_scales_physical_sizes() -> None:
    s = render_slide(6000, 4500, seed=3, mpp=1.0, n_glomeruli=10)
    size = np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1])
    assert (size <= 260).all() and (size >= 75).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(width=100, height=1000), "256"),
    (dict(width=1000, height=1000, mpp=0.0), "mpp"),
    (dict(width=1000, height=1000, n_glomeruli=-1), "n_glomeruli"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    kwargs.setdefault("seed", 0)
    with pytest.raises(ValueError, match=match):
        render_slide(**kwargs)


def test_generate_slides_split_and_resume(tmp_path: Path) -> None:
    import openslide

    out = generate_slides(tmp_path, n_train=2, n_test=1, width=2400, height=1800, seed=4)
    assert [Path(p).name for p in out["train"]] == ["train_000.tif", "train_001.tif"]
    assert [Path(p).name for p in out["test"]] == ["test_000.tif"]
    man = json.loads((tmp_path / "manifest.json").read_text())
    seeds = {k: v["seed"] for k, v in man["slides"].items()}
    assert len(set(seeds.values())) == 3  # split by slide: no seed shared
    with openslide.OpenSlide(out["test"][0]) as osr:
        assert osr.dimensions == (2400, 1800) and float(osr.properties["openslide.mpp-x"]) == 0.5
    boxes = read_annotations(tmp_path / "test" / "test_000.geojson")
    assert len(boxes) == man["slides"]["test_000"]["n_glomeruli"]
    assert np.array_equal(boxes, render_slide(2400, 1800, seed=seeds["test_000"]).boxes)
    # resume: existing slides are kept, more train slides do not change the test slide
    mtime = Path(out["test"][0]).stat().st_mtime_ns
    out2 = generate_slides(tmp_path, n_train=3, n_test=1, width=2400, height=1800, seed=4)
    assert len(out2["train"]) == 3 and Path(out2["test"][0]).stat().st_mtime_ns == mtime
