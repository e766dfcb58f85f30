"""Benchmark: one ``shiyu sla tick`` over 1,000,000 open work items.

Usage::

    python benchmarks/sla_tick.py [--items 1000000] [--db postgres|sqlite] [--now ISO] [--profile PATH]
                                  [--json PATH]

Set-up, all inside the script: a fresh database (PostgreSQL at ``--pg``, default
``postgres@127.0.0.1:5432`` with trust auth; or a SQLite file with ``--db sqlite``), migrated and seeded
with ``shiyu.dbadmin.upgrade``, the small demo city loaded with ``load_city``, then ``--items`` open work
items bulk-loaded (PostgreSQL ``COPY`` through psycopg, SQLite Core ``insert`` executemany) spread over
the demo's unified grids: events, hotline requests and disputes in every open state, owned by the town
of their village (3% already escalated to the district). At the tick time ``--now``, ~2% are overdue,
~5% due within the due-soon window (4 h), ~5% are in ``verified`` (no step deadline) and the rest are
due later; every item starts with ``sla_state = 'ok'``, so the tick has all of them to mark.

Measured in the same run and on the same data:

* baseline: one set-based ``UPDATE work_items SET sla_state='overdue' WHERE due_at < now AND status IN
  (open states)`` (and, for information, the due-soon update too), rolled back;
* ``sla_tick(session, now)`` in one unit of work, as ``shiyu sla tick`` runs it (commit included):
  seconds, items marked due soon, overdue, escalated; notifications, timeline and audit rows written;
* a second tick at the same ``now``, which should find nothing new.

With ``--json PATH`` the figures are merged into that JSON file under ``"sla_tick"`` (``"sla_tick_sqlite"``
for ``--db sqlite``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Cheap password hashing while loading the demo users: they play no part in the tick.
os.environ.setdefault("SHIYU_ARGON2_TIME_COST", "1")
os.environ.setdefault("SHIYU_ARGON2_MEMORY_KIB", "8192")

import shapely  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

try:
    from shiyu.kit.db import Database
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from shiyu.kit.db import Database

from shiyu.config import get_settings  # noqa: E402
from shiyu.dbadmin import create_database, drop_database, upgrade  # noqa: E402
from shiyu.demo.city import generate_city  # noqa: E402
from shiyu.demo.load import load_city  # noqa: E402
from shiyu.domains.items import rules  # noqa: E402
from shiyu.domains.items.models import Category, Notification, TimelineEntry, WorkItem  # noqa: E402
from shiyu.domains.items.service import DUE_SOON  # noqa: E402
from shiyu.domains.items.tasks import sla_tick  # noqa: E402
from shiyu.kit.figures import merge_json  # noqa: E402
from shiyu.platform.audit.models import AuditEntry  # noqa: E402
from shiyu.platform.units.models import Unit  # noqa: E402

get_settings.cache_clear()

TARGET_ITEMS = 1_000_000
DEFAULT_NOW = "2026-12-01T10:00:00+08:00"  # a Tuesday, a working day
P_OVERDUE, P_SOON, P_VERIFIED = 0.02, 0.05, 0.05
P_ESCALATED = 0.03
#: Open states other than ``verified`` (which has no step deadline), with their share of items.
STATUS_WEIGHTS = {"reported": 15, "accepted": 10, "registered": 5, "dispatched": 20, "handling": 35, "feedback": 10}
KIND_WEIGHTS = {"event": 75, "hotline": 17, "dispute": 8}
PRIORITY_WEIGHTS = {"low": 10, "normal": 75, "high": 12, "urgent": 3}
TITLES = {"event": ["占道经营", "垃圾堆放", "路灯损坏", "井盖缺失", "违章搭建", "噪声扰民"],
          "hotline": ["咨询社保政策", "投诉物业服务", "反映供水问题", "求助困难家庭"],
          "dispute": ["邻里漏水纠纷", "相邻通行纠纷", "婚姻家庭纠纷", "劳务报酬纠纷"]}
BATCH = 10_000
COLUMNS = ("number", "kind", "status", "title", "description", "category_code", "priority", "source", "channel",
           "lon", "lat", "address", "grid_code", "unit_code", "scope_path", "owner_code", "owner_path",
           "created_at", "updated_at", "received_at", "accepted_at", "step", "due_at", "sla_state",
           "overdue_steps", "escalation_level", "extensions", "whistle", "supervised", "data", "version")


# --------------------------------------------------------------------------- database


def count(db: Database, model: Any, *where: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


# --------------------------------------------------------------------------- data


class Generator:
    """Open work items spread over the demo city's unified grids, with the deadline mix described above."""

    def __init__(self, db: Database, seed: int, now: dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        city = generate_city("small", seed)
        with db.unit_of_work(write=False) as session:
            units = {u.code: (u.path, u.parent_code) for u in session.execute(select(Unit)).scalars()}
            cats = session.execute(select(Category.code, Category.kind, Category.parent_code)).all()
        parents = {p for _, _, p in cats if p}
        self.categories = {k: sorted(c for c, kind, _ in cats if kind == k and c not in parents)
                           for k in KIND_WEIGHTS}
        # Per unified grid: a few points inside it, the village and its owning town and district.
        self.places: list[tuple[str, str, str, str, str, str, str, list[tuple[float, float]]]] = []
        for g in city.grids:
            village = g.village_code
            vpath, town = units[village]
            assert town is not None
            tpath, district = units[town]
            assert district is not None
            dpath, _ = units[district]
            pts: list[tuple[float, float]] = []
            minx, miny, maxx, maxy = g.polygon.bounds
            while len(pts) < 16:
                x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
                if shapely.contains_xy(g.polygon, x, y):
                    pts.append((round(x, 7), round(y, 7)))
            self.places.append((g.code, village, vpath, town, tpath, district, dpath, pts))
        self.expected = {"overdue": 0, "due_soon": 0, "no_deadline": 0, "later": 0}

    def rows(self, n: int) -> Iterator[list[dict[str, Any]]]:
        rng, now = self.rng, self.now
        statuses, sw = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
        kinds, kw = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
        prios, pw = list(PRIORITY_WEIGHTS), list(PRIORITY_WEIGHTS.values())
        stamp = now.strftime("%Y%m%d")
        batch: list[dict[str, Any]] = []
        for i in range(n):
            r = rng.random()
            if r < P_OVERDUE:
                bucket, due = "overdue", now - dt.timedelta(seconds=rng.uniform(60, 10 * 86400))
            elif r < P_OVERDUE + P_SOON:
                bucket, due = "due_soon", now + dt.timedelta(seconds=rng.uniform(0, DUE_SOON.total_seconds() - 1))
            elif r < P_OVERDUE + P_SOON + P_VERIFIED:
                bucket, due = "no_deadline", None
            else:
                bucket = "later"
                due = now + DUE_SOON + dt.timedelta(seconds=rng.uniform(60, 20 * 86400))
            self.expected[bucket] += 1
            status = "verified" if due is None else rng.choices(statuses, sw)[0]
            kind = rng.choices(kinds, kw)[0]
            grid, village, vpath, town, tpath, district, dpath, pts = rng.choice(self.places)
            lon, lat = rng.choice(pts)
            escalated = rng.random() < P_ESCALATED
            created = (due or now) - dt.timedelta(seconds=rng.uniform(3600, 15 * 86400))
            if created > now:
                created = now - dt.timedelta(seconds=rng.uniform(60, 3600))
            title = rng.choice(TITLES[kind])
            batch.append({
                "number": f"B{stamp}-{i:08d}", "kind": kind, "status": status, "title": title,
                "description": f"{title}（基准测试数据）", "category_code": rng.choice(self.categories[kind]),
                "priority": rng.choices(prios, pw)[0], "source": "grid" if kind == "event" else "hotline",
                "channel": None, "lon": lon, "lat": lat, "address": None, "grid_code": grid, "unit_code": village,
                "scope_path": vpath, "owner_code": district if escalated else town,
                "owner_path": dpath if escalated else tpath, "created_at": created, "updated_at": created,
                "received_at": created, "accepted_at": None if status == "reported" else created,
                "step": rules.sla_step(status), "due_at": due, "sla_state": "ok", "overdue_steps": 0,
                "escalation_level": 1 if escalated else 0, "extensions": 0, "whistle": False, "supervised": False,
                "data": {}, "version": 1,
            })
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _copy_value(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def load_items(db: Database, gen: Generator, n: int) -> str:
    """Bulk-load ``n`` items; returns the method used."""
    if db.sqlite:
        for batch in gen.rows(n):
            with db.engine.begin() as conn:
                conn.execute(insert(WorkItem), batch)
        return f"SQLAlchemy Core insert(WorkItem) executemany, {BATCH:,} rows a transaction"
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            # The rows reference existing units and categories by construction: skip the per-row FK triggers.
            cur.execute("SET session_replication_role = replica")
            with cur.copy(f"COPY work_items ({', '.join(COLUMNS)}) FROM STDIN") as cp:
                for batch in gen.rows(n):
                    cp.write("".join("\t".join(_copy_value(r[c]) for c in COLUMNS) + "\n" for r in batch))
            cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    finally:
        raw.close()
    return "PostgreSQL COPY through psycopg (session_replication_role = replica: no per-row FK triggers)"


def vacuum_analyze(db: Database) -> None:
    if db.sqlite:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) work_items")


# --------------------------------------------------------------------------- measurements


def baseline(db: Database, now: dt.datetime) -> dict[str, Any]:
    """The set-based updates, timed on the same data and rolled back."""
    open_states = sorted(rules.OPEN_STATES)
    w = WorkItem.__table__
    overdue = (w.update().where(w.c.due_at < now, w.c.status.in_(open_states)).values(sla_state="overdue"))
    soon = (w.update().where(w.c.status.in_(open_states), w.c.sla_state == "ok", w.c.due_at >= now,
                             w.c.due_at < now + DUE_SOON).values(sla_state="due_soon"))
    with db.engine.connect() as conn:
        if db.sqlite:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        trans = conn.begin()
        try:
            t0 = time.perf_counter()
            n_overdue = conn.execute(overdue).rowcount
            t1 = time.perf_counter()
            n_soon = conn.execute(soon).rowcount
            t2 = time.perf_counter()
        finally:
            trans.rollback()
    return {"overdue_update_seconds": round(t1 - t0, 3), "overdue_rows": n_overdue,
            "due_soon_update_seconds": round(t2 - t1, 3), "due_soon_rows": n_soon,
            "both_seconds": round(t2 - t0, 3)}


def tick(db: Database, now: dt.datetime, profile: Path | None = None) -> tuple[dict[str, Any], Any, str | None]:
    notes0, timeline0, audit0 = count(db, Notification), count(db, TimelineEntry), count(db, AuditEntry)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    with db.unit_of_work() as session:
        rep = sla_tick(session, now)
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    hot = None
    if prof:
        prof.disable()
        assert profile is not None
        prof.dump_stats(profile)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        hot = buf.getvalue()
    return {
        "seconds": round(t2 - t0, 3), "tick_seconds": round(t1 - t0, 3), "commit_seconds": round(t2 - t1, 3),
        "due_soon": len(rep.due_soon), "overdue": len(rep.overdue), "escalated": len(rep.escalated),
        "supervision_overdue": len(rep.supervision_overdue),
        "notifications_written": count(db, Notification) - notes0,
        "timeline_written": count(db, TimelineEntry) - timeline0, "audit_written": count(db, AuditEntry) - audit0,
        "profiled": prof is not None,
    }, rep, hot


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=TARGET_ITEMS)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="URL of the PostgreSQL maintenance database (a fresh database is created beside it)")
    parser.add_argument("--dbname", default="shiyu_bench_sla")
    parser.add_argument("--now", default=DEFAULT_NOW, help="ISO 8601 tick time with a zone")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, metavar="PATH",
                        help="cProfile the first tick, dump the stats to PATH and print the hot spots")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)

    now = dt.datetime.fromisoformat(args.now)
    if now.tzinfo is None:
        parser.error("--now needs a time zone")
    started = dt.datetime.now(dt.UTC)
    t_all = time.perf_counter()
    admin_url = make_url(args.pg)
    tmp = Path(tempfile.mkdtemp(prefix="shiyu-bench-sla-"))
    if args.db == "sqlite":
        url_s = f"sqlite:///{tmp / 'bench.db'}"
    else:
        create_database(admin_url, args.dbname)
        url_s = admin_url.set(database=args.dbname).render_as_string(hide_password=False)
    db: Database | None = None
    ok = False
    try:
        db = Database(url_s)
        t0 = time.perf_counter()
        upgrade(db)
        with db.unit_of_work() as session:
            load = load_city(session, generate_city("small", args.seed))
        setup_s = time.perf_counter() - t0
        demo_items = count(db, WorkItem)
        t0 = time.perf_counter()
        gen = Generator(db, args.seed, now)
        method = load_items(db, gen, args.items)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        vacuum_analyze(db)
        vacuum_s = time.perf_counter() - t0
        open_states = sorted(rules.OPEN_STATES)
        open_items = count(db, WorkItem, WorkItem.status.in_(open_states))
        # What the tick should find (demo items, if load_city adds any, included).
        expect_overdue = count(db, WorkItem, WorkItem.status.in_(open_states), WorkItem.sla_state != "overdue",
                               WorkItem.due_at < now)
        expect_soon = count(db, WorkItem, WorkItem.status.in_(open_states), WorkItem.sla_state == "ok",
                            WorkItem.due_at >= now, WorkItem.due_at < now + DUE_SOON)
        print(f"setup: {args.db}{'' if db.sqlite else ' ' + args.dbname}; migrate + seed + small demo city in "
              f"{setup_s:.1f} s ({load}, {demo_items} demo items); {args.items:,} items loaded in {load_s:.1f} s "
              f"({method}); vacuum/analyze {vacuum_s:.1f} s; {open_items:,} open items; generated mix {gen.expected}",
              flush=True)

        base = baseline(db, now)
        vacuum_analyze(db)  # clear the dead row versions the rolled-back updates left
        print(f"baseline set-based UPDATE ... SET sla_state='overdue': {base['overdue_update_seconds']:.3f} s "
              f"({base['overdue_rows']:,} rows); due-soon UPDATE {base['due_soon_update_seconds']:.3f} s "
              f"({base['due_soon_rows']:,} rows); rolled back", flush=True)
        first, rep1, hot = tick(db, now, args.profile)
        first["open_items"] = open_items
        f = first
        print(f"tick 1 over {open_items:,} open items: {f['seconds']:.2f} s (tick {f['tick_seconds']:.2f} s "
              f"+ commit {f['commit_seconds']:.2f} s): due soon {f['due_soon']:,}, overdue {f['overdue']:,}, "
              f"escalated {f['escalated']:,}; wrote {f['notifications_written']:,} notifications, "
              f"{f['timeline_written']:,} timeline entries, {f['audit_written']:,} audit entries"
              + (" [under cProfile]" if f["profiled"] else ""), flush=True)
        if hot:
            print(hot)
        second, rep2, _ = tick(db, now)
        print(f"tick 2 (same now): {second['seconds']:.3f} s: due soon {second['due_soon']} (all of them items "
              f"tick 1 escalated, whose new step deadline is within {DUE_SOON})" if second["due_soon"] else
              f"tick 2 (same now): {second['seconds']:.3f} s: due soon 0", end="")
        print(f", overdue {second['overdue']}, escalated {second['escalated']}", flush=True)
        states = {}
        with db.engine.connect() as conn:
            for state, n in conn.execute(select(WorkItem.sla_state, func.count()).group_by(WorkItem.sla_state)):
                states[state] = int(n)

        problems = []
        if first["due_soon"] != expect_soon:
            problems.append(f"tick 1 marked {first['due_soon']} due soon, {expect_soon} expected")
        if first["overdue"] != expect_overdue or base["overdue_rows"] != expect_overdue:
            problems.append(f"tick 1 found {first['overdue']} overdue, baseline {base['overdue_rows']}, "
                            f"{expect_overdue} expected")
        # The only new work a second tick at the same time may find: items tick 1 escalated whose new step
        # deadline (counted from now) falls inside the due-soon window.
        second["due_soon_escalated_by_tick_1"] = len(set(rep2.due_soon) & set(rep1.escalated))
        if second["overdue"] or second["escalated"] or not set(rep2.due_soon) <= set(rep1.escalated):
            problems.append("the second tick at the same time found work again")
        ratio = first["seconds"] / base["overdue_update_seconds"] if base["overdue_update_seconds"] else None
        per_item_ms = (first["seconds"] - base["both_seconds"]) / first["overdue"] * 1000 if first["overdue"] else None
        results = {
            "date": started.isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "load_average_at_start": list(os.getloadavg()),
                        "database": _db_version(db)},
            "backend": args.db,
            "now": now.isoformat(),
            "data": {"city": f"small demo city (seed {args.seed})", "grids": load.grids, "units": load.units,
                     "items_loaded": args.items, "open_items": open_items, "demo_items": demo_items,
                     "generated_mix": gen.expected, "expected_overdue": expect_overdue,
                     "expected_due_soon": expect_soon, "load_method": method, "load_seconds": round(load_s, 1),
                     "sla_states_after": states},
            "baseline": base,
            "tick": first,
            "second_tick": second,
            "ratios": {"tick_over_set_based_overdue_update": round(ratio, 1) if ratio else None,
                       "extra_ms_per_overdue_item": round(per_item_ms, 3) if per_item_ms else None},
            "problems": problems,
            "setup_seconds": round(setup_s, 1),
            "total_seconds": round(time.perf_counter() - t_all, 1),
        }
        print()
        print(f"sla_tick | {results['date']} | os.cpu_count() = {results['cpu_count']} | {args.db} | "
              f"{open_items:,} open items | now {now.isoformat()}")
        print(f"  tick 1: {first['seconds']:.2f} s; tick 2: {second['seconds']:.3f} s; set-based overdue UPDATE: "
              f"{base['overdue_update_seconds']:.3f} s -> tick is x{ratio:.1f} the set-based update"
              if ratio else "")
        if per_item_ms:
            print(f"  per overdue item beyond the set-based updates: {per_item_ms:.2f} ms "
                  f"(notify, escalate, timeline, audit)")
        if args.json is not None:
            merge_json(args.json, "sla_tick" if args.db == "postgres" else "sla_tick_sqlite", results)
        for p in problems:
            print(f"PROBLEM: {p}")
        ok = not problems
    finally:
        if db is not None:
            db.dispose()
        if args.db == "postgres" and not args.keep_db:
            drop_database(admin_url, args.dbname)
        if not args.keep_db:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {url_s}")
    return 0 if ok else 1


def _db_version(db: Database) -> str:
    with db.engine.connect() as conn:
        if db.sqlite:
            return "SQLite " + str(conn.exec_driver_sql("select sqlite_version()").scalar_one())
        return "PostgreSQL " + str(conn.exec_driver_sql("SHOW server_version").scalar_one())


if __name__ == "__main__":
    raise SystemExit(main())
