"""Evaluation runs of the console: request validation, progress parsing, run lifecycle (with a fake
``python`` that behaves like ``streamdx eval``), cancellation, restart recovery, report views."""

from __future__ import annotations

import asyncio
import json
import math
import stat
from pathlib import Path

import pytest

from streamdx_web.eval_jobs import EvalJobs, Progress, ProgressParser, RunRequestError, list_datasets, valid_run_id
from streamdx_web.eval_report import headline, report_view

FAKE = """#!/bin/sh
# a stand-in for `python -m streamdx.cli eval ...`: tqdm-like progress, then the report (or a failure)
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
case " $* " in *" --records 999 "*) echo "Traceback: boom" >&2; exit 3;; esac
for i in 1 2 3; do printf 'DSP beats mitdb:  %d%%|###| %d/3 [00:00<00:00]\\r' $((i * 33)) $i >&2; sleep %SLEEP%; done
cat > "$out" <<EOF
{"classes": {"N": {"se": 90.0, "ppv": 80.0, "tp": 9, "fn": 1, "fp": 2}}, "confusion": [[9, 2], [1, 0]],
 "confusion_rows": ["N", "none"], "confusion_cols": ["N", "V"], "missed_by_detector": {"N": 1},
 "binary": {"n": 12, "accuracy": 0.75, "precision": NaN, "recall": 0.5, "f1": 0.4, "kappa": 0.1, "roc_auc": NaN,
            "confusion": [[8, 1], [2, 1]]}}
EOF
"""


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in ("100", "101"):
        for ext in ("hea", "atr", "dat"):
            (root / "mitdb" / f"{name}.{ext}").parent.mkdir(parents=True, exist_ok=True)
            (root / "mitdb" / f"{name}.{ext}").write_text("x")
    (root / "mitdb" / "999.hea").write_text("x")  # no .atr: not offered
    (root / "cinc").mkdir()
    (root / "cinc" / "index.csv").write_text("name\na\nb\n")
    (root / "empty").mkdir()
    return root


def _jobs(tmp_path: Path, data_root: Path, sleep: float = 0.05, **kw: object) -> EvalJobs:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE.replace("%SLEEP%", str(sleep)))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return EvalJobs(tmp_path / "runs", data_root, python=str(fake), headline=headline, **kw)  # type: ignore[arg-type]


async def _finish(jobs: EvalJobs, run_id: str, limit_s: float = 10.0) -> None:
    for _ in range(int(limit_s / 0.05)):
        run = jobs.get(run_id)
        if run is not None and not run.active:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("run did not finish")


def test_datasets_are_the_usable_subfolders(data_root: Path) -> None:
    ds = {d.name: d for d in list_datasets(data_root)}
    assert set(ds) == {"cinc", "mitdb"}
    assert ds["mitdb"].kind == "wfdb" and ds["mitdb"].records == ("100", "101")
    assert ds["cinc"].kind == "cinc" and ds["cinc"].n_items == 2
    assert list_datasets(data_root / "missing") == []


async def test_requests_are_validated_against_the_offered_lists(tmp_path: Path, data_root: Path) -> None:
    jobs = _jobs(tmp_path, data_root)
    with pytest.raises(RunRequestError, match="protocols"):
        jobs.submit("rm -rf", "mitdb")
    for bad in ("../data/mitdb", "/etc", "empty", "mitdb/.."):
        with pytest.raises(RunRequestError, match="Unknown dataset"):
            jobs.submit("beats", bad)
    with pytest.raises(RunRequestError, match="needs a CinC 2017 pack"):
        jobs.submit("cinc2017", "mitdb")
    with pytest.raises(RunRequestError, match="needs a folder of WFDB records"):
        jobs.submit("rpeaks", "cinc")
    with pytest.raises(RunRequestError, match="Not records of mitdb: 102, --help"):
        jobs.submit("rpeaks", "mitdb", records="100, 102,--help")
    with pytest.raises(RunRequestError, match="Epochs"):
        jobs.submit("af", "mitdb", epochs=50)
    assert jobs.list() == []


def test_progress_from_tqdm_bars_and_rpeaks_rows() -> None:
    p = Progress()
    parser = ProgressParser(p, records_total=3)
    assert parser.feed_line("DSP beats mitdb:  45%|####5     | 10/22 [00:00<00:00, 146.84record/s]", "stderr")
    assert (p.phase, p.done, p.total) == ("DSP beats mitdb", 10, 22)
    assert parser.feed_line("af fold 1:  57%|█████▋    | 177/313 [00:02<00:02, 56.80batch/s]", "stderr")
    assert (p.phase, p.done, p.total) == ("af fold 1", 177, 313)
    assert parser.feed_line("fold 2/4: scoring 100, 101", "stderr") and p.phase == "fold 2/4"
    assert not parser.feed_line("  record  beats     TP    FN    FP     Se%     +P%     F1%", "stdout")
    assert parser.feed_line("     100   1902   1902     0     0  100.00  100.00  100.00", "stdout")
    assert parser.feed_line("     101   1523   1523     0     2  100.00   99.87   99.93", "stdout")
    assert not parser.feed_line("   gross          3425     0     2  100.00   99.94   99.97", "stdout")
    assert (p.phase, p.done, p.total, p.fraction) == ("records", 2, 3, pytest.approx(2 / 3))


