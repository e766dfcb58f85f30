"""API shapes of the geography domain 地理."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class UnitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    kind: str = Field(description="city 市 | district 区县 | town 乡镇街道 | village 村社区 | department 职能部门")
    level: int
    parent_code: str | None
    category: str | None = None


class GridRead(BaseModel):
    code: str
    name: str
    layer: str
    unit_code: str = Field(description="The village/community (or unit) the grid belongs to")
    bbox: tuple[float, float, float, float]
    geometry: dict[str, Any] | None = None


class GridPage(BaseModel):
    items: list[GridRead]
    total: int
    limit: int
    offset: int


class HouseholdGroupRead(BaseModel):
    """Ten-household unit 十联户; the lead's personal data is masked."""

    code: str
    name: str
    grid_code: str
    lead_name: str
    lead_phone: str | None
    lead_resident_id: str | None
    households: int
    masked: bool = True


class GridDetail(GridRead):
    household_groups: list[HouseholdGroupRead]
    linked_unified: list[str] = Field(default_factory=list, description="多格合一: unified grids this grid maps onto")


class LocateResult(BaseModel):
    grid: str
    grid_name: str
    chain: list[str] = Field(description="village, town, district, city codes")
    layers: dict[str, str] = Field(default_factory=dict, description="grid code in each other layer (多格合一)")


class RevealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=4, max_length=500, description="Why the personal data is needed")


class ImportReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    features: int
    grids_created: int = 0
