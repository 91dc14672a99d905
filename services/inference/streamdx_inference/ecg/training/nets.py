"""PyTorch networks of the ECG models (training only; serving runs their ONNX export).

One small 1-D ResNet family (seed 003: a lightweight 1-D ResNet on the 300-sample beat,
He et al. 2016 residual blocks) with two side branches: a 1-D convolution over the RR
context sequence and the scalar features of :mod:`streamdx_inference.ecg.features`.
Each model reads only the inputs it needs (``use_rr``, ``scalar_cols``), so the AF model
never sees the next RR interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BeatNet", "RecordingCnn", "ResBlock1d"]


class ResBlock1d(nn.Module):
    """Two convolutions with batch norm and an identity (or 1x1 strided) shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.short: nn.Module = (
            nn.Identity() if c_in == c_out and stride == 1
            else nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.short(x))


class BeatNet(nn.Module):
    """Beat waveform ResNet + RR-context convolution + scalar features → ``n_out`` logits.

    Parameters
    ----------
    n_out : int
        Number of outputs (1 for a binary model: one logit).
    scalar_cols : sequence of int
        Columns of the ``scalars`` input the model reads.
    use_rr : bool
        Whether the RR-context branch is used.
    width : int
        Channels of the first residual stage (the second has twice as many).
    stem_stride : int
        Stride of the first convolution (then a max-pool of 2): 3 gives 300 -> 100 -> 50
        samples; 5 gives 300 -> 60 -> 30 at the same number of weights and costs about a
        third less (measured with onnxruntime on one core: ~3.0 instead of ~4.6 µs per beat
        for the convolutional trunk), for tasks that need less detail (the quality gate).
    rr_channels : sequence of int
        Channels of the RR-context branch's convolutions (kernel 5; the second with stride 2;
        further ones kernel 3), pooled by mean and max.
    """

    def __init__(
        self, n_out: int, scalar_cols: Sequence[int], use_rr: bool = True, width: int = 8, stem_stride: int = 3,
        rr_channels: Sequence[int] = (8, 12),
    ) -> None:
        super().__init__()
        c = width
        self.stem = nn.Sequential(nn.Conv1d(2, c, 9, stride=stem_stride, padding=4, bias=False), nn.BatchNorm1d(c),
                                  nn.ReLU(), nn.MaxPool1d(2))  # fmt: skip
        self.blocks = nn.Sequential(ResBlock1d(c, c, 5, 1), ResBlock1d(c, 2 * c, 5, 2), ResBlock1d(2 * c, 2 * c, 3, 2))
        self.use_rr = use_rr
        rr_dim = 0
        if use_rr:
            layers: list[nn.Module] = []
            c_in = 3
            for i, c_out in enumerate(rr_channels):
                k, st = (5, 1) if i == 0 else (5, 2) if i == 1 else (3, 1)
                layers += [nn.Conv1d(c_in, c_out, k, stride=st, padding=k // 2), nn.ReLU()]
                c_in = c_out
            self.rr_net = nn.Sequential(*layers)
            rr_dim = 2 * c_in
        self.cols: torch.Tensor
        self.register_buffer("cols", torch.tensor(list(scalar_cols), dtype=torch.long), persistent=False)
        self.head = nn.Sequential(nn.Linear(4 * c + rr_dim + len(scalar_cols), 32), nn.ReLU(), nn.Dropout(0.1),
                                  nn.Linear(32, n_out))  # fmt: skip

    def forward(self, wave: torch.Tensor, rr: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(wave))
        parts = [h.mean(dim=2), h.amax(dim=2)]
        if self.use_rr:
            g = self.rr_net(rr)
            parts += [g.mean(dim=2), g.amax(dim=2)]
        parts.append(scalars.index_select(1, self.cols))
        out: torch.Tensor = self.head(torch.cat(parts, dim=1))
        return out


class _DropoutResBlock1d(ResBlock1d):
    """:class:`ResBlock1d` with dropout between its two convolutions."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dropout: float) -> None:
        super().__init__(c_in, c_out, kernel, stride)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(self.drop(y)))
        return torch.relu(y + self.short(x))


class RecordingCnn(nn.Module):
    """1-D ResNet over a whole raw recording → one AF logit (the ``af_ceiling`` diagnostic only).

    A non-causal model that sees every sample of a recording (not a served model): a stride-2
    stem (16 channels, kernel 15), six residual blocks of kernel 7, each halving the length
    (16, 32, 32, 64, 64, 64 channels, dropout 0.2 between a block's convolutions), mean and max
    pooled over time, one linear layer. Input (B, 1, T) at any length T >= 128 (150 Hz in the
    diagnostic); output (B,).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, 16, 15, stride=2, padding=7, bias=False), nn.BatchNorm1d(16),
                                  nn.ReLU())  # fmt: skip
        chans = (16, 16, 32, 32, 64, 64, 64)
        self.body = nn.Sequential(*(_DropoutResBlock1d(chans[i], chans[i + 1], 7, 2, 0.2) for i in range(6)))
        self.head = nn.Linear(2 * chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.stem(x))
        out: torch.Tensor = self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)).squeeze(1)
        return out
