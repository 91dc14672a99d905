"""One ONNX graph that runs the AF and beat-class networks with their first layers fused.

Both networks (:class:`~streamdx_inference.ecg.training.nets.BeatNet`) start with the same
layer shapes on the same input: a stem convolution of the beat (8 channels), a max-pool and
an identity residual block of 8 channels. onnxruntime's CPU convolutions work on blocks of
16 channels with AVX-512 (8 with AVX2), so an 8-channel layer costs as much as a 16-channel
one. This rewrite stacks the two networks' stem convolutions into one of 16 output channels
and writes their first residual block as 16-channel convolutions with block-diagonal
weights (each network's weights on its own channels, zeros across), then continues with
each network's own remaining layers, whose first convolutions read all 16 channels with zero
weights on the other network's (one tensor for both: no split, and no reordering out of
onnxruntime's blocked layout for one; an 8-channel input costs as much as a 16-channel one).
The pooling at the networks' ends runs as global pools in the blocked layout
(:func:`~streamdx_inference.ecg.training.derived_graph.with_global_pools`). The arithmetic is each
network's own (the zero weights add exact zeros), so the outputs match the separate
models to rounding; with AVX-512 a beat costs ~2.5 µs less than with the two models run
one after the other (measured on one core).

The fused graph is a derived file, ``models/ecg_af_beats/model.onnx``, written by
:func:`fuse_model_dirs` (``python -m streamdx_inference.ecg.training.trunk_fusion
models``, and at the end of ``streamdx train af|beats``) with the SHA-256 of the two
source files in its ``model.json``: the labeler uses it only when both match the models it
loads (see :func:`streamdx_inference.ecg.labeler.load_fused_af_beats`), and the separate
models otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from streamdx_inference.ecg.labeler import FUSED_DIR
from streamdx_inference.ecg.training.derived_graph import (
    derived_graph_main,
    max_output_diff,
    with_global_pools,
    write_derived_graph,
)

__all__ = ["block_diag", "conv_weights", "fuse_af_beats", "fuse_model_dirs", "main", "trunk_nodes"]

_SOURCES = ("ecg_af", "ecg_beats")
_OUTPUTS = ("af_prob", "beats_prob")
#: The fused trunk: op types from the beat input to the end of the first residual block.
_TRUNK = ("Unsqueeze", "Conv", "Relu", "MaxPool", "Conv", "Relu", "Conv", "Add", "Relu")


def _consumers(g: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in g.node if name in n.input]


def trunk_nodes(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The trunk nodes of a BeatNet graph in the 2-D layout, in order; ``ValueError`` if it has another shape."""
    start = [n for n in g.node if n.op_type == "Unsqueeze" and list(n.input)[:1] == ["wave"]]
    if len(start) != 1:
        raise ValueError("no single Unsqueeze of the wave input (is the model in the 2-D layout?)")
    chain = [start[0]]
    for op in _TRUNK[1:]:
        nxt = [n for n in _consumers(g, chain[-1].output[0]) if n.op_type == op]
        if op == "Add":  # the residual sum reads the second Conv and the max-pool output
            nxt = [n for n in nxt if set(n.input) == {chain[-1].output[0], chain[3].output[0]}]
        if len(nxt) != 1:
            raise ValueError(f"trunk: expected one {op} after {chain[-1].name}")
        chain.append(nxt[0])
    pool_users = {n.name for n in _consumers(g, chain[3].output[0])}
    if pool_users != {chain[4].name, chain[7].name}:
        raise ValueError("trunk: the first residual block is not an identity block")
    return chain


def _attrs(n: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def conv_weights(g: onnx.GraphProto, conv: onnx.NodeProto) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    inits = {i.name: i for i in g.initializer}
    if len(conv.input) != 3 or conv.input[1] not in inits or conv.input[2] not in inits:
        raise ValueError(f"{conv.name}: expected constant weights and bias")
    return numpy_helper.to_array(inits[conv.input[1]]), numpy_helper.to_array(inits[conv.input[2]])


def block_diag(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1], *a.shape[2:]), np.float32)
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0] :, a.shape[1] :] = b
    return out


