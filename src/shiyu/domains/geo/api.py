"""HTTP adapter of geography 地理: units, grids, location, household reveal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from shiyu.domains.geo import service
from shiyu.domains.geo.schemas import GridDetail, GridPage, HouseholdGroupRead, LocateResult, RevealRequest, UnitRead
from shiyu.platform.web.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["geo"])

UnitCode = Annotated[str, Path(min_length=4, max_length=32, pattern=r"^[0-9A-Z-]+$")]
GridCode = Annotated[str, Path(min_length=4, max_length=32, pattern=r"^[0-9A-Z-]+$")]


@router.get("/units/{code}", response_model=UnitRead, summary="One unit 单位")
def get_unit(code: UnitCode, session: SessionDep, principal: PrincipalDep) -> UnitRead:
    return service.unit_read(service.get_unit(session, principal, code))


@router.get("/units/{code}/children", response_model=list[UnitRead], summary="Child units and departments")
def unit_children(code: UnitCode, session: SessionDep, principal: PrincipalDep) -> list[UnitRead]:
    return service.unit_children(session, principal, code)


@router.get("/grids", response_model=GridPage, summary="Grids 网格 in a unit's subtree")
def list_grids(
    session: SessionDep,
    principal: PrincipalDep,
    unit: Annotated[str | None, Query(min_length=4, max_length=32, pattern=r"^[0-9A-Z-]+$")] = None,
    layer: Annotated[str, Query(max_length=32, pattern=r"^[a-z_]+$")] = "unified",
    geometry: bool = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> GridPage:
    return service.list_grids(session, principal, unit=unit, layer=layer, with_geometry=geometry,
                              limit=limit, offset=offset)


@router.get("/grids/{code}", response_model=GridDetail, summary="One grid with its ten-household units")
def get_grid(code: GridCode, session: SessionDep, principal: PrincipalDep) -> GridDetail:
    return service.get_grid(session, principal, code)


@router.get("/geo/locate", response_model=LocateResult, summary="Locate a point to its grid")
def locate(
    session: SessionDep,
    principal: PrincipalDep,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
) -> LocateResult:
    return service.locate(session, principal, lon, lat)


@router.post("/households/{code}/reveal", response_model=HouseholdGroupRead,
             summary="Reveal a ten-household lead's personal data (audited)")
def reveal_household(
    code: Annotated[str, Path(min_length=4, max_length=40, pattern=r"^[0-9A-Z-]+$")],
    body: RevealRequest,
    session: SessionDep,
    principal: PrincipalDep,
) -> HouseholdGroupRead:
    return service.reveal_household(session, principal, code, body.reason)