async def test_a_run_goes_from_queued_to_done_with_its_report(tmp_path: Path, data_root: Path) -> None:
    jobs = _jobs(tmp_path, data_root)
    run = jobs.submit("beats", "mitdb", int8=True, user="op")
    assert valid_run_id(run.id) and run.status == "queued"
    assert run.argv[:4] == ["eval", "beats", "--protocol", "ds1ds2"] and "--int8" in run.argv
    assert run.argv[run.argv.index("--data") + 1] == str(data_root / "mitdb")
    await _finish(jobs, run.id)
    done = jobs.get(run.id)
    assert done is not None and done.status == "done", done
    assert (done.progress.phase, done.progress.done, done.progress.total) == ("DSP beats mitdb", 3, 3)
    assert done.headline == {"label": "F1, N vs abnormal", "value": 0.4, "text": "0.400"}
    stored = json.loads((tmp_path / "runs" / run.id / "run.json").read_text())
    assert stored["status"] == "done" and stored["user"] == "op"
    assert "DSP beats mitdb" in jobs.output_tail(run.id)
    view = report_view("beats", jobs.report(run.id) or {})
    assert view.confusion is not None
    assert view.confusion.cols == ["N", "V", "missed"] and view.confusion.counts == [[9, 2, 1], [1, 0, None]]
    label, cells, total = view.confusion.cells()[0]
    assert (label, total) == ("N", 12) and cells[0].share == pytest.approx(0.75)
    binary = next(t for t in view.tables if t.title.startswith("N vs abnormal"))
    assert binary.rows[0] == ["beats", "12", "0.750", "—", "0.500", "0.400", "0.100", "—"]


async def test_a_failing_command_shows_its_error(tmp_path: Path, data_root: Path) -> None:
    (data_root / "mitdb" / "999.atr").write_text("x")
    jobs = _jobs(tmp_path, data_root)
    run = jobs.submit("rpeaks", "mitdb", records="999")
    await _finish(jobs, run.id)
    failed = jobs.get(run.id)
    assert failed is not None and failed.status == "failed" and failed.returncode == 3
    assert failed.error is not None and "exited with code 3" in failed.error and "Traceback: boom" in failed.error


async def test_runs_are_bounded_cancellable_and_survive_a_restart(tmp_path: Path, data_root: Path) -> None:
    jobs = _jobs(tmp_path, data_root, sleep=2.0, max_jobs=1, max_queued=2)
    first = jobs.submit("beats", "mitdb")
    second = jobs.submit("beats", "mitdb")
    with pytest.raises(RunRequestError, match="Too many runs"):
        jobs.submit("beats", "mitdb")
    for _ in range(100):
        if jobs.get(first.id).status == "running":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    assert jobs.get(second.id).status == "queued"  # type: ignore[union-attr]
    assert await jobs.cancel(first.id)
    await _finish(jobs, first.id)
    assert jobs.get(first.id).status == "cancelled"  # type: ignore[union-attr]
    for _ in range(100):
        if jobs.get(second.id).status == "running":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    assert jobs.get(second.id).status == "running"  # type: ignore[union-attr]
    # a new console over the same folder: the run left running is interrupted, the cancelled one kept
    again = EvalJobs(tmp_path / "runs", data_root)
    assert again.recover() == 1
    assert {r.id: r.status for r in again.list()} == {first.id: "cancelled", second.id: "interrupted"}
    await jobs.close()
    assert not any(r.active for r in jobs.list())


def test_report_views_of_each_protocol() -> None:
    rp = {"gross": {"tp": 10, "fn": 1, "fp": 2, "se": 90.9, "ppv": 83.3, "f1": 87.0},
          "average": {"se": 90.0, "ppv": 80.0, "f1": 85.0}, "records": {"100": {"tp": 10, "fn": 1, "fp": 2,
          "se": 90.9, "ppv": 83.3, "f1": 87.0}}, "protocol": {"scored_from_s": 300.0}}  # fmt: skip
    v = report_view("rpeaks", rp)
    assert v.confusion is not None and v.confusion.counts == [[10, 1], [2, None]]
    assert v.tables[0].rows[0][0] == "gross (from 5 min)" and v.headline and v.headline["text"] == "87.00 %"
    af = {"binary": {"n": 10, "accuracy": 0.9, "precision": 0.5, "recall": 1.0, "f1": 0.667, "kappa": 0.6,
                     "roc_auc": 0.95, "confusion": [[8, 1], [0, 1]]}, "records": {}}
    v = report_view("af", af)
    assert v.confusion is not None and v.confusion.counts == [[8, 1], [0, 1]] and v.confusion.rows == ["non-AF", "AF"]
    cinc = {"af_binary": {"n": 3}, "f1": {"N": 0.5, "A": math.nan}, "challenge_f1": 0.4,
            "confusion": {"rows_reference": ["N", "A"], "cols_predicted": ["N", "A"], "matrix": [[1, 0], [1, 1]]}}
    v = report_view("cinc2017", cinc)
    assert v.confusion is not None and v.confusion.counts == [[1, 0], [1, 1]]
    assert v.tables[1].rows[0] == ["F1", "0.500", "—", "0.400"]
    with pytest.raises(KeyError):
        report_view("beats", {})
