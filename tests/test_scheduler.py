"""The scheduler 定时任务: with several server processes, each run of a job happens once."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from shiyu.kit.db import Database
from shiyu.kit.timeutil import utcnow
from shiyu.platform.jobs.models import JobRun
from shiyu.platform.jobs.scheduler import STALE_AFTER, Scheduler


def _schedulers(db: Database, n: int, interval_s: float, fn: Any) -> list[Scheduler]:
    out = []
    for _ in range(n):
        s = Scheduler(db)
        s.add("test.job", interval_s, fn)
        out.append(s)
    return out


def _row(db: Database) -> JobRun:
    with db.unit_of_work(write=False) as session:
        row = session.execute(select(JobRun).where(JobRun.name == "test.job")).scalar_one()
        session.expunge(row)
        return row


def test_one_run_among_several_processes(empty_db: Database) -> None:
    runs: list[int] = []
    a, b, c = _schedulers(empty_db, 3, 60, lambda session: runs.append(1))
    assert len({a.holder, b.holder, c.holder}) == 3
    assert a.run_pending() == ["test.job"]  # the first run anywhere inserts the row
    assert b.run_pending() == [] and c.run_pending() == []
    assert runs == [1]
    row = _row(empty_db)
    assert (row.status, row.holder, row.error) == ("ok", a.holder, None)
    assert row.finished_at is not None and row.finished_at >= row.started_at

    # b's own clock says the job is due again, but the last run anywhere was just now.
    b.jobs[0].last_run = 0.0
    assert b.run_pending() == []
    assert runs == [1]


def test_the_next_interval_can_be_claimed_by_any_process(empty_db: Database) -> None:
    runs: list[str] = []
    a, b = _schedulers(empty_db, 2, 0.3, lambda session: runs.append("x"))
    assert a.run_pending() == ["test.job"]
    time.sleep(0.35)
    assert b.run_pending() == ["test.job"]  # a's claim has expired: b takes this one
    assert a.run_pending() == []  # a is due by its own clock too, but b has just run it
    assert runs == ["x", "x"]
    assert _row(empty_db).holder == b.holder


def test_a_run_in_progress_is_not_taken_until_stale(empty_db: Database) -> None:
    runs: list[int] = []
    a, b = _schedulers(empty_db, 2, 1, lambda session: runs.append(1))
    a.run_pending()
    with empty_db.unit_of_work() as session:  # a's next run started two intervals ago and has not ended
        session.execute(update(JobRun).values(status="running", started_at=utcnow() - timedelta(seconds=2)))
    assert b.run_pending() == []
    with empty_db.unit_of_work() as session:  # ...and now that run has gone stale (its process died)
        session.execute(update(JobRun).values(started_at=utcnow() - STALE_AFTER - timedelta(seconds=1)))
    b.jobs[0].last_run = 0.0
    assert b.run_pending() == ["test.job"]
    assert runs == [1, 1]
    assert (_row(empty_db).status, _row(empty_db).holder) == ("ok", b.holder)


def test_a_failed_run_is_recorded_scrubbed_and_the_loop_goes_on(empty_db: Database) -> None:
    def boom(session: Any) -> None:
        raise RuntimeError("cannot reach 13812345678")

    [a] = _schedulers(empty_db, 1, 60, boom)
    a.add("test.other", 60, lambda session: None)
    assert a.run_pending() == ["test.job", "test.other"]
    row = _row(empty_db)
    assert row.status == "failed"
    assert row.error == "RuntimeError: cannot reach 138****5678"
    with empty_db.unit_of_work(write=False) as session:
        assert session.execute(select(JobRun.status).where(JobRun.name == "test.other")).scalar_one() == "ok"


def test_a_job_writes_in_its_own_unit_and_a_failure_rolls_it_back(empty_db: Database) -> None:
    def half_then_fail(session: Any) -> None:
        session.add(JobRun(name="written.by.job", status="ok", started_at=utcnow(), holder="x"))
        session.flush()
        raise ValueError("after a write")

    [a] = _schedulers(empty_db, 1, 60, half_then_fail)
    a.run_pending()
    with empty_db.unit_of_work(write=False) as session:
        assert session.execute(select(JobRun.name).where(JobRun.name == "written.by.job")).first() is None
    assert _row(empty_db).status == "failed"


def test_admin_home_shows_the_last_runs_to_those_who_configure_or_audit(client: Any, login: Any, db: Database) -> None:
    from shiyu.platform.ui.web import COOKIE

    s = Scheduler(db)
    s.add("sla.tick", 60, lambda session: None)
    s.run_pending()

    def home(username: str) -> str:
        token = login(username)["Authorization"].split()[1]
        client.cookies.clear()
        try:
            r = client.get("/admin", cookies={COOKIE: token, "shiyu_lang": "en"})
        finally:
            client.cookies.clear()
        assert r.status_code == 200, r.text
        return str(r.text)

    for username in ("admin", "auditor_city"):
        page = home(username)
        assert "Scheduled jobs" in page and "Deadline check" in page and s.holder in page
    assert "Scheduled jobs" not in home("dispatcher_320102001000")


def test_a_run_left_by_a_dead_process_of_this_host_is_taken_over_at_once(empty_db: Database) -> None:
    import subprocess
    import sys

    from shiyu.platform.jobs.scheduler import HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    runs: list[int] = []
    [a] = _schedulers(empty_db, 1, 60, lambda session: runs.append(1))
    with empty_db.unit_of_work() as session:  # killed a second into its run
        session.add(JobRun(name="test.job", status="running", started_at=utcnow() - timedelta(seconds=1),
                           holder=f"{HOST}:{int(dead.stdout)}:0001"))
    assert a.run_pending() == ["test.job"]
    assert runs == [1] and (_row(empty_db).status, _row(empty_db).holder) == ("ok", a.holder)

    # A live process of this host (this one), or one of another host, keeps its claim.
    for holder in (f"{HOST}:{os.getpid()}:0002", "elsewhere:1:0003"):
        with empty_db.unit_of_work() as session:
            session.execute(update(JobRun).values(status="running", holder=holder,
                                                  started_at=utcnow() - timedelta(seconds=1)))
        a.jobs[0].last_run = 0.0
        assert a.run_pending() == []
    assert runs == [1]
