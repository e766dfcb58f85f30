"""Work items under truly concurrent requests: a real uvicorn server (two worker
processes when possible) on the session database, driven by many threads at once.

- the same Idempotency-Key and body sent 100 times at once creates exactly one item;
- 20 simultaneous actions with the same ETag: exactly one wins, the others get 412
  (or 409 once the state moved on), never a 5xx, and the timeline shows one action;
- 50 simultaneous distinct intakes all succeed, and the audit chain still verifies.

Runs on SQLite (writes serialised by ``BEGIN IMMEDIATE``) and on PostgreSQL (row
versions and unique constraints decide the races).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from shiyu.demo.city import DEMO_PASSWORD
from shiyu.domains.items.models import IdempotencyKey, TimelineEntry, WorkItem
from shiyu.kit.db import Database

DISPATCHER = "dispatcher_320102001000"
VILLAGE = "320102001001"
STARTUP_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(db: Database, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    env.update(SHIYU_DATABASE_URL=db.url, SHIYU_ARGON2_TIME_COST="1", SHIYU_ARGON2_MEMORY_KIB="8192",
               SHIYU_SCHEDULER="false", PYTHONIOENCODING="utf-8", NO_COLOR="1")
    cmd = [sys.executable, "-m", "uvicorn", "shiyu.asgi:app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # uvicorn's supervisor stops its own workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _healthy(proc: subprocess.Popen[bytes], base: str) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


class Server:
    def __init__(self, base: str, workers: int, log: Path) -> None:
        self.base = base
        self.workers = workers
        self.log = log
        self.tokens: dict[str, dict[str, str]] = {}

    def headers(self, username: str, **extra: str) -> dict[str, str]:
        if username not in self.tokens:
            r = httpx.post(f"{self.base}/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD},
                           timeout=30)
            assert r.status_code == 200, r.text
            self.tokens[username] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return {**self.tokens[username], **extra}

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture(scope="module")
def server(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn on the session database: two workers, or one if the platform refuses two."""
    tmp = tmp_path_factory.mktemp("uvicorn")
    for workers in (2, 1):
        log = tmp / f"server-{workers}.log"
        proc, base = _start(db, workers, log)
        if _healthy(proc, base):
            break
        _stop(proc)
    else:
        pytest.fail("the server did not start:\n" + log.read_text(encoding="utf-8", errors="replace")[-4000:])
    try:
        yield Server(base, workers, log)
    finally:
        _stop(proc)


def hammer(n: int, call: Callable[[httpx.Client, int], httpx.Response]) -> list[httpx.Response]:
    """Run ``call`` n times in n threads released together by a barrier."""
    barrier = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(timeout=120, limits=limits) as http:

        def one(i: int) -> httpx.Response:
            barrier.wait(timeout=60)
            return call(http, i)

        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(one, range(n)))


def codes(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def no_server_errors(responses: list[httpx.Response], server: Server) -> None:
    errors = [r for r in responses if r.status_code >= 500]
    assert not errors, f"{len(errors)} server errors, e.g. {errors[0].text}\n{server.log_tail()}"


def backend(db: Database) -> str:
    return "sqlite" if db.sqlite else "postgresql"


def test_same_idempotency_key_100_times_creates_one_item(server: Server, db: Database) -> None:
    idem = f"concurrent-{uuid.uuid4().hex}"
    title = f"并发幂等 {uuid.uuid4().hex[:10]}"
    body = {"kind": "hotline", "title": title, "unit": VILLAGE, "source": "hotline", "category": "HL-TYPE-01",
            "reporter": {"name": "钱多多", "phone": "13912345678"}}
    headers = server.headers(DISPATCHER, **{"Idempotency-Key": idem})

    responses = hammer(100, lambda http, i: http.post(f"{server.base}/api/v1/items", json=body, headers=headers))

    print(f"\n[{backend(db)}, {server.workers} workers] same key x100: {dict(codes(responses))}")
    no_server_errors(responses, server)
    assert set(codes(responses)) <= {200, 201}, codes(responses)
    assert codes(responses)[201] == 1, codes(responses)
    ids = {r.json()["id"] for r in responses}
    numbers = {r.json()["number"] for r in responses}
    assert len(ids) == 1 and len(numbers) == 1
    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(WorkItem.id, WorkItem.number).where(WorkItem.title == title)).all()
        keys = s.execute(select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == idem)
                         ).scalar_one()
        reports = s.execute(select(func.count()).select_from(TimelineEntry).where(
            TimelineEntry.item_id == ids.pop(), TimelineEntry.action == "report")).scalar_one()
    assert len(rows) == 1 and rows[0].number in numbers
    assert keys == 1 and reports == 1


