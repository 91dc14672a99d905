"""Evaluation runs of the console: ``streamdx eval ...`` as background subprocesses.

A run is the very command an operator would type (``python -m streamdx.cli eval <protocol>
--data <dataset> --out <runs_dir>/<run_id>/report.json ...``), started by :class:`EvalJobs`
with at most ``max_jobs`` running at once (the rest wait, queued), cancellable. Its folder
under ``web_runs_dir`` holds ``run.json`` (what was asked, status, progress, headline
figure), the report the command wrote and its output (``output.log``), so past runs survive a
console restart; a run that was in progress when the console stopped is marked
``interrupted``.

Datasets are the sub-folders of ``web_data_root``: a folder of WFDB records with ``.atr``
annotations (MIT-BIH format) or a CinC 2017 pack (``index.csv``). A request names a dataset
from that list, never a path.

Progress comes from the command's own output: tqdm bars (``desc: 42%|...| 20/48``) on
stderr and, for ``eval rpeaks`` (no bar), the per-record lines of its table on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from streamdx.logs import log_fields

__all__ = [
    "PROTOCOLS",
    "Dataset",
    "EvalJobs",
    "Progress",
    "Protocol",
    "Run",
    "RunRequestError",
    "list_datasets",
    "valid_run_id",
]

log = logging.getLogger("streamdx.web")

DatasetKind = Literal["wfdb", "cinc"]
Status = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$")
_RECORD = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol the page offers (``command``: the words after ``streamdx eval``)."""

    id: str
    label: str
    kind: DatasetKind
    command: tuple[str, ...]
    description: str
    options: frozenset[str] = frozenset()
    expected: str = ""


PROTOCOLS: dict[str, Protocol] = {p.id: p for p in (
    Protocol("rpeaks", "R peaks", "wfdb", ("rpeaks",),
             "EC57 R-peak detection of the streaming DSP (Se, +P, F1; scored from minute 5, 150 ms window).",
             frozenset({"records"}), "about 1 s per record"),
    Protocol("beats", "DS1/DS2 beats", "wfdb", ("beats", "--protocol", "ds1ds2"),
             "AAMI beat classes N, S, V, F, Q of the DS2 records as the service labels them (quality gate, AF, "
             "beat class; inter-patient).",
             frozenset({"int8"}), "seconds with the DSP cache warm, about a minute without"),
    Protocol("af", "AF per beat", "wfdb", ("af", "--train-on", "cinc2017"),
             "Per-beat AF: a model trained on the CinC 2017 pack only, scored on every record (an unseen "
             "database).", frozenset({"records", "epochs"}), "about 20 s per training epoch"),
    Protocol("cinc2017", "CinC 2017", "cinc", ("cinc2017",),
             "Rhythm class (N, A, O, ~) of each held-out CinC 2017 recording; AF F1 and the challenge score.",
             frozenset({"int8"}), "about 10 s with the DSP cache warm"),
)}  # fmt: skip

#: Training epochs the page allows for ``af`` (the recipe's default is 10).
MAX_EPOCHS = 10


@dataclass(frozen=True)
class Dataset:
    """A sub-folder of the data root the page offers."""

    name: str
    path: Path
    kind: DatasetKind
    records: tuple[str, ...]
    n_items: int