def fuse_af_beats(af: onnx.ModelProto, beats: onnx.ModelProto) -> onnx.ModelProto:
    """The fused graph of the AF and beat-class models (see the module docstring).

    Inputs: the union of the two models' inputs (``wave``, ``rr``, ``scalars``); outputs
    ``af_prob`` (B,) and ``beats_prob`` (B, 5).

    Raises
    ------
    ValueError
        If either graph does not start with the expected trunk, or their trunks differ in
        shape or attributes.
    """
    ga, gb = af.graph, beats.graph
    ta, tb = trunk_nodes(ga), trunk_nodes(gb)
    for na, nb in zip(ta, tb, strict=True):
        if _attrs(na) != _attrs(nb):
            raise ValueError(f"trunks differ at {na.name} / {nb.name}")
    wa = [conv_weights(ga, n) for n in (ta[1], ta[4], ta[6])]
    wb = [conv_weights(gb, n) for n in (tb[1], tb[4], tb[6])]
    for (x, _), (y, _) in zip(wa, wb, strict=True):
        if x.shape != y.shape:
            raise ValueError(f"trunk weights differ in shape: {x.shape} / {y.shape}")
    ca = wa[0][0].shape[0]
    inits = [
        numpy_helper.from_array(np.concatenate([wa[0][0], wb[0][0]]), "trunk/stem.w"),
        numpy_helper.from_array(np.concatenate([wa[0][1], wb[0][1]]), "trunk/stem.b"),
        numpy_helper.from_array(block_diag(wa[1][0], wb[1][0]), "trunk/conv1.w"),
        numpy_helper.from_array(np.concatenate([wa[1][1], wb[1][1]]), "trunk/conv1.b"),
        numpy_helper.from_array(block_diag(wa[2][0], wb[2][0]), "trunk/conv2.w"),
        numpy_helper.from_array(np.concatenate([wa[2][1], wb[2][1]]), "trunk/conv2.b"),
    ]
    axes = {i.name: i for i in ga.initializer}.get(ta[0].input[1])
    if axes is None:
        raise ValueError("the wave Unsqueeze has no constant axes")
    inits.append(numpy_helper.from_array(numpy_helper.to_array(axes), "trunk/axes"))
    out_a, out_b = "af/" + ta[-1].output[0], "beats/" + tb[-1].output[0]
    def conv(x: str, name: str, like: onnx.NodeProto) -> onnx.NodeProto:
        return helper.make_node("Conv", [x, f"trunk/{name}.w", f"trunk/{name}.b"], [f"trunk/{name}"],
                                name=f"trunk/{name}", **_attrs(like))  # fmt: skip

    nodes = [
        helper.make_node("Unsqueeze", ["wave", "trunk/axes"], ["trunk/wave2d"], name="trunk/unsqueeze"),
        conv("trunk/wave2d", "stem", ta[1]),
        helper.make_node("Relu", ["trunk/stem"], ["trunk/stem_relu"], name="trunk/stem_relu"),
        helper.make_node("MaxPool", ["trunk/stem_relu"], ["trunk/pool"], name="trunk/pool", **_attrs(ta[3])),
        conv("trunk/pool", "conv1", ta[4]),
        helper.make_node("Relu", ["trunk/conv1"], ["trunk/c1_relu"], name="trunk/c1_relu"),
        conv("trunk/c1_relu", "conv2", ta[6]),
        helper.make_node("Add", ["trunk/conv2", "trunk/pool"], ["trunk/sum"], name="trunk/add"),
        helper.make_node("Relu", ["trunk/sum"], ["trunk/out"], name="trunk/out"),
    ]
    inputs: dict[str, onnx.ValueInfoProto] = {}
    outputs = []
    for prefix, g, trunk, out_name in (("af/", ga, ta, _OUTPUTS[0]), ("beats/", gb, tb, _OUTPUTS[1])):
        skip = {n.name for n in trunk}
        graph_inputs = {i.name for i in g.input}
        (prob,) = [o.name for o in g.output]

        def rename(name: str, prefix: str = prefix, keep: set[str] = graph_inputs, prob: str = prob,
                   out_name: str = out_name) -> str:  # fmt: skip
            if name in keep or name == "":
                return name
            return out_name if name == prob else prefix + name

        kept = [n for n in g.node if n.name not in skip]
        used = {i for n in kept for i in n.input}
        for n in kept:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.name = prefix + n.name
            m.input[:] = [rename(i) for i in n.input]
            m.output[:] = [rename(o) for o in n.output]
            nodes.append(m)
        for init in g.initializer:
            if init.name in used:
                c = onnx.TensorProto()
                c.CopyFrom(init)
                c.name = rename(init.name)
                inits.append(c)
        for i in g.input:
            inputs.setdefault(i.name, i)
        o = onnx.ValueInfoProto()
        o.CopyFrom(g.output[0])
        o.name = out_name
        outputs.append(o)
    # each network's first layers after the trunk read all its channels, the other network's with
    # zero weights: one tensor for both, no split (and no reordering out of the blocked layout for it)
    widths = (ca, wb[0][0].shape[0])
    weights = {t.name: t for t in inits}
    for k, trunk_out in enumerate((out_a, out_b)):
        for n in nodes:
            if trunk_out not in n.input:
                continue
            if n.op_type != "Conv" or list(n.input).index(trunk_out) != 0:
                raise ValueError(f"{n.name} reads the trunk's output and is not a convolution of it")
            w = numpy_helper.to_array(weights[n.input[1]])
            full = np.zeros((w.shape[0], sum(widths), *w.shape[2:]), np.float32)
            full[:, sum(widths[:k]) : sum(widths[: k + 1])] = w
            weights[n.input[1]].CopyFrom(numpy_helper.from_array(full, n.input[1]))
            n.input[0] = "trunk/out"
    graph = helper.make_graph(nodes, "ecg_af_beats", [inputs[k] for k in ("wave", "rr", "scalars") if k in inputs],
                              outputs, inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=list(af.opset_import), producer_name="streamdx trunk_fusion")
    model.ir_version = af.ir_version
    onnx.checker.check_model(model)
    return model


