"""A small in-process scheduler for ``shiyu serve``: every registered job runs at its
interval in one background thread, each run in its own unit of work as the system
principal. Several server processes may run it: jobs must be idempotent (the SLA
tick is: it only acts on what changed since the last run)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from shiyu.kit.db import Database
from shiyu.kit.timeutil import utcnow

log = logging.getLogger("shiyu.jobs")

JobFn = Callable[[Session], object]


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


class Scheduler:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.jobs: list[Job] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, interval_s: float, fn: JobFn, *, write: bool = True) -> None:
        self.jobs.append(Job(name, interval_s, fn, write=write))

    def run_pending(self) -> list[str]:
        ran = []
        now = time.monotonic()
        for job in self.jobs:
            if now - job.last_run < job.interval_s:
                continue
            job.last_run = now
            try:
                with self.db.unit_of_work(write=job.write) as session:
                    job.fn(session)
                ran.append(job.name)
            except Exception:  # a failing job must not kill the loop; it is logged and retried
                log.exception("job %s failed at %s", job.name, utcnow().isoformat())
        return ran

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
