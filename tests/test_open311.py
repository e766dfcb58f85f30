"""Open311 GeoReport v2 开放311接口, built from the spec's own examples: every endpoint in XML and
JSON (each JSON response validated against the JSON Schemas written from the spec text, each XML
response carrying exactly the same data), every error case in the spec's error form, partner
abuse (wrong keys, floods, oversize or malformed input, points outside the jurisdiction) writing
nothing, the partner keys' CLI, and a round trip with the ``georeport`` client from PyPI while the
request is dispatched and closed inside Shiyu.

The module works on a database of its own (``city_db``): the demo city, no items but its own.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import CheckedClient
from open311.support import as_text, both, count_rows, error_both, grid_point, make_app, parse_xml, validate
from shiyu.demo.city import DEMO_PASSWORD
from shiyu.domains.open311 import ratelimit, rules
from shiyu.domains.open311 import service as o311
from shiyu.domains.open311.models import ApiKey, Open311Request
from shiyu.kit.db import Database
from shiyu.kit.pii import find_unmasked
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal
from shiyu.platform.web.deps import SessionDep

V2 = "/open311/v2"
CITY = "320100000000"
DISTRICT = "320102000000"
OTHER_DISTRICT = "320103000000"
TOWN = "320102001000"
VILLAGE = "320102001001"
OTHER_VILLAGE = "320103001001"
DISPATCHER = "dispatcher_320102001000"
HANDLER = "handler_320102001000_ga"
SERVICE = "HL-TOPIC-01-01"  # 市容环卫: waste_kind (multivaluelist, required), area_m2 (number)
PLAIN_SERVICE = "HL-TOPIC-02"  # 住房保障: the default attributes only
PHONE = "13912345678"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app(city_db: Database) -> Any:
    return make_app(city_db)


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[CheckedClient]:
    with CheckedClient(app) as c:
        yield c


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    for limiter in (ratelimit.PARTNER, ratelimit.CITIZEN, ratelimit.BAD_KEY):
        limiter.reset()
    yield
    ratelimit.PARTNER.configure(per_minute=60, burst=30)
    ratelimit.CITIZEN.configure(per_minute=6, burst=5)
    ratelimit.BAD_KEY.configure(per_minute=10, burst=10)


def issue(db: Database, partner: str) -> str:
    with db.unit_of_work() as s:
        return o311.issue_key(s, Principal.system("tests"), partner)[1]


@pytest.fixture(scope="module")
def api_key(city_db: Database) -> str:
    return issue(city_db, "FixMyStreet")


@pytest.fixture(scope="module")
def point(city_db: Database) -> tuple[float, float]:
    return grid_point(city_db, VILLAGE)


class Staff:
    """Staff acting on items through the items API (login once per user)."""

    def __init__(self, client: CheckedClient) -> None:
        self.client = client
        self.headers: dict[str, dict[str, str]] = {}

    def h(self, user: str) -> dict[str, str]:
        if user not in self.headers:
            r = self.client.post("/api/v1/auth/token", data={"username": user, "password": DEMO_PASSWORD})
            assert r.status_code == 200, r.text
            self.headers[user] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return self.headers[user]

    def item(self, user: str, number: str) -> dict[str, Any]:
        r = self.client.get("/api/v1/items", params={"q": number}, headers=self.h(user))
        assert r.status_code == 200, r.text
        found = [i for i in r.json()["items"] if i["number"] == number]
        assert len(found) == 1, number
        r = self.client.get(f"/api/v1/items/{found[0]['id']}", headers=self.h(user))
        assert r.status_code == 200, r.text
        return {**r.json(), "etag": r.headers["ETag"]}

    def act(self, user: str, number: str, action: str, **body: Any) -> dict[str, Any]:
        item = self.item(user, number)
        r = self.client.post(f"/api/v1/items/{item['id']}/actions/{action}", json=body,
                             headers={**self.h(user), "If-Match": item["etag"]})
        assert r.status_code == 200, f"{action}: {r.text}"
        return r.json()  # type: ignore[no-any-return]

    def handle_to_close(self, number: str, reply: str | None = None) -> None:
        """The whole lifecycle inside Shiyu: accept, register, dispatch, report in, report
        back, verify, (reply), close."""
        self.act(DISPATCHER, number, "accept")
        self.act(DISPATCHER, number, "register")
        self.act(DISPATCHER, number, "dispatch", departments=[f"{TOWN}-GA"], note="派遣")
        self.act(HANDLER, number, "acknowledge", note="报到")
        self.act(HANDLER, number, "feedback", note="已清运")
        self.act(DISPATCHER, number, "verify", passed=True, note="核查通过")
        if reply:
            self.act(DISPATCHER, number, "reply", reply=reply)
        self.act(DISPATCHER, number, "close")


@pytest.fixture(scope="module")
def staff(client: CheckedClient) -> Staff:
    return Staff(client)


def form(key: str | None, point: tuple[float, float] | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service_code": SERVICE, "description": "小区门口垃圾堆积，已有异味",
                            "attribute[waste_kind][]": ["household", "bulky"], "attribute[area_m2]": "2.5"}
    if key is not None:
        body["api_key"] = key
    if point is not None:
        body["long"], body["lat"] = str(point[0]), str(point[1])
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def post(client: CheckedClient, body: dict[str, Any], fmt: str = "json", **kwargs: Any) -> Any:
    return client.post(f"{V2}/requests.{fmt}", data=body, **kwargs)


def created(client: CheckedClient, key: str, point: tuple[float, float], fmt: str = "json", **extra: Any
            ) -> dict[str, Any]:
    r = post(client, form(key, point, **extra), fmt)
    assert r.status_code == 200, r.text
    if fmt == "json":
        body = r.json()
    else:
        body = parse_xml(r.content, "service_requests")
        body = [{k: (v or None) for k, v in body[0].items()}]
    validate("request_created", body)
    return body[0]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- discovery and services


def test_discovery_in_both_formats(client: CheckedClient) -> None:
    d = both(client, f"{V2}/discovery", "discovery", "discovery")
    (endpoint,) = d["endpoints"]
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]


@pytest.mark.parametrize("jurisdiction", [None, CITY, DISTRICT])
def test_services_are_the_public_hotline_taxonomy(client: CheckedClient, city_db: Database,
                                                  jurisdiction: str | None) -> None:
    from shiyu.domains.items.models import Category

    path = f"{V2}/services" + (f"?jurisdiction_id={jurisdiction}" if jurisdiction else "")
    services = both(client, path, "services", "services")
    with city_db.unit_of_work(write=False) as s:
        public = set(s.execute(select(Category.code).where(Category.kind == "hotline", Category.public.is_(True),
                                                           Category.active.is_(True),
                                                           Category.parent_code.is_not(None))).scalars())
    assert {x["service_code"] for x in services} == public
    by_code = {x["service_code"]: x for x in services}
    assert by_code[SERVICE]["service_name"] == "市容环卫" and by_code[SERVICE]["group"] == "城市管理"
    assert by_code[SERVICE]["description"] == "Townscape & sanitation"
    assert all(x["metadata"] is True and x["type"] == "realtime" for x in services)
    assert not any(x["service_code"].startswith(("EV-", "DS-", "PT-")) for x in services)


def test_service_definitions_cover_every_datatype(client: CheckedClient) -> None:
    seen: set[str] = set()
    for code in (SERVICE, "HL-TOPIC-01-02", "HL-TOPIC-03", "HL-TOPIC-06", "HL-TOPIC-15-01", PLAIN_SERVICE):
        d = both(client, f"{V2}/services/{code}", "service_definition", "service_definition")
        assert d["service_code"] == code
        orders = [a["order"] for a in d["attributes"]]
        assert orders == sorted(orders)
        seen |= {a["datatype"] for a in d["attributes"]}
        info = [a for a in d["attributes"] if not a["variable"]]
        assert [a["code"] for a in info] == ["privacy_note"]  # information only (variable=false)
    assert seen == set(rules.DATATYPES)
    d = both(client, f"{V2}/services/{SERVICE}", "service_definition", "service_definition")
    waste = next(a for a in d["attributes"] if a["code"] == "waste_kind")
    assert waste["datatype"] == "multivaluelist" and waste["required"] is True
    assert {v["key"] for v in waste["values"]} == {"household", "construction", "bulky", "other"}


@pytest.mark.parametrize(("path", "status"), [
    (f"{V2}/services?jurisdiction_id=999999999999", 404),
    (f"{V2}/services?jurisdiction_id={TOWN}", 404),  # a town is no jurisdiction: cities and districts only
    (f"{V2}/services/EV-01-01", 404),  # an event class is not a public service
    (f"{V2}/services/NOPE?jurisdiction_id={CITY}", 404),
    (f"{V2}/services/{SERVICE}?jurisdiction_id=nope", 404),
    (f"{V2}/requests/RX20990101-0000000000", 404),
    (f"{V2}/requests?jurisdiction_id=0", 404),
    (f"{V2}/tokens/nosuchtoken", 404),
    (f"{V2}/servicerequestupdates?jurisdiction_id=x", 404),
    (f"{V2}/nothing", 404),
    (f"{V2}/services?jurisdiction_id={CITY}&jurisdiction_id={DISTRICT}", 400),
])
def test_unknown_things_are_404_in_the_spec_form(client: CheckedClient, path: str, status: int) -> None:
    assert error_both(client, path, status)


def test_errors_speak_the_callers_language(client: CheckedClient) -> None:
    r = client.get(f"{V2}/services/NOPE.json", headers={"Accept-Language": "en"})
    assert r.json() == [{"code": 404, "description": "service_code NOPE not found"}]
    r = client.get(f"{V2}/services/NOPE.json")
    assert r.json() == [{"code": 404, "description": "服务代码 NOPE 不存在"}]


def test_unknown_format_and_method(client: CheckedClient) -> None:
    r = client.get(f"{V2}/services.csv")
    assert r.status_code == 400 and r.headers["content-type"] == "text/xml; charset=utf-8"
    validate("errors", [{"code": int(e["code"]), "description": e["description"]}
                        for e in parse_xml(r.content, "errors")])
    for method in ("DELETE", "PUT"):
        r = client.request(method, f"{V2}/services.json")
        assert r.status_code == 405 and r.json()[0]["code"] == 405
        assert "GET" in r.headers["allow"]
    r = client.get(f"{V2}/requests/x/y.json")
    assert r.status_code == 404 and r.json()[0]["code"] == 404


# --------------------------------------------------------------------------- POST requests


def test_post_request_becomes_a_hotline_item(client: CheckedClient, city_db: Database, api_key: str,
                                             point: tuple[float, float], staff: Staff) -> None:
    before = count_rows(city_db)
    out = created(client, api_key, point, first_name="小明", last_name="王", phone=PHONE,
                  email="wang@example.com", media_url="https://img.example.com/1.jpg",
                  **{"attribute[request_type]": "complaint", "attribute[observed_at]": "2026-11-28T08:30:00+08:00"})
    number, token = out["service_request_id"], out["token"]
    assert number.startswith("RX") and token and out["service_notice"]
    assert count_rows(city_db) == tuple(n + 1 for n in before)

    item = staff.item(DISPATCHER, number)  # the town's centre sees it in its workbench
    assert item["kind"] == "hotline" and item["status"] == "reported"
    assert item["source"] == "open311" and item["channel"] == "FixMyStreet"
    assert item["unit_code"] == VILLAGE and item["owner_code"] == TOWN and item["category"] == SERVICE
    assert item["reporter_name"] == "王**" and item["reporter_phone"] == "139****5678"  # masked like any other
    with city_db.unit_of_work(write=False) as s:
        link = s.execute(select(Open311Request).where(Open311Request.service_code == SERVICE)
                         .order_by(Open311Request.id.desc()).limit(1)).scalar_one()
        assert link.email == "wang@example.com" and link.partner == "FixMyStreet" and link.token_hash != token
        assert link.attributes == {"waste_kind": ["household", "bulky"], "area_m2": 2.5, "request_type": "complaint",
                                   "observed_at": "2026-11-28T08:30:00+08:00"}
        key = s.execute(select(ApiKey).where(ApiKey.partner == "FixMyStreet")).scalar_one()
        assert key.use_count >= 1 and key.last_used_at is not None
        actions = set(s.execute(select(AuditEntry.action).where(AuditEntry.object_id == str(item["id"]))).scalars())
    assert {"item.create", "open311.request.create"} <= actions

    (req,) = both(client, f"{V2}/requests/{number}", "service_requests", "service_requests")
    assert req["status"] == "open" and req["service_code"] == SERVICE and req["service_name"] == "市容环卫"
    assert req["lat"] == point[1] and req["long"] == point[0]
    assert req["media_url"] == "https://img.example.com/1.jpg"
    assert req["expected_datetime"] and req["agency_responsible"]
    assert req["requested_datetime"].endswith("+08:00")
    text = json.dumps(req, ensure_ascii=False)
    for secret in ("王小明", "小明", "wang@example.com", PHONE, "139****5678"):
        assert secret not in text  # a reporter's personal data never leaves through Open311
    (tok,) = both(client, f"{V2}/tokens/{token}", "service_requests", "tokens")
    assert tok == {"service_request_id": number, "token": token}


def test_post_in_xml_with_an_address_only(client: CheckedClient, api_key: str, staff: Staff) -> None:
    out = created(client, api_key, None, "xml", service_code=PLAIN_SERVICE, description="公租房申请进度咨询",
                  address_string="龙楼区人民政府东侧便民服务中心", jurisdiction_id=DISTRICT,
                  **{"attribute[waste_kind][]": None, "attribute[area_m2]": None})
    item = staff.item(DISPATCHER.replace(TOWN, DISTRICT), out["service_request_id"])
    assert item["unit_code"] == DISTRICT and item["owner_code"] == DISTRICT and item["lon"] is None
    (req,) = both(client, f"{V2}/requests/{out['service_request_id']}?jurisdiction_id={DISTRICT}",
                  "service_requests", "service_requests")
    assert req["address"] == "龙楼区人民政****"  # masked like every address
    assert req["lat"] is None and req["long"] is None
    # Another district does not see it: jurisdiction_id selects what is listed.
    error_both(client, f"{V2}/requests/{out['service_request_id']}?jurisdiction_id={OTHER_DISTRICT}", 404)


def test_descriptions_are_scrubbed_and_reporters_hidden(client: CheckedClient, api_key: str,
                                                        point: tuple[float, float]) -> None:
    out = created(client, api_key, point, description=f"请联系我 {PHONE}，身份证 320102198503151234",
                  first_name="Alice", last_name="Smith")
    (req,) = both(client, f"{V2}/requests/{out['service_request_id']}", "service_requests", "service_requests")
    assert PHONE not in req["description"] and "139****5678" in req["description"]
    assert not find_unmasked(req["description"])
    assert "Alice" not in json.dumps(req)


def test_services_respond_in_english_notes(client: CheckedClient, api_key: str, point: tuple[float, float]) -> None:
    out = created(client, api_key, point)
    r = client.get(f"{V2}/requests/{out['service_request_id']}.json", headers={"Accept-Language": "en"})
    assert r.json()[0]["status_notes"] == rules.UPDATE_TEXT["reported"][1]


# --------------------------------------------------------------------------- partner abuse: nothing written


def _abuse_cases(point: tuple[float, float], other: tuple[float, float]) -> list[tuple[str, dict[str, Any], int, str]]:
    long_text = "很" * (rules.MAX_DESCRIPTION + 1)
    return [
        ("missing key", form(None, point), 403, "api_key"),
        ("empty key", form("", point), 403, "api_key"),
        ("wrong key", form("o311_" + "a" * 52, point), 403, "api_key"),
        ("unknown jurisdiction", form("KEY", point, jurisdiction_id="999900000000"), 404, "999900000000"),
        ("unknown service", form("KEY", point, service_code="EV-01-01"), 404, "EV-01-01"),
        ("no service", form("KEY", point, service_code=""), 400, "service_code"),
        ("no location", form("KEY", None), 400, "address_string"),
        ("lat without long", {**form("KEY", None), "lat": "32.0"}, 400, "long"),
        ("lat not a number", form("KEY", None, lat="north", long="118.8"), 400, "WGS84"),
        ("lat out of range", form("KEY", None, lat="132", long="118.8"), 400, "WGS84"),
        ("outside the city", form("KEY", (0.0, 0.0)), 400, CITY),
        ("outside the district", form("KEY", other, jurisdiction_id=DISTRICT), 400, DISTRICT),
        ("oversize description", form("KEY", point, description=long_text), 400, "4000"),
        ("control characters", form("KEY", point, description="a\x00b"), 400, "description"),
        ("address too long", form("KEY", None, address_string="路" * 201), 400, "address_string"),
        ("malformed attribute", {**form("KEY", point), "attribute[waste_kind": "x"}, 400, "attribute[waste_kind"),
        ("nested attribute", {**form("KEY", point), "attribute[a][b]": "x"}, 400, "attribute[a][b]"),
        ("unknown attribute", {**form("KEY", point), "attribute[colour]": "red"}, 400, "colour"),
        ("information-only attribute", {**form("KEY", point), "attribute[privacy_note]": "x"}, 400, "privacy_note"),
        ("required attribute missing", form("KEY", point, **{"attribute[waste_kind][]": None}), 400, "waste_kind"),
        ("value not in the list", form("KEY", point, **{"attribute[waste_kind][]": ["household", "gold"]}), 400,
         "gold"),
        ("single value listed", form("KEY", point, **{"attribute[request_type][]": ["help"]}), 400, "request_type"),
        ("single value twice", form("KEY", point, **{"attribute[request_type]": ["help", "other"]}), 400,
         "request_type"),
        ("mixed list forms", {**form("KEY", point), "attribute[waste_kind]": "bulky"}, 400, "attribute[waste_kind]"),
        ("number not a number", form("KEY", point, **{"attribute[area_m2]": "lots"}), 400, "area_m2"),
        ("number infinite", form("KEY", point, **{"attribute[area_m2]": "inf"}), 400, "area_m2"),
        ("naive datetime", form("KEY", point, **{"attribute[observed_at]": "2026-11-28T08:30:00"}), 400,
         "observed_at"),
        ("bad phone", form("KEY", point, phone="12345"), 400, "phone"),
        ("bad email", form("KEY", point, email="not-an-address"), 400, "email"),
        ("bad media_url", form("KEY", point, media_url="javascript:alert(1)"), 400, "media_url"),
        ("repeated field", form("KEY", point, description=["a", "b"]), 400, "description"),
    ]


def test_partner_abuse_gets_the_spec_error_and_writes_nothing(client: CheckedClient, city_db: Database,
                                                             api_key: str, point: tuple[float, float]) -> None:
    ratelimit.PARTNER.configure(per_minute=100_000, burst=100_000)
    ratelimit.BAD_KEY.configure(per_minute=100_000, burst=100_000)
    other = grid_point(city_db, OTHER_VILLAGE)
    before = count_rows(city_db)
    for name, body, status, mention in _abuse_cases(point, other):
        if body.get("api_key") == "KEY":
            body["api_key"] = api_key
        for fmt in ("json", "xml"):
            r = post(client, body, fmt, headers={"Accept-Language": "en"})
            assert r.status_code == status, (name, fmt, r.text)
            errors = r.json() if fmt == "json" else [
                {"code": int(e["code"]), "description": e["description"]} for e in parse_xml(r.content, "errors")]
            validate("errors", errors)
            assert errors[0]["code"] == status, name
            assert mention in errors[0]["description"], (name, errors)
    assert count_rows(city_db) == before, "a refused request wrote something"


def test_bodies_that_are_not_forms(client: CheckedClient, city_db: Database, api_key: str) -> None:
    before = count_rows(city_db)
    r = client.post(f"{V2}/requests.json", json={"api_key": api_key, "service_code": SERVICE})
    assert r.status_code == 400 and "form" in r.json()[0]["description"]
    r = client.post(f"{V2}/requests.xml", content=b"\xff\xfe", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and b"<errors>" in r.content
    r = client.post(f"{V2}/requests.json", files={"media": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")},
                    data={"api_key": api_key, "service_code": SERVICE})
    assert r.status_code == 400, r.text
    assert count_rows(city_db) == before


def test_bodies_over_the_size_limit_get_the_spec_error(client: CheckedClient, city_db: Database,
                                                       api_key: str) -> None:
    """The body limit refuses before routing; under /open311/ it still answers the spec's error list."""
    before = count_rows(city_db)
    huge = {"api_key": api_key, "service_code": SERVICE, "description": "x" * (2 * 1024 * 1024)}
    r = client.post(f"{V2}/requests.json", data=huge)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/json")
    assert r.json()[0]["code"] == 413 and r.json()[0]["description"]
    r = client.post(f"{V2}/requests.xml", data=huge)
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/xml")
    assert b"<errors><error><code>413</code>" in r.content
    assert count_rows(city_db) == before


