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
    "item.read",
    "item.create",
    "item.dispatch",
    "item.handle",
    "item.escalate",
    "item.reply",
    "item.rate",
    "item.supervise",
    "item.export",
    "item.configure",
    "analysis.read",
)

_READ_GEO = {"unit.read", "grid.read"}

ROLE_ACTIONS: Final[dict[str, frozenset[str]]] = {
    "grid_worker": frozenset(_READ_GEO | {"household.read", "pii.reveal", "item.read", "item.create", "item.rate"}),
    "dispatcher": frozenset(_READ_GEO | {"household.read", "pii.reveal", "item.read", "item.create", "item.dispatch",
                                         "item.escalate", "item.reply", "item.rate", "item.export",
                                         "analysis.read"}),
    "department_handler": frozenset(_READ_GEO | {"item.read", "item.handle", "item.escalate", "item.reply"}),
    "mediator": frozenset(_READ_GEO | {"household.read", "pii.reveal", "item.read", "item.create", "item.handle",
                                       "item.reply"}),
    "leader": frozenset(_READ_GEO | {"household.read", "item.read", "item.supervise", "item.export",
                                     "analysis.read"}),
    "auditor": frozenset(_READ_GEO | {"household.read", "audit.read", "user.read", "item.read", "item.export",
                                      "analysis.read"}),
    "admin": frozenset(ACTIONS),
}

#: Roles that must use a second factor (TOTP) to log in.
TOTP_REQUIRED: Final = frozenset({"admin"})


def role_can(role: str, action: str) -> bool:
    return action in ROLE_ACTIONS.get(role, frozenset())
