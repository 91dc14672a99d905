"""``streamdx eval slides`` end to end with a tiny fake detector (no trained model needed).

The slides have glomeruli as solid blue rectangles, many straddling tile edges; the fake
detector reports the connected blue regions of each tile — so a glomerulus cut by a tile
edge really comes back cut from that tile, and whole from the tile that holds it whole.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamdx_inference.slides.annotations import write_geojson
from streamdx_inference.slides.evaluation import evaluate_slides, find_slides, main
from streamdx_inference.slides.pyramid import write_pyramidal_tiff

BLUE = (40, 40, 170)


def fake_detect(tiles: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for t in tiles:
        mask = ((t[..., 2] > 130) & (t[..., 0] < 80)).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [[x, y, x + w, y + h] for x, y, w, h, a in stats[1:] if a > 50]
        out.append((np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32)))
    return out


def make_slide(path: Path, seed: int, w: int = 4000, h: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 244, np.uint8)
    img[200:h - 200, 150:w - 150] = (214, 140, 196)  # tissue
    boxes: list[list[float]] = []
    # centres on the inner tile edges (x = 1067, 1600, 2133, ...; y = 800, 1200, 1600, ...) and in between
    for cx, cy in [(1600, 700), (1067, 1500), (2400, 1200), (2667, 2000), (1600, 1200), (3000, 600), (700, 2300),
                   (2134, 400)]:
        s = rng.uniform(200, 450)
        b = [cx - s / 2, cy - s * 0.4, cx + s / 2, cy + s * 0.4]
        b = [round(v) for v in b]
        img[b[1]:b[3], b[0]:b[2]] = BLUE
        boxes.append([float(v) for v in b])
    write_pyramidal_tiff(path, img, 0.5, compression="deflate")
    write_geojson(path.with_suffix(".geojson"), np.asarray(boxes))
    return np.asarray(boxes)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("slides")
    for i in range(2):
        make_slide(d / f"s{i}.tif", i)
    (d / "README.txt").write_text("not a slide")
    return d


def test_pipeline_finds_each_border_glomerulus_once(data: Path) -> None:
    slides = find_slides(data)
    assert [p.name for p, _ in slides] == ["s0.tif", "s1.tif"]
    r = evaluate_slides(slides, fake_detect, batch=4)
    assert r["n_slides"] == 2 and r["n_glomeruli"] == 16
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    assert r["fp"] == 0 and r["fn"] == 0
    assert all(s["n_detections"] == s["n_glomeruli"] for s in r["slides"])
    assert all(s["tissue_tiles"] <= s["tiles"] for s in r["slides"])
    assert r["pr_curve"] and r["target_recall_reached"]


def test_duplicates_cost_precision(data: Path) -> None:
    # a detector whose boxes are not merged (every tile's box kept) would pay in precision:
    # check the scorer sees that by feeding it a doubled detector without the cut rule
    def doubled(tiles: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        res = fake_detect(tiles)
        return [(np.concatenate([b, b + np.float32(300)]), np.concatenate([s, s * 0.5])) for b, s in res]

    r = evaluate_slides(find_slides(data), doubled, threshold=0.0)
    assert r["recall"] == 1.0 and r["precision"] < 0.8
    r2 = evaluate_slides(find_slides(data), doubled)  # chosen threshold drops the weak boxes
    assert r2["f1"] == 1.0 and r2["threshold"] > 0.45


class FakeDetector:
    def __init__(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class Cfg:
            conf_threshold: float = 0.25

        self.config: Any = Cfg()
        self.batch_size = 4
        self.name = "fake-blue"

    def detect(self, tiles: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return fake_detect(tiles)


def test_cli_writes_the_report(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from streamdx_inference.slides import detector

    monkeypatch.setattr(detector.SlideDetector, "load", classmethod(lambda cls, *a, **k: FakeDetector()))
    out = tmp_path / "r" / "report.json"
    assert main(["--data", str(data), "--model", str(tmp_path), "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    for key in ("precision", "recall", "f1", "n_slides", "n_glomeruli", "pr_curve", "threshold"):
        assert key in rep
    assert rep["f1"] == 1.0 and rep["n_glomeruli"] == 16 and rep["model"]["name"] == "fake-blue"
    assert rep["at_model_threshold"]["recall"] == 1.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_slides"] == 2


def test_cli_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no model
    assert main(["--data", str(tmp_path), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "r.json")]) == 2
    assert "model.onnx" in capsys.readouterr().err


def test_cli_bad_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from streamdx_inference.slides import detector

    monkeypatch.setattr(detector.SlideDetector, "load", classmethod(lambda cls, *a, **k: FakeDetector()))
    (tmp_path / "d").mkdir()
    assert main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "r.json")]) == 2
    assert "no slides with annotations" in capsys.readouterr().err
    (tmp_path / "d" / "x.tif").write_bytes(b"II*\x00 truncated")
    (tmp_path / "d" / "x.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    assert main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "r.json")]) == 2
    assert "x.tif" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_help_is_fast() -> None:
    import subprocess
    import sys
    import time

    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "streamdx.cli", "eval", "slides", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--data" in r.stdout and "--out" in r.stdout
    assert time.perf_counter() - t < 10
