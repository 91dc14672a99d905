"""Run every Grafana panel query of ``deploy/grafana/dashboards`` against a live Prometheus.

Proves the dashboards show data, not only that their metric names exist: each target's
``expr`` (``$__rate_interval`` → ``1m``, ``$stream`` → ``.*``) is evaluated with the
Prometheus HTTP API at the current time, and the number of series it returns is printed
and written as JSON. Exit status 1 if a query fails or returns no series (unless the panel
is listed with ``--allow-empty``, for counters of events that did not happen in the run,
such as dead letters).

    python deploy/prometheus/check_dashboards.py --prometheus http://127.0.0.1:9090 \
        --out reports/dashboards.json --allow-empty "Dead letters (per 5 min)"
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def panel_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of a dashboard, rows included."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets", []) or []:
                if t.get("expr"):
                    out.append((str(p.get("title")), str(t["expr"])))
            walk(p.get("panels", []) or [])

    walk(json.loads(path.read_text()).get("panels", []))
    return out


def query(prometheus: str, expr: str) -> tuple[str, int]:
    """(status, number of series) of an instant query."""
    q = expr.replace("$__rate_interval", "1m").replace("$stream", ".*")
    url = f"{prometheus.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=10) as r:  # an operator-given Prometheus URL
        body = json.loads(r.read())
    return body["status"], len(body["data"]["result"]) if body["status"] == "success" else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--allow-empty", action="append", default=[], metavar="TITLE",
                   help="panel title allowed to return no series (repeatable)")
    args = p.parse_args(argv)
    results = []
    bad = 0
    for path in sorted(DASHBOARDS.glob("*.json")):
        for title, expr in panel_queries(path):
            status, n = query(args.prometheus, expr)
            ok = status == "success" and (n > 0 or title in args.allow_empty)
            bad += not ok
            results.append({"dashboard": path.name, "panel": title, "expr": expr, "status": status, "series": n,
                            "ok": ok})
            print(f"{'ok ' if ok else 'NO '} {n:>4} series  {path.stem:<16} {title}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{len(results) - bad}/{len(results)} panel queries return data")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
