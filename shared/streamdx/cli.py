"""``streamdx`` — the one operator CLI.

Subcommands are ``<group> <name>`` pairs mapped to ``module:function`` entry points that
take the remaining argv and return an exit code. Modules are imported lazily so that
``streamdx --help`` stays fast and a service image only needs what it runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "main"]

#: (group, name) → ("module:function", one-line help)
COMMANDS: dict[tuple[str, str], tuple[str, str]] = {
    ("stack", "up"): ("streamdx.embedded.cli:stack_up", "start the embedded broker + Redis and wait"),
    ("demo", ""): ("streamdx.demo:main", "run the whole pipeline on the embedded stack with simulated devices"),
    ("serve", "ingest"): ("streamdx_ingest.main:main", "run the ingest HTTP service"),
    ("serve", "dsp"): ("streamdx_dsp.main:main", "run the dsp worker"),
    ("serve", "inference"): ("streamdx_inference.main:main", "run the inference worker"),
    ("devices", "create"): ("streamdx_ingest.admin:create_main", "create a device API key"),
    ("devices", "revoke"): ("streamdx_ingest.admin:revoke_main", "revoke a device API key"),
    ("topics", "create"): ("streamdx.messaging.admin:create_topics_main", "create every topic + DLQ"),
    ("simulate", "ecg"): ("streamdx.sim.device:main", "stream synthetic or WFDB ECG to ingest"),
    ("simulate", "esr"): ("streamdx.sim.esr_device:main", "push rendered frames of simulated tubes"),
    ("eval", "rpeaks"): ("streamdx_dsp.evaluation.rpeaks:main", "EC57 R-peak evaluation on WFDB records"),
    ("eval", "esr"): ("streamdx_inference.esr.evaluation:main", "ESR model comparison on simulated cohorts"),
    ("bench", "dsp"): ("streamdx_dsp.evaluation.bench:main", "DSP throughput vs NeuroKit2"),
    ("bench", "ingest"): ("streamdx_ingest.bench:main", "ingest throughput on the embedded stack"),
    ("train", "esr"): ("streamdx_inference.esr.training:main", "train the ESR GRU (simulated or lab CSV)"),
}


def _usage() -> str:
    lines = ["usage: streamdx <command> [<subcommand>] [options]", "", "commands:"]
    for (group, name), (_, help_text) in COMMANDS.items():
        lines.append(f"  {(group + ' ' + name).strip():<20} {help_text}")
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[Sequence[str]], int]:
    module_name, func_name = target.split(":")
    func: Callable[[Sequence[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamdx`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    group = args[0]
    if (group, "") in COMMANDS:
        return _resolve(COMMANDS[(group, "")][0])(args[1:])
    if len(args) < 2 or (group, args[1]) not in COMMANDS:
        print(_usage(), file=sys.stderr)
        return 2
    return _resolve(COMMANDS[(group, args[1])][0])(args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