def test_same_etag_20_times_exactly_one_action_wins(server: Server, db: Database) -> None:
    title = f"并发受理 {uuid.uuid4().hex[:10]}"
    r = httpx.post(f"{server.base}/api/v1/items", json={"kind": "hotline", "title": title, "unit": VILLAGE},
                   headers=server.headers(DISPATCHER, **{"Idempotency-Key": uuid.uuid4().hex}), timeout=30)
    assert r.status_code == 201, r.text
    iid, etag = r.json()["id"], r.headers["ETag"]
    headers = server.headers(DISPATCHER, **{"If-Match": etag})
    url = f"{server.base}/api/v1/items/{iid}/actions/accept"

    responses = hammer(20, lambda http, i: http.post(url, json={"note": f"坐席 {i}"}, headers=headers))

    losers = Counter(r.status_code for r in responses if r.status_code != 200)
    print(f"\n[{backend(db)}, {server.workers} workers] same ETag x20: 1 winner, losers {dict(losers)}")
    no_server_errors(responses, server)
    assert codes(responses)[200] == 1, codes(responses)
    assert set(losers) <= {409, 412}, losers
    for loser in (r for r in responses if r.status_code != 200):
        assert loser.headers["content-type"].startswith("application/problem+json")
        assert loser.json()["code"] in ("stale_etag", "transition_not_allowed"), loser.text
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.json()["status"] == "accepted"
    assert winner.headers["ETag"] == f'"{iid}-{winner.json()["version"]}"' != etag

    r = httpx.get(f"{server.base}/api/v1/items/{iid}/timeline", headers=server.headers(DISPATCHER), timeout=30)
    assert [t["action"] for t in r.json()] == ["report", "accept"]
    assert r.json()[1]["note"].startswith("坐席 ")
    r = httpx.get(f"{server.base}/api/v1/items/{iid}", headers=server.headers(DISPATCHER), timeout=30)
    assert r.json()["status"] == "accepted" and r.headers["ETag"] == winner.headers["ETag"]


def test_50_distinct_intakes_and_the_audit_chain_holds(server: Server, db: Database) -> None:
    from shiyu.platform.audit import service as audit

    tag = uuid.uuid4().hex[:10]
    headers = server.headers(DISPATCHER)

    def create(http: httpx.Client, i: int) -> httpx.Response:
        body = {"kind": "hotline", "title": f"并发上报 {tag} #{i}", "unit": VILLAGE, "source": "hotline"}
        return http.post(f"{server.base}/api/v1/items", json=body,
                         headers={**headers, "Idempotency-Key": f"{tag}-{i}"})

    responses = hammer(50, create)

    print(f"\n[{backend(db)}, {server.workers} workers] distinct keys x50: {dict(codes(responses))}")
    no_server_errors(responses, server)
    assert codes(responses) == Counter({201: 50}), [r.text for r in responses if r.status_code != 201][:3]
    assert len({r.json()["id"] for r in responses}) == 50
    assert len({r.json()["number"] for r in responses}) == 50
    with db.unit_of_work(write=False) as s:
        assert s.execute(select(func.count()).select_from(WorkItem).where(
            WorkItem.title.startswith(f"并发上报 {tag} #"))).scalar_one() == 50
        result = audit.verify(s)
    assert result.ok, result
