"""``streamdx demo`` as a user runs it: everything shows within two minutes, Ctrl-C leaves nothing.

The demo runs as a child process in its own session, exactly as from a terminal. Once it says
that beats, beat labels, an AF alert at its webhook receiver and ESR forecasts have all been
seen, the test sends SIGINT to its process group (what Ctrl-C does) and checks that it exits 0
after stopping everything: every process it started (the five services, the broker, Redis) is
gone, and no process of its session is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHOW_BUDGET_S = 180.0  # the issue asks for two minutes on a user's machine; CI shares 2 cores with nothing else
STOP_BUDGET_S = 90.0


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], session [3])."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None:
            children.setdefault(int(st[1]), []).append(pid)
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _holter_record(folder: Path) -> Path:
    """A 60-s synthetic WFDB record (MLII, format 16) with its beat annotations, for --record."""
    import numpy as np
    import wfdb

    from streamdx_devkit.sim import ecg_synthesize

    ecg = ecg_synthesize(60.0, 360.0, seed=7, scenario="sinus")
    wfdb.wrsamp("holter", fs=360, units=["mV"], sig_name=["MLII"], d_signal=ecg.to_adc(200.0, 0)[:, None].astype(
        np.int64), fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(folder))  # fmt: skip
    wfdb.wrann("holter", "atr", sample=np.asarray(ecg.r_samples), symbol=list(ecg.beat_symbols), write_dir=str(folder))
    return folder / "holter"


def test_demo_shows_everything_then_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    report = tmp_path / "demo.json"
    record = _holter_record(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdx.cli", "demo", "--streams", "3", "--summary-every", "2",
         "--record", str(record), "--out", str(report)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    shown = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("shown after"):
                shown.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started_pids: set[int] = set()
    try:
        deadline = time.monotonic() + SHOW_BUDGET_S
        while not shown.is_set() and time.monotonic() < deadline and proc.poll() is None:
            started_pids |= _descendants(proc.pid)  # services, broker and Redis as they start
            shown.wait(1.0)
        output = "".join(lines)
        assert shown.is_set(), f"not everything shown within {SHOW_BUDGET_S:.0f} s:\n{output[-4000:]}"
        started_pids |= _descendants(proc.pid)
        assert len(started_pids) >= 7, f"expected 5 services + broker + Redis, saw {len(started_pids)} processes"
        assert re.search(r"web console\s+http://127\.0\.0\.1:\d+", output)
        assert re.search(r"ingest API docs\s+http://127\.0\.0\.1:\d+/docs", output)
        assert "/metrics" in output and "/hook" in output
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        rc = proc.wait(timeout=STOP_BUDGET_S)
    finally:
        if proc.poll() is None:  # the test failed: leave nothing behind either
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in started_pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    reader.join(timeout=10)
    output = "".join(lines)
    assert rc == 0, output[-4000:]
    assert "stopped: every service, the broker and Redis" in output
    left = sorted(pid for pid in started_pids if _alive(pid))
    assert left == [], f"processes left after Ctrl-C: {left}"
    same_session = [pid for pid in _all_pids() if (st := _stat(pid)) and int(st[3]) == proc.pid and st[0] != "Z"]
    assert same_session == []
    # the final report: the AF stream's alert arrived signed at the receiver, labels and forecasts exist
    data = json.loads(report.read_text())
    assert data["af_alert_received"] and data["all_shown_after_s"] is not None
    assert "af_episode" in data["alerts"]["demo-01"]["raised"]
    assert all(v["labels"] > 0 for v in data["labels"].values())
    assert all(v["forecasts"] > 0 for v in data["esr"].values())
    assert data["pooled"]["se"] > 95 and data["pooled"]["ppv"] > 95
    # the uploaded record was replayed and its first lead's beats scored against its annotations
    assert data["replay"]["streams"] == ["holter-01"]  # one lead: the stream id as given
    assert data["replay"]["score"]["se"] > 95 and data["replay"]["score"]["ppv"] > 95
