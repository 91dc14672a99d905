"""Base class of all messages and the schema registry."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Message", "registry", "schema_id"]


class Message(BaseModel):
    """A versioned message. Subclasses set ``TOPIC``, ``VERSION`` and ``key()``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TOPIC: ClassVar[str]
    VERSION: ClassVar[int]

    def key(self) -> str:
        """Partitioning key (``stream_id``, ``tube_id`` or ``slide_id``)."""
        raise NotImplementedError

    def idempotency_key(self) -> str:
        """Key that identifies this message's content across redeliveries."""
        raise NotImplementedError

    @classmethod
    def schema_name(cls) -> str:
        return schema_id(cls.TOPIC, cls.VERSION)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "TOPIC" in cls.__dict__ and "VERSION" in cls.__dict__:
            registry[schema_id(cls.TOPIC, cls.VERSION)] = cls


def schema_id(topic: str, version: int) -> str:
    """``"ecg.samples/v1"`` — the value of a message's ``schema`` header."""
    return f"{topic}/v{version}"


#: schema id → model class; filled as the schema modules are imported.
registry: dict[str, type[Message]] = {}
