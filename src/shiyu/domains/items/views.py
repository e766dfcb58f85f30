"""How a work item 工单 reads to a user: the one place that masks its personal data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from shiyu.domains.items import rules, service
from shiyu.domains.items.models import Assignment, Party, WorkItem
from shiyu.domains.items.schemas import AssignmentRead, ItemRead, PartyRead
from shiyu.kit.pii import mask_address, mask_name, mask_phone, mask_resident_id
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units import service as units


def item_read(session: Session, principal: Principal, item: WorkItem, *, reveal: bool = False,
              parties: Sequence[Party] | None = None, assignments: Sequence[Assignment] | None = None,
              duplicates: list[dict[str, Any]] | None = None,
              attachments: list[dict[str, Any]] | None = None) -> ItemRead:
    """The item as ``principal`` may see it, personal data masked unless ``reveal``. A
    caller that already holds the parties, assignments, duplicates or attachments (a new
    item in a batch) passes them instead of having them read again."""
    rows = service.assignments_of(session, item.id) if assignments is None else assignments
    names = ({c: u.name for c, u in units.get_many(session, sorted({a.department_code for a in rows})).items()}
             if rows else {})
    people = service.parties_of(session, item.id) if parties is None else parties
    party_views = [
        PartyRead(role=p.role, name=p.name if reveal else mask_name(p.name),
                  id_number=(p.id_number if reveal else mask_resident_id(p.id_number)) if p.id_number else None,
                  phone=(p.phone if reveal else mask_phone(p.phone)) if p.phone else None,
                  address=(p.address if reveal else mask_address(p.address)) if p.address else None)
        for p in people
    ]
    assignment_views = [
        AssignmentRead(department_code=a.department_code, department_name=names.get(a.department_code), mode=a.mode,
                       state=a.state, assigned_at=a.assigned_at, ack_due_at=a.ack_due_at,
                       acknowledged_at=a.acknowledged_at, reported_at=a.reported_at, report=a.report)
        for a in rows
    ]
    return ItemRead(
        id=item.id, number=item.number, kind=item.kind, status=item.status,
        status_label=rules.STATE_LABELS.get(item.status, item.status), title=item.title,
        description=item.description, category=item.category_code,
        category_name=service.category_name(session, item.category_code), priority=item.priority,
        source=item.source, channel=item.channel, lon=item.lon, lat=item.lat,
        address=(item.address if reveal else mask_address(item.address)) if item.address else None,
        grid_code=item.grid_code, unit_code=item.unit_code, owner_code=item.owner_code,
        reporter_name=(item.reporter_name if reveal else mask_name(item.reporter_name)) if item.reporter_name else None,
        reporter_phone=(item.reporter_phone if reveal else mask_phone(item.reporter_phone))
        if item.reporter_phone else None,
        created_at=item.created_at, updated_at=item.updated_at, received_at=item.received_at, step=item.step,
        due_at=item.due_at, handle_due_at=item.handle_due_at, sla_state=item.sla_state,
        escalation_level=item.escalation_level, extensions=item.extensions, whistle=item.whistle,
        supervised=item.supervised, rating=item.rating, replied=item.replied_at is not None,
        reply_text=item.reply_text, merged_into=item.merged_into, repeat_of=item.repeat_of, data=item.data or {},
        version=item.version, parties=party_views, assignments=assignment_views,
        actions=[a for a in rules.actions_in(item.status)
                 if a != "reopen" or rules.can_reopen(item.status, item.rating)],
        duplicates=service.duplicates_of(session, principal, item) if duplicates is None else duplicates,
        attachments=service.attachments_of(session, item.id) if attachments is None else attachments,
    )
