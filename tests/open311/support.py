"""Open311 test helpers: the JSON Schemas written from the spec, XML read back into the JSON
structure, points inside grids, and the app with the Open311 routers."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import shapely
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from sqlalchemy import func, select

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "src" / "shiyu" / "domains" / "open311" / "jsonschema"

#: List elements of the spec's XML and the name of their items (from the spec's examples).
XML_LISTS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DATETIME_FIELDS = {"changeset", "requested_datetime", "updated_datetime", "expected_datetime"}


def _load() -> tuple[Registry, dict[str, dict[str, Any]]]:
    schemas = {p.stem: json.loads(p.read_text("utf-8")) for p in SCHEMA_DIR.glob("*.json")}
    registry: Registry = Registry()
    for s in schemas.values():
        registry = registry.with_resource(s["$id"], Resource.from_contents(s))
    return registry, schemas


REGISTRY, SCHEMAS = _load()


def validate(name: str, data: Any) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema, registry=REGISTRY).iter_errors(data), key=lambda e: e.path)
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def xml_to_data(el: ET.Element) -> Any:
    """An XML response read back into the JSON structure (every leaf as text)."""
    if el.tag in XML_LISTS:
        assert all(c.tag == XML_LISTS[el.tag] for c in el), (el.tag, [c.tag for c in el])
        return [xml_to_data(c) for c in el]
    if len(el):
        out: dict[str, Any] = {}
        for c in el:
            assert c.tag not in out, f"repeated element {c.tag}"
            out[c.tag] = xml_to_data(c)
        return out
    return el.text or ""


def as_text(value: Any) -> Any:
    """A JSON structure with every leaf as the text XML carries."""
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_text(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_xml(body: bytes, root: str) -> Any:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), body[:60]
    el = ET.fromstring(body)
    assert el.tag == root, el.tag
    return xml_to_data(el)


def datetimes(data: Any, found: list[str] | None = None) -> list[str]:
    """Every date/time value in a response (by field name)."""
    found = [] if found is None else found
    if isinstance(data, dict):
        for k, v in data.items():
            if k in DATETIME_FIELDS and v not in (None, ""):
                found.append(v)
            else:
                datetimes(v, found)
    elif isinstance(data, list):
        for v in data:
            datetimes(v, found)
    return found


def both(client: Any, path: str, root: str, schema: str, *, status: int = 200, method: str = "GET",
         **kwargs: Any) -> Any:
    """Call ``path`` as .json and as .xml; the JSON validates against ``schema``, the XML carries
    exactly the same data, every datetime names its timezone. Returns the JSON."""
    base, _, query = path.partition("?")
    suffix = f"?{query}" if query else ""
    rj = client.request(method, f"{base}.json{suffix}", **kwargs)
    assert rj.status_code == status, (path, rj.status_code, rj.text)
    assert rj.headers["content-type"] == "application/json; charset=utf-8"
    data = rj.json()
    validate(schema, data)
    if method == "GET":
        rx = client.request(method, f"{base}.xml{suffix}", **kwargs)
        assert rx.status_code == status, (path, rx.status_code, rx.text)
        assert rx.headers["content-type"] == "text/xml; charset=utf-8"
        assert parse_xml(rx.content, root) == as_text(data), path
    for value in datetimes(data):
        assert DATETIME.match(value), value
    return data


def error_both(client: Any, path: str, status: int, *, method: str = "GET", **kwargs: Any) -> str:
    """The spec's error list in both formats, with ``status``; returns the JSON description."""
    base, _, query = path.partition("?")
    suffix = f"?{query}" if query else ""
    texts = []
    for fmt in ("json", "xml"):
        r = client.request(method, f"{base}.{fmt}{suffix}", **kwargs)
        assert r.status_code == status, (fmt, path, r.status_code, r.text)
        if fmt == "json":
            assert r.headers["content-type"] == "application/json; charset=utf-8"
            body = r.json()
        else:
            assert r.headers["content-type"] == "text/xml; charset=utf-8", r.headers
            body = parse_xml(r.content, "errors")
            body = [{"code": int(e["code"]), "description": e["description"]} for e in body]
        validate("errors", body)
        assert body[0]["code"] == status
        texts.append(body[0]["description"])
    assert texts[0] == texts[1]
    return texts[0]


def make_app(db: Any) -> Any:
    """The app of ``shiyu.main`` with the Open311 routers (included here until main does)."""
    from shiyu.domains.open311.api import router
    from shiyu.domains.open311.pages import router as pages
    from shiyu.main import create_app

    app = create_app(db=db)
    have = {getattr(r, "path", None) for r in app.routes}
    if "/open311/v2/services.{fmt}" not in have:
        app.include_router(router)
    if "/citizen/report" not in have:
        app.include_router(pages)
    return app


def grid_point(db: Any, village: str, index: int = 0) -> tuple[float, float]:
    """(lon, lat) well inside one of the village's unified grids."""
    from shiyu.domains.geo.models import Grid, GridLayer

    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(Grid.geom).join(GridLayer, GridLayer.code == Grid.layer_code)
                         .where(Grid.unit_code == village, GridLayer.is_unified.is_(True)).order_by(Grid.code)
                         ).scalars().all()
    assert rows, village
    p = shapely.from_wkb(rows[index % len(rows)]).representative_point()
    return round(p.x, 6), round(p.y, 6)


def count_rows(db: Any) -> tuple[int, int, int]:
    """(work items, Open311 requests, idempotency keys): what a refused request must not add to."""
    from shiyu.domains.items.models import IdempotencyKey, WorkItem
    from shiyu.domains.open311.models import Open311Request

    with db.unit_of_work(write=False) as s:
        return tuple(int(s.execute(select(func.count()).select_from(m)).scalar_one())  # type: ignore[return-value]
                     for m in (WorkItem, Open311Request, IdempotencyKey))
