"""A small in-process scheduler for ``shiyu serve`` 定时任务: every registered job runs at
its interval in one background thread, each run in its own unit of work as the system
principal.

Every server process runs a scheduler (``uvicorn --workers N``, or several hosts on one
PostgreSQL), and each run of a job happens once among them: before a run the process
claims the job's row in ``job_runs`` in a short transaction of its own (an ``UPDATE``
that matches only when the last run started at least an interval ago and has finished,
or has gone stale); the processes that lose the claim skip that run. The row also keeps
the last run's outcome.

A process that dies in the middle of a run (``kill -9``, a crash) leaves its claim marked
``running``. A process on the same host sees that the holder's process is gone and claims
the run at once; from another host, the claim is taken over once it is older than
``STALE_AFTER`` or three intervals. Jobs must therefore be idempotent (the SLA tick is:
it only acts on what changed since the last run)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shiyu.kit.db import Database
from shiyu.kit.pii import scrub_text
from shiyu.kit.timeutil import utcnow
from shiyu.platform.jobs.models import JobRun

log = logging.getLogger("shiyu.jobs")

JobFn = Callable[[Session], object]

#: A run still marked ``running`` this long after it started (or three intervals, if
#: longer) is taken to have died with its process, and may be claimed again from any host.
STALE_AFTER = timedelta(minutes=15)
#: This host, as claims name it (``holder`` is ``host:pid:n``, at most 128 characters).
HOST = socket.gethostname()[:100]


def _gone(holder: str) -> bool:
    """Whether ``holder`` (``host:pid:n``) names a process of this host that no longer
    exists. For another host's process nothing is known: False."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


@dataclass
class Job:
    name: str
    interval_s: float
    fn: JobFn
    last_run: float = field(default=0.0)
    #: False for long jobs that only read: on SQLite a write unit holds the database's one
    #: write lock from its start, so a long write job would lock every user out. Such jobs
    #: write what they must through ``kit.db.after_unit`` in short units of their own.
    write: bool = True


def last_runs(session: Session) -> list[JobRun]:
    """The last run of each job, by name (the admin home and ``shiyu jobs status``)."""
    return list(session.execute(select(JobRun).order_by(JobRun.name)).scalars())


class Scheduler:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.jobs: list[Job] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Who holds a claim: the host and process, and this scheduler within it.
        self.holder = f"{HOST}:{os.getpid()}:{id(self) & 0xFFFF:04x}"

    def add(self, name: str, interval_s: float, fn: JobFn, *, write: bool = True) -> None:
        self.jobs.append(Job(name, interval_s, fn, write=write))

    def run_pending(self) -> list[str]:
        """Run the jobs that are due here and whose run this process claims; returns
        the names of those that ran (successfully or not)."""
        ran = []
        now = time.monotonic()
        for job in self.jobs:
            if now - job.last_run < job.interval_s:
                continue
            job.last_run = now
            if not self._claim(job):
                continue
            error = None
            try:
                with self.db.unit_of_work(write=job.write) as session:
                    job.fn(session)
            except Exception as exc:  # a failing job must not kill the loop; it is logged and retried
                log.exception("job %s failed at %s", job.name, utcnow().isoformat())
                error = scrub_text(f"{type(exc).__name__}: {exc}")[:2000]
            self._finish(job, error)
            ran.append(job.name)
        return ran

    def _claim(self, job: Job) -> bool:
        """Claim the next run of ``job`` in ``job_runs`` (committed before the run starts);
        False when another process has it or ran it less than an interval ago."""
        now = utcnow()
        # A second's slack (a tenth of short intervals) so that the process that ran it
        # last, whose clock ticks about an interval later, finds it due again.
        due = now - timedelta(seconds=max(job.interval_s - min(1.0, job.interval_s / 10), 0.0))
        stale = now - max(STALE_AFTER, timedelta(seconds=3 * job.interval_s))
        claim = {"status": "running", "started_at": now, "finished_at": None, "holder": self.holder,
                 "error": None}
        try:
            with self.db.unit_of_work() as session:
                taken = session.execute(
                    update(JobRun).where(JobRun.name == job.name, or_(
                        and_(JobRun.status != "running", JobRun.started_at <= due),
                        JobRun.started_at <= stale)).values(**claim)).rowcount
                if taken:
                    return True
                last = session.execute(select(JobRun.status, JobRun.holder).where(JobRun.name == job.name)).first()
                if last is not None:
                    if last.status != "running" or not _gone(last.holder):
                        return False
                    # The run in progress belongs to a process of this host that has died.
                    log.warning("job %s: taking over the run of %s, which is gone", job.name, last.holder)
                    return bool(session.execute(update(JobRun).where(
                        JobRun.name == job.name, JobRun.holder == last.holder, JobRun.status == "running")
                        .values(**claim)).rowcount)
                session.add(JobRun(name=job.name, **claim))  # its first run anywhere
            return True
        except DBAPIError:  # another process claimed it at the same moment (the key, a serialisation failure)
            log.debug("job %s: claim lost", job.name, exc_info=True)
            return False

    def _finish(self, job: Job, error: str | None) -> None:
        """Record the outcome of this process's run of ``job``."""
        try:
            with self.db.unit_of_work() as session:
                session.execute(update(JobRun).where(
                    JobRun.name == job.name, JobRun.holder == self.holder, JobRun.status == "running").values(
                    status="failed" if error else "ok", finished_at=utcnow(), error=error))
        except DBAPIError:
            log.exception("job %s: could not record its outcome", job.name)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.run_pending()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="shiyu-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
