"""StreamDx web console: server-rendered pages over the services' APIs and Redis state."""