def test_refusals_are_audited(client: CheckedClient, city_db: Database, api_key: str,
                              point: tuple[float, float]) -> None:
    marker = uuid.uuid4().hex[:8]
    post(client, form("o311_wrong", point), headers={"X-Request-ID": f"bad-{marker}"})
    post(client, form(api_key, point, email="nope"), headers={"X-Request-ID": f"rej-{marker}"})
    with city_db.unit_of_work(write=False) as s:
        bad = s.execute(select(AuditEntry).where(AuditEntry.request_id == f"bad-{marker}")).scalar_one()
        rej = s.execute(select(AuditEntry).where(AuditEntry.request_id == f"rej-{marker}")).scalar_one()
    assert (bad.action, bad.result, bad.detail["reason"]) == ("open311.api_key", "denied", "unknown")
    assert (rej.action, rej.result, rej.actor) == ("open311.request.create", "rejected", "open311:FixMyStreet")
    assert rej.detail == {"partner": "FixMyStreet", "status": 400, "code": "email_invalid"}


def test_flood_gets_429_with_retry_after(client: CheckedClient, city_db: Database, api_key: str,
                                         point: tuple[float, float]) -> None:
    ratelimit.PARTNER.configure(per_minute=1, burst=2)
    assert post(client, form(api_key, point)).status_code == 200
    assert post(client, form(api_key, point)).status_code == 200
    before = count_rows(city_db)
    for fmt in ("json", "xml", "json"):
        r = post(client, form(api_key, point), fmt)
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        body = r.json() if fmt == "json" else [{"code": int(e["code"]), "description": e["description"]}
                                               for e in parse_xml(r.content, "errors")]
        validate("errors", body)
        assert body[0]["code"] == 429
    assert count_rows(city_db) == before
    # Another partner's bucket is its own.
    other = issue(city_db, f"kiosk-{uuid.uuid4().hex[:6]}")
    assert post(client, form(other, point)).status_code == 200
    with city_db.unit_of_work(write=False) as s:
        flood = s.execute(select(AuditEntry).where(AuditEntry.action == "open311.rate_limited")).scalars().all()
    assert len(flood) == 1  # audited once a minute, not once per refused request


