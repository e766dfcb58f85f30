"""Scheduled work-item jobs: the SLA tick 时限巡检.

Runs as ``shiyu sla tick [--now]`` and every minute inside ``shiyu serve``, always as
the explicit system principal, in one transaction per batch: marks items due soon,
marks overdue items, notifies, and escalates each overdue item one level up
(小事不出村、大事不出镇: an item its level could not finish in time goes to the next).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shiyu.domains.items import rules
from shiyu.domains.items.models import Assignment, Supervision, TimelineEntry, WorkItem
from shiyu.domains.items.notify import notify
from shiyu.domains.items.schemas import TickReport
from shiyu.domains.items.service import DUE_SOON, escalate
from shiyu.kit.errors import Conflict
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal

BATCH = 2000


def sla_tick(session: Session, now: datetime, *, principal: Principal | None = None,
             max_escalations: int | None = None) -> TickReport:
    system = principal or Principal.system("sla-tick")
    open_states = list(rules.OPEN_STATES)
    soon_ids = list(session.execute(
        select(WorkItem.id).where(WorkItem.status.in_(open_states), WorkItem.sla_state == "ok",
                                  WorkItem.due_at >= now, WorkItem.due_at < now + DUE_SOON)
    ).scalars())
    for i in range(0, len(soon_ids), BATCH):
        chunk = soon_ids[i:i + BATCH]
        session.execute(update(WorkItem).where(WorkItem.id.in_(chunk)).values(sla_state="due_soon")
                        .execution_options(synchronize_session=False))
        for row in session.execute(select(WorkItem.id, WorkItem.number, WorkItem.owner_code, WorkItem.owner_path)
                                   .where(WorkItem.id.in_(chunk))):
            notify(session, unit_code=row.owner_code, scope_path=row.owner_path, item_id=row.id, kind="due_soon",
                   message=f"即将超时：{row.number}")
    overdue_ids = list(session.execute(
        select(WorkItem.id).where(WorkItem.status.in_(open_states), WorkItem.sla_state != "overdue",
                                  WorkItem.due_at < now).order_by(WorkItem.due_at)
    ).scalars())
    escalated: list[int] = []
    unit_cache: dict[str, Any] = {}
    for i in range(0, len(overdue_ids), BATCH):
        chunk = overdue_ids[i:i + BATCH]
        # Most overdue first, so a capped tick (max_escalations) escalates those.
        items = session.execute(select(WorkItem).where(WorkItem.id.in_(chunk))
                                .order_by(WorkItem.due_at, WorkItem.id)).scalars().all()
        for item in items:
            item.overdue_steps += 1
            notify(session, unit_code=item.owner_code, scope_path=item.owner_path, item_id=item.id, kind="overdue",
                   message=f"已超时：{item.number} {item.title}")
            before_owner = item.owner_code
            if max_escalations is None or len(escalated) < max_escalations:
                try:
                    with session.no_autoflush:
                        parent = escalate(session, system, item, now, reason="超时自动上报", unit_cache=unit_cache)
                except Conflict:
                    item.sla_state = "overdue"
                else:
                    escalated.append(item.id)
                    session.add(TimelineEntry(item_id=item.id, at=now, actor=system.username, role="system",
                                              unit_code=None, action="escalate", from_status=item.status,
                                              to_status=item.status, note="超时自动上报",
                                              data={"from_owner": before_owner, "to_owner": parent.code,
                                                    "auto": True}))
                    audit.record(session, system, "item.escalate", object_type="work_item", object_id=item.id,
                                 scope_path=item.scope_path,
                                 detail={"from_owner": before_owner, "to_owner": parent.code, "auto": True})
            else:
                item.sla_state = "overdue"
            item.updated_at = now
        session.flush()
    # 吹哨报到: departments that have not reported in by their deadline.
    late = session.execute(select(Assignment, WorkItem.number, WorkItem.owner_code, WorkItem.owner_path).join(
        WorkItem, WorkItem.id == Assignment.item_id).where(
        Assignment.state == "assigned", Assignment.ack_overdue.is_(False), Assignment.ack_due_at < now,
        WorkItem.status.in_(open_states))).all()
    for a, number, owner_code, owner_path in late:
        a.ack_overdue = True
        notify(session, unit_code=owner_code, scope_path=owner_path, item_id=a.item_id, kind="ack_overdue",
               message=f"未按时报到：{a.department_code} {number}")
    sup_ids = list(session.execute(select(Supervision.id).where(Supervision.state == "open",
                                                                Supervision.due_at < now)).scalars())
    if sup_ids:
        session.execute(update(Supervision).where(Supervision.id.in_(sup_ids)).values(state="overdue")
                        .execution_options(synchronize_session=False))
    marked = list(overdue_ids)
    audit.record(session, system, "sla.tick", object_type="job", object_id=now.isoformat(),
                 detail={"due_soon": len(soon_ids), "overdue": len(marked), "escalated": len(escalated),
                         "supervision_overdue": len(sup_ids)})
    return TickReport(now=now, due_soon=soon_ids, overdue=marked, escalated=escalated,
                      supervision_overdue=sup_ids)


def register(scheduler: Any, settings: Any) -> None:
    """Register the item jobs with the server's scheduler."""
    from shiyu.kit.timeutil import utcnow

    scheduler.add("sla.tick", settings.sla_tick_seconds, lambda session: sla_tick(session, utcnow()))
