"""Scoped reads of geography. Every statement starts from ``readable_*`` which goes
through the one jurisdiction filter ``authz.scope``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from shiyu.domains.geo.models import Grid, HouseholdGroup
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.scope import scope
from shiyu.platform.units.models import Unit


def readable_units(principal: Principal, action: str = "unit.read") -> Select[Any]:
    return scope(select(Unit), principal, action, Unit.path)


def readable_grids(principal: Principal, action: str = "grid.read") -> Select[Any]:
    return scope(select(Grid), principal, action, Grid.scope_path)


def readable_households(principal: Principal, action: str = "household.read") -> Select[Any]:
    return scope(select(HouseholdGroup), principal, action, HouseholdGroup.scope_path)
