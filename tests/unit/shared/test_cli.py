"""Every ``streamdx`` command and group answers ``--help`` (exit 0), documents every option and
starts nothing; unknown commands exit 2 with a clear message.

How a command is registered
---------------------------
1. Add ``(group, name): ("package.module:main", "one-line help for users")`` to
   ``streamdx.cli.COMMANDS`` (``name = ""`` for a command without a subcommand, like
   ``demo``); a new group also gets a line in ``streamdx.cli.GROUPS``.
2. In ``package.module`` define ``build_parser() -> argparse.ArgumentParser`` with
   ``prog="streamdx <group> <name>"``, a description, and ``help=`` on every argument, and
   ``main(argv) -> int`` that calls ``build_parser().parse_args(argv)`` before doing anything
   else (import heavy dependencies, read settings, open connections after parsing).
3. Nothing else: the top-level and group help, and these tests, are generated from the table.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamdx.cli import COMMANDS, command_target, main

REPO = Path(__file__).resolve().parents[3]
GROUPS = sorted({g for g, n in COMMANDS if n})
#: ``--help`` returns well within this (it imports the command's module, never starts anything).
HELP_BUDGET_S = 20.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamdx.cli", *args], capture_output=True, text=True,
                          timeout=HELP_BUDGET_S * 3, env=env, cwd=REPO)
    return proc, time.monotonic() - started


def _env_with_ports(ingest_port: int, metrics_port: int) -> dict[str, str]:
    # services would bind these ports if --help started them; the broker/Redis point nowhere
    return {**os.environ, "INGEST_PORT": str(ingest_port), "METRICS_PORT": str(metrics_port),
            "KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}", "REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize(("group", "name"), sorted(COMMANDS), ids=lambda v: v or "-")
def test_command_help_exits_0_documents_every_option_and_starts_nothing(group: str, name: str) -> None:
    module = importlib.import_module(command_target(group, name))
    parser = module.build_parser()
    prog = f"streamdx {group} {name}".strip()
    assert parser.prog == prog
    assert parser.description, f"{prog}: no description"
    undocumented = [a.dest for a in parser._actions if not (a.help or "").strip()]
    assert not undocumented, f"{prog}: options without help: {undocumented}"
    assert callable(module.main)

    ingest_port, metrics_port = _closed_port(), _closed_port()
    proc, took = _run([*prog.split()[1:], "--help"], _env_with_ports(ingest_port, metrics_port))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {prog}"), proc.stdout[:200]
    assert took < HELP_BUDGET_S, f"{prog} --help took {took:.1f} s"
    assert _port_free(ingest_port) and _port_free(metrics_port)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("group", GROUPS)
def test_group_help_lists_its_subcommands(group: str) -> None:
    proc, _ = _run([group, "--help"], dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: streamdx {group}")
    for g, name in COMMANDS:
        if g == group:
            assert name in proc.stdout


def test_group_help_does_not_import_command_modules() -> None:
    code = ("import sys; from streamdx.cli import main, COMMANDS, command_target; main(['serve', '--help']); "
            "main(['--help']); "
            "print(sorted(m for g, n in COMMANDS if (m := command_target(g, n)) in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for group, name in COMMANDS:
        assert f"{group} {name}".strip() in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "unknown command 'nope'"),
        (["serve", "nope"], "unknown subcommand 'nope'"),
        (["serve"], "missing subcommand"),
    ],
)
def test_unknown_or_missing_command_exits_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "choose from" in err


def test_topics_report_says_when_everything_exists() -> None:
    from streamdx.messaging.topics_create import topics_report

    assert topics_report(["a", "b"], []) == "all 2 topics already exist: a, b"
    assert topics_report(["a", "b"], ["b"]) == "created 1 topics: b\n1 already existed: a"
