"""Rules of the unit tree 单位树: administrative division codes and levels.

Administrative units use the 12-digit statistical division code 统计用区划代码
(GB/T 2260 county code + 3-digit town + 3-digit village):

    CCCC DD TTT VVV   city 市 (CCCC0000 0000), district/county 区县 (..DD 000000),
                      town/street 乡镇街道 (...TTT 000), village/community 村社区 (...VVV)

Departments 职能部门 hang under the administrative unit they serve and take its code
plus a suffix: ``320102000000-GA``.
"""

from __future__ import annotations

import re
from typing import Final

ADMIN_KINDS: Final = ("city", "district", "town", "village")
UNIT_KINDS: Final = (*ADMIN_KINDS, "department")
LEVEL: Final = {"city": 1, "district": 2, "town": 3, "village": 4}
CHILD_KIND: Final = {"city": "district", "district": "town", "town": "village"}

_ADMIN_CODE = re.compile(r"^\d{12}$")
_DEPT_CODE = re.compile(r"^(\d{12})-[A-Z0-9]{2,8}$")


def admin_kind_of(code: str) -> str | None:
    """The level a 12-digit code denotes, or None when it is malformed."""
    if not _ADMIN_CODE.match(code):
        return None
    if code[4:] == "00000000":
        return "city" if code[2:4] != "00" else None
    if code[6:] == "000000":
        return "district"
    if code[9:] == "000":
        return "town"
    return "village"


def prefix_of(code: str, kind: str) -> str:
    """Significant prefix of an administrative code: what its children share."""
    return code[: {"city": 4, "district": 6, "town": 9, "village": 12}[kind]]


def check_unit_code(code: str, kind: str, parent_code: str | None, parent_kind: str | None) -> str | None:
    """Return a reason (English, stable) why the code does not fit, or None when it does."""
    if kind not in UNIT_KINDS:
        return f"kind must be one of {', '.join(UNIT_KINDS)}"
    if kind == "department":
        m = _DEPT_CODE.match(code)
        if not m:
            return "department code must be a 12-digit unit code, '-', and 2-8 letters or digits"
        if parent_code is None or parent_kind not in ADMIN_KINDS:
            return "a department needs an administrative parent unit"
        if m.group(1) != parent_code:
            return "department code must start with its parent unit's code"
        return None
    actual = admin_kind_of(code)
    if actual is None:
        return "code must be a 12-digit statistical division code"
    if actual != kind:
        return f"code {code} denotes a {actual}, not a {kind}"
    if kind == "city":
        return None if parent_code is None else "a city has no parent"
    if parent_code is None or parent_kind is None:
        return f"a {kind} needs a parent"
    if CHILD_KIND.get(parent_kind) != kind:
        return f"a {kind} cannot be a child of a {parent_kind}"
    if not code.startswith(prefix_of(parent_code, parent_kind)):
        return "code does not start with the parent's code prefix"
    return None


def child_path(parent_path: str | None, code: str) -> str:
    """Materialised path ``/city/district/.../code/`` of a unit under ``parent_path``."""
    return f"{parent_path or '/'}{code}/"
