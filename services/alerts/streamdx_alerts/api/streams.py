"""``GET /v1/streams/{stream_id}/summary``: the Holter summary of one stream.

Read from the rhythm worker's checkpoint in Redis (the same state the engine keeps), so the
summary is exactly what the alerts were computed from. Requires the admin bearer token
(a summary is clinical data about one device wearer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from streamdx.state_store import StateStore
from streamdx_alerts.api.auth import require_admin
from streamdx_alerts.engine.rhythm import RhythmState
from streamdx_alerts.engine.summary import HolterSummary, holter_summary
from streamdx_alerts.handlers import JsonStateCodec
from streamdx_alerts.rules import Profiles

__all__ = ["SummarySource", "streams_router"]

STREAM_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


@dataclass(frozen=True)
class SummarySource:
    """Where summaries come from (set as ``app.state.summary_source``)."""

    store: StateStore
    profiles: Profiles

    async def summary(self, stream_id: str) -> HolterSummary | None:
        cp = await self.store.load(stream_id)
        if cp is None or cp.state is None:
            return None
        state = JsonStateCodec(RhythmState).loads(cp.state)
        _, rules = self.profiles.for_stream(stream_id)
        return holter_summary(stream_id, state, rules)


def _source(request: Request) -> SummarySource:
    src: SummarySource = request.app.state.summary_source
    return src


streams_router = APIRouter(prefix="/v1/streams", tags=["streams"], dependencies=[Depends(require_admin)])


@streams_router.get("/{stream_id}/summary", response_model=HolterSummary,
                    responses={404: {"description": "No labelled beats of this stream"}})
async def get_summary(
    stream_id: Annotated[str, Path(pattern=STREAM_ID)],
    source: Annotated[SummarySource, Depends(_source)],
) -> HolterSummary:
    """HR min/mean/max, hourly HR, AF episodes and burden, S/V counts, pauses, longest VT run."""
    summary = await source.summary(stream_id)
    if summary is None:
        raise HTTPException(404, f"no labelled beats of stream {stream_id!r} (or its state expired)")
    return summary
