"""Float16 weight storage of ONNX graphs, and the size budget of every shipped ECG model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamdx_inference.ecg.training.weight_storage import store_weights_fp16

MODELS = Path(__file__).resolve().parents[3] / "models"
#: Size budget of one shipped ECG model file (issue "ECG models": each model ≤ 200 KB).
MAX_MODEL_BYTES = 200 * 1024


def _dense_graph(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", w.shape[1]])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([3], dtype=np.int64), "unused_int")]  # fmt: skip
    g = helper.make_graph(nodes, "dense", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out: np.ndarray = s.run(None, {"x": x})[0]
    return out


def test_weights_are_stored_as_float16_and_computed_in_float32() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (64, 32)).astype(np.float32)
    b = rng.normal(0, 0.1, 32).astype(np.float32)
    m = _dense_graph(w, b)
    m16 = store_weights_fp16(m)
    types = {i.name: i.data_type for i in m16.graph.initializer}
    assert types == {"w__fp16": TensorProto.FLOAT16, "b__fp16": TensorProto.FLOAT16, "unused_int": TensorProto.INT64}
    assert [n.op_type for n in m16.graph.node] == ["Cast", "Cast", "MatMul", "Add"]
    assert m16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert len(m16.SerializeToString()) < 0.6 * len(m.SerializeToString())
    x = rng.normal(0, 1, (16, 64)).astype(np.float32)
    y, y16 = _run(m, x), _run(m16, x)
    assert y16.dtype == np.float32
    # exactly the float32 graph with the float16-rounded weights
    w_r, b_r = w.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(y16, _run(_dense_graph(w_r, b_r), x), rtol=1e-6, atol=1e-6)
    assert 0 < np.abs(y16 - y).max() < 1e-2
    assert len(m.graph.initializer) == 3  # the input model is left as it was


@pytest.mark.parametrize("bad", [np.inf, np.nan, 1e6])
def test_a_weight_outside_the_float16_range_is_refused(bad: float) -> None:
    w = np.ones((4, 2), dtype=np.float32)
    w[1, 1] = bad
    with pytest.raises(ValueError, match="does not fit float16"):
        store_weights_fp16(_dense_graph(w, np.zeros(2, dtype=np.float32)))


def test_every_shipped_ecg_model_fits_the_size_budget() -> None:
    files = sorted(MODELS.glob("ecg_*/*.onnx"))
    assert len(files) >= 9
    too_big = {str(f.relative_to(MODELS)): f.stat().st_size for f in files if f.stat().st_size > MAX_MODEL_BYTES}
    assert too_big == {}
