"""Access checks that audit their denials 拒绝访问留痕.

Every denial writes a detached audit entry (kept even though the request fails) and
then raises: 403 when the role may never take the action, 404 when the object lies
outside the jurisdiction, so its existence does not leak.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shiyu.kit.errors import Forbidden, NotFound
from shiyu.platform.audit.service import record_detached
from shiyu.platform.authz.principal import Principal


def check_action(session: Session, principal: Principal, action: str, *, object_type: str | None = None) -> None:
    if not principal.can(action):
        record_detached(session, principal, action, object_type=object_type, result="denied",
                        detail={"reason": "role"})
        raise Forbidden(f"your role may not {action}", code="forbidden_action", params={"action": action})


def check_scope(
    session: Session,
    principal: Principal,
    action: str,
    path: str | None,
    *,
    object_type: str,
    object_id: str | int | None,
) -> None:
    if not principal.can(action):
        check_action(session, principal, action, object_type=object_type)
    if not principal.can_at(action, path):
        record_detached(session, principal, action, object_type=object_type, object_id=object_id,
                        result="denied", scope_path=path, detail={"reason": "jurisdiction"})
        raise NotFound(f"{object_type} {object_id} not found", code="not_found",
                       params={"what": object_type, "id": str(object_id)})


def denied(
    session: Session,
    principal: Principal,
    action: str,
    *,
    object_type: str,
    object_id: str | int | None,
    scope_path: str | None = None,
) -> None:
    """Audit a denial the caller handles itself (e.g. a filter outside scope giving an empty list)."""
    record_detached(session, principal, action, object_type=object_type, object_id=object_id,
                    result="denied", scope_path=scope_path, detail={"reason": "jurisdiction"})


def check_filter(
    session: Session, principal: Principal, action: str, path: str, *, object_type: str, object_id: str
) -> None:
    """A list filtered to a subtree outside the jurisdiction comes back empty (the scope
    sees to that); the attempt is audited as a denial."""
    if not principal.overlaps(action, path):
        denied(session, principal, action, object_type=object_type, object_id=object_id, scope_path=path)