def test_guessing_keys_gets_429(client: CheckedClient, point: tuple[float, float]) -> None:
    ratelimit.BAD_KEY.configure(per_minute=1, burst=3)
    codes = [post(client, form(f"guess-{i}", point)).status_code for i in range(5)]
    assert codes == [403, 403, 403, 429, 429]


def test_revoked_key_is_refused(client: CheckedClient, city_db: Database, point: tuple[float, float]) -> None:
    key = issue(city_db, "Old kiosk")
    assert post(client, form(key, point)).status_code == 200
    with city_db.unit_of_work() as s:
        o311.revoke_key(s, Principal.system("tests"), "Old kiosk")
    r = post(client, form(key, point))
    assert r.status_code == 403 and r.json()[0]["code"] == 403


# --------------------------------------------------------------------------- GET requests: filters and limits


def test_get_requests_filters(client: CheckedClient, api_key: str, point: tuple[float, float],
                              staff: Staff) -> None:
    a = created(client, api_key, point)["service_request_id"]
    b = created(client, api_key, point, service_code=PLAIN_SERVICE,
                **{"attribute[waste_kind][]": None, "attribute[area_m2]": None})["service_request_id"]
    staff.handle_to_close(b)

    listed = both(client, f"{V2}/requests", "service_requests", "service_requests")
    numbers = [r["service_request_id"] for r in listed]
    assert a in numbers and b in numbers
    assert [r["requested_datetime"] for r in listed] == sorted((r["requested_datetime"] for r in listed), reverse=True)

    def ids(query: str) -> list[str]:
        return [r["service_request_id"] for r in both(client, f"{V2}/requests?{query}", "service_requests",
                                                      "service_requests")]

    assert a in ids(f"service_code={SERVICE}") and b not in ids(f"service_code={SERVICE}")
    assert {a, b} <= set(ids(f"service_code={SERVICE},{PLAIN_SERVICE}"))
    assert {a, b} <= set(ids(f"service_code={SERVICE}&service_code={PLAIN_SERVICE}"))
    assert a in ids("status=open") and b not in ids("status=open")
    assert b in ids("status=closed") and a not in ids("status=closed")
    assert {a, b} <= set(ids("status=open,closed"))
    assert set(ids(f"service_request_id={a},{b}&status=open")) == {a, b}  # ids override every other argument
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert a in ids(f"start_date={start}")
    old_end = (now - timedelta(days=1)).isoformat()
    assert a not in ids(f"end_date={requests.utils.quote(old_end)}")
    (closed,) = both(client, f"{V2}/requests/{b}", "service_requests", "service_requests")
    assert closed["status"] == "closed" and closed["status_notes"] == rules.UPDATE_TEXT["closed"][0]
    assert closed["agency_responsible"]  # the department that held it


