"""Server-side SVG charts of one ESR tube (matplotlib, text kept as text): the plasma-boundary
height curve with the latest 60-minute forecast and its interval, and how the forecast moved as
minutes were observed. Pure functions of plain data (call them off the event loop)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ForecastPoint", "forecast_history_svg", "height_chart_svg", "sparkline_svg"]

_BLUE, _PURPLE, _GREY, _INK = "#1d6fd1", "#8e24aa", "#5d6b7a", "#1c2430"


@dataclass(frozen=True)
class ForecastPoint:
    minute: int
    h60: float
    low: float
    high: float
    measured: float | None = None


#: text stays text (selectable, searchable), stable ids
_RC: Any = {"svg.fonttype": "none", "svg.hashsalt": "streamdx"}


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color="#dde2e8", linewidth=0.8)
    ax.tick_params(colors=_GREY, labelsize=9)
    return fig, ax


def _svg(fig: Figure) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def height_chart_svg(heights: Mapping[int, float], latest: ForecastPoint | None, *, simulated: bool) -> str:
    """Normalised boundary height per minute, the forecast at 60 min as a point with its interval
    (and the cone from the last observed minute to it)."""
    fig, ax = _figure(8.6, 3.6)
    minutes = sorted(heights)
    ys = [heights[m] for m in minutes]
    (line,) = ax.plot(minutes, ys, color=_BLUE, linewidth=2, marker="o", markersize=3, label="measured height")
    line.set_gid("heights")
    lows = [min(ys, default=1.0)]
    if latest is not None:
        x0 = latest.minute
        y0 = heights.get(x0, ys[-1] if ys else latest.h60)
        cone = ax.fill_between([x0, 60], [y0, latest.low], [y0, latest.high], color=_PURPLE, alpha=0.12,
                               linewidth=0)
        cone.set_gid("forecast-band")
        ax.plot([x0, 60], [y0, latest.h60], color=_PURPLE, linestyle="--", linewidth=1.2)
        bar = ax.errorbar([60], [latest.h60], yerr=[[latest.h60 - latest.low], [latest.high - latest.h60]],
                          fmt="o", color=_PURPLE, capsize=6, markersize=7, elinewidth=2,
                          label=f"forecast at 60 min (from minute {latest.minute})")
        bar[0].set_gid("forecast")
        ax.annotate(f"{latest.h60:.3f}\n[{latest.low:.3f}, {latest.high:.3f}]", (60, latest.h60),
                    xytext=(10, 0), textcoords="offset points", va="center", fontsize=9, color=_PURPLE)
        lows.append(latest.low)
        if latest.measured is not None:
            ax.plot([60], [latest.measured], marker="x", color=_INK, markersize=9, mew=2, linestyle="none",
                    label="measured at 60 min")
    ax.axvline(60, color=_GREY, linestyle=":", linewidth=1)
    ax.set_xlim(-1, 68)
    ax.set_ylim(max(0.0, min(lows) - 0.05), 1.03)
    ax.set_xlabel("minutes since the tube was filled", color=_GREY, fontsize=9)
    ax.set_ylabel("boundary height (normalised)", color=_GREY, fontsize=9)
    ax.legend(loc="lower left", fontsize=9, frameon=False)
    if simulated:
        ax.text(0.99, 0.97, "SIMULATED", transform=ax.transAxes, ha="right", va="top", fontsize=11,
                fontweight="bold", color="#8a5a00", bbox={"boxstyle": "round,pad=0.3", "fc": "#fff1d6", "ec": "none"})
    return _svg(fig)


def forecast_history_svg(points: list[ForecastPoint]) -> str:
    """The 60-minute forecast (point and interval) against the minute it was issued at."""
    fig, ax = _figure(8.6, 2.2)
    xs = [p.minute for p in points]
    band = ax.fill_between(xs, [p.low for p in points], [p.high for p in points], color=_PURPLE, alpha=0.15,
                           linewidth=0, step=None, label="interval")
    band.set_gid("history-band")
    (line,) = ax.plot(xs, [p.h60 for p in points], color=_PURPLE, marker="o", markersize=3, label="forecast h60")
    line.set_gid("history")
    ax.set_xlim(min(xs, default=10) - 1, max(xs, default=60) + 1)
    ax.set_xlabel("minute the forecast was issued", color=_GREY, fontsize=9)
    ax.set_ylabel("h60", color=_GREY, fontsize=9)
    ax.legend(loc="best", fontsize=9, frameon=False)
    return _svg(fig)


def sparkline_svg(heights: Mapping[int, float], latest: ForecastPoint | None = None, width: int = 160,
                  height: int = 36) -> str:
    """A tiny inline height curve for the tube list (0..60 min), with the latest forecast's interval at 60."""
    if not heights:
        return ""
    lo = min([*heights.values(), *([latest.low] if latest else [])])
    y0 = max(0.0, min(lo - 0.05, 0.9))

    def x(m: float) -> float:
        return m / 60 * (width - 8) + 2

    def y(h: float) -> float:
        return (1 - (min(max(h, y0), 1.0) - y0) / (1.0 - y0)) * (height - 4) + 2

    pts = " ".join(f"{x(m):.1f},{y(h):.1f}" for m, h in sorted(heights.items()) if m <= 60)
    fc = ""
    if latest is not None:
        xf, hi, lo_ = x(60), y(latest.high), y(latest.low)
        fc = (f'<path d="M{xf - 3:.1f},{hi:.1f}h6M{xf:.1f},{hi:.1f}V{lo_:.1f}M{xf - 3:.1f},{lo_:.1f}h6" '
              f'stroke="{_PURPLE}" stroke-width="1.5" fill="none"/>'
              f'<circle cx="{xf:.1f}" cy="{y(latest.h60):.1f}" r="2" fill="{_PURPLE}"/>')
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="height curve and forecast"><line x1="{x(60):.1f}" x2="{x(60):.1f}" y1="0" y2="{height}" '
            f'stroke="#dde2e8" stroke-dasharray="2 2"/><polyline fill="none" stroke="{_BLUE}" stroke-width="1.5" '
            f'points="{pts}"/>{fc}</svg>')
