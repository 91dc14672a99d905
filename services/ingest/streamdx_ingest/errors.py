"""Readable request errors: invalid JSON with its line and column, a JSON body sent without its
content type (pure functions over FastAPI's validation errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["JSON_HINT", "json_error_position", "request_errors"]

JSON_HINT = ("send one JSON object, e.g. {\"seq\": 0, \"fs\": 250, \"t0\": \"2026-01-01T00:00:00Z\", "
             "\"samples\": [0, 1]}, with strings in double quotes and no trailing commas")
_MAX_ERRORS = 20


def json_error_position(doc: str, pos: int) -> tuple[int, int]:
    """1-based (line, column) of character ``pos`` of ``doc``."""
    pos = max(0, min(pos, len(doc)))
    line = doc.count("\n", 0, pos) + 1
    column = pos - (doc.rfind("\n", 0, pos) + 1) + 1
    return line, column


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def request_errors(
    errors: Sequence[Any], body: Any, content_type: str | None
) -> tuple[int, list[dict[str, Any]]]:
    """HTTP status and ``detail`` list for FastAPI's request validation ``errors``.

    * A whole body that is not an object because it was not sent as JSON → 415, saying what
      content type is expected.
    * Invalid JSON → 422 with line, column and a hint instead of a bare character offset.
    * Anything else → 422 with ``loc``, ``msg``, ``type`` per error.
    """
    if not _is_json(content_type) and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        got = f"'{content_type}'" if content_type else "none"
        return 415, [{
            "loc": ["header", "content-type"], "type": "content_type",
            "msg": f"expected a JSON body with the header 'content-type: application/json' (got {got})",
        }]
    out: list[dict[str, Any]] = []
    for e in list(errors)[:_MAX_ERRORS]:
        loc = list(e.get("loc", ()))
        if e.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int) and isinstance(body, str):
            line, column = json_error_position(body, loc[1])
            reason = (e.get("ctx") or {}).get("error", "invalid JSON")
            out.append({"loc": ["body"], "type": "json_invalid", "line": line, "column": column,
                        "msg": f"invalid JSON at line {line}, column {column}: {reason}; {JSON_HINT}"})
            continue
        out.append({"loc": loc, "msg": e.get("msg", ""), "type": e.get("type", "")})
    return 422, out
