"""Stream a multipart slide upload straight into a spool file, enforcing the size limit.

The request body is parsed as it arrives (``python-multipart``'s streaming parser) and the one
file part is written to ``<spool>/<name>.part``; nothing is buffered in memory or in the system
temporary directory. Small text fields (``level``, ``mpp``) are collected beside it. A file
larger than the limit stops the upload with 413; any failure removes the partial file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from streamdx_ingest.slide_reader import SlideError

__all__ = ["SpooledUpload", "spool_multipart"]

_MAX_FIELD_BYTES = 1024
_MAX_PARTS = 16


@dataclass
class SpooledUpload:
    """The uploaded file on disk and the form's text fields."""

    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    text: bytearray = field(default_factory=bytearray)


class _Collector:
    """Callbacks of the streaming parser: one file part to disk, text parts in memory."""

    def __init__(self, file_field: str, dest: Path, max_bytes: int) -> None:
        self.file_field = file_field
        self.dest = dest
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self.parts = 0
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._out: BinaryIO | None = None
        self._in_file = False

    # -- headers
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise SlideError(422, f"the form has more than {_MAX_PARTS} parts")
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._part.headers[bytes(self._header_field).decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get("content-disposition", b""))
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_name = options.get(b"filename")
        self._part.filename = raw_name.decode("utf-8", "replace") if raw_name is not None else None
        self._in_file = self._part.name == self.file_field
        if self._in_file:
            if self._out is not None:
                raise SlideError(422, f"upload one file in the field {self.file_field!r}")
            self.filename = Path(self._part.filename or "slide").name[:200]
            self._out = self.dest.open("xb")

    # -- data
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._in_file:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise SlideError(413, f"the slide exceeds the {self.max_bytes}-byte upload limit")
            assert self._out is not None
            self._out.write(chunk)
            return
        self._part.text += chunk
        if len(self._part.text) > _MAX_FIELD_BYTES:
            raise SlideError(422, f"form field {self._part.name!r} is longer than {_MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            return
        if self._part.name:
            self.fields[self._part.name] = self._part.text.decode("utf-8", "replace").strip()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def spool_multipart(
    content_type: str | None, body: AsyncIterator[bytes], dest: Path, *, max_bytes: int, file_field: str = "file"
) -> SpooledUpload:
    """Parse a ``multipart/form-data`` body, writing the part ``file_field`` to ``dest``.

    Parameters
    ----------
    content_type : str or None
        The request's ``Content-Type`` header (with its boundary).
    body : async iterator of bytes
        The request body as it arrives (``request.stream()``).
    dest : Path
        The spool file to create (must not exist).
    max_bytes : int
        Largest accepted file (bytes).
    file_field : str
        Name of the form field holding the file.

    Raises
    ------
    SlideError
        415 when the body is not multipart, 413 when the file exceeds ``max_bytes``, 422 when the
        form is malformed or has no file. ``dest`` is removed on every failure, including a
        client that disconnects or a body-limit error raised while reading.
    """
    ctype, options = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        got = f"'{content_type}'" if content_type else "none"
        raise SlideError(415, f"send the slide as multipart/form-data in the field {file_field!r} (content type {got})")
    collector = _Collector(file_field, dest, max_bytes)
    callbacks = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished")}
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in body:
            if chunk:
                parser.write(chunk)
        parser.finalize()
        collector.close()
        if collector.filename is None:
            raise SlideError(422, f"no file in the form field {file_field!r}")
    except BaseException as exc:
        collector.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
        if isinstance(exc, MultipartParseError):
            raise SlideError(422, f"malformed multipart body: {exc}") from exc
        raise
    return SpooledUpload(dest, collector.filename, collector.size, collector.fields)
