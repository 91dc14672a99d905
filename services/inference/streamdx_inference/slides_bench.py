"""``streamdx bench slides``: one whole slide through ingest → tiles → detector → merged result.

Renders a generated slide (engineer A's renderer; 20,000 × 15,000 px by default) written as a
JPEG-compressed pyramidal TIFF, starts the embedded stack (tansu broker + Redis) and the
services as deployed — ``streamdx serve ingest`` and ``streamdx serve inference`` as separate
processes — uploads the slide to ``POST /v1/slides`` and polls ``GET /v1/slides/{id}`` until it is
done. Reports the upload, tiling and detection times, seconds per slide, tiles/s, the result's
count against the renderer's ground truth, and the machine, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from streamdx.cli_args import non_negative_int, report_path
from streamdx.embedded import EmbeddedStack, free_port
from streamdx.messaging.admin import all_topics, ensure_topics
from streamdx_inference.settings import default_models_dir

__all__ = ["build_parser", "main", "write_constant_detector"]


def write_constant_detector(model_dir: Path, *, input_w: int = 160, input_h: int = 120) -> Path:
    """A tiny ONNX "detector" in the YOLOv8 layout for plumbing tests and benchmarks.

    ``images [N, 3, input_h, input_w] → [N, 5, 1]``: one box in the middle of the input, a
    quarter of its width and height, scored 0.9 × the input's mean intensity (0–1). Writes
    ``model.onnx`` and ``model.json`` (name ``constant-yolov8``) to ``model_dir``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model_dir.mkdir(parents=True, exist_ok=True)
    base = np.array([[input_w / 2], [input_h / 2], [input_w / 4], [input_h / 4], [0.0]], np.float32)
    scaled = np.array([[0.0], [0.0], [0.0], [0.0], [0.9]], np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape3"], ["m3"]),
        helper.make_node("Mul", ["m3", "scaled"], ["s"]),
        helper.make_node("Add", ["s", "base"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "constant_yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, input_h, input_w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 5, 1])],
        initializer=[numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
                     numpy_helper.from_array(base[None], "base"), numpy_helper.from_array(scaled[None], "scaled")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(model_dir / "model.onnx"))
    (model_dir / "model.json").write_text(json.dumps({
        "name": "constant-yolov8", "layout": "yolov8", "input_size": [input_w, input_h],
        "class_names": ["glomerulus"], "conf_threshold": 0.25, "iou_threshold": 0.5,
    }))
    return model_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx bench slides",
        description="Time one generated whole slide through ingest (upload, tiling) → slides.tiles → the "
        "inference detector → slides.detections → the per-slide merge, on the embedded stack with both "
        "services as separate processes. Writes a JSON report.",
    )
    p.add_argument("--width", type=int, default=20_000, help="slide width in pixels")
    p.add_argument("--height", type=int, default=15_000, help="slide height in pixels")
    p.add_argument("--seed", type=non_negative_int, default=11, help="renderer seed")
    p.add_argument("--slide", type=Path, default=None,
                   help="benchmark this slide file instead of rendering one (no ground truth then)")
    p.add_argument("--model", type=Path, default=None,
                   help="detector directory (model.onnx + model.json; default: MODELS_DIR/slides_glomeruli)")
    p.add_argument("--constant-model", action="store_true",
                   help="use a tiny constant ONNX detector (measures the pipeline without detector cost)")
    p.add_argument("--tiling-threads", type=int, default=2, help="ingest threads reading and encoding tiles")
    p.add_argument("--timeout", type=float, default=1800.0, help="longest wait for the result (s)")
    p.add_argument("--out", type=report_path, default=Path("reports/bench_slides.json"), help="JSON report path")
    return p


@contextlib.contextmanager
def _service(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready at {url} within {timeout_s} s")


def _render(args: argparse.Namespace, work: Path) -> tuple[Path, np.ndarray | None, dict[str, Any]]:
    if args.slide is not None:
        return args.slide, None, {"file": str(args.slide), "bytes": args.slide.stat().st_size}
    from streamdx_inference.slides.pyramid import write_pyramidal_tiff
    from streamdx_inference.slides.render import render_slide

    t = time.perf_counter()
    g = render_slide(args.width, args.height, seed=args.seed)
    render_s = time.perf_counter() - t
    path = work / "slide.tif"
    t = time.perf_counter()
    write_pyramidal_tiff(path, g.image, g.mpp)
    info = {"width": args.width, "height": args.height, "seed": args.seed, "mpp": g.mpp, "format": "pyramidal TIFF "
            "(JPEG tiles)", "bytes": path.stat().st_size, "glomeruli_true": len(g.boxes),
            "render_s": round(render_s, 2), "write_s": round(time.perf_counter() - t, 2)}
    return path, np.asarray(g.boxes), info


def _score(truth: np.ndarray | None, result: dict[str, Any]) -> dict[str, Any]:
    if truth is None:
        return {}
    from streamdx_inference.slides.scoring import box_iou

    boxes = np.asarray(result["boxes"], np.float64).reshape(-1, 4)
    if len(truth) == 0 or len(boxes) == 0:
        return {"true_positives_iou50": 0}
    iou = box_iou(boxes, truth)
    tp = 0
    used: set[int] = set()
    for i in np.argsort(-np.asarray(result["scores"])):
        j = int(np.argmax(iou[i]))
        if iou[i, j] >= 0.5 and j not in used:
            used.add(j)
            tp += 1
    return {"true_positives_iou50": tp, "recall_iou50": round(tp / len(truth), 4),
            "precision_iou50": round(tp / len(boxes), 4)}


def _poll(client: httpx.Client, url: str, timeout_s: float, t0: float) -> tuple[dict[str, Any], dict[str, float]]:
    marks: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(url).json()
        now = time.perf_counter() - t0
        status = body["status"]
        marks.setdefault(f"status_{status}_s", now)
        if body["tiles_detected"] > 0:
            marks.setdefault("first_tile_detected_s", now)
        if body["tiles_total"] and body["tiles_published"] == body["tiles_total"]:
            marks.setdefault("all_tiles_published_s", now)
        if status in ("done", "failed"):
            return body, marks
        time.sleep(0.1)
    raise RuntimeError(f"the slide was not done within {timeout_s} s: {body}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; the report."""
    with tempfile.TemporaryDirectory(prefix="streamdx-bench-slides-") as tmp:
        work = Path(tmp)
        model = args.model or default_models_dir() / "slides_glomeruli"
        if args.constant_model:
            model = write_constant_detector(work / "constant_model")
        if not (model / "model.onnx").is_file():
            raise SystemExit(f"no detector at {model} (train one with 'streamdx train slides', pass --model, "
                             "or use --constant-model)")
        path, truth, slide_info = _render(args, work)
        token = secrets.token_hex(8)
        with EmbeddedStack() as stack:
            asyncio.run(ensure_topics(stack.kafka_bootstrap, all_topics(), 4))
            ingest_port, inf_port = free_port(), free_port()
            base_env = {**os.environ, "KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "REDIS_URL": stack.redis_url,
                        "LOG_LEVEL": "WARNING"}
            ingest_env = {**base_env, "INGEST_PORT": str(ingest_port), "INGEST_ADMIN_TOKEN": token,
                          "SLIDES_SPOOL_DIR": str(work / "spool"), "SLIDES_TILING_THREADS": str(args.tiling_threads)}
            inf_env = {**base_env, "METRICS_PORT": str(inf_port), "SLIDES_MODEL_DIR": str(model)}
            exe = [sys.executable, "-m", "streamdx.cli", "serve"]
            with _service([*exe, "inference"], inf_env, work / "inference.log") as inf, \
                    _service([*exe, "ingest"], ingest_env, work / "ingest.log") as ing:
                _wait_ready(f"http://127.0.0.1:{inf_port}/readyz", inf, 120, "inference")
                _wait_ready(f"http://127.0.0.1:{ingest_port}/readyz", ing, 60, "ingest")
                with httpx.Client(base_url=f"http://127.0.0.1:{ingest_port}", timeout=600,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
                    t0 = time.perf_counter()
                    with path.open("rb") as f:
                        resp = client.post("/v1/slides", files={"file": (path.name, f, "image/tiff")})
                    upload_s = time.perf_counter() - t0
                    if resp.status_code != 202:
                        raise SystemExit(f"upload refused ({resp.status_code}): {resp.text}")
                    body, marks = _poll(client, resp.json()["status_url"], args.timeout, t0)
        total = marks.get("status_done_s") or marks.get("status_failed_s") or 0.0
        tiles = int(body["tiles_total"])
        published = marks.get("all_tiles_published_s", total)
        result = body.get("result") or {}
        return {
            "benchmark": "slides", "slide": slide_info, "status": body["status"], "error": body.get("error"),
            "detector": str(model) if not args.constant_model else "constant-yolov8 (no detector cost)",
            "tiles_total": tiles, "grid_tiles_note": "tissue tiles only (background tiles skipped)",
            "upload_s": round(upload_s, 2), "tiles_published_at_s": round(published, 2),
            "done_at_s": round(total, 2), "seconds_per_slide": round(total, 2),
            "tiles_per_s": round(tiles / total, 2) if total else None,
            "tiling_tiles_per_s": round(tiles / max(published - upload_s, 1e-9), 2),
            "detect_and_merge_after_tiling_s": round(total - published, 2),
            "count": result.get("count"), "density_per_mm2": result.get("density_per_mm2"),
            **_score(truth, result),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "notes": "embedded stack (tansu + redis-server) and both services on this machine; seconds from the "
                     "start of the upload",
        }


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["status"] == "done" else 1
