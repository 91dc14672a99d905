"""Values made writable as strict JSON (RFC 8259), for the project's reports and summaries.

``json.dumps`` writes a NaN as ``NaN`` and an infinity as ``Infinity``, which strict JSON
readers (browsers' ``JSON.parse``, ``jq``) refuse, and it cannot write numpy scalars or
arrays. The reports use NaN for "undefined" (a precision without any positive call, see
:func:`streamdx_inference.ecg.scoring.safe_div`), written as ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float replaced by None, numpy scalars and arrays as Python
    numbers and lists, mappings as dicts and tuples as lists (recursively); other values as they are."""
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, float | np.floating):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return json_safe(v.tolist())
    if isinstance(v, Mapping):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v