def list_datasets(root: Path) -> list[Dataset]:
    """The usable sub-folders of ``root`` (WFDB records with ``.atr``, or a CinC 2017 pack), by name."""
    out: list[Dataset] = []
    with contextlib.suppress(OSError):
        for d in sorted(root.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            if (d / "index.csv").is_file():
                with contextlib.suppress(OSError), (d / "index.csv").open() as f:
                    n = max(sum(1 for _ in f) - 1, 0)
                    out.append(Dataset(d.name, d, "cinc", (), n))
                continue
            recs = tuple(sorted(h.stem for h in d.glob("*.hea") if (d / f"{h.stem}.atr").is_file()))
            if recs:
                out.append(Dataset(d.name, d, "wfdb", recs, len(recs)))
    return out


def valid_run_id(run_id: str) -> bool:
    return bool(_RUN_ID.match(run_id))


class RunRequestError(ValueError):
    """A request the page refuses (the message is shown on the page)."""


@dataclass
class Progress:
    """The latest progress of a run: a phase (bar description) and its ``done`` / ``total``."""

    phase: str = ""
    done: int = 0
    total: int = 0

    @property
    def fraction(self) -> float | None:
        return min(self.done / self.total, 1.0) if self.total > 0 else None


@dataclass
class Run:
    """What ``run.json`` holds."""

    id: str
    protocol: str
    dataset: str
    options: dict[str, Any]
    argv: list[str]
    status: Status = "queued"
    created: str = ""
    started: str | None = None
    finished: str | None = None
    returncode: int | None = None
    error: str | None = None
    progress: Progress = field(default_factory=Progress)
    headline: dict[str, Any] | None = None
    user: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def protocol_label(self) -> str:
        p = PROTOCOLS.get(self.protocol)
        return p.label if p else self.protocol

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Run:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["progress"] = Progress(**{k: v for k, v in dict(d.get("progress") or {}).items()
                                        if k in ("phase", "done", "total")})
        return cls(**known)


_TQDM = re.compile(r"^(?P<desc>[^|]*?):?\s*(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
_TABLE_ROW = re.compile(r"^\s*(?P<name>[A-Za-z0-9_-]+)\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s*$")


class ProgressParser:
    """Turns a run's output into :class:`Progress` (tqdm bars; ``rpeaks`` table rows)."""

    def __init__(self, progress: Progress, records_total: int = 0) -> None:
        self.progress = progress
        self.records_total = records_total
        self._rows: set[str] = set()

    def feed_line(self, line: str, stream: Literal["stdout", "stderr"]) -> bool:
        """Take one output line (a ``\\r``- or ``\\n``-terminated segment); True when progress changed."""
        p = self.progress
        m = _TQDM.match(line.strip())
        if m:
            phase = m["desc"].strip() or "working"
            new = (phase, int(m["n"]), int(m["total"]))
            if new != (p.phase, p.done, p.total):
                p.phase, p.done, p.total = new
                return True
            return False
        if stream == "stderr" and line.startswith("fold "):
            p.phase, p.done, p.total = line.split(":")[0], 0, 0
            return True
        if stream == "stdout" and self.records_total:
            r = _TABLE_ROW.match(line)
            if r and r["name"] not in ("gross", "average") and r["name"] not in self._rows:
                self._rows.add(r["name"])
                p.phase, p.done, p.total = "records", len(self._rows), self.records_total
                return True
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


HeadlineFn = Callable[[str, dict[str, Any]], dict[str, Any] | None]


class EvalJobs:
    """Runs, lists and cancels evaluation runs (one instance per console; event-loop only)."""

    def __init__(self, runs_dir: Path, data_root: Path, *, max_jobs: int = 2, max_queued: int = 8,
                 headline: HeadlineFn | None = None, python: str = sys.executable,
                 extra_env: dict[str, str] | None = None) -> None:
        self.runs_dir = runs_dir
        self.data_root = data_root
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max_jobs)
        self._headline = headline
        self._python = python
        self._extra_env = dict(extra_env or {})
        self._live: dict[str, Run] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()

    # --- start-up / shut-down ------------------------------------------------------------------

    def recover(self) -> int:
        """Mark runs left queued/running by a previous console as interrupted; returns how many."""
        n = 0
        for run in self._stored():
            if run.active:
                run.status, run.finished = "interrupted", run.finished or _now()
                run.error = "the console stopped while this run was in progress"
                self._save(run)
                n += 1
        return n

    async def close(self) -> None:
        """Stop every run (the console is shutting down)."""
        for run_id in list(self._tasks):
            await self.cancel(run_id, reason="interrupted")
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # --- reading -------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        if not valid_run_id(run_id):
            raise KeyError(run_id)
        return self.runs_dir / run_id

    def get(self, run_id: str) -> Run | None:
        if not valid_run_id(run_id):
            return None
        if run_id in self._live:
            return self._live[run_id]
        return self._load(self.runs_dir / run_id / "run.json")

    def report(self, run_id: str) -> dict[str, Any] | None:
        """The run's JSON report, or None (missing or unreadable)."""
        path = self.run_dir(run_id) / "report.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def output_tail(self, run_id: str, lines: int = 20) -> str:
        """The last lines of the run's output, tqdm redraws collapsed."""
        try:
            raw = (self.run_dir(run_id) / "output.log").read_bytes()[-64_000:]
        except OSError:
            return ""
        text = [next((p for p in reversed(seg.split("\r")) if p.strip()), "")
                for seg in raw.decode("utf-8", "replace").split("\n")]
        return "\n".join([t for t in text if t.strip()][-lines:])

    def list(self, limit: int = 200) -> list[Run]:
        """Runs, newest first (live ones as they are now)."""
        runs = {r.id: r for r in self._stored()}
        runs.update(self._live)
        return sorted(runs.values(), key=lambda r: r.id, reverse=True)[:limit]

    def _stored(self) -> Iterable[Run]:
        with contextlib.suppress(OSError):
            for d in self.runs_dir.iterdir():
                if valid_run_id(d.name):
                    run = self._load(d / "run.json")
                    if run is not None:
                        yield run

    @staticmethod
    def _load(path: Path) -> Run | None:
        try:
            return Run.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, run: Run) -> None:
        d = self.runs_dir / run.id
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "run.json.tmp"
        tmp.write_text(json.dumps(run.to_json(), indent=2))
        os.replace(tmp, d / "run.json")

    # --- starting ------------------------------------------------------------------------------

    def submit(self, protocol_id: str, dataset_name: str, *, records: str = "", int8: bool = False,
               epochs: int | None = None, user: str = "") -> Run:
        """Validate a request against the offered protocols and datasets and queue it."""
        protocol = PROTOCOLS.get(protocol_id)
        if protocol is None:
            raise RunRequestError("Choose one of the listed protocols.")
        datasets = {d.name: d for d in list_datasets(self.data_root)}
        ds = datasets.get(dataset_name)
        if ds is None:
            raise RunRequestError(f"Unknown dataset {dataset_name[:40]!r}: choose one of the listed folders.")
        if ds.kind != protocol.kind:
            need = "a folder of WFDB records with .atr annotations" if protocol.kind == "wfdb" else \
                "a CinC 2017 pack (index.csv, REFERENCE.csv, signals)"
            raise RunRequestError(f"{protocol.label} needs {need}; {ds.name} is not one.")
        if sum(r.active for r in self._live.values()) >= self.max_queued:
            raise RunRequestError("Too many runs are queued or running: wait for one to finish or cancel one.")
        argv = ["eval", *protocol.command, "--data", str(ds.path)]
        options: dict[str, Any] = {}
        chosen: list[str] = []
        if records.strip() and "records" in protocol.options:
            chosen = [r.strip() for r in records.replace(" ", ",").split(",") if r.strip()]
            bad = [r for r in chosen if not _RECORD.match(r) or r not in ds.records]
            if bad:
                raise RunRequestError(f"Not records of {ds.name}: {', '.join(b[:32] for b in bad[:5])}.")
            chosen = list(dict.fromkeys(chosen))
            argv += ["--records", ",".join(chosen)]
            options["records"] = chosen
        if int8 and "int8" in protocol.options:
            argv.append("--int8")
            options["int8"] = True
        if protocol.id == "af":
            cinc = next((d for d in datasets.values() if d.kind == "cinc"), None)
            if cinc is None:
                raise RunRequestError("AF per beat trains on a CinC 2017 pack: none is in the data folder.")
            argv += ["--cinc", str(cinc.path)]
            options["train_on"] = cinc.name
            e = epochs if epochs is not None else 2
            if not 1 <= e <= MAX_EPOCHS:
                raise RunRequestError(f"Epochs must be 1 to {MAX_EPOCHS}.")
            argv += ["--epochs", str(e)]
            options["epochs"] = e
        run_id = _new_run_id()
        while (self.runs_dir / run_id).exists():
            run_id = _new_run_id()
        out = (self.runs_dir / run_id / "report.json").resolve()
        argv += ["--out", str(out)]
        run = Run(run_id, protocol.id, ds.name, options, argv, created=_now(), user=user)
        self._save(run)
        self._live[run_id] = run
        total = len(chosen) or len(ds.records)
        self._tasks[run_id] = asyncio.create_task(self._run(run, total if protocol.id == "rpeaks" else 0))
        log.info("evaluation %s queued: %s on %s", run_id, protocol.id, ds.name)
        return run

    async def cancel(self, run_id: str, reason: Status = "cancelled") -> bool:
        """Stop a queued or running run; False when it is not active."""
        run = self._live.get(run_id)
        if run is None or not run.active:
            return False
        self._cancelled.add(run_id)
        proc = self._procs.get(run_id)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        task = self._tasks.get(run_id)
        if proc is None and task is not None:
            task.cancel()  # still waiting for a slot
        run.status, run.finished = reason, _now()
        run.error = None if reason == "cancelled" else "the console stopped while this run was in progress"
        self._save(run)
        return True

    async def _run(self, run: Run, records_total: int) -> None:
        d = self.runs_dir / run.id
        parser = ProgressParser(run.progress, records_total)
        try:
            async with self._slots:
                if run.id in self._cancelled:
                    return
                run.status, run.started = "running", _now()
                self._save(run)
                env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._extra_env}
                with (d / "output.log").open("wb") as logf:
                    proc = await asyncio.create_subprocess_exec(
                        self._python, "-m", "streamdx.cli", *run.argv, stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=env,
                        start_new_session=True)
                    self._procs[run.id] = proc
                    saved = [time.monotonic()]

                    async def pump(stream: asyncio.StreamReader | None, name: Literal["stdout", "stderr"]) -> None:
                        buf = b""
                        while stream is not None:
                            chunk = await stream.read(4096)
                            if not chunk:
                                break
                            logf.write(chunk)
                            buf += chunk
                            *segs, buf = re.split(rb"[\r\n]", buf)
                            changed = False
                            for seg in segs:
                                changed |= parser.feed_line(seg.decode("utf-8", "replace"), name)
                            if changed and time.monotonic() - saved[0] > 1.0:
                                saved[0] = time.monotonic()
                                self._save(run)

                    try:
                        await asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))
                        rc = await proc.wait()
                    except asyncio.CancelledError:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        raise
                run.returncode = rc
                if run.id in self._cancelled:
                    return
                run.finished = _now()
                report = self.report(run.id)
                if rc == 0 and report is not None:
                    run.status = "done"
                    if run.progress.total:
                        run.progress.done = run.progress.total
                    if self._headline is not None:
                        run.headline = self._headline(run.protocol, report)
                else:
                    run.status = "failed"
                    tail = self.output_tail(run.id, 12)
                    run.error = (f"the command exited with code {rc}" if rc else "the command wrote no report") + \
                        (f":\n{tail}" if tail else "")
                self._save(run)
                log.info("evaluation %s finished", run.id, extra=log_fields(status=run.status))
        except asyncio.CancelledError:
            if run.id not in self._cancelled:
                raise
        except Exception as exc:  # the page shows it; the console keeps running
            run.status, run.finished = "failed", _now()
            run.error = f"could not run the evaluation: {type(exc).__name__}: {exc}"
            self._save(run)
            log.warning("evaluation %s failed to start", run.id, extra=log_fields(error_type=type(exc).__name__))
        finally:
            self._procs.pop(run.id, None)
            self._tasks.pop(run.id, None)
            self._live.pop(run.id, None)
            self._cancelled.discard(run.id)
