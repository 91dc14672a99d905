"""``streamdx train kaggle-beats`` — Kachuee's CNN on Kaggle-layout single beats rebuilt from MITDB.

The model the web console's ``/upload`` uses for CSVs in the single-beat Kaggle layout (187
values per row at 125 Hz, min-max scaled, zero-padded). Everything but the export is
:mod:`streamdx_inference.ecg.kaggle`, the code of ``streamdx eval beats --protocol kaggle``:
the beats (:func:`~streamdx_inference.ecg.kaggle.kaggle_beats`, default ``--peaks annotations``,
the layout of the published CSVs), the split (:func:`~streamdx_inference.ecg.kaggle.kaggle_splits`:
random 80/20 **by beat**, stratified, then 10 % of the 80 % for validation — **intra-patient**),
the training and model selection on the validation part
(:func:`~streamdx_inference.ecg.kaggle.train_kaggle_net`) and the scores
(:func:`~streamdx_inference.ecg.kaggle.score_kaggle`). With the same seed and peaks it trains the
network ``streamdx eval beats --protocol kaggle`` scores.

Outputs in ``--out`` (default ``models/ecg_kaggle_beats``): ``model.onnx`` (input ``beat``
(B, 187) float32, output ``prob`` (B, 5) softmax over N, S, V, F, Q with the prior correction
built in; weights stored as float16, computed in float32:
:func:`~streamdx_inference.ecg.training.weight_storage.store_weights_fp16`), ``model.int8.onnx``
(static QDQ INT8 as the other ECG models, quantised from the float32 export), ``model.json``
(input contract, data, split, held-out 20 % metrics measured on the exported ``model.onnx``,
INT8 and float16-storage agreement, training history) and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_int, positive_int
from streamdx.json_values import json_safe

__all__ = ["build_parser", "main"]

_DEFAULT_MITDB = Path("../shared/data/mitdb")
_DEFAULT_OUT = Path("models/ecg_kaggle_beats")
_INPUT = "beat"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx train kaggle-beats",
        description="Train Kachuee et al.'s residual 1-D CNN on Kaggle-layout single beats (187 values at 125 Hz, "
        "min-max scaled, zero-padded) rebuilt from MITDB by streamdx_inference.ecg.kaggle, with the seed's "
        "intra-patient split (random 80/20 by beat, stratified; model selection on 10 %% of the 80 %%), and export "
        "it to ONNX (float32 compute with float16-stored weights, and INT8) with its model card. Test-split "
        "metrics are measured on the held-out 20 %%.",
    )
    p.add_argument("--data", type=Path, default=_DEFAULT_MITDB, help="MIT-BIH Arrhythmia folder (WFDB .hea/.dat/.atr)")
    p.add_argument("--peaks", choices=["paper", "annotations"], default="annotations",
                   help="beat anchors of kaggle_beats: the annotated beats (the layout of the published Kaggle "
                        "CSVs, default) or the paper's R-peak rule")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=40,
                   help="largest number of epochs (patience 6 on validation F1)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the split, N subsampling, weights and batches")
    p.add_argument("--max-train-n", type=positive_int, default=40000,
                   help="largest number of N beats in the training part")
    p.add_argument("--out", type=Path, default=_DEFAULT_OUT, help="output folder")
    p.add_argument("--records", nargs="*", default=None, help="records to use (default: all in --data)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


class _Beats:
    """Kaggle beats as the calibration set :func:`~streamdx_inference.ecg.training.fit.quantize_int8` reads."""

    def __init__(self, x: npt.NDArray[np.float32]) -> None:
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, idx: npt.NDArray[np.int64]) -> _Beats:
        return _Beats(self.x[idx])

    def as_inputs(self) -> dict[str, npt.NDArray[np.float32]]:
        return {_INPUT: np.ascontiguousarray(self.x, dtype=np.float32)}


def _export(net: Any, bias: npt.NDArray[np.float32], path: Path) -> None:
    """ONNX (opset 17, dynamic batch): ``beat`` (B, 187) → ``prob`` (B, 5), prior correction inside."""
    import torch
    from torch import nn

    class _Probs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("bias", torch.from_numpy(bias.copy()))

        def forward(self, beat: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(beat) + self.bias, dim=1)

    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    from streamdx_inference.ecg.kaggle import BEAT_LEN

    torch.onnx.export(
        _Probs().eval(), (torch.zeros(4, BEAT_LEN),), str(path), input_names=[_INPUT], output_names=["prob"],
        opset_version=17, dynamic_axes={_INPUT: {0: "batch"}, "prob": {0: "batch"}}, dynamo=False,
    )  # fmt: skip


def _onnx_probs(path: Path, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = [s.run(None, {_INPUT: x[i : i + 4096]})[0] for i in range(0, x.shape[0], 4096)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 5))


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _f3(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _metrics_md(test: dict[str, Any], classes: Sequence[str]) -> str:
    mc, b = test["multiclass"], test["binary"]
    lines = [
        f"Held-out test split ({test['n']} beats, 20 % of every class, never used for training or model "
        "selection), the exported `model.onnx`, arg-max class:",
        "",
        f"- **accuracy {mc['accuracy']:.4f}, macro F1 {mc['macro_f1']:.4f}** (5 classes)",
        f"- N vs abnormal: accuracy {b['accuracy']:.4f}, precision {b['precision']:.4f}, recall {b['recall']:.4f}, "
        f"F1 {b['f1']:.4f}, κ {b['kappa']:.4f}, ROC AUC {b['roc_auc']:.4f}",
        "",
        "| class | n | Se % | +P % | F1 |",
        "|---|---|---|---|---|",
    ]
    for c in classes:
        m = test["classes"].get(c, {})
        n = int(m.get("tp", 0)) + int(m.get("fn", 0))
        lines.append(f"| {c} | {n} | {_pct(m.get('se'))} | {_pct(m.get('ppv'))} | "
                     f"{_f3(test['per_class_f1'][c])} |")  # fmt: skip
    head = "| reference \\ predicted | " + " | ".join(classes) + " |"
    lines += ["", "Confusion matrix (rows = reference, columns = predicted):", "", head,
              "|---" * (len(classes) + 1) + "|"]  # fmt: skip
    for c, row in zip(classes, mc["confusion"], strict=True):
        lines.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


_CARD = """# ecg_kaggle_beats — AAMI beat class of a single Kaggle-layout beat (N, S, V, F, Q)

