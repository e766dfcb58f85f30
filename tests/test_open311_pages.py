"""The citizens' public pages 市民诉求页面 over the Open311 adapter: report an issue without
logging in, see nearby open requests of the same kind first ("这可能是同一问题"), get a tracking
token, and follow the issue while it is dispatched and closed inside Shiyu.

The module works on a database of its own (``city_db``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from conftest import CheckedClient
from open311.support import both, count_rows, grid_point, make_app
from shiyu.demo.city import DEMO_PASSWORD
from shiyu.domains.items.models import WorkItem
from shiyu.domains.open311 import ratelimit, rules
from shiyu.domains.open311.models import Open311Request
from shiyu.kit.db import Database
from shiyu.kit.timeutil import utcnow

TOWN = "320102001000"
VILLAGE = "320102001001"
FAR_VILLAGE = "320103001001"
DISPATCHER = "dispatcher_320102001000"
HANDLER = "handler_320102001000_ga"
SERVICE = "HL-TOPIC-01-01"
OTHER_SERVICE = "HL-TOPIC-06"
PHONE = "13712345678"
TOKEN = re.compile(r'id="tracking-token">([a-z2-7]+)<')
NUMBER = re.compile(r'id="request-number">(RX[0-9A-F-]+)<')


@pytest.fixture(scope="module")
def client(city_db: Database) -> Iterator[CheckedClient]:
    with CheckedClient(make_app(city_db)) as c:
        yield c


@pytest.fixture(autouse=True)
def _limits() -> Iterator[None]:
    ratelimit.CITIZEN.configure(per_minute=1000, burst=1000)
    yield
    ratelimit.CITIZEN.configure(per_minute=6, burst=5)


@pytest.fixture(scope="module")
def point(city_db: Database) -> tuple[float, float]:
    return grid_point(city_db, VILLAGE, 1)


def report(client: CheckedClient, point: tuple[float, float] | None, *, expect: int = 200,
           **extra: Any) -> Any:
    data: dict[str, Any] = {"service_code": SERVICE, "description": "小区门口垃圾堆积",
                            "attribute[waste_kind][]": ["household"], "attribute[observed_at]": "2026-11-28T08:30",
                            "last_name": "李", "first_name": "四", "phone": PHONE, "email": ""}
    if point is not None:
        data["long"], data["lat"] = f"{point[0]:.6f}", f"{point[1]:.6f}"
    data.update(extra)
    r = client.post("/citizen/report", data={k: v for k, v in data.items() if v is not None})
    assert r.status_code == expect, r.text[:2000]
    return r


def test_report_form_needs_no_login(client: CheckedClient) -> None:
    r = client.get("/citizen/report", follow_redirects=False)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "我要反映问题" in r.text and f'value="{SERVICE}"' in r.text and "市容环卫" in r.text
    assert "/login" not in r.text
    r = client.get("/citizen/report", cookies={"shiyu_lang": "en"})
    assert "Report an issue" in r.text and "Use my location" in r.text
    r = client.get("/citizen/follow")
    assert r.status_code == 200 and "查询码" in r.text


def test_attribute_questions(client: CheckedClient) -> None:
    r = client.get("/citizen/attributes", params={"service_code": SERVICE})
    assert r.status_code == 200
    assert 'name="attribute[waste_kind][]"' in r.text and 'type="checkbox"' in r.text
    assert 'name="attribute[area_m2]"' in r.text and 'name="attribute[observed_at]"' in r.text
    assert 'type="datetime-local"' in r.text and 'name="attribute[request_type]"' in r.text
    assert 'name="attribute[privacy_note]"' not in r.text and "请勿填写" in r.text  # information only
    r = client.get("/citizen/attributes", params={"service_code": "HL-TOPIC-03"})
    assert 'name="attribute[details]"' in r.text and "<textarea" in r.text
    r = client.get("/citizen/attributes", params={"service_code": "nope"})
    assert r.status_code == 200 and "attribute[" not in r.text


def test_report_follow_and_close(client: CheckedClient, city_db: Database, point: tuple[float, float]) -> None:
    r = report(client, point)
    assert "感谢您的反映" in r.text
    token = TOKEN.search(r.text).group(1)  # type: ignore[union-attr]
    number = NUMBER.search(r.text).group(1)  # type: ignore[union-attr]
    assert "李四" not in r.text
    with city_db.unit_of_work(write=False) as s:
        item = s.execute(select(WorkItem).where(WorkItem.number == number)).scalar_one()
        link = s.execute(select(Open311Request).where(Open311Request.item_id == item.id)).scalar_one()
        assert (item.kind, item.source, item.channel) == ("hotline", "citizen", "市民网页")
        assert (item.reporter_name, item.reporter_phone, item.unit_code) == ("李四", PHONE, VILLAGE)
        assert link.partner == "citizen-web" and link.api_key_id is None
        assert link.attributes == {"waste_kind": ["household"], "observed_at": "2026-11-28T08:30:00+08:00"}

    # The same request through Open311: the token and the number both find it.
    assert both(client, f"/open311/v2/tokens/{token}", "service_requests", "tokens")[0]["service_request_id"] == number
    (req,) = both(client, f"/open311/v2/requests/{number}", "service_requests", "service_requests")
    assert req["status"] == "open"

    r = client.get("/citizen/follow", params={"token": token})
    assert r.status_code == 200 and number in r.text and "办理中" in r.text
    assert rules.UPDATE_TEXT["reported"][0] in r.text and PHONE not in r.text and "李四" not in r.text

    staff = _login(client, DISPATCHER), _login(client, HANDLER)
    for user, action, body in [(0, "accept", {}), (0, "register", {}),
                               (0, "dispatch", {"departments": [f"{TOWN}-GA"], "note": "内部备注：请尽快"}),
                               (1, "acknowledge", {"note": "报到"}), (1, "feedback", {"note": "已清运"}),
                               (0, "verify", {"passed": True, "note": "通过"}),
                               (0, "reply", {"reply": "已清运完毕，感谢您的反映。"}), (0, "close", {})]:
        _act(client, staff[user], item.id, action, body)
    r = client.get("/citizen/follow", params={"token": token}, cookies={"shiyu_lang": "en"})
    assert r.status_code == 200 and "Progress" in r.text and ">closed<" in r.text
    r = client.get("/citizen/follow", params={"token": token})
    assert "已办结" in r.text and "已清运完毕，感谢您的反映。" in r.text  # the reply is the citizen's to read
    assert "内部备注" not in r.text and "已清运<" not in r.text  # internal notes never show
    for state in ("accepted", "dispatched", "handling", "closed"):
        assert rules.UPDATE_TEXT[state][0] in r.text


def test_nearby_same_issue(client: CheckedClient, city_db: Database, point: tuple[float, float]) -> None:
    r = report(client, point, description="路边垃圾桶满溢")
    number = NUMBER.search(r.text).group(1)  # type: ignore[union-attr]
    near = (point[0] + 0.0005, point[1] + 0.0005)  # about 70 m away
    r = client.get("/citizen/nearby", params={"service_code": SERVICE, "lat": near[1], "long": near[0]})
    assert r.status_code == 200 and "这可能是同一问题" in r.text and number in r.text and "米外" in r.text
    assert "路边垃圾桶满溢" in r.text
    r = client.get("/citizen/nearby", params={"service_code": OTHER_SERVICE, "lat": near[1], "long": near[0]})
    assert number not in r.text and "附近没有正在办理的同类问题" in r.text
    far = grid_point(city_db, FAR_VILLAGE)
    r = client.get("/citizen/nearby", params={"service_code": SERVICE, "lat": far[1], "long": far[0]})
    assert number not in r.text
    r = client.get("/citizen/nearby", params={"service_code": SERVICE, "lat": "x", "long": "y"})
    assert r.status_code == 200 and number not in r.text
    # Older than 30 days: no longer suggested.
    with city_db.unit_of_work() as s:
        s.execute(update(WorkItem).where(WorkItem.number == number)
                  .values(created_at=utcnow() - rules.NEARBY_WINDOW - timedelta(days=1)))
    r = client.get("/citizen/nearby", params={"service_code": SERVICE, "lat": near[1], "long": near[0]})
    assert number not in r.text


def test_refused_report_writes_nothing(client: CheckedClient, city_db: Database, point: tuple[float, float]) -> None:
    before = count_rows(city_db)
    r = report(client, None, expect=422, description="没有位置")
    assert "须提供经纬度" in r.text and "没有位置" in r.text  # the message, and the form kept
    r = report(client, point, expect=422, **{"attribute[waste_kind][]": None})
    assert "waste_kind" in r.text
    r = report(client, (0.0, 0.0), expect=422)
    assert "不在辖区" in r.text
    r = report(client, point, expect=422, phone="12345")
    assert "手机号码" in r.text
    assert count_rows(city_db) == before


def test_citizen_flood_429(client: CheckedClient, city_db: Database, point: tuple[float, float]) -> None:
    ratelimit.CITIZEN.configure(per_minute=1, burst=1)
    report(client, point)
    before = count_rows(city_db)
    r = report(client, point, expect=429)
    assert int(r.headers["Retry-After"]) >= 1 and "请求过于频繁" in r.text
    assert count_rows(city_db) == before


def test_follow_unknown_token(client: CheckedClient) -> None:
    r = client.get("/citizen/follow", params={"token": "nosuchtoken"})
    assert r.status_code == 404 and "未找到" in r.text
    r = client.get("/citizen/follow", params={"token": "x" * 500})
    assert r.status_code == 404


# --------------------------------------------------------------------------- staff helpers


def _login(client: CheckedClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"username": user, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _act(client: CheckedClient, headers: dict[str, str], item_id: int, action: str, body: dict[str, Any]) -> None:
    r = client.get(f"/api/v1/items/{item_id}", headers=headers)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/items/{item_id}/actions/{action}", json=body,
                    headers={**headers, "If-Match": r.headers["ETag"]})
    assert r.status_code == 200, f"{action}: {r.text}"
