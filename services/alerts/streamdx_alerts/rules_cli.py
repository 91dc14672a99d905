"""``streamdx alerts check-rules FILE``: validate an alert rules file and show what it assigns."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx alerts check-rules",
        description="Validate an alert rules (profiles) YAML file as the alerts service would read it from "
        "ALERTS_PROFILES, print each profile's non-default settings, and which profile given stream ids get.",
    )
    p.add_argument("file", type=Path, help="YAML rules file")
    p.add_argument("--stream", action="append", default=[], metavar="ID",
                   help="show the profile assigned to this stream id (repeatable)")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from streamdx_alerts.rules import AlertRules, RulesError, load_profiles

    try:
        profiles = load_profiles(args.file)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    defaults = AlertRules().model_dump()
    for name, rules in profiles.profiles.items():
        changed = {
            f"{rule}.{key}": value
            for rule, fields in rules.model_dump().items() if isinstance(fields, dict)
            for key, value in fields.items() if value != defaults[rule][key]
        }  # fmt: skip
        changed.update({k: v for k, v in rules.model_dump().items() if not isinstance(v, dict) and v != defaults[k]})
        print(f"profile {name}: " + (", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "all defaults"))
    for a in profiles.assign:
        print(f"assign {a.match!r} -> {a.profile}")
    for sid in args.stream:
        print(f"stream {sid} -> {profiles.for_stream(sid)[0]}")
    return 0
