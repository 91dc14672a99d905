"""``numba.njit`` for the services' compiled kernels, with an on-disk cache where one can be written.

Used by the DSP core's kernels and the ECG feature function's kernel: one place decides
where compiled machine code is cached, including in containers with a read-only root
filesystem.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["jit_kernel"]

_F = TypeVar("_F", bound=Callable[..., Any])
_NB_CONFIG: Any = numba.config


def jit_kernel(fn: _F, fastmath: frozenset[str] = frozenset()) -> _F:
    """``numba.njit(nogil=True)`` with an on-disk cache when a writable cache location exists.

    Cache location, first writable of: ``NUMBA_CACHE_DIR``; the package's
    ``__pycache__``; the user cache directory; ``<tempdir>/streamdx-numba-cache``
    (read-only installs, e.g. containers with a read-only root filesystem). Without
    any, the kernels are compiled in memory at every process start.
    """
    try:
        return cast(_F, numba.njit(cache=True, nogil=True, fastmath=set(fastmath))(fn))
    except RuntimeError:  # no writable cache locator
        pass
    if not _NB_CONFIG.CACHE_DIR:  # NUMBA_CACHE_DIR unset: try the temporary directory
        try:
            tmp = os.path.join(tempfile.gettempdir(), "streamdx-numba-cache")
            os.makedirs(tmp, exist_ok=True)
            _NB_CONFIG.CACHE_DIR = tmp
            return cast(_F, numba.njit(cache=True, nogil=True, fastmath=set(fastmath))(fn))
        except (OSError, RuntimeError):
            _NB_CONFIG.CACHE_DIR = ""
    return cast(_F, numba.njit(cache=False, nogil=True, fastmath=set(fastmath))(fn))
