"""Layout: the services run without the devkit (demo, simulators, end-to-end bench).

A service image installs the services and the common library only (Dockerfile: ``shared`` and
``services``, no ``devkit``). These tests hide :mod:`streamdx_devkit` from a fresh interpreter
and check that every service's entry point still imports, and that the devkit's commands then
say clearly that they need a source checkout instead of failing with a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
#: Blocks the package the way a missing installation does (import raises ModuleNotFoundError).
_HIDE = "import sys; sys.modules['streamdx_devkit'] = None; "
SERVICE_ENTRIES = (
    "streamdx_ingest.main",
    "streamdx_dsp.main",
    "streamdx_inference.main",
    "streamdx_alerts.main",
    "streamdx_web.main",
    "streamdx.cli",
    "streamdx.embedded",
    "streamdx.messaging.publisher",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _HIDE + code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_every_service_entry_point_imports_without_the_devkit() -> None:
    code = "import importlib\n" + "\n".join(f"importlib.import_module({m!r})" for m in SERVICE_ENTRIES)
    proc = _python(code.replace("\n", "; "))
    assert proc.returncode == 0, proc.stderr


def test_common_library_has_no_devkit_module() -> None:
    shared = REPO / "shared" / "streamdx"
    assert not any((shared / name).exists() for name in ("sim", "demo.py", "bench_e2e.py"))
    offenders = [p for p in shared.rglob("*.py") if "streamdx_devkit" in p.read_text() and p.name != "cli.py"]
    assert offenders == []


@pytest.mark.parametrize("argv", [["demo"], ["simulate", "ecg", "--help"], ["bench", "e2e"]])
def test_devkit_commands_say_they_need_a_source_checkout(argv: list[str]) -> None:
    proc = _python(f"from streamdx.cli import main; raise SystemExit(main({argv!r}))")
    assert proc.returncode == 2, proc.stderr
    assert "not installed here" in proc.stderr and "streamdx_devkit" in proc.stderr
    assert "Traceback" not in proc.stderr
