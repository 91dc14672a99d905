"""``streamdx train slides`` — train the small glomerulus detector on generated slides, export ONNX.

Data: the *train* slides of the generated data set
(:func:`streamdx_inference.slides.render.generate_slides`, pyramidal TIFF + GeoJSON, written to
``--data`` or the cache ``~/.cache/streamdx/slides/train-<W>x<H>-s<seed>``). Test slides are
never rendered or read here: ``generate_slides`` derives train and test slide seeds from
disjoint ranges, so the test set of ``streamdx eval slides`` stays unseen. The split inside the
train slides is **by slide**: the last ``--val-slides`` slides are the validation set (model
selection and the reported validation numbers), the others are cut into training tiles.

Tiles: windows of 1600 × 1200 slide pixels (the pipeline's tile size) times a random scale in
0.8–1.25 (scale augmentation), placed on the slide's 1/3-overlap grid, at random positions and
around each glomerulus (a random offset, so objects appear anywhere in a tile and cut by its
edges); each is letterboxed to the network input exactly as :class:`SlideDetector` does. A box
at least ``VISIBLE_MIN`` visible in a tile is a target (its visible part); a smaller fragment is
ignored in the loss. Augmentation per epoch: horizontal and vertical flips, per-channel stain
gain, brightness and contrast jitter, occasional blur (focus). Fixed seed.

Model and loss: :mod:`streamdx_inference.slides.detector_net`. Export: ONNX opset 17 in the
YOLOv8 layout ``[N, 5, cells]`` with a dynamic batch axis, checked against PyTorch with
onnxruntime; ``model.json`` for :meth:`SlideDetector.load`; ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_int, positive_int
from streamdx_inference.slides.detector import letterbox, nms

__all__ = [
    "DEFAULT_OUT",
    "INPUT_SIZE",
    "TileSet",
    "build_parser",
    "cut_tiles",
    "main",
    "read_slide",
    "tile_targets",
]

DEFAULT_OUT = Path("models/slides_glomeruli")
#: Network input width, height in pixels: a 1600 × 1200 tile at 0.24 (glomeruli 100–250 µm → 48–120 px).
INPUT_SIZE = (384, 288)
#: The pipeline's tile size in slide pixels.
TILE_W, TILE_H = 1600, 1200
#: A ground-truth box with at least this fraction of its area inside the tile is a target.
VISIBLE_MIN = 0.4
#: Decode floor written to model.json: low, so the evaluation can draw the whole PR curve.
CONF_FLOOR = 0.05
CARD_FILE = "MODEL_CARD.md"
#: Recall the operating threshold must reach on the validation slides (recall matters most: a missed
#: glomerulus is a missed grading).
TARGET_RECALL = 0.97
#: The operating threshold is the lowest one whose validation F1 is within this of the best.
F1_SLACK = 0.01
#: ``streamdx eval slides`` report on the generated test slides, copied beside the model for the card.
EVAL_FILE = "eval_generated_test.json"

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx train slides",
        description="Train the small anchor-free glomerulus detector (PyTorch) on tiles of the generated train "
        "slides (split by slide: the last --val-slides are validation), export it to ONNX in the YOLOv8 layout "
        "with model.json and MODEL_CARD.md. The generated test slides are never used.",
    )
    p.add_argument("--data", type=Path, default=None,
                   help="folder with train/<name>.tif + .geojson (default: generate them in the cache)")
    p.add_argument("--n-slides", type=int, default=20, help="generated train slides (incl. validation)")
    p.add_argument("--val-slides", type=int, default=4, help="train slides held out for validation")
    p.add_argument("--slide-size", type=int, nargs=2, default=(8000, 6000), metavar=("W", "H"),
                   help="generated slide width and height in pixels")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated data set (as generate_slides)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of tile sampling, augmentation, weights, batches")
    p.add_argument("--input-size", type=int, nargs=2, default=INPUT_SIZE, metavar=("W", "H"),
                   help="network input width and height in pixels (multiples of 32)")
    p.add_argument("--epochs", type=positive_int, default=30, help="largest number of epochs")
    p.add_argument("--minutes", type=float, default=18.0, help="training time budget in minutes")
    p.add_argument("--batch", type=int, default=16, help="tiles per batch")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, one-cycle)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output model folder")
    p.add_argument("--calibrate-only", action="store_true",
                   help="only choose the operating threshold of the model in --out on its validation slides "
                        "(whole-slide pipeline) and rewrite model.json and MODEL_CARD.md")
    p.add_argument("--card-only", action="store_true",
                   help="only rewrite MODEL_CARD.md and model.json's evaluation in --out (after streamdx eval slides)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


# --------------------------------------------------------------------------- data


def read_slide(path: Path) -> U8:
    """Level 0 of a (pyramidal) TIFF or a plain image as RGB uint8 (H, W, 3)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tf:
            arr = tf.series[0].levels[0].asarray()
    else:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not an image")
        arr = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit RGB slide, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


