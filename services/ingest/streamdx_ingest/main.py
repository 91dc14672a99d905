"""``streamdx serve ingest``: run the ingest service under uvicorn."""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn

from streamdx.logs import configure_logging
from streamdx_ingest.app import create_app
from streamdx_ingest.settings import IngestSettings

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.ingest_host, port=settings.ingest_port, log_config=None, access_log=False,
                ws_max_size=settings.max_chunk_bytes)
    return 0
