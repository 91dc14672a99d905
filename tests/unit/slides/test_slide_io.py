"""Pyramidal TIFF through OpenSlide, annotations (GeoJSON, COCO), and bad input → clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamdx_inference.slides.annotations import AnnotationError, read_annotations, write_geojson
from streamdx_inference.slides.pyramid import write_pyramidal_tiff
from streamdx_inference.slides.slide_file import SlideReadError, open_slide_file


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from streamdx_inference.slides.render import render_slide

    return render_slide(4500, 3000, seed=9, mpp=0.25).image


@pytest.mark.parametrize(("compression", "tol"), [("jpeg", 4.0), ("deflate", 0.0)])
def test_pyramidal_tiff_round_trip_through_openslide(
    tmp_path: Path, image: np.ndarray, compression: str, tol: float,
) -> None:
    import openslide

    path = tmp_path / f"s_{compression}.tif"
    sizes = write_pyramidal_tiff(path, image, 0.25, compression=compression, min_size=600)
    assert sizes == [(4500, 3000), (2250, 1500), (1125, 750), (562, 375)]
    with openslide.OpenSlide(str(path)) as osr:
        assert osr.properties["openslide.vendor"] == "generic-tiff"
        assert osr.level_count == 4
        assert osr.level_dimensions == tuple(sizes)
        assert osr.level_downsamples[:3] == pytest.approx((1.0, 2.0, 4.0))
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(0.25)
        region = np.asarray(osr.read_region((1000, 700), 0, (600, 400)).convert("RGB")).astype(int)
        assert np.abs(region - image[700:1100, 1000:1600]).mean() <= tol + 1e-9
        low = np.asarray(osr.read_region((0, 0), 2, (1125, 750)).convert("RGB")).astype(int)
        ref = cv2.resize(cv2.resize(image, (2250, 1500), interpolation=cv2.INTER_AREA), (1125, 750),
                         interpolation=cv2.INTER_AREA).astype(int)
        assert np.abs(low - ref).mean() <= tol + 1e-9
    sf = open_slide_file(path)
    assert (sf.width, sf.height, sf.mpp) == (4500, 3000, pytest.approx(0.25))
    assert np.abs(sf.read(10, 20, 300, 200).astype(int) - image[20:220, 10:310]).mean() <= tol + 1e-9
    sf.close()


def test_plain_png_slide(tmp_path: Path, image: np.ndarray) -> None:
    p = tmp_path / "s.png"
    cv2.imwrite(str(p), cv2.cvtColor(image[:1000, :1200], cv2.COLOR_RGB2BGR))
    with open_slide_file(p) as sf:
        assert (sf.width, sf.height, sf.mpp) == (1200, 1000, None)
        assert (sf.read(0, 0, 50, 40) == image[:40, :50]).all()
        part = sf.read(1150, 980, 100, 100)  # beyond the edge → zero fill
        assert part.shape == (100, 100, 3) and (part[:20, :50] == image[980:1000, 1150:1200]).all()


def test_write_rejects_bad_arguments(tmp_path: Path) -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="RGB uint8"):
        write_pyramidal_tiff(tmp_path / "a.tif", np.zeros((64, 64), np.uint8), 0.5)
    with pytest.raises(ValueError, match="mpp"):
        write_pyramidal_tiff(tmp_path / "a.tif", img, 0.0)
    with pytest.raises(ValueError, match="compression"):
        write_pyramidal_tiff(tmp_path / "a.tif", img, 0.5, compression="lzw")


# ---------------------------------------------------------------- bad slide files


def test_truncated_tiff_is_a_clear_error(tmp_path: Path, image: np.ndarray) -> None:
    good = tmp_path / "good.tif"
    write_pyramidal_tiff(good, image, 0.25)
    data = good.read_bytes()
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(SlideReadError, match=r"truncated\.tif"):
        sf = open_slide_file(bad)
        # a reader that opens lazily must fail on the missing tiles, not crash
        for y in range(0, sf.height, 512):
            for x in range(0, sf.width, 512):
                sf.read(x, y, 512, 512)


@pytest.mark.parametrize(("name", "content"), [
    ("notes.tif", b"this is not an image at all\n" * 10),
    ("photo.png", b"\x89PNG\r\n\x1a\n garbage"),
    ("scan.svs", b"II*\x00garbage"),
    ("empty.tif", b""),
])
def test_non_images_are_clear_errors(tmp_path: Path, name: str, content: bytes) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(SlideReadError, match=re.escape(name)):
        open_slide_file(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SlideReadError, match="no such file"):
        open_slide_file(tmp_path / "nope.svs")


# ---------------------------------------------------------------- annotations


def test_geojson_round_trip_and_qupath_export(tmp_path: Path) -> None:
    boxes = np.array([[10.5, 20, 110, 220], [300, 40, 520, 260]])
    p = tmp_path / "s.geojson"
    write_geojson(p, boxes)
    doc = json.loads(p.read_text())
    assert doc["type"] == "FeatureCollection"
    f = doc["features"][0]
    assert f["geometry"]["type"] == "Polygon" and f["properties"]["classification"]["name"] == "Glomerulus"
    assert f["geometry"]["coordinates"][0][0] == f["geometry"]["coordinates"][0][-1]  # closed ring
    assert np.allclose(read_annotations(p), boxes)


def test_geojson_qupath_polygons_classes_and_shapes(tmp_path: Path) -> None:
    feats = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [40, 5], [30, 50], [0, 0]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Glomerulus", "color": [1, 2, 3]}}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon",
                                          "coordinates": [[[[100, 100], [150, 100], [150, 150], [100, 100]]],
                                                          [[[160, 90], [170, 90], [170, 95], [160, 90]]]]},
         "properties": {"classification": {"name": "glomeruli (sclerotic)"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [9, 5], [9, 9], [5, 5]]]},
         "properties": {"classification": {"name": "Tubule"}}},  # another class: skipped
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[7, 7], [8, 7], [8, 9], [7, 7]]]},
         "properties": {}},  # unclassified: kept
    ]
    p = tmp_path / "q.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    assert read_annotations(p).tolist() == [[0, 0, 40, 50], [100, 90, 170, 150], [7, 7, 8, 9]]
    assert len(read_annotations(p, label=None)) == 4
    p.write_text(json.dumps(feats))  # QuPath also writes a bare feature list
    assert len(read_annotations(p)) == 3


def test_coco(tmp_path: Path) -> None:
    doc = {
        "images": [{"id": 1, "file_name": "a.svs"}, {"id": 2, "file_name": "sub/b.tif"}],
        "categories": [{"id": 1, "name": "glomerulus"}, {"id": 2, "name": "artery"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [100, 100, 50, 60]},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5]},
        ],
    }
    p = tmp_path / "annotations.json"
    p.write_text(json.dumps(doc))
    assert read_annotations(p, image="a.svs").tolist() == [[10, 20, 40, 60]]
    assert read_annotations(p, image="b.tif").tolist() == [[100, 100, 150, 160]]
    with pytest.raises(AnnotationError, match="2 images"):
        read_annotations(p)
    with pytest.raises(AnnotationError, match="no COCO image"):
        read_annotations(p, image="c.tif")


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not a JSON"),
    ('{"type": "Topology"}', "not a GeoJSON"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}', "no geometry"),
    ('{"images": [], "annotations": [{"bbox": [1, 2]}]}', "bbox"),
    ('{"type": "FeatureCollection", "features": 3}', "not a list"),
])
def test_bad_annotations(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(AnnotationError, match=match):
        read_annotations(p)
    with pytest.raises(AnnotationError, match="no such"):
        read_annotations(tmp_path / "missing.geojson")
