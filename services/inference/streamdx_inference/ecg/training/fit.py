"""Fitting, predicting, ONNX export and INT8 quantisation of the ECG networks.

Fixed seeds; AdamW with a one-cycle learning-rate schedule; the checkpoint with the lowest
validation loss is kept (the validation beats come from training records only).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from streamdx_inference.ecg.features import EcgFeatures

if TYPE_CHECKING:
    from streamdx_inference.ecg.labeler import EcgModel

__all__ = [
    "augment_beats", "export_onnx", "fit_net", "onnx_ecg_model", "predict_net", "quantize_int8", "seed_everything",
]

_INPUTS = ("wave", "rr", "scalars")


def seed_everything(seed: int) -> None:
    """Seed numpy and torch (CPU); deterministic algorithms where torch has them."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _tensors(f: EcgFeatures, idx: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.from_numpy(f.wave[idx]), torch.from_numpy(f.rr[idx]), torch.from_numpy(f.scalars[idx])


def augment_beats(
    wave: torch.Tensor, gen: torch.Generator, scale: float = 0.25, noise: float = 0.03, shift: int = 3,
    flip: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """Training-time augmentation of the ``wave`` input: a random gain (±``scale``), white noise
    (``noise``, in units of the stream's R amplitude) and a circular shift of up to ``shift``
    samples, the same for both channels of a beat; with probability ``flip`` a beat's sign is
    inverted (both channels: the lead reversed, as a hand-held single-lead recorder held the
    other way round gives)."""
    b = wave.shape[0]
    g = 1.0 + scale * (2.0 * torch.rand(b, 1, 1, generator=gen) - 1.0)
    if flip > 0.0:
        g = torch.where(torch.rand(b, 1, 1, generator=gen) < flip, -g, g)
    out = wave * g + noise * torch.randn(wave.shape, generator=gen)
    k = int(torch.randint(-shift, shift + 1, (1,), generator=gen))
    return torch.roll(out, k, dims=2) if k else out


def _batches(n: int, size: int, rng: np.random.Generator | None) -> Iterator[npt.NDArray[np.int64]]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield order[i : i + size]


def _loss_fn(n_out: int, class_weights: npt.NDArray[np.float64] | None) -> nn.Module:
    if n_out == 1:
        pw = None if class_weights is None else torch.tensor([class_weights[1] / class_weights[0]], dtype=torch.float32)
        return nn.BCEWithLogitsLoss(pos_weight=pw)
    return _ClassWeightedCrossEntropy(None if class_weights is None else torch.tensor(class_weights,
                                                                                     dtype=torch.float32))


class _ClassWeightedCrossEntropy(nn.Module):
    """Cross-entropy with class weights, on class indices or on class probabilities (soft targets).

    On indices it is ``nn.CrossEntropyLoss(weight=w)``. On probabilities each beat is weighted
    by the class weight of its most probable target class (its reference class when the
    targets mix in the reference labels with weight ≥ 0.5), so the class balance is that of
    the hard labels; weighting each class's term instead would multiply the small probability
    a teacher gives a rare class on every beat by that class's large weight.
    """

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            return nn.functional.cross_entropy(logits, target, weight=self.weight)
        per_beat = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1)
        if self.weight is None:
            return per_beat.mean()
        sw = self.weight[target.argmax(dim=1)]
        return (sw * per_beat).sum() / sw.sum()


def _target(y: npt.NDArray[np.int64] | npt.NDArray[np.float32], n_out: int) -> torch.Tensor:
    """Class indices, or (for a multi-class model) class probabilities when ``y`` is 2-D (soft targets)."""
    t = torch.from_numpy(y)
    return t.float() if n_out == 1 or t.ndim == 2 else t.long()


def _logits(net: nn.Module, f: EcgFeatures, idx: npt.NDArray[np.int64]) -> torch.Tensor:
    out: torch.Tensor = net(*_tensors(f, idx))
    return out.squeeze(1) if out.shape[1] == 1 else out