def fuse_model_dirs(models_dir: Path, n_check: int = 512, seed: int = 0, atol: float = 1e-5) -> dict[str, Any]:
    """Write ``models_dir/ecg_af_beats/{model.onnx, model.json}`` from ``ecg_af`` and ``ecg_beats``.

    The fused graph is checked against the two models on ``n_check`` seeded standard-normal
    inputs; ``model.json`` records the sources' versions and SHA-256 and the largest output
    difference. Returns that metadata.

    Raises
    ------
    ValueError
        If the graphs cannot be fused or the outputs differ by more than ``atol``.
    """
    src = {name: models_dir / name / "model.onnx" for name in _SOURCES}
    fused = with_global_pools(fuse_af_beats(onnx.load(str(src["ecg_af"])), onnx.load(str(src["ecg_beats"]))))
    diff = max_output_diff(fused, [src[n] for n in _SOURCES], (n_check,), seed)
    if not diff <= atol:
        raise ValueError(f"the fused graph differs from the separate models by {diff:.3g} > {atol}")
    return write_derived_graph(models_dir, FUSED_DIR, fused, _SOURCES, diff, f"{n_check} seeded standard-normal rows",
                               "streamdx_inference.ecg.training.trunk_fusion",
                               {"outputs": dict(zip(_OUTPUTS, _SOURCES, strict=True))})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamdx_inference.ecg.training.trunk_fusion MODELS_DIR``: write the fused graph."""
    return derived_graph_main(argv, fuse_model_dirs, FUSED_DIR, "ecg_af/ and ecg_beats/")


if __name__ == "__main__":
    raise SystemExit(main())