def tile_targets(boxes: npt.ArrayLike, x: int, y: int, w: int, h: int) -> tuple[F32, F32]:
    """Ground truth of one tile: (targets, ignored) boxes in tile pixels.

    A slide box with at least ``VISIBLE_MIN`` of its area inside the tile window ``(x, y, w, h)``
    is a target (its visible part); one with less, but some, is ignored.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4) - np.array([x, y, x, y], np.float32)
    clipped = b.copy()
    clipped[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    clipped[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    vis = np.maximum(clipped[:, 2] - clipped[:, 0], 0) * np.maximum(clipped[:, 3] - clipped[:, 1], 0)
    frac = np.where(area > 0, vis / np.maximum(area, 1e-6), 0)
    return clipped[frac >= VISIBLE_MIN], clipped[(frac > 0) & (frac < VISIBLE_MIN)]


@dataclass
class TileSet:
    """Letterboxed tiles and their boxes in network-input pixels."""

    images: U8  # (n, H, W, 3)
    boxes: list[F32]
    ignore: list[F32]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _tissue_fraction(crop: U8) -> float:
    small = cv2.resize(crop, (64, 48), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    return float(np.mean((hsv[:, :, 1] > 25) & (hsv[:, :, 2] < 245)))


def cut_tiles(
    image: U8, boxes: npt.ArrayLike, *, input_size: tuple[int, int], rng: np.random.Generator | None,
    n_random: int = 24, per_object: int = 2,
) -> TileSet:
    """Cut training (``rng`` given: grid + random + around-object windows at random scales) or
    validation (``rng=None``: the 1/3-overlap grid at scale 1) tiles from one slide."""
    h_s, w_s = image.shape[:2]
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    windows: list[tuple[int, int, int, int]] = []

    def grid(tw: int, th: int) -> None:
        sx, sy = max(1, round(tw * 2 / 3)), max(1, round(th * 2 / 3))
        xs = list(range(0, max(1, w_s - tw + 1), sx)) or [0]
        ys = list(range(0, max(1, h_s - th + 1), sy)) or [0]
        if xs[-1] + tw < w_s:
            xs.append(max(0, w_s - tw))
        if ys[-1] + th < h_s:
            ys.append(max(0, h_s - th))
        windows.extend((x, y, min(tw, w_s), min(th, h_s)) for y in ys for x in xs)

    if rng is None:
        grid(TILE_W, TILE_H)
    else:
        def size() -> tuple[int, int]:
            s = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
            return min(w_s, round(TILE_W * s)), min(h_s, round(TILE_H * s))

        tw, th = size()
        grid(tw, th)
        for _ in range(n_random):
            tw, th = size()
            windows.append((int(rng.integers(0, w_s - tw + 1)), int(rng.integers(0, h_s - th + 1)), tw, th))
        for x0, y0, x1, y1 in b:
            for _ in range(per_object):
                tw, th = size()
                cx = (x0 + x1) / 2 + rng.uniform(-0.45, 0.45) * tw
                cy = (y0 + y1) / 2 + rng.uniform(-0.45, 0.45) * th
                x = int(np.clip(cx - tw / 2, 0, w_s - tw))
                y = int(np.clip(cy - th / 2, 0, h_s - th))
                windows.append((x, y, tw, th))
    images: list[U8] = []
    tb: list[F32] = []
    ti: list[F32] = []
    for x, y, w, h in windows:
        crop = image[y : y + h, x : x + w]
        targets, ignored = tile_targets(b, x, y, w, h)
        if rng is not None and len(targets) == 0 and _tissue_fraction(crop) < 0.05 and rng.random() > 0.1:
            continue  # mostly glass: the pipeline's tissue mask skips such tiles
        img, g = letterbox(crop, input_size, interpolation=cv2.INTER_AREA)
        off = np.array([g.pad_x, g.pad_y, g.pad_x, g.pad_y], np.float32)
        images.append(img)
        tb.append(targets * g.scale + off)
        ti.append(ignored * g.scale + off)
    w_in, h_in = input_size
    arr = np.stack(images) if images else np.zeros((0, h_in, w_in, 3), np.uint8)
    return TileSet(arr, tb, ti)


def _concat(sets: Sequence[TileSet], input_size: tuple[int, int]) -> TileSet:
    w_in, h_in = input_size
    imgs = [s.images for s in sets if len(s)]
    return TileSet(
        np.concatenate(imgs) if imgs else np.zeros((0, h_in, w_in, 3), np.uint8),
        [b for s in sets for b in s.boxes],
        [b for s in sets for b in s.ignore],
    )


def _augment(img: U8, boxes: F32, ignore: F32, rng: np.random.Generator) -> tuple[F32, F32, F32]:
    """Flips, stain / brightness / contrast jitter, occasional blur → float image 0..1 (H, W, 3)."""
    h, w = img.shape[:2]
    out = img
    b, ig = boxes.copy(), ignore.copy()
    if rng.random() < 0.5:
        out = out[:, ::-1]
        b[:, [0, 2]] = w - b[:, [2, 0]]
        ig[:, [0, 2]] = w - ig[:, [2, 0]]
    if rng.random() < 0.5:
        out = out[::-1]
        b[:, [1, 3]] = h - b[:, [3, 1]]
        ig[:, [1, 3]] = h - ig[:, [3, 1]]
    if rng.random() < 0.2:
        out = np.asarray(cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), rng.uniform(0.6, 1.6)), np.uint8)
    f = np.asarray(out, np.float32) * (1 / 255)
    gain = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    mean = f.mean()
    f = (f - mean) * rng.uniform(0.8, 1.2) + mean
    f = f * gain + rng.uniform(-0.08, 0.08)
    return np.clip(f, 0, 1), b, ig


# --------------------------------------------------------------------------- evaluation on tiles


def _match(pred: F32, scores: F32, gt: F32, ignore: F32, iou: float = 0.5) -> tuple[F32, npt.NDArray[np.bool_], int]:
    """Greedy matching by score: (scores of kept predictions, is-true-positive, n ground truth).
    Predictions on ignored fragments count neither way."""
    import torch

    from streamdx_inference.slides.detector_net import giou_to_iou

    order = np.argsort(-scores)
    pred, scores = pred[order], scores[order]
    tp = np.zeros(len(pred), bool)
    keep = np.ones(len(pred), bool)
    if len(pred) and len(gt):
        ious = giou_to_iou(torch.from_numpy(pred)[:, None], torch.from_numpy(gt)[None]).numpy()
        used = np.zeros(len(gt), bool)
        for i in range(len(pred)):
            j = int(np.argmax(np.where(used, -1, ious[i])))
            if not used[j] and ious[i, j] >= iou:
                used[j] = True
                tp[i] = True
    if len(pred) and len(ignore):
        iig = giou_to_iou(torch.from_numpy(pred)[:, None], torch.from_numpy(ignore)[None]).numpy()
        keep &= tp | (iig.max(axis=1) < 0.3)
    return scores[keep], tp[keep], len(gt)


def _pr_summary(scores: F32, tp: npt.NDArray[np.bool_], n_gt: int) -> dict[str, float]:
    """Best F1 over thresholds, its threshold, and AP (all-point)."""
    if n_gt == 0:
        return {"f1": 0.0, "threshold": 0.5, "precision": 0.0, "recall": 0.0, "ap": 0.0}
    order = np.argsort(-scores)
    tp_c = np.cumsum(tp[order])
    fp_c = np.cumsum(~tp[order])
    rec = tp_c / n_gt
    prec = tp_c / np.maximum(tp_c + fp_c, 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
    if not len(f1):
        return {"f1": 0.0, "threshold": 0.5, "precision": 0.0, "recall": 0.0, "ap": 0.0}
    k = int(np.argmax(f1))
    mprec = np.maximum.accumulate(prec[::-1])[::-1]
    ap = float(np.sum(np.diff(np.concatenate([[0.0], rec])) * mprec))
    return {"f1": float(f1[k]), "threshold": float(scores[order][k]), "precision": float(prec[k]),
            "recall": float(rec[k]), "ap": ap}


def _evaluate_tiles(net: Any, tiles: TileSet, batch: int = 32) -> dict[str, float]:
    import torch

    from streamdx_inference.slides.detector_net import decode_raw

    net.eval()
    all_s: list[F32] = []
    all_tp: list[npt.NDArray[np.bool_]] = []
    n_gt = 0
    with torch.no_grad():
        for i in range(0, len(tiles), batch):
            x = torch.from_numpy(tiles.images[i : i + batch]).permute(0, 3, 1, 2).float() / 255
            boxes, logits = decode_raw(net(x))
            probs = torch.sigmoid(logits).numpy()
            for k in range(x.shape[0]):
                sel = probs[k] >= 0.05
                bx, sc = boxes[k].numpy()[sel], probs[k][sel]
                keep = nms(bx, sc, 0.5)
                s, tp, n = _match(bx[keep], sc[keep], tiles.boxes[i + k], tiles.ignore[i + k])
                all_s.append(s)
                all_tp.append(tp)
                n_gt += n
    return _pr_summary(np.concatenate(all_s) if all_s else np.zeros(0, np.float32),
                       np.concatenate(all_tp) if all_tp else np.zeros(0, bool), n_gt)


# --------------------------------------------------------------------------- training


def _targets_batch(
    boxes: list[F32], ignore: list[F32], points: F32
) -> tuple[Any, Any, Any]:
    import torch

    from streamdx_inference.slides.detector_net import assign_targets

    pos, tgt, ign = zip(*(assign_targets(points, b, ig) for b, ig in zip(boxes, ignore, strict=True)), strict=True)
    return (torch.from_numpy(np.stack(pos)), torch.from_numpy(np.stack(tgt)), torch.from_numpy(np.stack(ign)))


def train(
    fit: TileSet, val: TileSet, *, epochs: int, minutes: float, batch: int, lr: float, seed: int,
    log: Any = print,
) -> tuple[Any, list[dict[str, float]]]:
    """Train :class:`TinyDet`; the weights of the epoch with the best validation tile F1 (then AP) are returned."""
    import copy

    import torch

    from streamdx_inference.slides.detector_net import STRIDE, TinyDet, detection_loss, grid_points

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    net = TinyDet()
    h_in, w_in = fit.images.shape[1:3]
    points = grid_points(math.ceil(h_in / STRIDE), math.ceil(w_in / STRIDE)).numpy()
    steps_per_epoch = max(1, len(fit) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15, div_factor=10, final_div_factor=50)
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    best: tuple[float, float] = (-1.0, -1.0)
    best_state = copy.deepcopy(net.state_dict())
    budget = minutes * 60
    for epoch in range(epochs):
        net.train()
        perm = rng.permutation(len(fit))
        sums = {"loss": 0.0, "cls": 0.0, "box": 0.0}
        for step in range(steps_per_epoch):
            idx = perm[step * batch : (step + 1) * batch]
            aug = [_augment(fit.images[i], fit.boxes[i], fit.ignore[i], rng) for i in idx]
            x = torch.from_numpy(np.stack([a[0] for a in aug])).permute(0, 3, 1, 2).contiguous()
            pos, tgt, ign = _targets_batch([a[1] for a in aug], [a[2] for a in aug], points)
            loss, parts = detection_loss(net(x), pos, tgt, ign)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            sched.step()
            sums["loss"] += float(loss.detach())
            sums["cls"] += parts["cls"]
            sums["box"] += parts["box"]
        metrics = _evaluate_tiles(net, val)
        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "seconds": round(elapsed, 1),
               **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()},
               **{f"val_{k}": round(v, 4) for k, v in metrics.items()}}
        history.append(row)
        log(json.dumps(row))
        score = (metrics["f1"], metrics["ap"])
        if score > best:
            best = score
            best_state = copy.deepcopy(net.state_dict())
        if elapsed / (epoch + 1) * (epoch + 2) > budget:
            log(f"time budget of {minutes:g} min reached after epoch {epoch + 1}")
            break
    net.load_state_dict(best_state)
    net.eval()
    return net, history


# --------------------------------------------------------------------------- export


def export_onnx(net: Any, path: Path, input_size: tuple[int, int]) -> None:
    """Export the net in the YOLOv8 layout: input ``images`` [N, 3, H, W] RGB 0..1 → ``output0`` [N, 5, cells]."""
    import torch

    from streamdx_inference.slides.detector_net import ExportYolov8

    w_in, h_in = input_size
    model = ExportYolov8(net).eval()
    x = torch.zeros(1, 3, h_in, w_in)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["output0"],
                          dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
                          opset_version=17, dynamo=False)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = torch.rand(2, 3, h_in, w_in)
    with torch.no_grad():
        ref = model(probe).numpy()
    got = sess.run(None, {"images": probe.numpy()})[0]
    if got.shape != ref.shape or not np.allclose(got, ref, atol=1e-2, rtol=1e-3):
        raise RuntimeError(f"ONNX export differs from PyTorch (max |Δ| {np.abs(got - ref).max():.4g})")


def _tiles_per_second(model_dir: Path, tiles: Sequence[U8], repeats: int = 3) -> dict[str, float]:
    """Tiles/s of SlideDetector on one onnxruntime thread (letterbox + model + decode), 1600 × 1200 tiles."""
    from streamdx_inference.slides.detector import SlideDetector

    det = SlideDetector.load(model_dir, threads=1)
    det.detect(list(tiles[:2]))  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        det.detect(list(tiles))
    dt = time.perf_counter() - t0
    return {"tiles_per_s_1core": round(len(tiles) * repeats / dt, 1), "batch": det.batch_size}


def _card(meta: dict[str, Any]) -> str:
    val = meta["validation"]
    ev = meta.get("evaluation")
    lines = [
        "# slides_glomeruli — glomerulus detector for kidney-biopsy slide tiles",
        "",
        "**Trained on simulated slides.** Not a medical device; research software. Not validated on real",
        "slides: the numbers below are on generated PAS-like slides with exact ground truth",
        "(`streamdx_inference.slides.render`). For real slides drop in a YOLOv5 or YOLOv8 ONNX detector trained",
        "on real annotations (same folder layout: `model.onnx` + `model.json`, see",
        "`streamdx_inference.slides.detector`).",
        "",
        "- **Task**: boxes of glomeruli (one class) in 1600 × 1200 slide tiles (any tile size is letterboxed).",
        f"- **Input**: RGB tile letterboxed to {meta['input_size'][0]} × {meta['input_size'][1]} (area resize, grey "
        "114 padding), 0..1, NCHW float32, dynamic batch.",
        "- **Output**: YOLOv8 layout `[N, 5, cells]`: cx, cy, w, h (input pixels), score (one class, no "
        "objectness).",
        f"- **Architecture**: {meta['architecture']}",
        f"- **Size**: {meta['params']:,} parameters, model.onnx {meta['onnx_bytes'] / 1e6:.2f} MB; "
        f"{meta['speed']['tiles_per_s_1core']} tiles/s on one CPU core (1600 × 1200 tiles, letterbox + model + "
        "decode, batch 8).",
        f"- **Data**: {meta['data']['n_slides']} generated train slides of {meta['data']['slide_size'][0]} × "
        f"{meta['data']['slide_size'][1]} px at 0.5 µm/px (data seed {meta['data']['data_seed']}), "
        f"{meta['data']['n_fit_tiles']} training tiles; split **by slide**: "
        f"{meta['data']['n_fit_slides']} slides for fitting, {meta['data']['n_val_slides']} held out for "
        "validation. The generated test slides are never used in training.",
        "- **Augmentation**: tile scale 0.8–1.25, random / around-object window positions, flips, per-channel "
        "stain gain, brightness, contrast, blur.",
        f"- **Training**: {meta['training']['epochs_run']} epochs, {meta['training']['seconds'] / 60:.1f} min on "
        f"{meta['training']['threads']} CPU thread(s), seed {meta['training']['seed']}.",
        f"- **Command**: `{meta['command']}` (trains, exports, chooses the operating threshold on the validation "
        f"slides), then `streamdx eval slides --out {DEFAULT_OUT}/{EVAL_FILE}` and `streamdx train slides "
        "--card-only` (puts the test numbers in this card).",
        f"- **Operating threshold**: `conf_threshold` {meta['conf_threshold']} in model.json, chosen on the "
        f"validation slides (the lowest threshold with recall ≥ {TARGET_RECALL} and F1 within {F1_SLACK} of the best: "
        f"recall first); class-wise NMS IoU {meta['iou_threshold']}. "
        "`streamdx eval slides` lowers the floor to 0.05 to draw the PR curve.",
        "",
        "## Validation (held-out train slides)",
        "",
        f"Tiles of the 1/3-overlap grid, IoU 0.5: best tile-level F1 {val['f1']:.3f} (precision "
        f"{val['precision']:.3f}, recall {val['recall']:.3f} at score {val['threshold']:.2f}), AP {val['ap']:.3f}.",
    ]
    vs = meta.get("validation_slides")
    if vs:
        lines += [
            "",
            f"Whole slides ({vs['n_slides']} slides, {vs['n_glomeruli']} glomeruli; tiles → detector → merge): at "
            f"threshold {vs['threshold']:.3f} precision {vs['precision']:.3f}, recall {vs['recall']:.3f}, "
            f"F1 {vs['f1']:.3f} (TP {vs['tp']}, FP {vs['fp']}, FN {vs['fn']}), AP {vs['average_precision']:.3f}.",
        ]
    if ev:
        at_m = ev.get("at_model_threshold") or {}
        lines += [
            "",
            "## Evaluation on the generated test slides (`streamdx eval slides`)",
            "",
            f"{ev.get('n_slides')} test slides ({ev.get('n_glomeruli')} glomeruli) never seen in training: "
            "tiles (1600 × 1200, 1/3 overlap, tissue tiles only) → this detector → cross-tile merge, matched at "
            "IoU 0.5.",
            "",
            "| threshold | chosen on | precision | recall | F1 | TP | FP | FN |",
            "|---|---|---|---|---|---|---|---|",
        ]
        if at_m:
            lines.append(
                f"| {at_m['threshold']:.3f} | validation slides (model.json) | {at_m['precision']:.3f} | "
                f"{at_m['recall']:.3f} | {at_m['f1']:.3f} | {at_m['tp']} | {at_m['fp']} | {at_m['fn']} |")
        lines += [
            f"| {ev['threshold']:.3f} | the test slides (best F1 with recall ≥ {ev.get('target_recall', 0.95)}) | "
            f"{ev['precision']:.3f} | {ev['recall']:.3f} | {ev['f1']:.3f} | {ev.get('tp')} | {ev.get('fp')} | "
            f"{ev.get('fn')} |",
            "",
            f"Average precision {ev.get('average_precision', float('nan')):.3f}; "
            f"{ev.get('tiles_per_second')} tissue tiles/s end to end (read, detect, merge).",
            f"Command: `streamdx eval slides --out {DEFAULT_OUT}/{EVAL_FILE}` (report `{EVAL_FILE}`).",
        ]
    lines += [
        "",
        "## Limits",
        "",
        "- Simulated appearance only (PAS-like stain, rendered tubules, glomeruli, artefacts); real scans differ",
        "  in texture, stain and scanner optics. Expect a large drop on real slides without retraining.",
        "- Trained at 0.5 µm/px; tiles at another resolution should be resampled to it.",
        "- One class; no grading of glomerular lesions.",
        "",
    ]
    return "\n".join(lines)


def calibrate_threshold(model_dir: Path, slides: Sequence[tuple[Path, Any]], *, target_recall: float = TARGET_RECALL,
                        log: Any = print) -> dict[str, Any]:
    """Whole-slide validation on held-out *train* slides (the pipeline of ``streamdx eval slides``:
    tiles → detector → merge → IoU-0.5 matching) and the operating threshold chosen on them: the best
    F1 among thresholds with recall ≥ ``target_recall``. Written to model.json as ``conf_threshold``,
    so the service and the test-set evaluation use a threshold never tuned on test slides."""
    import dataclasses

    from streamdx_inference.slides.detector import SlideDetector
    from streamdx_inference.slides.evaluation import evaluate_slides

    det = SlideDetector.load(model_dir, threads=1)
    det.config = dataclasses.replace(det.config, conf_threshold=CONF_FLOOR)
    report = evaluate_slides(list(slides), det.detect, target_recall=target_recall, batch=det.batch_size,
                             progress=log)
    keys = ("threshold", "precision", "recall", "f1", "n_slides", "n_glomeruli", "tp", "fp", "fn",
            "average_precision", "tiles_per_second")
    out = {k: report[k] for k in keys if k in report}
    # Recall first: the lowest threshold whose F1 is within F1_SLACK of the best F1 (among thresholds
    # reaching the target recall), not the highest one — the highest sits right at the weakest true
    # glomerulus of these few slides and would lose recall on new slides.
    curve = [pt for pt in report.get("pr_curve", []) if pt["recall"] >= target_recall]
    if curve:
        def f1(pt: dict[str, float]) -> float:
            return 2 * pt["precision"] * pt["recall"] / max(pt["precision"] + pt["recall"], 1e-9)

        best = max(f1(pt) for pt in curve)
        pick = min((pt for pt in curve if f1(pt) >= best - F1_SLACK), key=lambda pt: pt["threshold"])
        n_gt = int(report["n_glomeruli"])
        tp = round(pick["recall"] * n_gt)
        fp = round(tp / pick["precision"]) - tp if pick["precision"] > 0 else 0
        out.update(threshold=pick["threshold"], precision=pick["precision"], recall=pick["recall"], f1=f1(pick),
                   tp=tp, fp=fp, fn=n_gt - tp, highest_threshold_same_f1=report["threshold"])
    return out


def _attach_eval(meta: dict[str, Any], out: Path) -> None:
    """Put the report of ``streamdx eval slides`` saved beside the model (``EVAL_FILE``) into ``meta``."""
    p = out / EVAL_FILE
    if p.exists():
        try:
            report = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return
        keys = ("precision", "recall", "f1", "n_slides", "n_glomeruli", "threshold", "target_recall", "tp", "fp",
                "fn", "average_precision", "tiles_per_second", "at_model_threshold", "command")
        meta["evaluation"] = {k: report[k] for k in keys if k in report}


def _ensure_data(a: argparse.Namespace, log: Any) -> Path:
    if a.data is not None:
        return Path(a.data)
    from streamdx_inference.slides.render import generate_slides

    w, h = a.slide_size
    out = Path.home() / ".cache" / "streamdx" / "slides" / f"train-{w}x{h}-s{a.data_seed}"
    generate_slides(out, n_train=a.n_slides, n_test=0, width=w, height=h, seed=a.data_seed, progress=log)
    return out


def _val_slides(data: Path, names: Sequence[str]) -> list[tuple[Path, Any]]:
    from streamdx_inference.slides.annotations import read_annotations

    paths = [data / "train" / n for n in names]
    return [(p, read_annotations(p.with_suffix(".geojson"))) for p in paths]


def _finish(meta: dict[str, Any], out: Path, val_slides: Sequence[tuple[Path, Any]], log: Any) -> None:
    """Operating threshold on the validation slides, speed on one core, evaluation report, card."""
    meta["conf_threshold"] = CONF_FLOOR
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    meta["validation_slides"] = calibrate_threshold(out, val_slides, log=log)
    meta["conf_threshold"] = round(float(meta["validation_slides"]["threshold"]), 4)
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    if val_slides:
        img = read_slide(val_slides[0][0])
        tiles = [img[y : y + TILE_H, x : x + TILE_W] for y in range(0, img.shape[0] - TILE_H + 1, 800)
                 for x in range(0, img.shape[1] - TILE_W + 1, 1067)][:16]
        meta["speed"] = _tiles_per_second(out, tiles)
    _attach_eval(meta, out)
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    (out / CARD_FILE).write_text(_card(meta))


def _calibrate_existing(a: argparse.Namespace, log: Any) -> int:
    out = Path(a.out)
    meta_path = out / "model.json"
    if not meta_path.is_file():
        print(f"error: no model.json in {out}", file=sys.stderr)
        return 2
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    data = _ensure_data(a, log)
    _finish(meta, out, _val_slides(data, meta["data"]["val_slides"]), log)
    log(f"operating threshold {meta['conf_threshold']}: {meta['validation_slides']}")
    return 0


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    input_size = (int(a.input_size[0]), int(a.input_size[1]))
    if input_size[0] % 32 or input_size[1] % 32 or min(input_size) < 64:
        print("error: --input-size must be multiples of 32, at least 64", file=sys.stderr)
        return 2
    if a.n_slides < 2 or not (1 <= a.val_slides < a.n_slides):
        print("error: need --n-slides ≥ 2 and 1 ≤ --val-slides < --n-slides", file=sys.stderr)
        return 2
    log = (lambda *_: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if a.calibrate_only:
        return _calibrate_existing(a, log)
    if a.card_only:
        meta_path = Path(a.out) / "model.json"
        if not meta_path.is_file():
            print(f"error: no model.json in {a.out}", file=sys.stderr)
            return 2
        saved: dict[str, Any] = json.loads(meta_path.read_text())
        _attach_eval(saved, Path(a.out))
        meta_path.write_text(json.dumps(saved, indent=1))
        (Path(a.out) / CARD_FILE).write_text(_card(saved))
        return 0
    import torch

    from streamdx_inference.slides.annotations import read_annotations

    torch.set_num_threads(max(1, a.threads))
    t_start = time.perf_counter()
    data = _ensure_data(a, log)
    slides = sorted((data / "train").glob("*.tif"))[: a.n_slides]
    if len(slides) < 2:
        print(f"error: fewer than 2 train slides in {data / 'train'}", file=sys.stderr)
        return 2
    n_val = min(a.val_slides, len(slides) - 1)
    fit_paths, val_paths = slides[:-n_val], slides[-n_val:]
    rng = np.random.default_rng(a.seed)
    fit_sets, val_sets = [], []
    val_raw: list[tuple[Path, U8, npt.NDArray[np.float64]]] = []
    for p in slides:
        img = read_slide(p)
        boxes = read_annotations(p.with_suffix(".geojson"))
        if p in val_paths:
            val_sets.append(cut_tiles(img, boxes, input_size=input_size, rng=None))
            val_raw.append((p, img, boxes))
        else:
            fit_sets.append(cut_tiles(img, boxes, input_size=input_size, rng=rng))
        log(f"{p.name}: {len(boxes)} glomeruli")
    fit, val = _concat(fit_sets, input_size), _concat(val_sets, input_size)
    log(f"tiles: {len(fit)} fit, {len(val)} validation ({time.perf_counter() - t_start:.0f} s)")
    t_train = time.perf_counter()
    net, history = train(fit, val, epochs=a.epochs, minutes=a.minutes, batch=a.batch, lr=a.lr, seed=a.seed, log=log)
    train_s = time.perf_counter() - t_train
    val_metrics = _evaluate_tiles(net, val)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(net, out / "model.onnx", input_size)
    n_params = sum(p.numel() for p in net.parameters())
    meta: dict[str, Any] = {
        "format": "onnx-detector",
        "name": "slides_glomeruli",
        "layout": "yolov8",
        "input_size": list(input_size),
        "class_names": ["glomerulus"],
        "conf_threshold": CONF_FLOOR,
        "iou_threshold": 0.5,
        "interpolation": "area",
        "boxes_normalized": False,
        "max_batch": 8,
        "trained_on": "simulated slides (streamdx_inference.slides.render)",
        "architecture": "TinyDet: 5-stage Conv-BN-ReLU backbone (16-32-48-64-96 channels), stride-32→16 "
                        "feature fusion, anchor-free single-level head at stride 16 (ltrb distances + 1 class "
                        "logit), quality focal + GIoU loss",
        "params": int(n_params),
        "onnx_bytes": (out / "model.onnx").stat().st_size,
        "data": {"source": str(data) if a.data is not None else "generate_slides (cache)",
                 "n_slides": len(slides), "n_fit_slides": len(fit_paths), "n_val_slides": len(val_paths),
                 "val_slides": [p.name for p in val_paths], "slide_size": list(a.slide_size),
                 "data_seed": a.data_seed, "n_fit_tiles": len(fit), "n_val_tiles": len(val)},
        "training": {"epochs_run": len(history), "seconds": round(train_s, 1), "threads": a.threads,
                     "seed": a.seed, "batch": a.batch, "lr": a.lr,
                     "trained_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "validation": {k: round(v, 4) for k, v in val_metrics.items()},
        "command": "streamdx train slides " + " ".join(argv),
        "history": history,
    }
    _finish(meta, out, [(p, boxes) for p, _, boxes in val_raw], log)
    log(f"wrote {out} in {time.perf_counter() - t_start:.0f} s: validation {meta['validation']}, "
        f"{meta['speed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
