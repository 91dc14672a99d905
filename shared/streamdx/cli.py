"""``streamdx`` — the one operator CLI.

Commands are ``<group> <name>`` pairs (or a bare ``<group>`` when the name is ``""``) listed
once in :data:`COMMANDS`, each mapped to a module that exposes

* ``build_parser() -> argparse.ArgumentParser`` (``prog`` = ``"streamdx <group> <name>"``,
  a help text on every option), and
* ``main(argv) -> int``, which parses ``argv`` with that parser before doing anything else, so
  ``--help`` prints and exits 0 without starting anything.

The top-level and group help are generated from :data:`COMMANDS` with argparse without
importing any command module, so ``streamdx --help`` stays fast and a service image only
imports what it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from streamdx.input_errors import InputFileError

__all__ = ["COMMANDS", "GROUPS", "build_parsers", "command_target", "main"]

#: (group, name) → ("module:main", one-line help). ``name == ""`` is a command without a subcommand.
COMMANDS: dict[tuple[str, str], tuple[str, str]] = {
    ("stack", "up"): ("streamdx.embedded.cli:main", "run a local Kafka-compatible broker and Redis until Ctrl-C"),
    ("demo", ""): ("streamdx_devkit.demo:main", "run the whole pipeline locally with simulated devices"),
    ("serve", "ingest"): ("streamdx_ingest.main:main", "run the ingest HTTP/WebSocket service"),
    ("serve", "dsp"): ("streamdx_dsp.main:main", "run the signal-processing service (ECG beats, ESR heights)"),
    ("serve", "inference"): ("streamdx_inference.main:main", "run the model service (ECG labels, ESR, slides)"),
    ("serve", "web"): ("streamdx_web.main:main", "run the web console (live streams, alerts, reports)"),
    ("web", "add-user"): ("streamdx_web.users_cli:main", "create a console operator account or set its password"),
    ("serve", "alerts"): ("streamdx_alerts.main:main", "run the alerts service (rhythm alarms, webhooks, summaries)"),
    ("devices", "create"): ("streamdx_ingest.devices_create:main", "create or rotate a device API key"),
    ("devices", "revoke"): ("streamdx_ingest.devices_revoke:main", "revoke a device API key"),
    ("topics", "create"): ("streamdx.messaging.topics_create:main", "create every topic and its dead-letter topic"),
    ("tail", ""): ("streamdx.messaging.tail_cli:main", "print the messages of a topic as they arrive"),
    ("alerts", "check-rules"): ("streamdx_alerts.rules_cli:main", "validate an alert rules (profiles) YAML file"),
    ("report", ""): ("streamdx_alerts.report:main", "Holter summary of a stream (HR, AF episodes, ectopy, pauses)"),
    ("alerts", "replay"): ("streamdx_alerts.webhooks.replay:main", "queue dead-lettered webhook deliveries again"),
    ("slides", "submit"): ("streamdx_ingest.slides_cli:main",
                           "upload a whole-slide image to ingest (tiles → detector → merged glomeruli)"),
    ("simulate", "ecg"): ("streamdx_devkit.sim.device:main", "stream synthetic or WFDB ECG to ingest"),
    ("simulate", "esr"): ("streamdx_devkit.sim.esr_device:main", "upload camera frames of simulated ESR tubes"),
    ("eval", "rpeaks"): ("streamdx_dsp.evaluation.rpeaks:main", "R-peak detection accuracy on WFDB records"),
    ("eval", "af"): ("streamdx_inference.ecg.evaluation.af_eval:main", "per-beat AF detection, inter-patient"),
    ("eval", "beats"): ("streamdx_inference.ecg.evaluation.beats_eval:main", "AAMI beat classification (DS1→DS2)"),
    ("eval", "cinc2017"): ("streamdx_inference.ecg.evaluation.cinc_eval:main", "rhythm class of CinC 2017 recordings"),
    ("eval", "quality"): ("streamdx_inference.ecg.evaluation.quality_eval:main",
                          "ECG quality gate on artefacts, non-ECG input and NSTDB noise"),
    ("eval", "episodes"): ("streamdx_alerts.evaluation.episodes_eval:main",
                           "AF episodes of DSP + models + rhythm engine (EC57 episode/duration Se, +P)"),
    ("eval", "slides"): ("streamdx_inference.slides.evaluation:main",
                         "whole-slide glomerulus detection P/R/F1 at IoU 0.5 (tiles → ONNX → merge)"),
    ("eval", "esr"): ("streamdx_inference.esr.evaluation:main", "compare ESR forecast models on simulated tubes"),
    ("bench", "dsp"): ("streamdx_dsp.evaluation.bench:main", "signal-processing throughput vs NeuroKit2"),
    ("bench", "ingest"): ("streamdx_ingest.bench:main", "ingest throughput on a local broker and Redis"),
    ("bench", "alerts"): ("streamdx_alerts.bench:main", "criterion → signed webhook POST latency"),
    ("bench", "e2e"): ("streamdx_devkit.bench_e2e:main",
                       "N simulated streams through ingest → dsp → inference → alerts: latency, lag, loss"),
    ("bench", "inference"): ("streamdx_inference.ecg.bench:main", "ECG labeler beats/s on one core, batched"),
    ("bench", "slides"): ("streamdx_inference.slides_bench:main",
                          "one slide through ingest → tiles → detector → merged result on the embedded stack"),
    ("train", "esr"): ("streamdx_inference.esr.training:main", "train the ESR forecast model"),
    ("train", "af"): ("streamdx_inference.ecg.training.train_af:main", "train the per-beat AF model (ONNX + INT8)"),
    ("train", "beats"): ("streamdx_inference.ecg.training.train_beats:main", "train the AAMI beat-class model"),
    ("train", "quality"): ("streamdx_inference.ecg.training.train_quality:main", "train the signal-quality gate"),
    ("train", "kaggle-beats"): ("streamdx_inference.ecg.training.train_kaggle_beats:main",
                                "train the single-beat Kaggle-layout CNN (MITDB, intra-patient; ONNX + INT8)"),
    ("train", "slides"): ("streamdx_inference.slides.training:main",
                          "train the small glomerulus detector on generated slides (ONNX, YOLOv8 layout)"),
}

#: group → one-line help of the group (a group missing here lists its subcommands instead).
GROUPS: dict[str, str] = {
    "stack": "local broker and Redis for development",
    "serve": "run one service",
    "devices": "manage device API keys",
    "topics": "manage Kafka topics",
    "alerts": "alert rules, webhook delivery",
    "web": "web console operators",
    "slides": "whole-slide images (glomerulus detection)",
    "simulate": "simulated devices",
    "eval": "accuracy evaluations (write a JSON report)",
    "bench": "throughput benchmarks (write a JSON report)",
    "train": "train models",
}

_HELP_FLAGS = frozenset({"-h", "--help"})


def command_target(group: str, name: str) -> str:
    """The ``module`` implementing ``streamdx <group> <name>``."""
    return COMMANDS[(group, name)][0].split(":")[0]


def _groups() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for (group, name), (_, help_text) in COMMANDS.items():
        out.setdefault(group, {})[name] = help_text
    return out


def _group_help(group: str, names: dict[str, str]) -> str:
    if "" in names:
        return names[""]
    return GROUPS.get(group, "commands: " + ", ".join(names))


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one parser per group, generated from :data:`COMMANDS`.

    Only used for help and errors: each command parses its own options with its module's
    ``build_parser``.
    """
    every = [f"  {(group + ' ' + name).strip():<20} {help_text}" for (group, name), (_, help_text) in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="streamdx",
        description="StreamDx operator CLI: run services, a local stack, simulators, evaluations.",
        epilog="every command:\n" + "\n".join(every)
        + "\n\nRun 'streamdx <command> [<subcommand>] --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    group_parsers: dict[str, argparse.ArgumentParser] = {}
    for group, names in _groups().items():
        help_text = _group_help(group, names)
        if "" in names:
            commands.add_parser(group, help=help_text, add_help=False)
            continue
        gp = commands.add_parser(
            group, help=help_text, description=help_text,
            epilog=f"Run 'streamdx {group} <subcommand> --help' for the options of a subcommand.",
        )
        subs = gp.add_subparsers(title="subcommands", metavar="<subcommand>")
        for name, sub_help in names.items():
            subs.add_parser(name, help=sub_help, add_help=False)
        group_parsers[group] = gp
    return parser, group_parsers


def _resolve(group: str, name: str) -> Callable[[Sequence[str]], int] | None:
    """The command's ``main``; ``None`` (after saying why) when its package is not installed.

    A service image installs the services but not :mod:`streamdx_devkit` (demo, simulators,
    end-to-end bench), so those commands exist only in a source checkout.
    """
    module_name, func_name = COMMANDS[(group, name)][0].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or module_name.split(".")[0] != exc.name.split(".")[0]:
            raise  # a dependency of an installed module is missing: a real error
        command = " ".join(filter(None, (group, name)))
        print(f"streamdx {command}: not installed here ({exc.name} is missing); it runs from a source "
              "checkout (`make demo` / `pip install -e .`)", file=sys.stderr)
        return None
    func: Callable[[Sequence[str]], int] = getattr(module, func_name)
    return func


def _run(group: str, name: str, argv: Sequence[str]) -> int:
    func = _resolve(group, name)
    if func is None:
        return 2
    try:
        return func(argv)
    except InputFileError as exc:  # a damaged input file: say which and why, no traceback
        command = " ".join(filter(None, (group, name)))
        print(f"streamdx {command}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamdx`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser, group_parsers = build_parsers()
    if not args or args[0] in _HELP_FLAGS or args[0] == "help":
        parser.print_help()
        return 0
    group = args[0]
    if (group, "") in COMMANDS:
        return _run(group, "", args[1:])
    gp = group_parsers.get(group)
    if gp is None:
        parser.print_usage(sys.stderr)
        print(f"streamdx: error: unknown command {group!r} (choose from {', '.join(_groups())})", file=sys.stderr)
        return 2
    if len(args) > 1 and args[1] in _HELP_FLAGS:
        gp.print_help()
        return 0
    if len(args) < 2 or (group, args[1]) not in COMMANDS:
        choices = ", ".join(n for (g, n) in COMMANDS if g == group)
        what = f"unknown subcommand {args[1]!r}" if len(args) > 1 else "missing subcommand"
        gp.print_usage(sys.stderr)
        print(f"streamdx {group}: error: {what} (choose from {choices})", file=sys.stderr)
        return 2
    return _run(group, args[1], args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
