"""One ONNX graph that runs a narrow network's first layers on two beats at a time.

The quality gate (:class:`~streamdx_inference.ecg.training.nets.BeatNet` of width 8) starts
with a stem convolution of the beat (8 channels), a max-pool and an identity residual block
of 8 channels. onnxruntime's CPU convolutions work on blocks of 16 channels with AVX-512 (8
with AVX2), so these layers cost as much as 16-channel ones: half of each vector is zeros.
This rewrite feeds them **two beats at once**: the batch (N, 2, 300) is read as
(N/2, 4, 300) (beats 2i and 2i+1 side by side as channels), the stem and the first
residual block get block-diagonal weights (the same network twice, zeros across), and the
block's output (N/2, 16, 1, L) is read back as (N, 8, 1, L) for the rest of the network,
which is unchanged. An odd batch gets one zero beat appended inside the graph, and its
rows are dropped again before the rest of the network. The arithmetic is the network's own
(the zero weights add exact zeros), so the outputs match the model to rounding; with
AVX-512 the quality gate costs ~0.5 µs less per beat (~4.6 → ~4.0 µs, one core, the padding's
copy included).

It is the same idea as :mod:`~streamdx_inference.ecg.training.trunk_fusion`, which fills
the blocks of the AF and beat-class networks with each other's channels; the quality
gate's stem stride differs from theirs, so it is filled with a second beat instead.

The folded graph is a derived file, ``models/ecg_quality_paired/model.onnx``, written by
:func:`pair_fold_model_dir` (``python -m streamdx_inference.ecg.training.pair_fold models``,
and at the end of ``streamdx train quality``) with the SHA-256 of its source in its
``model.json``: the labeler uses it only when that matches the quality model it loads
(:func:`streamdx_inference.ecg.labeler.load_paired_quality`), and the model itself
otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from streamdx_inference.ecg.labeler import PAIRED_QUALITY_DIR
from streamdx_inference.ecg.training.derived_graph import (
    derived_graph_main,
    max_output_diff,
    with_global_pools,
    write_derived_graph,
)
from streamdx_inference.ecg.training.trunk_fusion import block_diag, conv_weights, trunk_nodes

__all__ = ["main", "pair_fold", "pair_fold_model_dir"]

#: Channels of a CPU convolution block (AVX-512): a network at most this wide fills it with two beats.
BLOCK_CHANNELS = 16
_SOURCE = "ecg_quality"


def pair_fold(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph of ``model`` with its stem and first residual block run on pairs of beats.

    Raises
    ------
    ValueError
        If the graph does not start with the BeatNet trunk (2-D layout) or the trunk is
        wider than half a convolution block (two beats would not fit in one).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    trunk = trunk_nodes(g)
    stem, conv1, conv2 = trunk[1], trunk[4], trunk[6]
    width = conv_weights(g, stem)[0].shape[0]
    if 2 * width > BLOCK_CHANNELS:
        raise ValueError(f"the trunk has {width} channels: two beats do not fit in a block of {BLOCK_CHANNELS}")
    (wave,) = [i for i in g.input if i.name == "wave"]
    c_in = wave.type.tensor_type.shape.dim[1].dim_value
    if c_in <= 0:
        raise ValueError("the wave input has no fixed channel count")
    inits = {i.name: i for i in g.initializer}
    for conv in (stem, conv1, conv2):
        w, b = conv_weights(g, conv)
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(block_diag(w, w), conv.input[1]))
        inits[conv.input[2]].CopyFrom(numpy_helper.from_array(np.concatenate([b, b]), conv.input[2]))
    rank = len(wave.type.tensor_type.shape.dim)
    g.initializer.extend([
        numpy_helper.from_array(np.array([2], np.int64), "pair/two"),
        numpy_helper.from_array(np.zeros(rank, np.int64), "pair/pads_head"),
        numpy_helper.from_array(np.zeros(rank - 1, np.int64), "pair/pads_tail"),
        numpy_helper.from_array(np.array([-1, 2 * c_in, *([0] * (rank - 2))], np.int64), "pair/in_shape"),
        numpy_helper.from_array(np.array([-1, width, 1, 0], np.int64), "pair/out_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "pair/zero"),
    ])  # fmt: skip
    trunk[0].input[0] = "pair/wave"
    head = [
        helper.make_node("Shape", ["wave"], ["pair/n"], name="pair/n", start=0, end=1),
        helper.make_node("Mod", ["pair/n", "pair/two"], ["pair/odd"], name="pair/odd"),
        # pads: nothing before any axis; after the batch axis one zero beat when N is odd
        helper.make_node(
            "Concat", ["pair/pads_head", "pair/odd", "pair/pads_tail"], ["pair/pads"], name="pair/pads", axis=0
        ),
        helper.make_node("Pad", ["wave", "pair/pads"], ["pair/wave_even"], name="pair/pad"),
        helper.make_node("Reshape", ["pair/wave_even", "pair/in_shape"], ["pair/wave"], name="pair/fold"),
    ]
    last = trunk[-1]
    block_out = last.output[0]
    last.output[0] = "pair/block_out"
    tail = [
        helper.make_node("Reshape", ["pair/block_out", "pair/out_shape"], ["pair/unfolded"], name="pair/unfold"),
        helper.make_node(
            "Slice", ["pair/unfolded", "pair/zero", "pair/n", "pair/zero"], [block_out], name="pair/drop_pad"
        ),
    ]
    nodes = list(g.node)
    at = nodes.index(last) + 1
    del g.node[:]
    g.node.extend(head + nodes[:at] + tail + nodes[at:])
    g.name = f"{g.name}_pair_folded"
    out.producer_name = "streamdx pair_fold"
    onnx.checker.check_model(out)
    return out


def pair_fold_model_dir(
    models_dir: Path, sizes: Sequence[int] = (1, 2, 7, 512), seed: int = 0, atol: float = 1e-5
) -> dict[str, Any]:
    """Write ``models_dir/ecg_quality_paired/{model.onnx, model.json}`` from ``ecg_quality``.

    The folded graph is checked against the model on seeded standard-normal batches of
    ``sizes`` beats (odd and even); ``model.json`` records the source's version and SHA-256
    and the largest output difference. Returns that metadata.

    Raises
    ------
    ValueError
        If the graph cannot be folded or the outputs differ by more than ``atol``.
    """
    src = models_dir / _SOURCE / "model.onnx"
    folded = with_global_pools(pair_fold(onnx.load(str(src))))
    diff = max_output_diff(folded, [src], sizes, seed)  # odd and even batches, one beat alone
    if not diff <= atol:
        raise ValueError(f"the folded graph differs from {_SOURCE} by {diff:.3g} > {atol}")
    return write_derived_graph(models_dir, PAIRED_QUALITY_DIR, folded, (_SOURCE,), diff,
                               f"seeded standard-normal batches of {', '.join(map(str, sizes))} beats",
                               "streamdx_inference.ecg.training.pair_fold")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamdx_inference.ecg.training.pair_fold MODELS_DIR``: write the folded quality graph."""
    return derived_graph_main(argv, pair_fold_model_dir, PAIRED_QUALITY_DIR, "ecg_quality/")


if __name__ == "__main__":
    raise SystemExit(main())
