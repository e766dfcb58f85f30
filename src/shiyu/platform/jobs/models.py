"""Scheduled job runs 定时任务: one row per job, the claim that lets one server process
run it while the others skip it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shiyu.kit.db import Base, UTCDateTime


class JobRun(Base):
    """The last run of one scheduled job. A process runs a job only after claiming this
    row (``started_at`` older than the job's interval and no run in progress, or a run in
    progress that has gone stale), in a short transaction of its own, so with several
    server processes, or hosts, each run happens once."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``running``, ``ok`` or ``failed``.
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``host:pid:n`` of the scheduler (process, and instance within it) that claimed the last run.
    holder: Mapped[str] = mapped_column(String(128))
    #: The failure's exception type and message (scrubbed), for a failed run.
    error: Mapped[str | None] = mapped_column(Text)
