"""Runtime ESR 60-minute forecaster (onnxruntime + numpy only).

Loads the ``model_T<T>.onnx`` files and ``esr_gru.json`` written by ``streamdx train esr``.
Variable input length: one GRU per input length ``T`` (minutes 2..T, T in 10, 15, 20, 24, 30);
a forecast uses the longest shipped ``T`` not after the last available minute, so it works
from minute 10 on and improves as minutes arrive. Minutes after 30 are not used (the models
were trained on 2..30, as in seed 000). Missing minutes are linearly interpolated (minute 0 is
1 by definition).

The interval ``(low, high)`` is the point forecast plus the 5th / 95th percentiles of that
model's calibration residuals (an empirical 90 % interval), widened if needed so that
``low <= h60 <= high``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamdx_inference.esr.features import MinMaxScaler, series_from_mapping, sex_code

__all__ = ["EsrForecaster", "ForecastInterval"]

META_FILE = "esr_gru.json"


@dataclass(frozen=True)
class ForecastInterval:
    """Empirical residual quantiles at one input length."""

    q_low: float
    q_high: float


class EsrForecaster:
    """60-minute height forecaster around onnxruntime sessions (one per input length).

    Parameters
    ----------
    sessions : mapping of int to onnxruntime.InferenceSession-like
        Last input minute ``T`` → object with ``run(output_names, feeds)``; inputs ``heights``
        (B, T - 1) and ``static`` (B, 2), output ``h60`` (B,), all scaled.
    meta : dict
        Content of ``esr_gru.json``.
    """

    def __init__(self, sessions: Mapping[int, Any], meta: Mapping[str, Any]) -> None:
        self.meta = dict(meta)
        sc = meta["scaler"]
        self.scaler = MinMaxScaler(float(sc["h_min"]), float(sc["h_max"]), float(sc["age_min"]), float(sc["age_max"]))
        self.intervals = {
            int(T): ForecastInterval(float(c["q05"]), float(c["q95"])) for T, c in meta["lengths"].items()
        }
        missing = set(self.intervals) - set(sessions)
        if missing:
            raise ValueError(f"no session for input lengths {sorted(missing)}")
        self._sessions = {int(T): sessions[T] for T in self.intervals}
        self.lengths = sorted(self.intervals)
        self.min_minute = self.lengths[0]
        self.max_minute = self.lengths[-1]
        self.name = f"{meta.get('model', 'esr_gru')}-v{meta.get('version', 1)}"
        self.simulated = bool(meta.get("simulated", True))

    @classmethod
    def load(
        cls, model_dir: Path, sessions: Mapping[int, Any] | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> EsrForecaster:
        """Load from a directory; creates onnxruntime sessions on ``providers`` unless injected."""
        model_dir = Path(model_dir)
        meta = json.loads((model_dir / META_FILE).read_text())
        if sessions is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sessions = {
                int(T): ort.InferenceSession(
                    str(model_dir / c["file"]), sess_options=opts, providers=list(providers)
                )
                for T, c in meta["lengths"].items()
            }
        return cls(sessions, meta)

    def length_for(self, last_minute: int) -> int:
        """Input length used when minutes up to ``last_minute`` are available."""
        usable = [n for n in self.lengths if n <= last_minute]
        if not usable:
            raise ValueError(f"need heights up to at least minute {self.min_minute}")
        return usable[-1]

    def forecast(self, heights: Mapping[int, float], age: float, sex: Literal["F", "M"]) -> tuple[float, float, float]:
        """Forecast the normalised height at 60 min.

        Parameters
        ----------
        heights : mapping of int to float
            Minute → normalised height (first frame = 1). Must reach at least minute 10.
        age : float
            Age (years).
        sex : {"F", "M"}
            Sex.

        Returns
        -------
        h60, low, high : float
            Point forecast and 90 % interval (normalised height).

        Raises
        ------
        ValueError
            If fewer than 10 minutes are available, or inputs are invalid.
        """
        finite = {int(m): float(h) for m, h in heights.items() if np.isfinite(h)}
        if not finite:
            raise ValueError(f"need heights up to at least minute {self.min_minute}")
        T = self.length_for(max(finite))
        seq = series_from_mapping(finite, T)
        x = self.scaler.h(seq).astype(np.float32)[None, :]
        st = self.scaler.static(np.array([float(age)]), np.array([sex_code(sex)])).astype(np.float32)
        out = self._sessions[T].run(["h60"], {"heights": x, "static": st})[0]
        h60 = float(self.scaler.h_inv(np.asarray(out, dtype=np.float64).reshape(-1))[0])
        iv = self.intervals[T]
        return h60, float(min(h60 + iv.q_low, h60)), float(max(h60 + iv.q_high, h60))
