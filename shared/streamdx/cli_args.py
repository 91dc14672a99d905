"""Argument types shared by the commands' parsers: checked when the command line is parsed,
so a bad value is a usage error (exit 2) before any work starts, never a traceback after it.
The commands' JSON reports are written by :func:`write_report` (beside :func:`report_path`,
which checks the path when the command line is parsed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from streamdx.json_values import json_safe

__all__ = [
    "int_at_least", "non_negative_float", "non_negative_int", "positive_float", "positive_int", "report_path",
    "write_report",
]


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None


def int_at_least(low: int) -> Callable[[str], int]:
    """The argument type of an integer >= ``low`` (e.g. cross-validation folds >= 2)."""

    def parse(value: str) -> int:
        v = _int(value)
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


#: An integer >= 0 (random seeds: numpy refuses negative ones).
non_negative_int = int_at_least(0)
#: An integer >= 1 (epochs, threads, record counts).
positive_int = int_at_least(1)


def _float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return v


def positive_float(value: str) -> float:
    """A finite number > 0 (durations, chunk lengths)."""
    v = _float(value)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v:g}")
    return v


def non_negative_float(value: str) -> float:
    """A finite number >= 0 (e.g. seconds, 0 = all)."""
    v = _float(value)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v:g}")
    return v


def report_path(value: str) -> Path:
    """A file the command may write its report to: not a folder, in a folder that exists or can be
    made and that takes a new file (checked by creating and removing a temporary one, so a
    read-only or pseudo file system is caught before hours of work, not after)."""
    p = Path(value)
    if not value or p.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder, not a file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write {value}: {exc.strerror or exc}") from None
    return p


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write a command's JSON report as strict JSON (indented; undefined values, NaN, as null;
    numpy values as numbers, see :func:`~streamdx.json_values.json_safe`), creating its folder,
    and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    print(f"report written to {path}")
