"""Notifications 通知 through pluggable channels. The in-app inbox is the real one;
SMS and WeCom are interfaces whose default implementation only logs (masked)."""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.orm import Session

from shiyu.domains.items.models import Notification
from shiyu.kit.db import insert_rows

log = logging.getLogger("shiyu.notify")


class Channel(Protocol):
    name: str

    def send(self, session: Session, note: Notification) -> None: ...


class InAppChannel:
    """站内消息: the notification row itself is the inbox entry."""

    name = "inapp"

    def send(self, session: Session, note: Notification) -> None:
        session.add(note)


class LoggingSmsChannel:
    """短信 interface; a gateway adapter replaces this in production."""

    name = "sms"

    def send(self, session: Session, note: Notification) -> None:
        log.info("sms to unit %s: %s", note.unit_code, note.message)


class LoggingWeComChannel:
    """企业微信 interface; a WeCom adapter replaces this in production."""

    name = "wecom"

    def send(self, session: Session, note: Notification) -> None:
        log.info("wecom to unit %s: %s", note.unit_code, note.message)


CHANNELS: list[Channel] = [InAppChannel(), LoggingSmsChannel(), LoggingWeComChannel()]
#: Which notification kinds also go out beyond the in-app inbox.
URGENT_KINDS = frozenset({"overdue", "escalated", "whistle", "supervision"})


def notify(session: Session, *, unit_code: str, scope_path: str, item_id: int | None, kind: str,
           message: str) -> Notification:
    note = Notification(unit_code=unit_code, scope_path=scope_path, item_id=item_id, kind=kind, message=message[:500])
    for ch in CHANNELS:
        if ch.name == "inapp" or kind in URGENT_KINDS:
            ch.send(session, note)
    return note


def notification_rows(notes: list[dict[str, object]]) -> list[dict[str, object]]:
    """In-app notification rows for ``notes`` (dicts of ``Notification``'s fields)."""
    return [{**n, "message": str(n["message"])[:500]} for n in notes]


def send_beyond_inbox(session: Session, rows: list[dict[str, object]]) -> None:
    """The channels other than the in-app inbox, for the urgent kinds among ``rows``."""
    for row in rows:
        if row["kind"] in URGENT_KINDS:
            note = Notification(**row)
            for ch in CHANNELS:
                if ch.name != "inapp":
                    ch.send(session, note)


def notify_many(session: Session, notes: list[dict[str, object]]) -> None:
    """Many notifications at once (a batch of new items): the in-app rows in one INSERT,
    the other channels as ``notify`` would. Each dict holds ``Notification``'s fields."""
    if not notes:
        return
    rows = notification_rows(notes)
    insert_rows(session, Notification.__table__, rows)
    send_beyond_inbox(session, rows)
