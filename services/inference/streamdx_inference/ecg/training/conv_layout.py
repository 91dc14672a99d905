"""Rewrite an exported ONNX graph of 1-D convolutions as the same graph of 2-D convolutions of height 1.

onnxruntime's CPU provider runs 2-D convolutions in its blocked channel layout (NCHWc,
vectorised over 8 channels at a time) but 1-D ones through a generic im2col + GEMM path:
the beat networks' small convolutions (2-16 channels, 3-32 samples wide) ran about twice as
fast as 2-D convolutions of height 1 on this machine (``streamdx bench inference``). The
rewrite is exact in arithmetic (every output is the same weighted sum); only the summation
order inside the runtime may differ, which :func:`conv1d_as_conv2d` bounds by running both
graphs on the example inputs it is given.

The rewrite covers what :class:`~streamdx_inference.ecg.training.nets.BeatNet` exports:
graph inputs of rank 3 feeding convolutions get an ``Unsqueeze`` (N, C, L) → (N, C, 1, L);
``Conv`` and ``MaxPool`` get a unit first dimension in their weights and attributes;
``ReduceMean``/``ReduceMax`` over the length axis (``keepdims=0``) reduce both spatial axes.
Element-wise operations are rank-agnostic. Any other operation reading a convolution's output is refused
(``ValueError``) rather than rewritten blindly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

__all__ = ["conv1d_as_conv2d", "convert_model_dir", "random_model_inputs"]

#: Operations that accept a (N, C, 1, L) tensor unchanged.
_ELEMENTWISE = {"Relu", "Add", "Mul", "Sub", "Sigmoid", "Clip", "LeakyRelu", "Identity"}
_SPATIAL = {"Conv", "MaxPool", "AveragePool"}
_REDUCE = {"ReduceMean", "ReduceMax"}


def _attr(node: onnx.NodeProto, name: str) -> list[int] | int | None:
    for a in node.attribute:
        if a.name == name:
            value: list[int] | int = helper.get_attribute_value(a)
            return value
    return None


def _set_attr(node: onnx.NodeProto, name: str, value: list[int]) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _rewrite_spatial(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> None:
    for name, unit in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
        v = _attr(node, name)
        if isinstance(v, list) and len(v) == 1:
            _set_attr(node, name, [unit, v[0]])
    pads = _attr(node, "pads")
    if isinstance(pads, list) and len(pads) == 2:
        _set_attr(node, "pads", [0, pads[0], 0, pads[1]])
    if node.op_type == "Conv":
        w = weights.get(node.input[1])
        if w is None:
            raise ValueError(f"Conv {node.name}: weight {node.input[1]!r} is not an initializer")
        arr = numpy_helper.to_array(w)
        if arr.ndim != 3:
            raise ValueError(f"Conv {node.name}: expected a 1-D convolution weight, got shape {arr.shape}")
        w.CopyFrom(numpy_helper.from_array(arr[:, :, None, :], w.name))


def _rewrite_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    weights = {t.name: t for t in g.initializer}
    constants = {o for n in g.node if n.op_type == "Constant" for o in n.output}
    rank3_inputs = {i.name for i in g.input if len(i.type.tensor_type.shape.dim) == 3}
    four_d: set[str] = set()  # tensors now of rank 4
    renamed: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    for name in sorted(rank3_inputs):
        if any(n.op_type in _SPATIAL and n.input and n.input[0] == name for n in g.node):
            axes = name + "__unsqueeze_axes"
            g.initializer.append(numpy_helper.from_array(np.array([2], np.int64), axes))
            new_nodes.append(helper.make_node("Unsqueeze", [name, axes], [name + "__2d"], name=name + "__to_2d"))
            renamed[name] = name + "__2d"
            four_d.add(name + "__2d")
    for node in g.node:
        ins = [renamed.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(ins)
        data_4d = bool(node.input) and node.input[0] in four_d
        if node.op_type in _SPATIAL and data_4d:
            _rewrite_spatial(node, weights)
            four_d.update(node.output)
        elif node.op_type in _ELEMENTWISE and any(i in four_d for i in node.input):
            if not all(i in four_d or i in weights or i in constants or not i for i in node.input):
                raise ValueError(f"{node.op_type} {node.name} mixes a convolution output with another tensor")
            four_d.update(node.output)
        elif node.op_type in _REDUCE and data_4d:
            if _attr(node, "axes") != [2] or _attr(node, "keepdims") != 0:
                raise ValueError(f"{node.op_type} {node.name}: only a reduction over the length axis is rewritten")
            _set_attr(node, "axes", [2, 3])
        elif any(i in four_d for i in node.input):
            raise ValueError(f"{node.op_type} {node.name} reads a convolution output: not rewritten")
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]  # the exporter's intermediate shapes are 3-D; the runtime infers them again
    onnx.checker.check_model(out)
    return out


def _checked_rewrite(
    model: onnx.ModelProto, example: Mapping[str, npt.NDArray[np.float32]], atol: float
) -> tuple[onnx.ModelProto, float]:
    """The rewritten graph and the largest absolute difference of its outputs on ``example``."""
    import onnxruntime as ort

    out = _rewrite_graph(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    names = {i.name for i in model.graph.input}
    feed = {k: v for k, v in example.items() if k in names}
    before = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)
    after = ort.InferenceSession(out.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)
    diff = 0.0
    for a, b in zip(before, after, strict=True):
        diff = max(diff, float(np.abs(a - b).max()) if a.shape == b.shape else math.inf)
    if not diff <= atol:
        raise ValueError(f"the 2-D graph differs from the 1-D one (max {diff:.3g})")
    return out, diff


def conv1d_as_conv2d(
    model: onnx.ModelProto, example: Mapping[str, npt.NDArray[np.float32]], atol: float = 1e-5
) -> onnx.ModelProto:
    """The graph ``model`` with its 1-D convolutions as 2-D ones of height 1 (see module docstring).

    Parameters
    ----------
    model : onnx.ModelProto
        Exported graph (opset 13-17: reductions with an ``axes`` attribute).
    example : mapping of str to ndarray
        Inputs for both graphs; the rewritten graph must reproduce the original's outputs.
    atol : float
        Largest absolute difference allowed between their outputs.

    Raises
    ------
    ValueError
        If the graph holds an operation the rewrite does not cover, or the outputs differ.
    """
    return _checked_rewrite(model, example, atol)[0]


def random_model_inputs(n: int, seed: int) -> dict[str, npt.NDArray[np.float32]]:
    """``n`` seeded standard-normal rows of each model input (``wave``, ``rr``, ``scalars``): check
    inputs for graph rewrites, which must reproduce any input's output."""
    from streamdx_inference.ecg.features import BEAT_SAMPLES, N_SCALARS, RR_CONTEXT

    rng = np.random.default_rng(seed)
    shapes = {"wave": (2, BEAT_SAMPLES), "rr": (3, RR_CONTEXT), "scalars": (N_SCALARS,)}
    return {k: rng.standard_normal((n, *v)).astype(np.float32) for k, v in shapes.items()}


