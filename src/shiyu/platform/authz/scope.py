"""The one jurisdiction filter 辖区过滤. Every read goes through ``scope``; every write
re-checks with ``assert_in_scope`` before the commit."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, false, or_

from shiyu.kit.errors import Forbidden, NotFound
from shiyu.platform.authz.principal import Principal

S = TypeVar("S", bound=Select[Any])


def scope(stmt: S, principal: Principal, action: str, path_column: Any) -> S:
    """Restrict ``stmt`` to rows whose ``path_column`` lies in the principal's grants for ``action``."""
    paths = principal.paths_for(action)
    if not paths:
        return stmt.where(false())
    if "/" in paths:
        return stmt
    return stmt.where(or_(*[path_column.startswith(p, autoescape=True) for p in paths]))


def require_action(principal: Principal, action: str) -> None:
    """403 when the principal's roles never allow ``action`` anywhere (leaks nothing)."""
    if not principal.can(action):
        raise Forbidden(f"role may not {action}", code="forbidden_action", params={"action": action})


def assert_in_scope(principal: Principal, action: str, path: str | None, *, what: str = "object") -> None:
    """Raise NotFound (never 403, so existence does not leak) when ``path`` is outside scope."""
    if not principal.can_at(action, path):
        raise NotFound(f"{what} not found", code="not_found", params={"what": what})
