"""Crash test: kill -9 the API server at random moments during concurrent item intake.

Usage::

    python tools/crash.py [--db sqlite|postgres|both] [--rounds 20] [--requests 1000] [--concurrency 32]
                          [--seed N] [--pg URL] [--json PATH] [--keep]

For each database the script makes a scratch database (a SQLite file in a temporary directory, or a fresh
PostgreSQL database next to ``--pg``), runs ``shiyu db upgrade`` and loads the small demo city without its
history, starts ``shiyu serve`` on a free port (``SHIYU_SCHEDULER=false``) and logs in as the grid worker of
village 320102001001. Then, per round:

1. ``--requests`` POSTs of ``/api/v1/items`` (events located in the village's grids), each with its own
   ``Idempotency-Key`` and a unique marker in title and description, ``--concurrency`` at a time (httpx);
2. once a random share (5-90 %) of them has been acknowledged, and a random 0-50 ms later, the server's
   process group gets SIGKILL; it is restarted at once;
3. every request that failed (connection refused or reset, timeout, 5xx) is retried with the same key and
   body until it is acknowledged: a 201, or a 200 replaying the original item. The first acknowledgement
   is recorded (item id and number);
4. then, straight from the database: every acknowledged item is present (by id, with its marker), each
   marker has exactly one item (no duplicates), one idempotency key and one ``item.create`` audit entry
   per request, and ``shiyu audit verify`` exits 0.

A table per round and the totals are printed; at the end every acknowledged item of every round is
checked again. ``--json PATH`` merges the figures into that file under ``"crash"`` (one key per
database). Exit status 1 on any lost or duplicated item, audit failure or request that was refused.

The durability this relies on is set in ``src/shiyu/kit/db.py``: SQLite in WAL mode with
``synchronous=FULL`` (write transactions ``BEGIN IMMEDIATE``), PostgreSQL sessions with
``synchronous_commit=on``; one transaction per request, committed at its edge.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import httpx  # noqa: E402
import shapely  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

VILLAGE = "320102001001"
USERNAME = f"grid_{VILLAGE}"
CATEGORIES = ("EV-05-01", "EV-05-02", "EV-05-03", "EV-05-04", "EV-05-05", "EV-05-06")
MARGIN_DEG = 0.001  # points at least ~100 m inside a grid


@dataclass
class Request:
    index: int
    key: str
    marker: str
    body: dict[str, Any]
    attempts: int = 0
    errors: int = 0
    server_errors: int = 0
    ack_status: int | None = None
    item_id: int | None = None
    number: str | None = None
    refused: str | None = None  # a 4xx that retrying will not change


@dataclass
class Round:
    number: int
    requests: list[Request]
    kill_after_acks: int
    acked_at_kill: int = 0
    in_flight_at_kill: int = 0
    kill_at_s: float = 0.0
    restart_s: float = 0.0
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


def pick_points(n: int, rng: random.Random) -> list[tuple[float, float]]:
    """``n`` points well inside the unified grids of the village (the demo city is deterministic)."""
    from shiyu.demo.city import generate_city

    city = generate_city("small", 1)
    inner = [g.polygon.buffer(-MARGIN_DEG) for g in city.grids_of(VILLAGE)]
    inner = [p for p in inner if not p.is_empty]
    areas = [p.area for p in inner]
    out: list[tuple[float, float]] = []
    while len(out) < n:
        poly = rng.choices(inner, weights=areas)[0]
        minx, miny, maxx, maxy = poly.bounds
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if shapely.contains_xy(poly, x, y):
            out.append((round(x, 7), round(y, 7)))
    return out


def make_requests(run: str, rnd: int, n: int, points: list[tuple[float, float]],
                  rng: random.Random) -> list[Request]:
    out = []
    for i in range(n):
        marker = f"CRASH-{run}-R{rnd:02d}-{i:05d}"
        x, y = points[rng.randrange(len(points))]
        body = {"kind": "event", "title": f"崩溃测试 {marker}", "description": f"{marker} 占道经营，崩溃测试。",
                "category": CATEGORIES[i % len(CATEGORIES)], "lon": x, "lat": y, "source": "grid",
                "priority": "normal", "address": "某街道某路口附近"}
        out.append(Request(i, f"{run}-{rnd}-{i}-{uuid.uuid4().hex[:8]}", marker, body))
    return out


async def run_round(server: harness.Server, token: str, rnd: Round, concurrency: int,
                    rng: random.Random) -> None:
    acked = 0
    in_flight = 0
    kill_now = asyncio.Event()
    t0 = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=120) as client:

        async def one(req: Request) -> None:
            nonlocal acked, in_flight
            async with sem:
                while req.ack_status is None and req.refused is None:
                    req.attempts += 1
                    in_flight += 1
                    try:
                        r = await client.post("/api/v1/items", json=req.body,
                                              headers={**headers, "Idempotency-Key": req.key})
                    except httpx.HTTPError:
                        r = None
                    finally:
                        in_flight -= 1
                    if r is not None and r.status_code in (200, 201):
                        data = r.json()
                        req.ack_status, req.item_id, req.number = r.status_code, int(data["id"]), data["number"]
                        acked += 1
                        if acked >= rnd.kill_after_acks:
                            kill_now.set()
                    elif r is not None and 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                        req.refused = f"{r.status_code} {r.text[:300]}"
                    else:
                        req.errors += 1
                        req.server_errors += r is not None and r.status_code >= 500
                        await asyncio.sleep(rng.uniform(0.05, 0.3))

        async def killer() -> None:
            await kill_now.wait()
            await asyncio.sleep(rng.uniform(0, 0.05))
            rnd.acked_at_kill, rnd.in_flight_at_kill = acked, in_flight
            rnd.kill_at_s = time.perf_counter() - t0
            server.kill9()
            t1 = time.perf_counter()
            server.start()
            await asyncio.to_thread(server.wait_ready)
            rnd.restart_s = time.perf_counter() - t1

        await asyncio.gather(killer(), *(one(r) for r in rnd.requests))
    rnd.seconds = time.perf_counter() - t0


def verify_round(engine: Any, run: str, rnd: Round, env: dict[str, str]) -> dict[str, Any]:
    prefix = f"CRASH-{run}-R{rnd.number:02d}-"
    with engine.connect() as c:
        rows = c.execute(text("SELECT id, number, description FROM work_items WHERE description LIKE :p"),
                         {"p": prefix + "%"}).all()
        keys = c.execute(text("SELECT count(*) FROM idempotency_keys WHERE principal = :u AND key LIKE :k"),
                         {"u": USERNAME, "k": f"{run}-{rnd.number}-%"}).scalar_one()
        ids = [r[0] for r in rows]
        audit_rows = 0
        for i in range(0, len(ids), 500):
            chunk = [str(x) for x in ids[i:i + 500]]
            audit_rows += c.execute(
                text("SELECT count(*) FROM audit_entries WHERE action = 'item.create' AND object_type = 'work_item' "
                     f"AND object_id IN ({','.join(':o' + str(j) for j in range(len(chunk)))})"),
                {f"o{j}": v for j, v in enumerate(chunk)}).scalar_one()
    by_marker: dict[str, list[tuple[int, str]]] = {}
    for item_id, number, description in rows:
        by_marker.setdefault(description.split(" ", 1)[0], []).append((item_id, number))
    acks = [r for r in rnd.requests if r.ack_status is not None]
    lost = [r for r in acks if (r.item_id, r.number) not in by_marker.get(r.marker, [])]
    duplicates = sum(len(v) - 1 for v in by_marker.values() if len(v) > 1)
    unacked_rows = sum(1 for m in by_marker if m not in {r.marker for r in acks})
    code, line = harness.audit_verify(env)
    return {
        "requests": len(rnd.requests), "acknowledged": len(acks),
        "acked_by_replay": sum(1 for r in acks if r.ack_status == 200),
        "retried": sum(1 for r in rnd.requests if r.attempts > 1),
        "failed_attempts": sum(r.errors for r in rnd.requests),
        "server_errors": sum(r.server_errors for r in rnd.requests),
        "refused": [r.refused for r in rnd.requests if r.refused][:5],
        "refused_count": sum(1 for r in rnd.requests if r.refused),
        "rows": len(rows), "lost": len(lost), "lost_markers": [r.marker for r in lost][:10],
        "duplicates": duplicates, "rows_without_ack": unacked_rows, "idempotency_keys": int(keys),
        "audit_create_entries": int(audit_rows), "audit_verify_exit": code, "audit_verify": line,
    }


def round_ok(f: dict[str, Any]) -> bool:
    n = f["requests"]
    return (f["acknowledged"] == n and f["lost"] == 0 and f["duplicates"] == 0 and f["rows"] == n
            and f["idempotency_keys"] == n and f["audit_create_entries"] == n and f["audit_verify_exit"] == 0
            and f["refused_count"] == 0 and f["server_errors"] == 0)


def run_database(kind: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    scratch = harness.Scratch(kind, pg=args.pg, keep=args.keep)
    server: harness.Server | None = None
    engine = None
    started = dt.datetime.now(dt.UTC)
    t_all = time.perf_counter()
    try:
        loaded = scratch.prepare(history=False)
        print(f"\n== {scratch.label()}: scratch database loaded {loaded}", flush=True)
        engine = create_engine(scratch.url)
        env = scratch.env()
        server = harness.Server(env, scratch.tmp / "server.log")
        server.start()
        first_start = server.wait_ready()
        token = harness.login(server.base, USERNAME)
        points = pick_points(997, rng)
        run = uuid.uuid4().hex[:6].upper()
        print(f"server up in {first_start:.1f} s; {args.rounds} rounds x {args.requests} POSTs, "
              f"concurrency {args.concurrency}, run {run}", flush=True)
        print(f"{'round':>5} {'kill@s':>7} {'acked@kill':>10} {'inflight':>8} {'restart s':>9} {'retried':>7} "
              f"{'replayed':>8} {'acked':>6} {'lost':>5} {'dup':>4} {'rows':>6} {'audit':>6} {'verify':>6} "
              f"{'round s':>7}", flush=True)
        rounds: list[Round] = []
        for number in range(1, args.rounds + 1):
            reqs = make_requests(run, number, args.requests, points, rng)
            lo, hi = max(1, int(args.requests * 0.05)), max(1, int(args.requests * 0.90))
            rnd = Round(number, reqs, kill_after_acks=rng.randint(lo, hi))
            asyncio.run(run_round(server, token, rnd, args.concurrency, rng))
            rnd.figures = verify_round(engine, run, rnd, env)
            rounds.append(rnd)
            f = rnd.figures
            print(f"{number:>5} {rnd.kill_at_s:>7.2f} {rnd.acked_at_kill:>10} {rnd.in_flight_at_kill:>8} "
                  f"{rnd.restart_s:>9.1f} {f['retried']:>7} {f['acked_by_replay']:>8} {f['acknowledged']:>6} "
                  f"{f['lost']:>5} {f['duplicates']:>4} {f['rows']:>6} {f['audit_create_entries']:>6} "
                  f"{'ok' if f['audit_verify_exit'] == 0 else 'FAIL':>6} {rnd.seconds:>7.1f}"
                  + ("" if round_ok(f) else f"   <- {f}"), flush=True)
        # Every acknowledgement of every round, once more, after the last restart.
        with engine.connect() as c:
            present = {(r[0], r[1]) for r in c.execute(text("SELECT id, number FROM work_items "
                                                            "WHERE description LIKE :p"), {"p": f"CRASH-{run}-%"})}
        all_acks = [(r.item_id, r.number) for rnd in rounds for r in rnd.requests if r.ack_status]
        final_missing = sum(1 for a in all_acks if a not in present)
        code, line = harness.audit_verify(env)
        server.stop()
        tracebacks = server.tracebacks()
        totals = {
            "rounds": len(rounds), "requests": sum(r.figures["requests"] for r in rounds),
            "acknowledged": sum(r.figures["acknowledged"] for r in rounds),
            "acked_by_replay": sum(r.figures["acked_by_replay"] for r in rounds),
            "retried": sum(r.figures["retried"] for r in rounds),
            "lost": sum(r.figures["lost"] for r in rounds), "duplicates": sum(r.figures["duplicates"] for r in rounds),
            "refused": sum(r.figures["refused_count"] for r in rounds),
            "server_errors": sum(r.figures["server_errors"] for r in rounds),
            "audit_verify_failures": sum(1 for r in rounds if r.figures["audit_verify_exit"] != 0),
            "rounds_failed": sum(1 for r in rounds if not round_ok(r.figures)),
            "final_check_missing": final_missing, "final_audit_verify": line, "final_audit_verify_exit": code,
            "kills": len(rounds), "server_starts": server.starts,
            "median_restart_s": round(sorted(r.restart_s for r in rounds)[len(rounds) // 2], 1) if rounds else None,
        }
        passed = totals["rounds_failed"] == 0 and final_missing == 0 and code == 0
        print(f"totals {scratch.label()}: {totals['acknowledged']}/{totals['requests']} acknowledged "
              f"({totals['acked_by_replay']} by an idempotent replay), lost {totals['lost']}, duplicates "
              f"{totals['duplicates']}, refused {totals['refused']}, audit verify failures "
              f"{totals['audit_verify_failures']}; after the last restart {final_missing} missing, {line}; "
              f"{'PASS' if passed else 'FAIL'}", flush=True)
        if tracebacks:
            print(f"(server log: {len(tracebacks)} tracebacks; the first:)\n{tracebacks[0][-2500:]}")
        return {
            "date": started.isoformat(timespec="seconds"), "machine": harness.machine(), "database": scratch.label(),
            "rounds": args.rounds, "requests_per_round": args.requests, "concurrency": args.concurrency,
            "data": loaded, "server": "shiyu serve (uvicorn, 1 process), SHIYU_SCHEDULER=false",
            "totals": totals, "passed": passed, "server_tracebacks": len(tracebacks),
            "per_round": [{"round": r.number, "kill_at_s": round(r.kill_at_s, 2), "acked_at_kill": r.acked_at_kill,
                           "in_flight_at_kill": r.in_flight_at_kill, "restart_s": round(r.restart_s, 1),
                           "seconds": round(r.seconds, 1),
                           **{k: v for k, v in r.figures.items() if k not in ("lost_markers", "refused")}}
                          for r in rounds],
            "total_seconds": round(time.perf_counter() - t_all, 1),
        }
    finally:
        if server is not None:
            server.stop()
        if engine is not None:
            engine.dispose()
        scratch.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000, help="POSTs per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=None, help="random seed (kill moments, points)")
    parser.add_argument("--pg", default=harness.PG_DEFAULT, help="PostgreSQL maintenance database URL")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases and server logs")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"seed {seed}")
    rng = random.Random(seed)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {}
    for kind in kinds:
        if kind == "postgres" and not harness.pg_reachable(args.pg):
            print(f"PostgreSQL at {args.pg} is not reachable", file=sys.stderr)
            return 2
        results[kind] = run_database(kind, args, rng) | {"seed": seed}
    if args.json is not None:
        harness.merge_json(args.json, "crash", results, merge_keys=True)
    ok = all(r["passed"] for r in results.values())
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
