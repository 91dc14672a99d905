"""Server-side SVG charts of the Holter report (matplotlib): the same images in the HTML page and in the
PDF, which runs no JavaScript.

Figures are built with matplotlib's object API (no pyplot state) under one lock, text as paths (no
font needed by the PDF renderer), with a fixed hash salt so the same data give the same SVG.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

__all__ = ["CLASS_COLORS", "data_uri", "hr_trend_svg", "strip_svg"]

_LOCK = threading.Lock()
CLASS_COLORS = {"N": "#1f8a4c", "S": "#1565c0", "V": "#d84315", "F": "#6d4c41", "Q": "#6d4c41", "AF": "#8e24aa",
                "u": "#9e9e9e"}  # fmt: skip
_RC: Any = {"svg.hashsalt": "streamdx", "svg.fonttype": "path", "font.size": 8, "axes.linewidth": 0.6,
       "font.family": "DejaVu Sans"}  # fmt: skip


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf)
    return buf.getvalue()


def data_uri(svg: str) -> str:
    """``data:image/svg+xml;base64,…`` for an ``<img>`` (HTML page and WeasyPrint alike)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _clock(t: float) -> float:
    """Matplotlib's date number of epoch seconds."""
    import matplotlib.dates as mdates

    return float(mdates.date2num(datetime.fromtimestamp(t, UTC)))


def hr_trend_svg(hourly: Sequence[dict[str, Any]], minutes: Sequence[tuple[float, float, float, float]]) -> str:
    """Heart rate over time: each hour's mean with its min–max range (the alerts summary) and, when
    the beats are in the console's memory, the per-minute mean with its min–max band.

    ``hourly``: ``{"hour_start": epoch s, "mean_bpm", "min_bpm", "max_bpm"}``; ``minutes``: (minute
    start epoch s, mean, min, max).
    """
    import matplotlib.dates as mdates

    with _LOCK, matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.4, 2.3), dpi=100)
        ax = fig.add_subplot()
        ax.xaxis_date(tz=UTC)
        lo_t: list[float] = []
        if minutes:
            t = [_clock(m[0] + 30) for m in minutes]
            ax.fill_between(t, [m[2] for m in minutes], [m[3] for m in minutes], color="#1d6fd1", alpha=0.15,
                            linewidth=0, label="per-minute min–max")  # fmt: skip
            ax.plot(t, [m[1] for m in minutes], color="#1d6fd1", lw=1.2, marker="o" if len(minutes) < 30 else None,
                    ms=2.5, label="per-minute mean")  # fmt: skip
            lo_t += [minutes[0][0], minutes[-1][0] + 60]
        for i, h in enumerate(hourly):
            a = float(h["hour_start"])
            b = a + 3600
            if minutes:  # draw the hour only over the time that has data
                a, b = max(a, minutes[0][0]), min(b, minutes[-1][0] + 60)
            ax.hlines(h["mean_bpm"], _clock(a), _clock(b), color="#14202e", lw=2,
                      label="hourly mean (min–max)" if i == 0 else "_nolegend_")  # fmt: skip
            mid = _clock((a + b) / 2)
            ax.vlines(mid, h["min_bpm"], h["max_bpm"], color="#14202e", lw=0.8)
            lo_t += [a, b]
        if not lo_t:
            ax.text(0.5, 0.5, "no heart-rate data", ha="center", va="center", transform=ax.transAxes, color="#5d6b7a")
            ax.set_xticks([])
        else:
            span = max(lo_t) - min(lo_t)
            fmt = "%H:%M:%S" if span < 600 else "%H:%M"
            ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=UTC))
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8, tz=UTC))
            ax.legend(loc="upper right", fontsize=7, frameon=False, ncol=3)
        ax.set_ylabel("HR (bpm)")
        ax.set_xlabel("time (UTC)")
        ax.grid(True, color="#dde2e8", lw=0.5)
        ax.spines[["top", "right"]].set_visible(False)
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(0, min(lo, 40)), max(hi + 0.18 * (hi - lo), 120))
        fig.tight_layout(pad=0.4)
        return _svg(fig)


def strip_svg(t: npt.NDArray[np.float64], mv: npt.NDArray[np.float32], beats: Sequence[tuple[float, str]],
              t_start: float, seconds: float = 10.0) -> str:
    """A strip on ECG paper (25 mm/s and 10 mm/mV proportions: 0.2 s × 0.5 mV major squares), each
    beat's label above its R peak. ``t`` and beat times are epoch s; ``beats`` = (time, key of
    :data:`CLASS_COLORS`)."""
    with _LOCK, matplotlib.rc_context(_RC):
        lo = float(min(-1.0, np.floor(np.min(mv) * 2) / 2)) if mv.size else -1.0
        hi = float(max(1.5, np.ceil(np.max(mv) * 2) / 2 + 0.5)) if mv.size else 1.5
        height = 7.4 / (seconds / 0.2) * ((hi - lo) / 0.5)  # square grid: 0.2 s as wide as 0.5 mV is high
        fig = Figure(figsize=(7.4, min(max(height, 1.2), 3.2)), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, seconds)
        ax.set_ylim(lo, hi)
        minor: list[list[tuple[float, float]]] = []
        major: list[list[tuple[float, float]]] = []
        for k, x in enumerate(np.arange(0, seconds + 1e-9, 0.04)):
            (major if k % 5 == 0 else minor).append([(x, lo), (x, hi)])
        for k, y in enumerate(np.arange(lo, hi + 1e-9, 0.1)):
            (major if k % 5 == 0 else minor).append([(0, y), (seconds, y)])
        ax.add_collection(LineCollection(minor, colors="#fbe0e0", linewidths=0.3, zorder=0))
        ax.add_collection(LineCollection(major, colors="#f2a7a7", linewidths=0.6, zorder=1))
        if t.size:
            ax.plot(t - t_start, mv, color="#14202e", lw=0.7, zorder=2)
        for bt, key in beats:
            x = bt - t_start
            if 0 <= x <= seconds:
                ax.text(x, hi - 0.12, "AF" if key == "AF" else ("?" if key == "u" else key), ha="center", va="top",
                        fontsize=7, fontweight="bold", color=CLASS_COLORS.get(key, "#14202e"), zorder=3)  # fmt: skip
        for s in range(1, int(seconds)):
            ax.text(s, lo + 0.05, f"{s} s", fontsize=6, color="#b05a5a", ha="center", va="bottom", zorder=3)
        ax.set_axis_off()
        return _svg(fig)
