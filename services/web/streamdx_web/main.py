"""``streamdx serve web``: the operator console."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from streamdx.settings import service_parser
    from streamdx_web.settings import WebSettings

    return service_parser(
        "streamdx serve web",
        "Run the web console on WEB_HOST:WEB_PORT: live streams, alerts, ESR tubes, upload & predict, "
        "evaluation runs and Holter reports, over the ingest and alerts APIs, Redis and read-only Kafka "
        "followers. Operators log in (accounts: 'streamdx web add-user'). Configured by environment variables.",
        WebSettings,
    )


def main(argv: Sequence[str]) -> int:
    build_parser().parse_args(argv)
    import uvicorn

    from streamdx.gc_tuning import tune_gc
    from streamdx.logs import configure_logging
    from streamdx_web.app import create_app
    from streamdx_web.settings import WebSettings

    settings = WebSettings()
    configure_logging("web", settings.log_level)
    app = create_app(settings)
    tune_gc(settings.gc_threshold0)
    uvicorn.run(app, host=settings.web_host, port=settings.web_port, log_config=None, access_log=False,
                proxy_headers=False)
    return 0