def fit_net(
    net: nn.Module,
    train: EcgFeatures,
    y_train: npt.NDArray[np.int64] | npt.NDArray[np.float32],
    val: EcgFeatures,
    y_val: npt.NDArray[np.int64],
    *,
    epochs: int,
    lr: float = 3e-3,
    batch: int = 256,
    class_weights: npt.NDArray[np.float64] | None = None,
    sample_weight: npt.NDArray[np.float64] | None = None,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
    epoch_size: int | None = None,
    augment: bool = False,
    ema_decay: float | None = None,
    flip: float = 0.0,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train ``net``; return the checkpoint with the lowest validation loss and the history.

    ``sample_weight`` (per training beat) draws each epoch's beats with replacement in
    proportion to it (e.g. to balance records or databases); otherwise every beat once.
    ``epoch_size`` fixes the number of beats drawn per epoch (default: all); ``augment``
    applies :func:`augment_beats` to every training batch (``flip``: its sign-inversion
    probability). ``y_train`` may hold class
    probabilities (n, k) instead of class indices (soft targets, e.g. a teacher ensemble's).
    ``ema_decay`` keeps an exponential moving average of the weights (and batch-norm
    statistics), updated after every step; the average is what is validated and returned
    (Polyak & Juditsky 1992; Izmailov et al. 2018 for its flatter, better-generalising minima).
    """
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    n_out = int(net.head[-1].out_features)  # type: ignore[index, union-attr]
    loss_fn = _loss_fn(n_out, class_weights)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n = len(train)
    per_epoch = n if epoch_size is None else min(epoch_size, n)
    steps = epochs * math.ceil(per_epoch / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    best, best_loss, history = copy.deepcopy(net.state_dict()), math.inf, []
    avg = None
    if ema_decay is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        avg = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    p = None if sample_weight is None else sample_weight / sample_weight.sum()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=desc, unit="batch", leave=False)
    for ep in range(epochs):
        net.train()
        draw = rng.choice(n, size=per_epoch, replace=True, p=p) if p is not None else None
        idx_all = draw if draw is not None else rng.permutation(n)[:per_epoch]
        total, count = 0.0, 0
        for b in _batches(per_epoch, batch, None):
            idx = idx_all[b]
            opt.zero_grad()
            w, r, sc = _tensors(train, idx)
            if augment:
                w = augment_beats(w, gen, flip=flip)
            z = net(w, r, sc)
            loss = loss_fn(z.squeeze(1) if z.shape[1] == 1 else z, _target(y_train[idx], n_out))
            loss.backward()
            opt.step()
            sched.step()
            if avg is not None:
                avg.update_parameters(net)
            total += float(loss.detach()) * idx.size
            count += idx.size
            if bar is not None:
                bar.update(1)
        scored = net if avg is None else avg.module
        vloss = _eval_loss(scored, val, y_val, loss_fn, n_out)
        history.append({"epoch": ep + 1, "train_loss": total / max(count, 1), "val_loss": vloss})
        if bar is not None:
            bar.set_postfix(train=f"{total / max(count, 1):.4f}", val=f"{vloss:.4f}")
        if vloss < best_loss:
            best_loss, best = vloss, copy.deepcopy(scored.state_dict())
    if bar is not None:
        bar.close()
    net.load_state_dict(best)
    net.eval()
    return net, history


@torch.no_grad()
def _eval_loss(net: nn.Module, f: EcgFeatures, y: npt.NDArray[np.int64], loss_fn: nn.Module, n_out: int) -> float:
    if len(f) == 0:
        return 0.0
    net.eval()
    total = 0.0
    for idx in _batches(len(f), 4096, None):
        total += float(loss_fn(_logits(net, f, idx), _target(y[idx], n_out))) * idx.size
    return total / len(f)


@torch.no_grad()
def predict_net(net: nn.Module, f: EcgFeatures) -> npt.NDArray[np.float32]:
    """Probabilities: (n,) for a binary model, (n, k) softmax otherwise."""
    net.eval()
    outs = []
    for idx in _batches(len(f), 4096, None):
        z = _logits(net, f, idx)
        outs.append((torch.sigmoid(z) if z.ndim == 1 else torch.softmax(z, dim=1)).numpy())
    if not outs:
        return np.zeros(0, np.float32)
    return np.concatenate(outs).astype(np.float32)


class _Probs(nn.Module):
    """The exported graph: probabilities instead of logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, wave: torch.Tensor, rr: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.net(wave, rr, scalars)
        return torch.sigmoid(z).squeeze(1) if z.shape[1] == 1 else torch.softmax(z, dim=1)


def export_onnx(net: nn.Module, example: EcgFeatures, path: Path) -> None:
    """Export to ONNX (opset 17, dynamic batch): inputs ``wave, rr, scalars``, output ``prob``.

    The 1-D convolutions are written as 2-D ones of height 1, which onnxruntime runs about
    twice as fast (:func:`~streamdx_inference.ecg.training.conv_layout.conv1d_as_conv2d`,
    checked on up to 256 of the ``example`` beats).
    """
    import onnx

    from streamdx_inference.ecg.training.conv_layout import conv1d_as_conv2d

    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    idx = np.arange(min(len(example), 4))
    args = _tensors(example, idx)
    torch.onnx.export(
        _Probs(net), args, str(path), input_names=list(_INPUTS), output_names=["prob"], opset_version=17,
        dynamic_axes={**{k: {0: "batch"} for k in _INPUTS}, "prob": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    check = example.take(np.arange(min(len(example), 256))).as_inputs()
    onnx.save(conv1d_as_conv2d(onnx.load(str(path)), check), str(path))


def onnx_ecg_model(net: nn.Module, example: EcgFeatures, name: str, meta: dict[str, Any]) -> EcgModel:
    """``net``'s ONNX export (:func:`export_onnx`) loaded as the service loads a model
    (:func:`~streamdx_inference.ecg.labeler.load_ecg_model`), with metadata ``meta`` (``threshold``,
    ``window``, ...): for fits and evaluations that label beats exactly as served with a network
    trained on the spot."""
    from streamdx_inference.ecg.labeler import META_FILE, load_ecg_model

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / name
        export_onnx(net, example, d / "model.onnx")
        (d / META_FILE).write_text(json.dumps(meta, default=float))
        return load_ecg_model(Path(tmp), name)  # onnxruntime holds the model in memory


def quantize_int8(src: Path, dst: Path, calib: EcgFeatures, n_calib: int = 2048, seed: int = 0) -> None:
    """Static INT8 quantisation (QDQ, per-channel weights) calibrated on ``calib`` beats.

    QDQ is the format TensorRT consumes for INT8 on Jetson; onnxruntime's CPU provider
    runs it as well.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(calib), size=min(n_calib, len(calib)), replace=False)
    sub = calib.take(idx)
    names = {i.name for i in onnx.load(str(src)).graph.input}  # the exporter drops inputs a model never reads

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(0, len(sub), 64))

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            i = next(self._it, None)
            if i is None:
                return None
            feed = sub.take(np.arange(i, min(i + 64, len(sub)))).as_inputs()
            return {k: v for k, v in feed.items() if k in names}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
