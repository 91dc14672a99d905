"""Every CLI command maps to a function that exists."""

from __future__ import annotations

import importlib

import pytest

from streamdx.cli import COMMANDS, main


@pytest.mark.parametrize("target", sorted({t for t, _ in COMMANDS.values()}))
def test_every_command_resolves(target: str) -> None:
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_help_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "eval rpeaks" in capsys.readouterr().out
    assert main(["nope"]) == 2
