"""The scoring protocol of ``streamdx eval rpeaks``: printed above its table and stored in its report.

:func:`rpeaks_protocol` collects what a reader needs to interpret the figures — which records and
lead, which reference beats, from when they are scored, the matching window, the streaming chunk
length and any added noise — and :func:`protocol_lines` renders it as text (pure; the only file
access is :func:`first_leads`, which reads the record headers).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamdx_dsp.evaluation.records import read_header

__all__ = ["first_leads", "protocol_lines", "rpeaks_protocol"]

#: EC57 / bxb scoring start: the first 5 minutes are the detector's learning period.
EC57_START_S = 300.0
#: Longest list of record names written out in a lead summary.
MAX_NAMED = 5


def first_leads(data_dir: Path, names: Sequence[str]) -> dict[str, str]:
    """Name of the first signal (the lead that is evaluated) of each record, from its header
    (``"?"`` when the header names no signal); raises ``RecordError`` on a damaged header."""
    out = {}
    for n in names:
        sig_name = read_header(data_dir, n).sig_name
        out[n] = str(sig_name[0]) if sig_name else "?"
    return out


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def rpeaks_protocol(
    *,
    data: Path,
    leads: Mapping[str, str],
    beat_symbols: str,
    annotator: str,
    start_s: float,
    window_ms: float,
    chunk_s: float,
    noise: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The protocol as a JSON-serialisable dictionary (``leads``: record → lead, in run order)."""
    by_lead: dict[str, list[str]] = {}
    for rec, lead in leads.items():
        by_lead.setdefault(lead, []).append(rec)
    return {
        "data": str(data),
        "records": list(leads),
        "n_records": len(leads),
        "lead": "first signal of each record",
        "records_by_lead": dict(sorted(by_lead.items(), key=lambda kv: -len(kv[1]))),
        "reference": f"beat annotations {beat_symbols} of .{annotator}",
        "scored_from_s": start_s,
        "scored_from": _clock(start_s),
        "scoring": f"references and detections from {_clock(start_s)} to the end of each record"
        + (" (EC57/bxb: the first 5 min are the detector's learning period)" if start_s == EC57_START_S else ""),
        "window_ms": window_ms,
        "matching": "one-to-one, nearest pairs first, |detection - reference| <= window",
        "chunk_s": chunk_s,
        "streaming": f"{chunk_s:g}-s chunks through the streaming core, state carried between chunks",
        "noise": dict(noise) if noise else None,
    }


def _lead_summary(by_lead: Mapping[str, Sequence[str]]) -> str:
    parts = []
    for lead, recs in by_lead.items():
        named = ", ".join(recs) if len(recs) <= MAX_NAMED else f"{len(recs)} records"
        parts.append(f"{lead} on {named}")
    return "; ".join(parts)


def protocol_lines(p: Mapping[str, Any], width: int = 100) -> list[str]:
    """Human-readable protocol block (one line per item, record list wrapped at ``width``)."""
    noise = p["noise"]
    noise_text = (
        f"NSTDB '{noise['kind']}' at {noise['snr_db']:g} dB SNR (nst definition; on from 5:00, "
        f"2 min on / 2 min off) from {noise['dir']}"
        if noise
        else "none (clean records)"
    )
    records = textwrap.wrap(
        f"{p['n_records']} records: " + ", ".join(p["records"]),
        width=width,
        initial_indent="  records    ",
        subsequent_indent=" " * 13,
    )
    return [
        f"Protocol (EC57 style) on {p['data']}",
        *records,
        f"  lead       {p['lead']}: {_lead_summary(p['records_by_lead'])}",
        f"  reference  {p['reference']}",
        f"  scored     {p['scoring']}",
        f"  matching   {p['window_ms']:g} ms window; {p['matching']}",
        f"  chunks     {p['streaming']}",
        f"  noise      {noise_text}",
    ]
