"""``streamdx train beats`` (see :mod:`streamdx_inference.ecg.training.train`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from streamdx_inference.ecg.training.train import build_parser_for, run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    return build_parser_for("beats")


def main(argv: Sequence[str]) -> int:
    return run("beats", argv)
