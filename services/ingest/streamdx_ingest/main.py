"""``streamdx serve ingest``: run the ingest service under uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from streamdx.settings import service_parser
from streamdx_ingest.settings import IngestSettings

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    return service_parser(
        "streamdx serve ingest",
        "Run the ingest service: the device HTTP/WebSocket API (ECG chunks, recording uploads, "
        "ESR frames, device keys) on INGEST_HOST:INGEST_PORT, with /healthz, /readyz and /metrics on the "
        "same port. Configured by environment variables only; stops on Ctrl-C or SIGTERM.",
        IngestSettings,
    )


def main(argv: Sequence[str]) -> int:
    build_parser().parse_args(argv)
    import uvicorn

    from streamdx.gc_tuning import GcPauses, tune_gc
    from streamdx.logs import configure_logging
    from streamdx_ingest.app import create_app

    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    app = create_app(settings)
    gc_pauses = GcPauses(app.state.metrics)
    tune_gc(settings.gc_threshold0)
    try:
        uvicorn.run(app, host=settings.ingest_host, port=settings.ingest_port, log_config=None, access_log=False,
                    ws_max_size=settings.max_chunk_bytes)
    finally:
        gc_pauses.close()
    return 0
