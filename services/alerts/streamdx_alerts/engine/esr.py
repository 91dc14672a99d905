"""ESR rule: a tube's 60-minute forecast at or below the configured height → ``esr_high``.

Pure core. The forecast is the normalised red-cell column height at 60 min (1 = no
sedimentation; lower = faster sedimentation = higher ESR). The alert is raised at the first
forecast at or below ``esr.max_h60`` (the point forecast, or its upper bound with
``use: h60_high`` so that the whole interval must be below), updated when a later forecast
moves by more than 0.01, and resolved when a forecast rises above the threshold plus 0.02
(hysteresis) or when the measured 60-minute height arrives (the test is over).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from streamdx_alerts.engine.lifecycle import AlertBook, AlertChange
from streamdx_alerts.rules import AlertRules

__all__ = ["EsrObs", "EsrState", "esr_step"]

_HYSTERESIS = 0.02
_UPDATE_STEP = 0.01


@dataclass(frozen=True)
class EsrObs:
    """One ``esr.forecasts`` message (``t``: signal time of its minute, s since the epoch)."""

    minute: int
    t: float
    h60: float
    h60_low: float
    h60_high: float
    measured_h60: float | None = None
    simulated: bool = False


@dataclass
class EsrState:
    last_minute: int = -1
    reported_h60: float | None = None
    book: AlertBook = field(default_factory=AlertBook)

    def to_dict(self) -> dict[str, Any]:
        return {"last_minute": self.last_minute, "reported_h60": self.reported_h60, "book": self.book.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EsrState:
        return cls(int(d["last_minute"]), d["reported_h60"], AlertBook.from_dict(d["book"]))


def esr_step(state: EsrState | None, obs: EsrObs, rules: AlertRules, *, tube_id: str,
             profile: str = "default") -> tuple[EsrState, list[AlertChange]]:
    """Apply one forecast of a tube (``state`` is not mutated; an old minute is ignored)."""
    st = copy.deepcopy(state) if state is not None else EsrState()
    rule = rules.esr
    if obs.minute <= st.last_minute or not rule.enabled:
        return st, []
    st.last_minute = obs.minute
    out: list[AlertChange] = []
    value = obs.h60 if rule.use == "h60" else obs.h60_high
    details: dict[str, float | int | str | bool] = {
        "minute": obs.minute, "h60": round(obs.h60, 4), "h60_low": round(obs.h60_low, 4),
        "h60_high": round(obs.h60_high, 4), "threshold": rule.max_h60, "simulated": obs.simulated,
    }
    open_ = st.book.is_open("esr_high")
    if obs.measured_h60 is not None:
        details["measured_h60"] = round(obs.measured_h60, 4)
        if open_:
            ch = st.book.resolve_alert("esr_high", ended_at=obs.t, message="ESR test complete (60 min measured)",
                                       details=details)
            out += [ch] if ch else []
        return st, out
    if not open_ and value <= rule.max_h60:
        ch = st.book.raise_alert(
            tube_id, "esr_high", rule=f"{profile}/esr_high", severity=rule.severity, started_at=obs.t,
            criterion_at=obs.t, hint=obs.minute, suppress_s=rule.suppress_s, details=details,
            message=f"raised ESR forecast: 60-min height {obs.h60:.2f} (≤ {rule.max_h60:.2f})"
            + (" [simulated]" if obs.simulated else ""),
        )
        if ch is not None:
            st.reported_h60 = obs.h60
            out.append(ch)
    elif open_ and value > rule.max_h60 + _HYSTERESIS:
        ch = st.book.resolve_alert("esr_high", ended_at=obs.t, message="ESR forecast back above the threshold",
                                   details=details)
        out += [ch] if ch else []
    elif open_ and st.reported_h60 is not None and abs(obs.h60 - st.reported_h60) > _UPDATE_STEP:
        ch = st.book.update_alert("esr_high", criterion_at=obs.t, details=details,
                                  message=f"ESR forecast updated: 60-min height {obs.h60:.2f}")
        if ch is not None:
            st.reported_h60 = obs.h60
            out.append(ch)
    return st, out
