"""Roles 角色 and the actions each may take. The table is the law; code only reads it.

A grant is role x jurisdiction subtree 辖区: the role's actions apply to every object
whose scope path lies inside the granted unit's subtree.
"""

from __future__ import annotations

from typing import Final

ROLES: Final = (
    "grid_worker",  # 网格员
    "dispatcher",  # 综治中心坐席
    "department_handler",  # 职能部门
    "mediator",  # 调解员
    "leader",  # 领导
    "auditor",  # 督查
    "admin",  # 系统管理员
)

ROLE_LABELS: Final = {
    "grid_worker": "网格员",
    "dispatcher": "综治中心坐席",
    "department_handler": "职能部门",
    "mediator": "调解员",
    "leader": "领导",
    "auditor": "督查",
    "admin": "系统管理员",
}

#: Every action the system knows. Domains add theirs here so the table stays whole.
ACTIONS: Final = (
    "unit.read",
    "grid.read",
    "household.read",
    "pii.reveal",
    "audit.read",
    "user.read",
    "user.write",
    "geo.write",
)

_READ_GEO = {"unit.read", "grid.read"}

ROLE_ACTIONS: Final[dict[str, frozenset[str]]] = {
    "grid_worker": frozenset(_READ_GEO | {"household.read", "pii.reveal"}),
    "dispatcher": frozenset(_READ_GEO | {"household.read", "pii.reveal"}),
    "department_handler": frozenset(_READ_GEO),
    "mediator": frozenset(_READ_GEO | {"household.read", "pii.reveal"}),
    "leader": frozenset(_READ_GEO | {"household.read"}),
    "auditor": frozenset(_READ_GEO | {"household.read", "audit.read", "user.read"}),
    "admin": frozenset(ACTIONS),
}

#: Roles that must use a second factor (TOTP) to log in.
TOTP_REQUIRED: Final = frozenset({"admin"})


def role_can(role: str, action: str) -> bool:
    return action in ROLE_ACTIONS.get(role, frozenset())
