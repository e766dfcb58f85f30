"""The map's data 地图数据 (``/map/items.geojson``, ``/map/grids.geojson``): recent and open
items of the jurisdiction only, read through the recent-items subquery (``pages._created_since``)."""

from __future__ import annotations

import uuid
from typing import Any

from shiyu.demo.city import DemoCity
from shiyu.platform.ui.web import COOKIE

TOWN, SIBLING = "dispatcher_320102001000", "dispatcher_320102002000"
VILLAGE = "320102001001"


def _get(client: Any, headers: dict[str, str], path: str) -> Any:
    token = headers["Authorization"].split()[1]
    client.cookies.clear()
    r = client.get(path, cookies={COOKIE: token})
    client.cookies.clear()
    assert r.status_code == 200, r.text
    return r.json()


def test_map_shows_a_new_item_to_its_jurisdiction_only(client: Any, login: Any, demo_city: DemoCity) -> None:
    headers = login(TOWN)
    grid = demo_city.grids_of(VILLAGE)[0]
    p = grid.polygon.representative_point()
    r = client.post("/api/v1/items", headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                    json={"kind": "event", "title": "井盖缺失", "description": "路口井盖缺失", "category": "EV-01-01",
                          "lon": round(p.x, 7), "lat": round(p.y, 7), "source": "grid"})
    assert r.status_code == 201, r.text
    item = r.json()

    points = _get(client, headers, "/map/items.geojson")
    mine = [f for f in points["features"] if f["properties"]["id"] == item["id"]]
    assert len(mine) == 1 and mine[0]["geometry"]["coordinates"] == [item["lon"], item["lat"]]
    assert all(f["properties"]["id"] != item["id"]
               for f in _get(client, login(SIBLING), "/map/items.geojson")["features"])

    counts = {f["properties"]["code"]: f["properties"]["count"]
              for f in _get(client, headers, "/map/grids.geojson?days=1")["features"]}
    assert counts.get(item["grid_code"], 0) >= 1
    assert all(code.startswith("320102001") for code in counts)
    sibling = {f["properties"]["code"] for f in _get(client, login(SIBLING), "/map/grids.geojson")["features"]}
    assert item["grid_code"] not in sibling
