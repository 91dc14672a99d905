"""The ONNX rewrite of 1-D convolutions as 2-D ones: same outputs, refusal of what it does not cover."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from streamdx_inference.ecg.training.conv_layout import conv1d_as_conv2d, convert_model_dir
from streamdx_inference.ecg.training.nets import BeatNet

_SHAPES = {"wave": (2, 300), "rr": (3, 32), "scalars": (13,)}


def _inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((n, *v)).astype(np.float32) for k, v in _SHAPES.items()}


class _Probs(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, wave: torch.Tensor, rr: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(wave, rr, scalars), dim=1)


def _export(net: nn.Module) -> onnx.ModelProto:
    net.eval()
    x = tuple(torch.from_numpy(v) for v in _inputs(4, 0).values())
    names = list(_SHAPES)
    axes = {**{k: {0: "batch"} for k in names}, "prob": {0: "batch"}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(_Probs(net), x, str(path), input_names=names, output_names=["prob"], opset_version=17,
                          dynamic_axes=axes, dynamo=False)  # fmt: skip
        return onnx.load(str(path))


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    out: np.ndarray = sess.run(None, {k: v for k, v in feed.items() if k in names})[0]
    return out


@pytest.mark.parametrize("use_rr", [True, False])
def test_rewritten_beat_network_gives_the_same_probabilities(use_rr: bool) -> None:
    torch.manual_seed(3)
    net = BeatNet(5, list(range(11)), use_rr=use_rr, width=8)
    for m in net.modules():  # trained-looking batch-norm statistics (folded into the convolutions)
        if isinstance(m, nn.BatchNorm1d) and m.running_mean is not None and m.running_var is not None:
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    model = _export(net)
    out = conv1d_as_conv2d(model, _inputs(64, 1))
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Unsqueeze") == (2 if use_rr else 1)
    for node in out.graph.node:
        if node.op_type in ("Conv", "MaxPool"):
            ks = next(a for a in node.attribute if a.name == "kernel_shape")
            assert len(ks.ints) == 2 and ks.ints[0] == 1
    fresh = _inputs(300, 2)  # other inputs than the check's
    a, b = _run(model, fresh), _run(out, fresh)
    assert a.shape == b.shape == (300, 5)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert [i.name for i in out.graph.input] == [i.name for i in model.graph.input]


def test_an_operation_it_does_not_cover_is_refused() -> None:
    class _Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 5, padding=2)

        def forward(self, wave: torch.Tensor, rr: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
            h = self.conv(wave).transpose(1, 2)  # a layout operation on a convolution output
            return h.mean(dim=1) + 0.0 * scalars[:, :4]

    with pytest.raises(ValueError, match="not rewritten"):
        conv1d_as_conv2d(_export(_Odd()), _inputs(8, 1))


def test_a_model_folder_is_rewritten_once_and_recorded(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = _export(BeatNet(5, list(range(11)), use_rr=True, width=8))
    onnx.save(model, str(tmp_path / "model.onnx"))
    (tmp_path / "model.json").write_text(json.dumps({"name": "x", "size_bytes": {"model.onnx": 1}}))
    (tmp_path / "MODEL_CARD.md").write_text("# x\n")
    res = convert_model_dir(tmp_path)
    assert res["max_abs_diff"] < 1e-5
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["onnx_layout"]["max_abs_prob_diff"] == res["max_abs_diff"]
    assert meta["size_bytes"]["model.onnx"] == (tmp_path / "model.onnx").stat().st_size
    assert "## ONNX layout" in (tmp_path / "MODEL_CARD.md").read_text()
    feed = _inputs(50, 9)
    np.testing.assert_allclose(_run(onnx.load(str(tmp_path / "model.onnx")), feed), _run(model, feed), atol=1e-5)
    with pytest.raises(ValueError, match="already"):
        convert_model_dir(tmp_path)
