"""``streamdx eval slides``: whole-slide glomerulus detection precision, recall and F1.

For every slide of a folder the slide is cut into the same tiles the service uses
(:func:`~streamdx_inference.slides.tiling.tile_grid`, background tiles skipped by the tissue
rule), the detector (:class:`~streamdx_inference.slides.detector.SlideDetector`) runs on the
tissue tiles in batches, the tile boxes are merged across tiles
(:func:`~streamdx_inference.slides.merge.merge_tiles`), and the merged boxes are matched to
the slide's annotations at IoU 0.5 (:mod:`~streamdx_inference.slides.scoring`).

Data: ``--data DIR`` takes every slide file in DIR (or DIR/test when it has one) with
``<name>.geojson`` (QuPath) or ``<name>.json`` (COCO) beside it, or one COCO file for the
folder (``annotations.json`` / ``--annotations``). Without ``--data`` the generated test
slides are used (written once to ``~/.cache/streamdx/slides``, see
:func:`~streamdx_inference.slides.render.generate_slides`).

The report (``--out``) holds precision, recall and F1 at the operating threshold (the model's
``conf_threshold``, chosen on validation slides; or ``--threshold``; or, with
``--choose-threshold``, chosen on the scored slides for recall ≥ ``--target-recall`` —
optimistic), the PR curve, average precision, the same
figures at the model's own confidence threshold, per-slide counts and timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_int, report_path

__all__ = ["DEFAULT_CACHE", "build_parser", "default_model_dir", "evaluate_slides", "find_slides", "main",
           "run_slide"]

log = logging.getLogger(__name__)

#: where the generated test slides are cached
DEFAULT_CACHE = Path.home() / ".cache" / "streamdx" / "slides"
#: generated evaluation set: slides per split, size, seed
GEN_TEST = {"n_test": 4, "width": 16000, "height": 12000, "seed": 11}

FloatArray = npt.NDArray[np.float64]


def default_model_dir() -> Path:
    """``models/slides_glomeruli`` of the source tree."""
    from streamdx_inference.settings import default_models_dir

    return default_models_dir() / "slides_glomeruli"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx eval slides",
        description="Whole-slide glomerulus detection: tiles (1/3 overlap) → ONNX detector → cross-tile merge → "
                    "precision / recall / F1 at IoU 0.5 against annotations; writes a JSON report.",
    )
    p.add_argument("--data", type=Path, default=None,
                   help="folder of slides with <name>.geojson (QuPath) or <name>.json (COCO) annotations; "
                        "default: the generated test slides (created once under --cache)")
    p.add_argument("--annotations", type=Path, default=None,
                   help="one COCO JSON file for all slides of --data (default: DIR/annotations.json if present)")
    p.add_argument("--model", type=Path, default=None,
                   help="detector folder with model.onnx + model.json (default: models/slides_glomeruli)")
    p.add_argument("--out", type=report_path, required=True, help="JSON report to write")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the generated slides")
    p.add_argument("--n-test", type=int, default=GEN_TEST["n_test"], help="generated test slides")
    p.add_argument("--width", type=int, default=GEN_TEST["width"], help="generated slide width, pixels")
    p.add_argument("--height", type=int, default=GEN_TEST["height"], help="generated slide height, pixels")
    p.add_argument("--seed", type=non_negative_int, default=GEN_TEST["seed"], help="generated data-set seed")
    p.add_argument("--iou", type=float, default=0.5, help="IoU of a match")
    p.add_argument("--target-recall", type=float, default=0.95,
                   help="operating threshold: best F1 among thresholds with at least this recall")
    p.add_argument("--threshold", type=float, default=None,
                   help="fixed operating threshold (default: the model's conf_threshold from model.json, chosen "
                        "on validation slides the test never sees)")
    p.add_argument("--choose-threshold", action="store_true",
                   help="choose the operating threshold on the scored slides themselves (best F1 with recall >= "
                        "--target-recall): optimistic, labelled so in the report")
    p.add_argument("--conf", type=float, default=0.05,
                   help="detector confidence floor for the PR curve (overrides model.json's conf_threshold)")
    p.add_argument("--tile", type=int, nargs=2, default=(1600, 1200), metavar=("W", "H"), help="tile size, pixels")
    p.add_argument("--overlap", type=float, default=1 / 3, help="tile overlap, fraction of a tile")
    p.add_argument("--min-tissue", type=float, default=0.02, help="tiles with less tissue than this are skipped")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N slides")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    return p


def find_slides(data: Path, annotations: Path | None = None) -> list[tuple[Path, FloatArray]]:
    """Slides of a folder with their ground-truth boxes.

    Raises
    ------
    FileNotFoundError
        No folder, or no slide with annotations in it.
    """
    from streamdx_inference.slides.annotations import read_annotations
    from streamdx_inference.slides.slide_file import SLIDE_SUFFIXES

    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such folder")
    folder = data / "test" if (data / "test").is_dir() else data
    coco = annotations or (folder / "annotations.json" if (folder / "annotations.json").is_file() else None)
    out = []
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in SLIDE_SUFFIXES or not f.is_file():
            continue
        if coco is not None:
            out.append((f, read_annotations(coco, image=f.name)))
            continue
        for ann in (f.with_suffix(".geojson"), f.with_suffix(".json")):
            if ann.is_file():
                out.append((f, read_annotations(ann, image=f.name)))
                break
        else:
            log.warning("%s: no annotation file (.geojson or .json), skipped", f)
    if not out:
        raise FileNotFoundError(f"{folder}: no slides with annotations")
    return out


def run_slide(
    path: Path, detect: Callable[[list[npt.NDArray[np.uint8]]], list[tuple[Any, Any]]], *,
    tile: tuple[int, int] = (1600, 1200), overlap: float = 1 / 3, min_tissue: float = 0.02, batch: int = 8,
    iou: float = 0.5,
) -> dict[str, Any]:
    """Detect glomeruli on one slide: tiles → detector → merge.

    Returns
    -------
    dict
        ``boxes`` (n, 4) slide pixels, ``scores`` (n,), ``width``, ``height``, ``mpp``,
        ``tiles`` (total), ``tissue_tiles``, ``seconds``.
    """
    from streamdx_inference.slides.merge import merge_tiles
    from streamdx_inference.slides.slide_file import open_slide_file
    from streamdx_inference.slides.tiling import is_tissue_tile, tile_grid

    t0 = time.perf_counter()
    with open_slide_file(path) as sf:
        grid = tile_grid(sf.width, sf.height, tile_w=tile[0], tile_h=tile[1], overlap=overlap)
        results: list[tuple[int, int, int, int, Any, Any]] = []
        pending: list[tuple[tuple[int, int, int, int], npt.NDArray[np.uint8]]] = []

        def flush() -> None:
            dets = detect([img for _, img in pending])
            for ((x, y, w, h), _), (b, s) in zip(pending, dets, strict=True):
                results.append((x, y, w, h, b, s))
            pending.clear()

        n_tissue = 0
        for x, y, w, h in grid:
            img = sf.read(x, y, w, h)
            if not is_tissue_tile(img, min_tissue):
                continue
            n_tissue += 1
            pending.append(((x, y, w, h), img))
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        boxes, scores = merge_tiles(results, slide_w=sf.width, slide_h=sf.height, iou=iou)
        return {"boxes": boxes, "scores": scores, "width": sf.width, "height": sf.height, "mpp": sf.mpp,
                "tiles": len(grid), "tissue_tiles": n_tissue, "seconds": time.perf_counter() - t0}


def evaluate_slides(
    slides: Sequence[tuple[Path, FloatArray]],
    detect: Callable[[list[npt.NDArray[np.uint8]]], list[tuple[Any, Any]]], *,
    iou: float = 0.5, target_recall: float = 0.95, threshold: float | None = None, model_threshold: float | None = None,
    threshold_source: str | None = None,
    tile: tuple[int, int] = (1600, 1200), overlap: float = 1 / 3, min_tissue: float = 0.02, batch: int = 8,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the slide pipeline on annotated slides and score it (the report of ``streamdx eval slides``)."""
    from streamdx_inference.slides.scoring import choose_threshold, match_slide, operating_point, pr_curve

    matched = []
    per_slide = []
    n_gt = 0
    tiles = 0
    seconds = 0.0
    for path, gt in slides:
        r = run_slide(path, detect, tile=tile, overlap=overlap, min_tissue=min_tissue, batch=batch)
        s, tp = match_slide(r["boxes"], r["scores"], gt, iou=iou)
        matched.append((s, tp))
        n_gt += len(gt)
        tiles += r["tissue_tiles"]
        seconds += r["seconds"]
        per_slide.append({"slide": path.name, "width": r["width"], "height": r["height"], "mpp": r["mpp"],
                          "n_glomeruli": len(gt), "n_detections": len(s), "tiles": r["tiles"],
                          "tissue_tiles": r["tissue_tiles"], "seconds": round(r["seconds"], 2),
                          "_scores": s, "_tp": tp})
        if progress:
            progress(f"{path.name}: {len(gt)} glomeruli, {len(s)} detections, {r['tissue_tiles']}/{r['tiles']} "
                     f"tissue tiles, {r['seconds']:.1f} s")
    curve = pr_curve(matched, n_gt)
    if threshold is None:
        t, reached = choose_threshold(curve, target_recall)
        source = f"chosen on these slides: best F1 with recall ≥ {target_recall}"
    else:
        t, reached = float(threshold), bool(operating_point(curve, threshold)["recall"] >= target_recall)
        source = threshold_source or "given"
    op = operating_point(curve, t)
    for ps in per_slide:
        s, tp = ps.pop("_scores"), ps.pop("_tp")
        keep = s >= t
        ps["tp"] = int(tp[keep].sum())
        ps["fp"] = int((~tp[keep]).sum())
        ps["fn"] = ps["n_glomeruli"] - ps["tp"]
    step = max(1, len(curve.thresholds) // 200)
    idx = sorted(set(range(0, len(curve.thresholds), step)) | {len(curve.thresholds) - 1}) if len(
        curve.thresholds) else []
    report: dict[str, Any] = {
        "precision": op["precision"], "recall": op["recall"], "f1": op["f1"],
        "n_slides": len(slides), "n_glomeruli": n_gt,
        "tp": op["tp"], "fp": op["fp"], "fn": op["fn"],
        "threshold": t, "threshold_source": source, "target_recall": target_recall,
        "target_recall_reached": reached, "iou": iou,
        "average_precision": curve.average_precision(),
        "best_f1": float(curve.f1.max()) if len(curve.thresholds) else 0.0,
        "pr_curve": [{"threshold": float(curve.thresholds[i]), "precision": float(curve.precision[i]),
                      "recall": float(curve.recall[i])} for i in idx],
        "tissue_tiles": tiles, "seconds": round(seconds, 2),
        "tiles_per_second": round(tiles / seconds, 2) if seconds else None,
        "slides": per_slide,
    }
    if model_threshold is not None:
        report["at_model_threshold"] = operating_point(curve, model_threshold)
    return report


def _generated(args: argparse.Namespace) -> list[tuple[Path, FloatArray]]:
    from streamdx_inference.slides.render import generate_slides

    root = args.cache / f"gen_{args.width}x{args.height}_seed{args.seed}"
    generate_slides(root, n_train=0, n_test=args.n_test, width=args.width, height=args.height, seed=args.seed,
                    progress=lambda m: print(m, file=sys.stderr, flush=True))
    return find_slides(root)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from streamdx_inference.slides.annotations import AnnotationError
    from streamdx_inference.slides.detector import DetectorError, SlideDetector
    from streamdx_inference.slides.slide_file import SlideReadError

    try:
        model_dir = args.model or default_model_dir()
        det = SlideDetector.load(model_dir, threads=args.threads)
        model_conf = det.config.conf_threshold
        det.config = dataclasses.replace(det.config, conf_threshold=min(args.conf, model_conf))
        slides = find_slides(args.data, args.annotations) if args.data else _generated(args)
        if args.limit:
            slides = slides[: args.limit]
        threshold = args.threshold if args.threshold is not None else None if args.choose_threshold else model_conf
        source = ("--threshold" if args.threshold is not None else
                  None if args.choose_threshold else "model.json conf_threshold (chosen on validation slides)")
        report = evaluate_slides(
            slides, det.detect, iou=args.iou, target_recall=args.target_recall, threshold=threshold,
            model_threshold=model_conf, threshold_source=source, tile=(args.tile[0], args.tile[1]),
            overlap=args.overlap,
            min_tissue=args.min_tissue, batch=det.batch_size,
            progress=lambda m: print(m, file=sys.stderr, flush=True))
    except (DetectorError, SlideReadError, AnnotationError, FileNotFoundError, ValueError) as e:
        print(f"streamdx eval slides: {e}", file=sys.stderr)
        return 2
    report["model"] = {"dir": str(model_dir), "name": det.name, "conf_threshold": model_conf}
    report["data"] = str(args.data) if args.data else "generated test slides"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("precision", "recall", "f1", "n_slides", "n_glomeruli", "threshold")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
