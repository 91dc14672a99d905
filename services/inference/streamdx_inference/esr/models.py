"""ESR forecast models of seed 000's comparison (training-time only: imports torch / sklearn).

Every learned model forecasts the 60-minute height the same way: **last observed height +
predicted change** (the change is the training target; see
:func:`streamdx_inference.esr.features.change_target`).

* **GRU** (Cho et al. 2014): a one-layer GRU (hidden 32 by default) reads, per minute 2..T, the
  scaled height together with scaled age and sex; a small head on the last hidden state (plus age
  and sex) predicts the change from the last observed height to the height at 60 min. One network
  per input length ``T`` (the runtime ships T = 10, 15, 20, 24, 30 and uses the longest one the
  available minutes allow). A single network trained with a loss on every step 10..30 was tried
  on the development cohort and was clearly worse at T = 30 (MAE ≈ 0.045 vs ≈ 0.019), so it
  was dropped.
* **FFNN**: 31 inputs (minutes 2..30, age, sex) → 32 → 16 → 1 (default widths), ReLU, wrapped in
  :class:`LastPlusChange` so that its output is the change added to the last height.
* **Wide & Deep** (Cheng et al. 2016): a linear (wide) part on the 31 inputs plus the age×sex
  cross, summed with a deep part 31 → 32 → 16 → 1, also wrapped in :class:`LastPlusChange`.
* **Random Forest** (Breiman 2001): fitted on the change (see :mod:`streamdx_inference.esr.tuning`).

Neural nets: MSE loss, Adam, mini-batches of 16, early stopping on a validation split
(patience 15, at most 600 epochs, best weights restored). The shipped GRU uses Adam lr 3e-3
(:data:`LEARNING_RATES`), chosen from {1e-3, 3e-3, 1e-2} on a separate development cohort
(simulated, seed 99, 130 tubes, 4 splits; never the evaluation cohorts). In ``streamdx eval esr``
every learned model instead gets the same hyper-parameter search on the training part of each
split (:mod:`streamdx_inference.esr.tuning`).

References
----------
Cho K et al. Learning phrase representations using RNN encoder-decoder for statistical machine
    translation. EMNLP 2014.
Cheng H-T et al. Wide & deep learning for recommender systems. DLRS 2016.
Breiman L. Random forests. Mach Learn 2001;45:5–32.
Kingma DP, Ba J. Adam: a method for stochastic optimization. ICLR 2015.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

__all__ = [
    "DEFAULT_WIDTHS",
    "FFNN",
    "LEARNING_RATES",
    "GRUForecaster",
    "LastPlusChange",
    "TrainConfig",
    "WideDeep",
    "fit_net",
    "predict_net",
]


#: Adam learning rate of the shipped GRU, selected on the development cohort (see module notes).
LEARNING_RATES = {"gru": 3e-3}
#: Default hidden widths of the feed-forward parts.
DEFAULT_WIDTHS = (32, 16)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the neural models."""

    lr: float = 1e-3
    max_epochs: int = 600
    patience: int = 15
    weight_decay: float = 0.0
    batch_size: int = 16


class GRUForecaster(nn.Module):
    """GRU forecaster: ``(heights (B, T), static (B, 2)) → h60 (B,)``, all min-max scaled."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size=3, hidden_size=hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + 2, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, heights: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        B, T = heights.shape
        st = static.unsqueeze(1).expand(B, T, 2)
        x = torch.cat([heights.unsqueeze(-1), st], dim=-1)
        _, h_n = self.gru(x)
        delta = self.head(torch.cat([h_n[-1], static], dim=-1)).squeeze(-1)
        return heights[:, -1] + delta


def _mlp(n_in: int, widths: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, widths[0]), nn.ReLU(), nn.Linear(widths[0], widths[1]), nn.ReLU(), nn.Linear(widths[1], 1)
    )


class FFNN(nn.Module):
    """Feed-forward net on ``[heights 2..30, age, sex]``."""

    def __init__(self, n_in: int, widths: tuple[int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.net = _mlp(n_in, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class WideDeep(nn.Module):
    """Wide & Deep: linear on inputs + age×sex cross, plus an MLP."""

    def __init__(self, n_in: int, widths: tuple[int, int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        self.wide = nn.Linear(n_in + 1, 1)
        self.deep = _mlp(n_in, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cross = (x[:, -2] * x[:, -1]).unsqueeze(-1)
        return (self.wide(torch.cat([x, cross], dim=-1)) + self.deep(x)).squeeze(-1)


class LastPlusChange(nn.Module):
    """``x[:, last_index] + change_net(x)``: a flat network predicting the change from the last
    observed (scaled) height, so that it forecasts h60 exactly as :class:`GRUForecaster` does."""

    def __init__(self, change_net: nn.Module, last_index: int) -> None:
        super().__init__()
        self.change_net = change_net
        self.last_index = last_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        change: torch.Tensor = self.change_net(x)
        return x[:, self.last_index] + change


def _forward(model: nn.Module, x: tuple[torch.Tensor, ...]) -> torch.Tensor:
    out: torch.Tensor = model(*x)
    return out


def fit_net(
    model: nn.Module,
    x_train: tuple[NDArray[np.float64], ...],
    y_train: NDArray[np.float64],
    x_val: tuple[NDArray[np.float64], ...],
    y_val: NDArray[np.float64],
    cfg: TrainConfig,
    seed: int,
) -> tuple[nn.Module, int]:
    """Train with MSE + Adam + early stopping; returns the best model and the epochs run."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt = tuple(torch.as_tensor(a, dtype=torch.float32) for a in x_train)
    xv = tuple(torch.as_tensor(a, dtype=torch.float32) for a in x_val)
    yt = torch.as_tensor(y_train, dtype=torch.float32)
    yv = torch.as_tensor(y_val, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = float("inf")
    best_state = copy.deepcopy(model.state_dict())
    wait = 0
    epochs_run = 0
    for epoch in range(1, cfg.max_epochs + 1):
        epochs_run = epoch
        model.train()
        perm = torch.randperm(yt.shape[0], generator=gen)
        for start in range(0, yt.shape[0], cfg.batch_size):
            b = perm[start : start + cfg.batch_size]
            opt.zero_grad()
            pred = _forward(model, tuple(a[b] for a in xt))
            loss = ((pred - yt[b]) ** 2).mean()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pv = _forward(model, xv)
            vloss = float(((pv - yv) ** 2).mean())
        if vloss < best - 1e-9:
            best = vloss
            best_state = copy.deepcopy(model.state_dict())
            wait = 0
        else:
            wait += 1
            if wait >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, epochs_run


def predict_net(model: nn.Module, x: tuple[NDArray[np.float64], ...]) -> NDArray[np.float64]:
    """Model output as float64 numpy, shape (n,)."""
    with torch.no_grad():
        out = _forward(model, tuple(torch.as_tensor(a, dtype=torch.float32) for a in x))
    return np.asarray(out.numpy(), dtype=np.float64)