Not a medical device: research software; labels are not validated for diagnosis.

- **Use**: only for single-beat CSVs in the Kaggle heartbeat layout (the web console's `/upload`):
  one beat per row, 187 values at 125 Hz starting at the R peak, min–max scaled to [0, 1] over the
  10-s window, zero-padded. It is **not** used on streams or continuous recordings (that is
  `ecg_beats`, which reads the DSP's beats with their RR context).
- **Model**: Kachuee et al. 2018 residual 1-D CNN ({params} parameters), `streamdx_inference.ecg.kaggle`;
  Adam 1e-3 decayed 0.92/epoch, batches of 128, one CPU thread, seed {seed}; N beats of the training
  part subsampled to {max_n} with the prior correction (log N ratio {bias:.3f} on the N logit) built
  into the exported graph.
- **Input**: `beat` float32 (B, 187), values in [0, 1]. **Output**: `prob` (B, 5), softmax in the
  order N, S, V, F, Q; the class is the arg-max.
- **Data**: MITDB, all {n_records} records (paced ones included, as in the Kaggle set), rebuilt in the
  Kaggle layout by `streamdx_inference.ecg.kaggle.kaggle_beats` (`--peaks {peaks}`: {peaks_note});
  MLII lead (V5 for 102 and 104), 125 Hz, labels = the nearest `.atr` beat within 150 ms mapped to AAMI.
  {n_beats} beats: {counts}.
- **Split**: **intra-patient** — random 80/20 **by beat**, stratified by class (seed {seed}); 10 % of the
  80 % (stratified) is the validation part used for model selection (best validation N-vs-abnormal F1,
  patience 6); {n_train} training beats (after N subsampling), {n_val} validation, {n_test} test. Beats of
  every patient are on both sides of the split, so these figures **overstate performance on a new
  patient**; the inter-patient (DS1 → DS2) beat model is `ecg_beats` (README: ECG labels).
- **Files**: `model.onnx` ({size_onnx} bytes; computed in float32 with its weights stored as float16,
  which changed {fp16_changed} of the test beats' decisions, max |Δp| {fp16_dp:.1e}; the console runs this one),
  `model.int8.onnx` (static QDQ INT8 like the other ECG models, {size_int8} bytes; decisions agree with
  fp32 on {agree:.2%} of the test beats), `model.json`.
- **Command** (from the repository root; {seconds:.0f} s on one core): `{command}`. The same command
  gives the same metrics (fixed seed, one thread).

## Metrics

{metrics}

## model.json (without the training history)

```json
{json}
```
"""


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    if not a.data.is_dir():
        print(f"error: MITDB folder not found: {a.data}", file=sys.stderr)
        return 2
    import onnx
    import torch

    from streamdx_inference.ecg.kaggle import (
        BEAT_LEN,
        CLASSES,
        FS_KAGGLE,
        _predict,
        extraction_info,
        kaggle_beats,
        kaggle_splits,
        score_kaggle,
        train_kaggle_net,
    )
    from streamdx_inference.ecg.labeler import META_FILE
    from streamdx_inference.ecg.training.fit import quantize_int8
    from streamdx_inference.ecg.training.weight_storage import store_weights_fp16

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    X, y, rec = kaggle_beats(a.data, a.records, progress=not a.quiet, peaks=a.peaks)
    if X.shape[0] == 0:
        print(f"error: no labelled beats in {a.data}", file=sys.stderr)
        return 2
    train_idx, val_idx, test_idx, rng = kaggle_splits(y, a.seed)
    net, bias, train_idx, info = train_kaggle_net(X, y, train_idx, val_idx, rng, epochs=a.epochs, seed=a.seed,
                                                  progress=not a.quiet, max_train_n=a.max_train_n)  # fmt: skip
    seconds = time.perf_counter() - t0

    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    # float32 export → INT8 from it → model.onnx with the weights stored as float16 (computed in float32):
    # the published architecture's 55k weights are 223 KiB as float32, over a shipped model's 200 KB
    fp32_path = out / "model.fp32.onnx"
    _export(net, bias, fp32_path)
    calib = _Beats(X[train_idx])
    quantize_int8(fp32_path, out / "model.int8.onnx", calib, seed=a.seed)  # type: ignore[arg-type]
    onnx.save(store_weights_fp16(onnx.load(str(fp32_path))), str(out / "model.onnx"))

    yte = y[test_idx]
    p_torch = _predict(net, X[test_idx], bias)
    p_f32 = _onnx_probs(fp32_path, X[test_idx])
    fp32_path.unlink()
    p32 = _onnx_probs(out / "model.onnx", X[test_idx])
    p8 = _onnx_probs(out / "model.int8.onnx", X[test_idx])
    test = score_kaggle(yte, p32)
    mc = test["multiclass"]
    f1s = {}
    for i, c in enumerate(CLASSES):
        tp, row, col = mc["confusion"][i][i], sum(mc["confusion"][i]), sum(r[i] for r in mc["confusion"])
        f1s[c] = 2 * tp / (row + col) if row + col else math.nan
    test.update({"n": int(test_idx.size), "per_class_f1": f1s})
    int8 = score_kaggle(yte, p8)["multiclass"]
    int8_change = {
        "agreement": float(np.mean(p32.argmax(1) == p8.argmax(1))),
        "accuracy_fp32": mc["accuracy"], "accuracy_int8": int8["accuracy"],
        "macro_f1_fp32": mc["macro_f1"], "macro_f1_int8": int8["macro_f1"],
        "max_abs_prob_diff": float(np.abs(p32 - p8).max()) if p8.size else 0.0,
    }  # fmt: skip
    onnx_vs_torch = float(np.abs(p32 - p_torch).max()) if p32.size else 0.0
    fp16_change = {
        "changed_decisions": int(np.sum(p32.argmax(1) != p_f32.argmax(1))),
        "max_abs_prob_diff": float(np.abs(p32 - p_f32).max()) if p32.size else 0.0,
        "macro_f1_fp32_weights": score_kaggle(yte, p_f32)["multiclass"]["macro_f1"],
    }  # fmt: skip

    command = " ".join(["streamdx train kaggle-beats", *argv]).strip()
    counts = {part: {c: int(np.sum(y[idx] == c)) for c in CLASSES}
              for part, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}  # fmt: skip
    records = sorted(set(rec.tolist()))
    layout = "one beat per row from its R peak, min-max scaled over its 10-s window, zero-padded"
    warning = ("beats of every patient are on both sides of the split: overstates performance on a new patient "
               "(inter-patient model: ecg_beats)")  # fmt: skip
    data = {"dataset": "MITDB", "records": records, "n_records": len(records),
            "extraction": extraction_info(a.peaks, int(y.size)),
            "class_counts": {c: int(np.sum(y == c)) for c in CLASSES}}  # fmt: skip
    split = {"protocol": "intra-patient: random 80/20 by beat, stratified by class; validation = 10 % of the 80 %",
             "seed": a.seed, "n_train": int(train_idx.size), "n_val": int(val_idx.size), "n_test": int(test_idx.size),
             "counts": counts, "warning": warning}  # fmt: skip
    training = {"model": "Kachuee 2018 residual 1-D CNN", "parameters": int(sum(p.numel() for p in net.parameters())),
                "max_train_n": a.max_train_n, "n_prior_log_ratio": float(bias[CLASSES.index("N")]),
                "epochs_max": a.epochs, "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
                "val_binary_f1": info["val_binary_f1"], "seconds": round(seconds, 1),
                "history": info["history"]}  # fmt: skip
    meta: dict[str, Any] = {
        "name": "ecg_kaggle_beats",
        "version": _dt.datetime.now(_dt.UTC).strftime("%Y%m%d%H%M"),
        "task": "AAMI class (N, S, V, F, Q) of one beat in the Kaggle heartbeat layout",
        "classes": list(CLASSES),
        "inputs": [_INPUT],
        "input": {"name": _INPUT, "length": BEAT_LEN, "fs": FS_KAGGLE, "range": [0.0, 1.0], "layout": layout},
        "output": {"name": "prob", "classes": list(CLASSES), "decision": "arg-max"},
        "data": data,
        "split": split,
        "test_metrics": json_safe(test),
        "int8_change": int8_change,
        "weights_fp16": {
            "storage": "float16 initializers + Cast to float32 (computed in float32)",
            "change_vs_fp32_weights": fp16_change,
        },
        "onnx_vs_torch_max_abs_prob_diff": onnx_vs_torch,
        "training": training,
        "command": command,
        "size_bytes": {p.name: p.stat().st_size for p in (out / "model.onnx", out / "model.int8.onnx")},
    }
    (out / META_FILE).write_text(json.dumps(json_safe(meta), indent=2) + "\n")
    shown = {k: v for k, v in meta.items() if k != "training"}
    shown["training"] = {k: v for k, v in meta["training"].items() if k != "history"}
    peaks_note = ("beats cut at the annotated R peaks, the layout of the published Kaggle CSVs"
                  if a.peaks == "annotations" else "R peaks by the paper's > 0.9 rule")  # fmt: skip
    card = _CARD.format(
        params=training["parameters"], seed=a.seed, max_n=a.max_train_n, bias=training["n_prior_log_ratio"],
        n_records=len(records), peaks=a.peaks, peaks_note=peaks_note, n_beats=int(y.size),
        counts=", ".join(f"{c} {n}" for c, n in meta["data"]["class_counts"].items()),
        n_train=int(train_idx.size), n_val=int(val_idx.size), n_test=int(test_idx.size),
        size_onnx=meta["size_bytes"]["model.onnx"], size_int8=meta["size_bytes"]["model.int8.onnx"],
        agree=int8_change["agreement"], seconds=seconds, command=command,
        fp16_changed=fp16_change["changed_decisions"], fp16_dp=fp16_change["max_abs_prob_diff"],
        metrics=_metrics_md(test, CLASSES), json=json.dumps(json_safe(shown), indent=2),
    )  # fmt: skip
    (out / "MODEL_CARD.md").write_text(card)
    print(_metrics_md(test, CLASSES))
    print(f"\nINT8 agreement {int8_change['agreement']:.4f}; ONNX vs torch max |Δp| {onnx_vs_torch:.2e}")
    print(f"trained in {seconds:.0f} s; model written to {out}")
    return 0
