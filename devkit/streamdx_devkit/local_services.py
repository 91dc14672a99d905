"""StreamDx services as child processes on one machine, the way production runs them.

Each service is ``python -m streamdx.cli serve <service>`` with its settings in the environment
(the services read nothing else), its output in its own log file, in its own session so that a
terminal's Ctrl-C reaches only the parent, which then stops the services in order: SIGTERM (each
finishes and checkpoints its batch in progress), then SIGKILL for any still running after the grace
period. Used by ``streamdx demo`` and ``streamdx bench e2e``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

__all__ = ["LocalService", "LocalServices", "wait_http_ok"]


async def wait_http_ok(client: httpx.AsyncClient, url: str, timeout_s: float,
                       process: asyncio.subprocess.Process | None = None) -> None:  # fmt: skip
    """Poll ``url`` until it answers 200; fail fast if ``process`` exits first.

    Raises
    ------
    RuntimeError
        When ``timeout_s`` passes or the process exits before the URL answers.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"{url}: the process serving it exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(url)).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s")


@dataclass
class LocalService:
    """One running service process."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    url: str = ""  # base URL of its HTTP port (/healthz, /readyz, /metrics), if it has one

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class LocalServices:
    """Start services against one broker and Redis; stop them all, in reverse order.

    Parameters
    ----------
    kafka_bootstrap, redis_url : str
        Where the services find the broker and Redis.
    logdir : Path
        One ``<name>.log`` per service is written here.
    env : dict
        Settings common to every service (added to this process's environment).
    """

    kafka_bootstrap: str
    redis_url: str
    logdir: Path
    env: dict[str, str] = field(default_factory=dict)
    running: list[LocalService] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    async def start(self, service: str, env: dict[str, str], *, name: str = "", url: str = "") -> LocalService:
        """Start ``streamdx serve <service>`` with ``env`` on top of the common settings."""
        name = name or service
        log_path = self.logdir / f"{name}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        full_env = {**os.environ, "KAFKA_BOOTSTRAP": self.kafka_bootstrap, "REDIS_URL": self.redis_url,
                    "OMP_NUM_THREADS": "1", **self.env, **env}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdx.cli", "serve", service, env=full_env, stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True)  # fmt: skip
        svc = LocalService(name, process, log_path, url)
        self.running.append(svc)
        return svc

    def by_name(self, name: str) -> LocalService:
        return next(s for s in self.running if s.name == name)

    def exited(self) -> list[LocalService]:
        """Services whose process has ended (a crash, since only :meth:`stop_all` stops them)."""
        return [s for s in self.running if s.process.returncode is not None]

    async def stop_all(self, grace_s: float = 20.0) -> None:
        """SIGTERM every service (newest first), wait up to ``grace_s``, SIGKILL what is left."""
        for svc in reversed(self.running):
            if svc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    svc.process.terminate()
        deadline = time.monotonic() + grace_s
        for svc in reversed(self.running):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.process.wait(), timeout=max(0.1, deadline - time.monotonic()))
            if svc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    svc.process.kill()
                await svc.process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()
