"""The inference service's ESR handler: ``esr.heights`` → ``esr.forecasts`` every minute.

Per tube it keeps the heights seen so far. From the first minute the forecaster can use
(minute 10) on, every new height yields a forecast of the 60-minute height with its 90 %
interval; once minute 60 is measured the forecast carries the measured value beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from streamdx.messaging.worker import Handled
from streamdx.schemas import EsrForecastV1, EsrHeightV1
from streamdx_inference.esr.forecaster import EsrForecaster

__all__ = ["EsrHeightsHandler", "TubeSeries", "TubeSeriesCodec"]


@dataclass
class TubeSeries:
    age: float
    sex: Literal["F", "M"]
    simulated: bool
    heights: dict[int, float] = field(default_factory=dict)


class TubeSeriesCodec:
    VERSION = 1

    def dumps(self, s: TubeSeries) -> bytes:
        return json.dumps({"v": self.VERSION, "age": s.age, "sex": s.sex, "simulated": s.simulated,
                           "heights": {str(k): v for k, v in s.heights.items()}}).encode()

    def loads(self, blob: bytes) -> TubeSeries:
        d = json.loads(blob)
        if d.get("v") != self.VERSION:
            raise ValueError(f"tube series v{d.get('v')} is not v{self.VERSION}")
        return TubeSeries(float(d["age"]), d["sex"], bool(d["simulated"]),
                          {int(k): float(v) for k, v in d["heights"].items()})


class EsrHeightsHandler:
    """Typed handler with the forecaster (onnxruntime sessions) injected."""

    def __init__(self, forecaster: EsrForecaster) -> None:
        self._forecaster = forecaster

    async def __call__(self, msg: EsrHeightV1, state: TubeSeries | None) -> Handled[TubeSeries]:
        series = state if state is not None else TubeSeries(msg.age, msg.sex, msg.simulated)
        if msg.minute in series.heights:
            return Handled(series, [])  # redelivered minute
        series.heights[msg.minute] = msg.height
        if max(series.heights) < self._forecaster.min_minute or msg.minute < self._forecaster.min_minute:
            return Handled(series, [])
        h60, low, high = self._forecaster.forecast(series.heights, series.age, series.sex)
        forecast = EsrForecastV1(
            tube_id=msg.tube_id, minute=msg.minute, h60=h60, h60_low=low, h60_high=high,
            measured_h60=series.heights.get(60), model=self._forecaster.name,
            simulated=msg.simulated or self._forecaster.simulated,
        )
        return Handled(series, [forecast])
