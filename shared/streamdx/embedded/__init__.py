"""The embedded stack: a Kafka-protocol broker and a Redis server from pip-installed binaries."""

from streamdx.embedded.stack import EmbeddedStack, free_port

__all__ = ["EmbeddedStack", "free_port"]
