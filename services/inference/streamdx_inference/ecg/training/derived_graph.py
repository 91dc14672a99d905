"""Writing a derived serving graph (a faster, equivalent rewrite of shipped models) and its command.

A derived graph lives in its own folder beside its sources (``models/ecg_af_beats``,
``models/ecg_quality_paired``) with a ``model.json`` that records each source's version and
SHA-256: the labeler uses it only while those match
(:func:`streamdx_inference.ecg.labeler.load_fused_af_beats`,
:func:`~streamdx_inference.ecg.labeler.load_paired_quality`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx

from streamdx_inference.ecg.labeler import META_FILE

__all__ = ["derived_graph_main", "sha256_of", "write_derived_graph"]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_derived_graph(
    models_dir: Path, folder: str, model: onnx.ModelProto, sources: Sequence[str], diff: float, check_inputs: str,
    module: str, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Save ``model`` as ``models_dir/folder/model.onnx`` with its ``model.json`` (the sources'
    versions and SHA-256, the largest output difference found by the check, how to rebuild it)
    and return that metadata."""
    out = models_dir / folder
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    derived = {}
    for name in sources:
        version = json.loads((models_dir / name / META_FILE).read_text()).get("version")
        derived[name] = {"version": version, "sha256": sha256_of(models_dir / name / "model.onnx")}
    meta = {
        "name": folder,
        "derived_from": derived,
        **(extra or {}),
        "max_abs_prob_diff": diff,
        "check_inputs": check_inputs,
        "how": f"python -m {module} MODELS_DIR (see its module docstring)",
        "size_bytes": (out / "model.onnx").stat().st_size,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def derived_graph_main(
    argv: Sequence[str] | None, build: Callable[[Path], dict[str, Any]], folder: str, holds: str
) -> int:
    """The command of a derived graph: ``python -m MODULE MODELS_DIR`` runs ``build(MODELS_DIR)``."""
    import argparse

    p = argparse.ArgumentParser(description=build.__doc__)
    p.add_argument("models_dir", type=Path, help=f"folder holding {holds}")
    a = p.parse_args(list(argv) if argv is not None else None)
    meta = build(a.models_dir)
    print(f"{a.models_dir / folder}: largest difference {meta['max_abs_prob_diff']:.2g}, {meta['size_bytes']} bytes")
    return 0
