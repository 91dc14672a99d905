"""HTTP API of the alerts service (routers included by the service's app)."""

__all__: list[str] = []
