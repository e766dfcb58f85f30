"""Time helpers: everything is timezone-aware UTC inside the system."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """Canonical ISO 8601 text with microseconds and 'Z'."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
