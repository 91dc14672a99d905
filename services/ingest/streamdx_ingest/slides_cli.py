"""``streamdx slides submit FILE``: upload a whole-slide image to ingest and optionally wait for the result."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["build_parser", "main", "slide_submit", "slide_wait"]

TERMINAL = frozenset({"done", "failed"})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx slides submit",
        description="Upload a slide (SVS, NDPI, SCN, BIF, pyramidal TIFF, MRXS as a .zip, or PNG/JPEG/TIFF) to "
        "ingest's POST /v1/slides. Prints the slide's status as JSON; with --wait, polls until it is done "
        "(merged detections) or failed. Exit status: 0 accepted/done, 1 failed or timed out, 2 refused.",
    )
    p.add_argument("file", type=Path, help="the slide file")
    p.add_argument("--ingest", default=os.environ.get("STREAMDX_INGEST_URL", "http://127.0.0.1:8000"),
                   help="ingest base URL (default: $STREAMDX_INGEST_URL or http://127.0.0.1:8000)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--key", default=None, help="device API key (default: $STREAMDX_DEVICE_KEY)")
    auth.add_argument("--admin-token", default=None, help="ingest admin token (default: $INGEST_ADMIN_TOKEN)")
    p.add_argument("--level", type=int, default=0, help="pyramid level to tile (0 = full resolution)")
    p.add_argument("--mpp", type=float, default=None, help="µm per pixel of level 0, when the file states none")
    p.add_argument("--wait", action="store_true", help="poll until the slide is done or failed")
    p.add_argument("--timeout", type=float, default=3600.0, help="longest wait with --wait (s)")
    p.add_argument("--geojson", type=Path, default=None,
                   help="with --wait: write the detections as QuPath GeoJSON to this file")
    return p


def _token(args: argparse.Namespace) -> str | None:
    token = (args.key or args.admin_token or os.environ.get("STREAMDX_DEVICE_KEY")
             or os.environ.get("INGEST_ADMIN_TOKEN"))
    return str(token) if token else None


def slide_submit(client: httpx.Client, path: Path, *, level: int = 0, mpp: float | None = None) -> httpx.Response:
    """POST the file (streamed from disk) with its form fields; the raw response."""
    data: dict[str, str] = {"level": str(level)}
    if mpp is not None:
        data["mpp"] = repr(mpp)
    with path.open("rb") as f:
        return client.post("/v1/slides", files={"file": (path.name, f, "application/octet-stream")}, data=data)


def slide_wait(client: httpx.Client, status_url: str, *, timeout_s: float, poll_s: float = 1.0) -> dict[str, Any]:
    """Poll ``status_url`` until the status is terminal or ``timeout_s`` passes; the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get(status_url).raise_for_status().json()
        if body.get("status") in TERMINAL or time.monotonic() > deadline:
            return body
        time.sleep(poll_s)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.file.is_file():
        print(f"streamdx slides submit: no such file: {args.file}", file=sys.stderr)
        return 2
    token = _token(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=args.ingest, headers=headers, timeout=httpx.Timeout(60.0, write=600.0)) as client:
        try:
            resp = slide_submit(client, args.file, level=args.level, mpp=args.mpp)
        except httpx.HTTPError as exc:
            print(f"streamdx slides submit: cannot reach {args.ingest}: {exc}", file=sys.stderr)
            return 2
        if resp.status_code != 202:
            detail = resp.json().get("detail") if "json" in resp.headers.get("content-type", "") else resp.text
            print(f"streamdx slides submit: refused ({resp.status_code}): {detail}", file=sys.stderr)
            return 2
        status = resp.json()
        if args.wait:
            status = slide_wait(client, status["status_url"], timeout_s=args.timeout)
            if status.get("status") == "done" and args.geojson is not None:
                args.geojson.write_text(client.get(status["geojson_url"]).raise_for_status().text)
        print(json.dumps(status, indent=2))
    if args.wait and status.get("status") != "done":
        return 1
    return 0