@pytest.mark.parametrize(("query", "mention"), [
    ("start_date=2026-01-01", "start_date"),  # a bare date names no timezone
    ("start_date=2026-01-01T00:00:00", "start_date"),  # naive
    ("end_date=yesterday", "end_date"),
    ("start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", "90"),
    ("start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z", "start_date"),
    ("status=pending", "status"),
    ("start_date=2026-01-01T00:00:00Z&start_date=2026-01-02T00:00:00Z", "start_date"),
])
def test_get_requests_bad_queries(client: CheckedClient, query: str, mention: str) -> None:
    text = error_both(client, f"{V2}/requests?{query}", 400, headers={"Accept-Language": "en"})
    assert mention in text


def test_get_requests_unknown_service_and_too_many_ids(client: CheckedClient) -> None:
    error_both(client, f"{V2}/requests?service_code=NOPE", 404)
    many = ",".join(f"RX{i}" for i in range(rules.MAX_IDS + 1))
    error_both(client, f"{V2}/requests?service_request_id={many}", 400)


def test_default_window_and_result_cap(client: CheckedClient, api_key: str, point: tuple[float, float],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        created(client, api_key, point)
    monkeypatch.setattr(rules, "MAX_RESULTS", 2)
    assert len(both(client, f"{V2}/requests", "service_requests", "service_requests")) == 2
    assert len(both(client, f"{V2}/servicerequestupdates", "service_request_updates", "updates")) == 2
    monkeypatch.undo()
    # The default span is the last 90 days: a window ending 91 days ago finds nothing of ours.
    end = (datetime.now(UTC) - timedelta(days=91)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert both(client, f"{V2}/requests?end_date={end}", "service_requests", "service_requests") == []
    start = (datetime.now(UTC) - timedelta(days=89)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert both(client, f"{V2}/requests?start_date={start}", "service_requests", "service_requests")


# --------------------------------------------------------------------------- updates (mySociety)


def test_updates_follow_every_status_change(client: CheckedClient, api_key: str, point: tuple[float, float],
                                            staff: Staff) -> None:
    number = created(client, api_key, point)["service_request_id"]
    staff.handle_to_close(number, reply="已于当日清运完毕，感谢您的反映。")
    ups = both(client, f"{V2}/servicerequestupdates?service_request_id={number}", "service_request_updates",
               "updates")
    assert [u["external_status_code"] for u in ups] == [
        "reported", "accepted", "registered", "dispatched", "handling", "feedback", "verified", "verified", "closed"]
    assert [u["status"] for u in ups] == ["OPEN", "INVESTIGATING", "INVESTIGATING", "ACTION_SCHEDULED",
                                          "IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS", "FIXED"]
    assert ups[-2]["description"] == rules.UPDATE_TEXT["reply"][0]  # the reply, not its text
    assert all("派遣" != u["description"] and "已清运" not in u["description"] for u in ups)  # no internal notes
    times = [u["updated_datetime"] for u in ups]
    assert times == sorted(times)
    # A window after the last update is empty; the district sees the same updates, the other not.
    later = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert both(client, f"{V2}/servicerequestupdates?service_request_id={number}&start_date={later}",
                "service_request_updates", "updates") == []
    assert len(both(client, f"{V2}/servicerequestupdates?service_request_id={number}&jurisdiction_id={DISTRICT}",
                    "service_request_updates", "updates")) == len(ups)
    assert both(client, f"{V2}/servicerequestupdates?service_request_id={number}&jurisdiction_id={OTHER_DISTRICT}",
                "service_request_updates", "updates") == []
    error_both(client, f"{V2}/servicerequestupdates?start_date=2026-01-01T00:00:00", 400)


# --------------------------------------------------------------------------- a real Open311 client


@pytest.fixture(scope="module")
def live_server(app: Any) -> Iterator[str]:
    """The app under uvicorn on a local port, for a real HTTP client."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # No log_config and no log_level: uvicorn would otherwise reconfigure its loggers (propagation,
    # levels) for the rest of the session, and other tests read them through caplog.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=None, lifespan="off",
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/open311/v2"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("output_format", ["json", "xml"])
def test_round_trip_with_the_georeport_client(live_server: str, api_key: str, point: tuple[float, float],
                                              staff: Staff, output_format: str) -> None:
    from georeport import GeoReport

    geo = GeoReport(live_server, jurisdiction=DISTRICT, api_key=api_key, output_format=output_format)
    services = geo.get_service_list()
    assert SERVICE in [s["service_code"] for s in services]
    definition = geo.get_service_definition(SERVICE)
    attributes = definition["attributes"] if output_format == "json" else definition["attributes"]["attribute"]
    assert {a["code"] for a in attributes} >= {"waste_kind", "area_m2", "request_type", "observed_at"}

    # georeport only reads: post with a plain form request, as the spec's example does.
    r = requests.post(f"{live_server}/requests.{output_format}", timeout=30,
                      data={"api_key": api_key, "jurisdiction_id": DISTRICT, "service_code": SERVICE,
                            "lat": point[1], "long": point[0], "description": "桥下垃圾无人清理",
                            "attribute[waste_kind][]": ["construction"], "attribute[request_type]": "complaint"})
    assert r.status_code == 200, r.text
    assert not find_unmasked(r.text)
    if output_format == "json":
        number = r.json()[0]["service_request_id"]
    else:
        number = parse_xml(r.content, "service_requests")[0]["service_request_id"]

    got = geo.get_service_request(number)
    assert got["service_request_id"] == number and got["status"] == "open" and got["service_code"] == SERVICE
    listed = geo.get_service_requests(service_request_id=number)
    listed = listed if isinstance(listed, list) else [listed]  # xmltodict gives a lone request as a dict
    assert [x["service_request_id"] for x in listed] == [number]
    assert number in [x["service_request_id"] for x in _as_list(geo.get_service_requests(service_code=SERVICE,
                                                                                         status="open"))]

    def updates() -> list[dict[str, Any]]:
        u = requests.get(f"{live_server}/servicerequestupdates.{output_format}", timeout=30,
                         params={"jurisdiction_id": DISTRICT, "service_request_id": number})
        assert u.status_code == 200, u.text
        return u.json() if output_format == "json" else parse_xml(u.content, "service_request_updates")

    assert [u["status"] for u in updates()] == ["OPEN"]
    staff.act(DISPATCHER, number, "accept")
    staff.act(DISPATCHER, number, "register")
    staff.act(DISPATCHER, number, "dispatch", departments=[f"{TOWN}-GA"], note="派遣")
    assert [u["status"] for u in updates()][-1] == "ACTION_SCHEDULED"
    assert geo.get_service_request(number)["status"] == "open"
    staff.act(HANDLER, number, "acknowledge", note="报到")
    staff.act(HANDLER, number, "feedback", note="已清理")
    staff.act(DISPATCHER, number, "verify", passed=True, note="通过")
    staff.act(DISPATCHER, number, "close")
    final = updates()
    assert [u["status"] for u in final][-1] == "FIXED"
    assert [u["external_status_code"] for u in final] == ["reported", "accepted", "registered", "dispatched",
                                                          "handling", "feedback", "verified", "closed"]
    closed = geo.get_service_request(number)
    assert closed["status"] == "closed" and closed["agency_responsible"]
    assert number in [x["service_request_id"] for x in _as_list(geo.get_service_requests(status="closed"))]


def _as_list(value: Any) -> list[dict[str, Any]]:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- keys: service and CLI


def test_key_rules(city_db: Database) -> None:
    from shiyu.kit.errors import Conflict, Forbidden, Invalid, NotFound

    system = Principal.system("tests")
    with city_db.unit_of_work() as s:
        row, key = o311.issue_key(s, system, "  Partner  One ")
        assert row.partner == "Partner One" and key.startswith("o311_") and len(key) == 5 + 52
        assert row.key_hash == o311.hash_secret(key) and key not in (row.key_hash, row.key_prefix)
        assert not find_unmasked(key)
        with pytest.raises(Conflict):
            o311.issue_key(s, system, "Partner One")
        for bad_name in ("", "citizen-web", "x" * 49, "-leading", "<script>"):
            with pytest.raises(Invalid):
                o311.issue_key(s, system, bad_name)
        with pytest.raises(NotFound):
            o311.revoke_key(s, system, "nobody")
        o311.revoke_key(s, system, "Partner One")
        with pytest.raises(Conflict):
            o311.revoke_key(s, system, "Partner One")
        again, key2 = o311.issue_key(s, system, "Partner One")  # re-issued after revocation
        assert again.id == row.id and again.revoked_at is None and key2 != key
        grid_worker = Principal(user_id=None, username="g", role="grid_worker", unit_code=VILLAGE, grants=())
        with pytest.raises(Forbidden):
            o311.issue_key(s, grid_worker, "Sneaky")
        s.rollback()


def test_cli_keys(city_db: Database, client: CheckedClient, point: tuple[float, float],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    from shiyu.domains.open311 import cli

    monkeypatch.setattr(cli, "_database", lambda: city_db)
    runner = CliRunner()
    partner = f"SeeClickFix {uuid.uuid4().hex[:4]}"
    r = runner.invoke(cli.open311_app, ["keys", "add", partner, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) == {"partner", "api_key"} and out["partner"] == partner
    assert post(client, form(out["api_key"], point)).status_code == 200

    r = runner.invoke(cli.open311_app, ["keys", "add", partner])
    assert r.exit_code == 1
    r = runner.invoke(cli.open311_app, ["keys", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["partner"]: x for x in json.loads(r.stdout)}
    assert rows[partner]["use_count"] == 1 and rows[partner]["revoked_at"] is None
    assert out["api_key"] not in r.stdout and rows[partner]["key_prefix"] == out["api_key"][:12]
    r = runner.invoke(cli.open311_app, ["keys", "list"])
    assert r.exit_code == 0 and partner in r.stdout

    r = runner.invoke(cli.open311_app, ["keys", "revoke", partner])
    assert r.exit_code == 0, r.output
    assert post(client, form(out["api_key"], point)).status_code == 403
    r = runner.invoke(cli.open311_app, ["keys", "revoke", partner])
    assert r.exit_code == 1
    r = runner.invoke(cli.open311_app, ["keys", "add", partner])  # a new key after revocation, printed once
    assert r.exit_code == 0 and r.stdout.strip().startswith("o311_")
    with city_db.unit_of_work(write=False) as s:
        actions = [a for a in s.execute(select(AuditEntry.action).where(AuditEntry.action.like("open311.key.%"))
                                        .order_by(AuditEntry.seq)).scalars()]
    assert actions.count("open311.key.revoke") >= 1 and actions.count("open311.key.issue") >= 2


# --------------------------------------------------------------------------- rules


def test_rules_units() -> None:
    assert rules.open311_status("dispatched") == "open" and rules.open311_status("rated") == "closed"
    assert rules.statuses_for("closed") == {"closed", "rated", "rejected", "merged"}
    assert set(rules.EXTENDED_STATUS) == set(rules.UPDATE_TEXT) - {"reply"}
    now = datetime(2026, 11, 29, tzinfo=UTC)
    s, e = rules.date_window(None, None, now)
    assert e == now and e - s == rules.MAX_SPAN
    s, e = rules.date_window("2026-01-01T00:00:00+08:00", None, now)
    assert e - s == rules.MAX_SPAN and s.utcoffset() == timedelta(hours=8)
    assert rules.reporter_name("小明", "王") == "王小明"
    assert rules.reporter_name("Alice", "Smith") == "Alice Smith"
    assert rules.reporter_name(None, None) is None
    assert rules.split_list(["a,b", "b", " c "]) == ["a", "b", "c"]


# --------------------------------------------------------------------------- the schemas against the spec's examples

EXAMPLES = Path(__file__).parent / "open311" / "examples"
#: example file stem -> (schema, XML root element)
EXAMPLE_SCHEMAS = {
    "discovery": ("discovery", "discovery"),
    "services": ("services", "services"),
    "service_definition": ("service_definition", "service_definition"),
    "request_created": ("request_created", "service_requests"),
    "token_created": ("request_created", "service_requests"),
    "tokens": ("tokens", "service_requests"),
    "service_requests": ("service_requests", "service_requests"),
    "updates": ("updates", "service_request_updates"),
    "errors": ("errors", "errors"),
}


@pytest.mark.parametrize("stem", sorted(EXAMPLE_SCHEMAS))
def test_schemas_accept_the_spec_examples(stem: str) -> None:
    """Documents shaped like the spec's own examples (other servers' ids are numbers, empty
    fields are empty elements) validate, and their XML carries the same data as their JSON."""
    schema, root = EXAMPLE_SCHEMAS[stem]
    data = json.loads((EXAMPLES / f"{stem}.json").read_text("utf-8"))
    validate(schema, data)
    xml = EXAMPLES / f"{stem}.xml"
    if xml.exists():
        assert parse_xml(xml.read_bytes(), root) == as_text(data)


@pytest.mark.parametrize(("schema", "bad"), [
    ("service_requests", [{"service_request_id": "1", "status": "pending", "service_code": "a",
                           "requested_datetime": "2026-01-01T00:00:00Z"}]),
    ("service_requests", [{"service_request_id": "1", "status": "open", "service_code": "a",
                           "requested_datetime": "2026-01-01T00:00:00"}]),  # naive
    ("service_requests", [{"service_request_id": "1", "status": "open", "service_code": "a",
                           "requested_datetime": "2026-01-01T00:00:00Z", "email": "x@example.com"}]),
    ("service_definition", {"service_code": "a", "attributes": [
        {"variable": True, "code": "c", "datatype": "singlevaluelist", "required": True, "datatype_description": None,
         "order": 1, "description": "d", "values": []}]}),  # a list without values
    ("service_definition", {"service_code": "a", "attributes": [
        {"variable": True, "code": "c", "datatype": "boolean", "required": True, "datatype_description": None,
         "order": 1, "description": "d", "values": []}]}),
    ("errors", []),
    ("errors", [{"code": 200, "description": "ok"}]),
    ("request_created", [{"service_notice": "no id and no token"}]),
    ("updates", [{"update_id": "1", "service_request_id": "1", "status": "SOLVED",
                  "updated_datetime": "2026-01-01T00:00:00Z", "description": ""}]),
    ("discovery", {"changeset": "2026-01-01T00:00:00Z", "contact": "", "key_service": "", "endpoints": [
        {"specification": "http://wiki.open311.org/GeoReport_v2", "url": "https://x",
         "changeset": "2026-01-01T00:00:00Z", "type": "production", "formats": ["application/json"]}]}),  # no XML
])
def test_schemas_refuse_what_the_spec_does_not_allow(schema: str, bad: Any) -> None:
    with pytest.raises(AssertionError):
        validate(schema, bad)


# --------------------------------------------------------------------------- the route class


def test_route_class_answers_every_failure_in_the_spec_form(city_db: Database) -> None:
    """Request validation, unexpected errors and domain errors under /open311/ come out as the
    spec's error list, after the request's unit of work rolled back."""
    from fastapi import APIRouter, FastAPI
    from fastapi.testclient import TestClient

    from shiyu.domains.open311.api import Open311Route
    from shiyu.kit.errors import Conflict

    probe = APIRouter(route_class=Open311Route)
    partner = f"probe-{uuid.uuid4().hex[:6]}"

    @probe.get("/open311/v2/probe.{fmt}")
    def typed(fmt: str, n: int) -> dict[str, int]:
        return {"n": n}

    @probe.post("/open311/v2/crash.{fmt}")
    def crash(fmt: str, session: SessionDep) -> None:
        session.add(ApiKey(partner=partner, key_hash=uuid.uuid4().hex, key_prefix="x", created_by="t", use_count=0))
        session.flush()
        raise RuntimeError("boom")

    @probe.post("/open311/v2/conflict.{fmt}")
    def conflict(fmt: str) -> None:
        raise Conflict("taken", code="taken")

    app = FastAPI()
    app.state.db = city_db
    app.include_router(probe)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/open311/v2/probe.json", params={"n": "abc"}, headers={"Accept-Language": "en"})
        assert r.status_code == 400 and r.json() == [{"code": 400, "description": "Invalid parameter n"}]
        r = c.get("/open311/v2/probe.xml", params={"n": "abc"})
        assert r.status_code == 400 and parse_xml(r.content, "errors")[0]["code"] == "400"
        r = c.post("/open311/v2/crash.json")
        assert r.status_code == 500 and r.json()[0]["code"] == 500 and "boom" not in r.text, r.text
        r = c.post("/open311/v2/conflict.xml")
        assert r.status_code == 400 and parse_xml(r.content, "errors")[0]["code"] == "400"
    with city_db.unit_of_work(write=False) as s:
        assert s.execute(select(ApiKey).where(ApiKey.partner == partner)).first() is None