def convert_model_dir(model_dir: Path, n_check: int = 512, seed: int = 0, atol: float = 1e-5) -> dict[str, Any]:
    """Rewrite ``model_dir/model.onnx`` in place with :func:`conv1d_as_conv2d` and record it.

    For models exported before the export did it: the weights stay those of their training
    run. The check inputs are ``n_check`` seeded standard-normal feature rows (their exact
    values do not matter: the rewrite must reproduce any input's output). ``model.json``
    gets ``onnx_layout`` and its new size; the model card gets a line saying so. Returns
    ``{"max_abs_diff", "size_bytes"}``.
    """
    path = model_dir / "model.onnx"
    model = onnx.load(str(path))
    if any(n.op_type == "Unsqueeze" and n.name.endswith("__to_2d") for n in model.graph.node):
        raise ValueError(f"{path} is already rewritten")
    example = random_model_inputs(n_check, seed)
    out, diff = _checked_rewrite(model, example, atol)
    onnx.save(out, str(path))
    meta_path = model_dir / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["onnx_layout"] = {"conv": "2-D, height 1 (conv_layout.conv1d_as_conv2d)", "max_abs_prob_diff": diff,
                           "check_inputs": f"{n_check} seeded standard-normal rows"}  # fmt: skip
    meta.setdefault("size_bytes", {})["model.onnx"] = path.stat().st_size
    meta_path.write_text(json.dumps(meta, indent=2, default=float) + "\n")
    card = model_dir / "MODEL_CARD.md"
    if card.exists():
        card.write_text(card.read_text().rstrip("\n") + (
            f"\n\n## ONNX layout\n\n`model.onnx` holds the weights of the training run above with its 1-D "
            f"convolutions rewritten as 2-D ones of height 1 (`python -m streamdx_inference.ecg.training.conv_layout "
            f"{model_dir}`), which onnxruntime's CPU provider runs about twice as fast; largest probability "
            f"difference on {n_check} check inputs {diff:.2g}. `model.int8.onnx` keeps the 1-D layout "
            f"(for TensorRT). Models exported by `streamdx train` now get this layout directly.\n"
        ))  # fmt: skip
    return {"max_abs_diff": diff, "size_bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    """``python -m streamdx_inference.ecg.training.conv_layout MODEL_DIR...``: rewrite models in place."""
    import argparse

    p = argparse.ArgumentParser(description=convert_model_dir.__doc__)
    p.add_argument("model_dirs", nargs="+", type=Path)
    args = p.parse_args(argv)
    for d in args.model_dirs:
        print(d, convert_model_dir(d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
