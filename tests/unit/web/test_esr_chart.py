"""ESR tube charts: the height curve, the forecast point with its interval, the simulated mark."""

from __future__ import annotations

import re

from streamdx_web.esr_chart import ForecastPoint, forecast_history_svg, height_chart_svg, sparkline_svg

HEIGHTS = {m: 1.0 - 0.004 * m for m in range(16)}


def test_height_chart_has_curve_forecast_interval_and_simulated_mark() -> None:
    svg = height_chart_svg(HEIGHTS, ForecastPoint(15, 0.587, 0.536, 0.631), simulated=True)
    assert svg.startswith("<svg")
    for gid in ("heights", "forecast", "forecast-band"):
        assert f'id="{gid}"' in svg, gid
    assert "SIMULATED" in svg and "[0.536, 0.631]" in svg and "forecast at 60 min (from minute 15)" in svg
    plain = height_chart_svg(HEIGHTS, None, simulated=False)
    assert 'id="heights"' in plain and 'id="forecast"' not in plain and "SIMULATED" not in plain


def test_forecast_history_and_sparkline() -> None:
    pts = [ForecastPoint(m, 0.6 - 0.001 * m, 0.55, 0.65) for m in range(10, 16)]
    assert 'id="history"' in forecast_history_svg(pts)
    spark = sparkline_svg(HEIGHTS, pts[-1])
    ys = [float(y) for y in re.findall(r"[\d.]+,([\d.]+)", re.search(r'points="([^"]+)"', spark)[1])]  # type: ignore[index]
    assert ys == sorted(ys) and min(ys) >= 0 and max(ys) <= 36  # falling heights go down the picture
    assert "<circle" in spark and sparkline_svg({}) == ""
