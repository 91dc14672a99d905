"""Writing a derived serving graph (a faster, equivalent rewrite of shipped models) and its command.

A derived graph lives in its own folder beside its sources (``models/ecg_af_beats``,
``models/ecg_quality_paired``) with a ``model.json`` that records each source's version and
SHA-256: the labeler uses it only while those match
(:func:`streamdx_inference.ecg.labeler.load_fused_af_beats`,
:func:`~streamdx_inference.ecg.labeler.load_paired_quality`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from streamdx_inference.ecg.labeler import META_FILE, sha256_of

__all__ = ["derived_graph_main", "max_output_diff", "with_global_pools", "write_derived_graph"]


_GLOBAL_POOL = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


def with_global_pools(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its means and maxima over both spatial axes of a (N, C, 1, L) tensor
    (``ReduceMean``/``ReduceMax``, axes 2 and 3, ``keepdims=0``) written as ``GlobalAveragePool`` /
    ``GlobalMaxPool`` + ``Flatten``: onnxruntime runs those in its blocked channel layout, so the
    convolutions' outputs need not be reordered back to the plain layout first. The same values
    (a mean may differ in its last bits: another summation order)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for n in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type in _GLOBAL_POOL and list(attrs.get("axes", [])) == [2, 3] and attrs.get("keepdims") == 0 \
                and len(n.input) == 1:  # fmt: skip
            pooled = f"{n.output[0]}/pooled"
            nodes.append(helper.make_node(_GLOBAL_POOL[n.op_type], [n.input[0]], [pooled], name=f"{n.name}/pool"))
            nodes.append(helper.make_node("Flatten", [pooled], [n.output[0]], name=f"{n.name}/flatten", axis=1))
        else:
            nodes.append(n)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    onnx.checker.check_model(out)
    return out


def max_output_diff(derived: onnx.ModelProto, sources: Sequence[Path], sizes: Sequence[int], seed: int) -> float:
    """Largest absolute difference between the outputs of ``derived`` and those of the ``sources``
    (ONNX files, one output each, in the order of ``derived``'s outputs) on seeded standard-normal
    batches of ``sizes`` beats.

    Raises
    ------
    ValueError
        If an output's shape differs from its source's.
    """
    import numpy as np
    import onnxruntime as ort

    from streamdx_inference.ecg.training.conv_layout import random_model_inputs

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(derived.SerializeToString(), so, providers=["CPUExecutionProvider"])]
    sessions += [ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for p in sources]

    def run(sess: Any, feed: dict[str, Any]) -> list[Any]:
        names = {i.name for i in sess.get_inputs()}
        return list(sess.run(None, {k: v for k, v in feed.items() if k in names}))

    diff = 0.0
    for k, n in enumerate(sizes):
        feed = random_model_inputs(n, seed + k)
        got = run(sessions[0], feed)
        want = [out for sess in sessions[1:] for out in run(sess, feed)]
        for a, b in zip(got, want, strict=True):
            if a.shape != b.shape:
                raise ValueError(f"the derived graph returns shape {a.shape} for {n} beats, its source {b.shape}")
            diff = max(diff, float(np.abs(a - b).max()))
    return diff


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
