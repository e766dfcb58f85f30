"""Benchmark: server time of every workbench page at the medium demo size.

Usage::

    python benchmarks/page_times.py [--size medium] [--db sqlite|postgresql] [--repeat 15] [--json PATH]

Builds a fresh database (a SQLite file in a temporary folder, or a new PostgreSQL database on
127.0.0.1:5432), loads the demo city of ``--size`` with its item history (medium: ~3,000 grids and
~200,000 items over three years), starts ``uvicorn shiyu.asgi:app``, logs in as a city leader, a
district dispatcher, a town dispatcher and a grid worker, and requests every page ``--repeat``
times. The figure is the server time the app reports in its ``Server-Timing`` header (routing,
queries and rendering, not the network), p50 and p95 per page and role, with the empty endpoint
``GET /healthz`` measured in the same run as the baseline. The target is p95 < 200 ms per page.

With ``--json PATH`` the figures are merged into that JSON file under ``"page_times"``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SHIYU_ARGON2_TIME_COST", "1")
os.environ.setdefault("SHIYU_ARGON2_MEMORY_KIB", "8192")

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

try:
    from shiyu.kit.db import Database
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from shiyu.kit.db import Database

from shiyu.config import get_settings  # noqa: E402
from shiyu.dbadmin import create_database, drop_database, upgrade  # noqa: E402
from shiyu.demo.city import DEMO_PASSWORD  # noqa: E402
from shiyu.demo.load import load_demo  # noqa: E402
from shiyu.domains.items.models import WorkItem  # noqa: E402
from shiyu.kit.figures import merge_json  # noqa: E402

get_settings.cache_clear()
TARGET_MS = 200.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_ms(resp: httpx.Response) -> float:
    for part in resp.headers.get("server-timing", "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == "app" and dur:
            return float(dur)
    raise RuntimeError(f"no Server-Timing header on {resp.request.url}")


def _pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _database(kind: str, tmp: Path, pg: str) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'pages.db'}", None
    name = "shiyu_bench_pages"
    return create_database(pg, name), lambda: drop_database(pg, name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="medium", choices=("small", "medium"))
    ap.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"))
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="shiyu-pages-"))
    url, drop = _database(args.db, tmp, args.pg)
    t0 = time.perf_counter()
    db = Database(url)
    upgrade(db)
    with db.unit_of_work() as session:
        load_demo(session, args.size, 1)
    with db.unit_of_work(write=False) as session:
        n_items = session.execute(select(func.count()).select_from(WorkItem)).scalar_one()
        some_item = session.execute(select(WorkItem.id).where(WorkItem.scope_path.like("/320100000000/320102000000/"
                                                                                   "320102001000/%"))
                                    .order_by(WorkItem.id.desc()).limit(1)).scalar_one()
    db.dispose()
    load_s = time.perf_counter() - t0
    print(f"{args.size} demo city with {n_items:,} items loaded into {args.db} in {load_s:.0f} s")

    port = _free_port()
    env = {**os.environ, "SHIYU_DATABASE_URL": url, "SHIYU_SCHEDULER": "false"}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "shiyu.asgi:app", "--host", "127.0.0.1", "--port",
                               str(port), "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    worst = 0.0
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        users = {"city leader": "leader_city", "district dispatcher": "dispatcher_320102000000",
                 "town dispatcher": "dispatcher_320102001000", "grid worker": "grid_320102001001"}
        pages = ["/inbox", "/inbox?overdue=1", f"/items/{some_item}", "/map", "/map/grids.geojson",
                 "/map/items.geojson", "/dashboard", "/report"]
        with httpx.Client(base_url=base, timeout=30) as c:
            health = []
            for _ in range(args.repeat):
                health.append(_server_ms(c.get("/healthz")))
            results["healthz"] = {"p50_ms": round(_pctl(health, 0.5), 2), "p95_ms": round(_pctl(health, 0.95), 2)}
            for role, username in users.items():
                c.cookies.clear()
                r = c.post("/login", data={"username": username, "password": DEMO_PASSWORD, "next": "/inbox"})
                if r.status_code != 303:
                    raise RuntimeError(f"login failed for {username}: {r.status_code}")
                for path in pages:
                    times = []
                    for i in range(args.repeat + 1):
                        resp = c.get(path)
                        if resp.status_code not in (200, 404):
                            raise RuntimeError(f"{role} {path}: {resp.status_code}")
                        if i:  # the first request warms caches
                            times.append(_server_ms(resp))
                    p50, p95 = _pctl(times, 0.5), _pctl(times, 0.95)
                    worst = max(worst, p95)
                    results.setdefault(role, {})[path] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                                                          "status": resp.status_code}
                    print(f"{role:20s} {path:28s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                          f"({p95 / max(results['healthz']['p95_ms'], 0.01):.0f}x healthz)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if drop:
            drop()
    ok = worst < TARGET_MS
    print(f"{'PASS' if ok else 'FAIL'}: worst page p95 {worst:.1f} ms (target < {TARGET_MS:.0f} ms), "
          f"healthz p95 {results['healthz']['p95_ms']} ms")
    figure = {"date": dt.date.today().isoformat(), "cores": os.cpu_count(), "machine": platform.machine(),
              "db": args.db, "size": args.size, "items": n_items, "repeat": args.repeat, "load_seconds": round(load_s),
              "worst_p95_ms": round(worst, 1), "target_ms": TARGET_MS, "pass": ok, "pages": results}
    if args.json:
        merge_json(args.json, "page_times", figure)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
