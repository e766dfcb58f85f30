"""Work items 工单 through the HTTP API, end to end, with the demo city's real users.

Every kind walks its whole life here (event with 吹哨报到 to three departments, a 12345
hotline item escalated by the SLA tick run as a real CLI subprocess, a dispute with
masked and revealed parties, a petition with its statutory deadlines and reply), plus
duplicates and merging, supervision 督办, rejection, returns, filters, pagination,
exports, and every kind of bad input (which must write nothing).

The database is the shared session database: each test creates its own items and
asserts on those, never on totals that other tests could change.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import os
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import shapely
from sqlalchemy import func, select, update

from shiyu.demo.city import DEMO_PASSWORD
from shiyu.domains.items.models import Attachment, WorkItem
from shiyu.kit.db import Database

CITY = "320100000000"
DISTRICT = "320102000000"
TOWN = "320102001000"  # 街道 with villages 320102001001..004
SIBLING_TOWN = "320102002000"
VILLAGE = "320102001001"
VILLAGE_DUP = "320102001002"
VILLAGE_MISC = "320102001003"

GRID = "grid_320102001001"
GRID_DUP = "grid_320102001002"
DISPATCHER = "dispatcher_320102001000"
SIBLING_DISPATCHER = "dispatcher_320102002000"
DISTRICT_DISPATCHER = "dispatcher_320102000000"
LEADER = "leader_320102000000"
MEDIATOR = "mediator_320102001000"  # bound to 320102001000-SF
HANDLER_GA = "handler_320102001000_ga"
HANDLER_CG = "handler_320102001000_cg"  # created by the fixture below
HANDLER_SF = "handler_320102001000_sf"  # created by the fixture below
DISTRICT_HANDLER_CG = "handler_320102000000_cg"


# --------------------------------------------------------------------------- test data


def png_bytes() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


PNG = png_bytes()
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_serial = itertools.count(101)


def resident_id(area: str = "320102", birth: str = "19850315") -> str:
    """A valid resident ID: GB 11643 ISO 7064 MOD 11-2 check character."""
    body = f"{area}{birth}{next(_serial) % 1000:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def bad_resident_id() -> str:
    good = resident_id()
    wrong = "0" if good[-1] != "0" else "1"
    return good[:-1] + wrong


_phones = itertools.count(10_000_001)


def phone() -> str:
    return f"139{next(_phones):08d}"


def key() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def extra_users(db: Database) -> None:
    """Handlers for the town's CG and SF departments (the demo city has only GA's)."""
    from shiyu.domains.items.config import seed_catalogues
    from shiyu.platform.authz.principal import Principal
    from shiyu.platform.identity.models import User
    from shiyu.platform.identity.service import create_user

    with db.unit_of_work() as s:
        seed_catalogues(s)
        for username, unit in ((HANDLER_CG, f"{TOWN}-CG"), (HANDLER_SF, f"{TOWN}-SF")):
            if s.execute(select(User.id).where(User.username == username)).first() is None:
                create_user(s, Principal.system("tests"), username=username, password=DEMO_PASSWORD,
                            role="department_handler", unit_code=unit)


class Api:
    """Thin helpers over the checked test client: every call names the acting user."""

    def __init__(self, client: Any, login: Callable[..., dict[str, str]]) -> None:
        self.client = client
        self.login = login

    def h(self, user: str, **extra: str) -> dict[str, str]:
        return {**self.login(user), **extra}

    def create(self, user: str, body: dict[str, Any], *, idem: str | None = None, expect: int = 201) -> dict[str, Any]:
        r = self.client.post("/api/v1/items", json=body, headers=self.h(user, **{"Idempotency-Key": idem or key()}))
        assert r.status_code == expect, r.text
        return r.json()

    def get(self, user: str, item_id: int) -> tuple[dict[str, Any], str]:
        r = self.client.get(f"/api/v1/items/{item_id}", headers=self.h(user))
        assert r.status_code == 200, r.text
        return r.json(), r.headers["ETag"]

    def act_raw(self, user: str, item_id: int, action: str, **body: Any) -> Any:
        _, etag = self.get(user, item_id)
        return self.client.post(f"/api/v1/items/{item_id}/actions/{action}", json=body,
                                headers=self.h(user, **{"If-Match": etag}))

    def act(self, user: str, item_id: int, action: str, **body: Any) -> dict[str, Any]:
        r = self.act_raw(user, item_id, action, **body)
        assert r.status_code == 200, f"{action} by {user}: {r.status_code} {r.text}"
        assert r.headers["ETag"] == f'"{item_id}-{r.json()["version"]}"'
        return r.json()

    def timeline(self, user: str, item_id: int) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/items/{item_id}/timeline", headers=self.h(user))
        assert r.status_code == 200, r.text
        return r.json()

    def rep_point(self, user: str, village: str, index: int = 0) -> tuple[float, float]:
        """A point well inside one of the village's grids."""
        r = self.client.get("/api/v1/grids", params={"unit": village, "geometry": "true"}, headers=self.h(user))
        assert r.status_code == 200, r.text
        grids = r.json()["items"]
        assert grids, f"no grids in {village}"
        p = shapely.geometry.shape(grids[index % len(grids)]["geometry"]).representative_point()
        return round(p.x, 7), round(p.y, 7)


@pytest.fixture(scope="module")
def api(client: Any, login: Callable[..., dict[str, str]], extra_users: None) -> Api:
    return Api(client, login)


def item_count(db: Database) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.execute(select(func.count()).select_from(WorkItem)).scalar_one())


def event_body(lon: float, lat: float, **extra: Any) -> dict[str, Any]:
    body = {"kind": "event", "title": "井盖缺失", "description": "路口井盖缺失，存在安全隐患", "category": "EV-01-01",
            "lon": lon, "lat": lat, "source": "grid"}
    body.update(extra)
    return body


def steps(timeline: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(t["action"], t["actor"]) for t in timeline]


def assert_problem(r: Any, status: int, *, field: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    if field is not None:
        fields = [body.get("field")] + [e.get("field") for e in body.get("errors", [])]
        assert field in fields, body
    if code is not None:
        assert body["code"] == code, body
    return body


# --------------------------------------------------------------------------- event 事件


def test_event_lifecycle_with_whistle_to_three_departments(api: Api, client: Any) -> None:
    lon, lat = api.rep_point(GRID, VILLAGE)
    body = event_body(lon, lat, attachments=[{"filename": "scene.png", "content_type": "image/png",
                                              "data": base64.b64encode(PNG).decode()}])
    item = api.create(GRID, body)
    iid = item["id"]
    assert item["status"] == "reported" and item["kind"] == "event"
    assert item["number"].startswith("SJ")
    assert item["unit_code"] == VILLAGE and item["owner_code"] == TOWN  # 小事不出村、大事不出镇
    assert item["grid_code"]
    assert item["due_at"] is not None and item["step"] == "accept"
    assert [a["filename"] for a in item["attachments"]] == ["scene.png"]
    att = item["attachments"][0]
    r = client.get(f"/api/v1/items/{iid}/attachments/{att['id']}", headers=api.h(DISPATCHER))
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["content-type"] == "image/png"

    # The town's centre sees it in its inbox (and a notification).
    r = client.get("/api/v1/items", params={"mine": "true", "status": "reported", "limit": 500},
                   headers=api.h(DISPATCHER))
    assert iid in [i["id"] for i in r.json()["items"]]
    r = client.get("/api/v1/notifications", headers=api.h(DISPATCHER))
    assert r.status_code == 200 and any(n["item_id"] == iid and n["kind"] == "new" for n in r.json())

    assert api.act(DISPATCHER, iid, "accept")["status"] == "accepted"
    assert api.act(DISPATCHER, iid, "register")["status"] == "registered"
    depts = [f"{TOWN}-GA", f"{TOWN}-CG", f"{TOWN}-SF"]
    item = api.act(DISPATCHER, iid, "whistle", departments=depts, note="多部门联合处置")
    assert item["status"] == "dispatched" and item["whistle"] is True
    assert sorted(a["department_code"] for a in item["assignments"]) == sorted(depts)
    assert {a["mode"] for a in item["assignments"]} == {"whistle"}
    assert item["handle_due_at"] is not None
    r = client.get("/api/v1/notifications", headers=api.h(HANDLER_CG))
    assert any(n["item_id"] == iid and n["kind"] == "whistle" for n in r.json())

    handlers = [HANDLER_GA, HANDLER_CG, HANDLER_SF]
    for n, handler in enumerate(handlers):
        item = api.act(handler, iid, "acknowledge", note="报到")
        assert item["status"] == "handling"
        r = client.get("/api/v1/items", params={"mine": "true", "limit": 500}, headers=api.h(handler))
        assert iid in [i["id"] for i in r.json()["items"]]
        item = api.act(handler, iid, "feedback", note=f"{handler} 已处置完毕")
        assert item["status"] == ("feedback" if n == len(handlers) - 1 else "handling"), (n, item["status"])
    assert {a["state"] for a in item["assignments"]} == {"reported"}

    item = api.act(DISPATCHER, iid, "verify", passed=True, note="现场核查通过")
    assert item["status"] == "verified"
    item = api.act(DISPATCHER, iid, "close")
    assert item["status"] == "closed" and item["due_at"] is None
    item = api.act(DISPATCHER, iid, "rate", rating=5)
    assert item["status"] == "rated" and item["rating"] == 5
    assert "reopen" not in item["actions"]  # a good rating is final (reopen needs a poor one)

    tl = api.timeline(DISPATCHER, iid)
    expected = [("report", GRID), ("accept", DISPATCHER), ("register", DISPATCHER), ("whistle", DISPATCHER)]
    for handler in handlers:
        expected += [("acknowledge", handler), ("feedback", handler)]
    expected += [("verify", DISPATCHER), ("close", DISPATCHER), ("rate", DISPATCHER)]
    assert steps(tl) == expected
    assert [t["at"] for t in tl] == sorted(t["at"] for t in tl)
    assert tl[0]["from_status"] is None and tl[0]["to_status"] == "reported"
    assert tl[-1]["to_status"] == "rated"
    assert next(t for t in tl if t["action"] == "whistle")["data"]["departments"] == depts
    assert [t["unit_code"] for t in tl if t["action"] == "acknowledge"] == depts


# --------------------------------------------------------------------------- hotline 12345


def run_sla_tick(db: Database, now: datetime) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIYU_")}
    env.update(SHIYU_DATABASE_URL=db.url, SHIYU_ARGON2_TIME_COST="1", SHIYU_ARGON2_MEMORY_KIB="8192",
               NO_COLOR="1", PYTHONIOENCODING="utf-8", COLUMNS="200")
    r = subprocess.run([sys.executable, "-m", "shiyu.cli", "sla", "tick", "--now", now.isoformat(), "--json"],
                       env=env, capture_output=True, text=True, encoding="utf-8", timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    report: dict[str, Any] = json.loads(r.stdout)
    return report


def test_hotline_lifecycle_with_auto_escalation_and_reopen(api: Api, db: Database) -> None:
    caller_phone = phone()
    item = api.create(DISPATCHER, {
        "kind": "hotline", "title": "噪音扰民投诉", "description": "夜间施工噪音", "category": "HL-TYPE-01",
        "unit": VILLAGE, "source": "hotline", "channel": "12345",
        "reporter": {"name": "王小明", "phone": caller_phone},
    })
    iid = item["id"]
    assert item["number"].startswith("RX")
    assert item["lon"] is None and item["grid_code"] is None
    assert item["unit_code"] == VILLAGE and item["owner_code"] == TOWN
    assert item["reporter_phone"] == caller_phone[:3] + "****" + caller_phone[-4:]
    assert item["reporter_name"] == "王**"
    api.act(DISPATCHER, iid, "accept")
    api.act(DISPATCHER, iid, "register")
    item = api.act(DISPATCHER, iid, "dispatch", departments=[f"{TOWN}-GA"])
    assert item["status"] == "dispatched" and item["whistle"] is False
    due = datetime.fromisoformat(item["due_at"])

    # The SLA tick as a real CLI process on the same database, after the acknowledge deadline.
    # (It is global: it escalates every item overdue by then, so it runs only just past this one.)
    report = run_sla_tick(db, due + timedelta(hours=1))
    assert iid in report["overdue"] and iid in report["escalated"]
    item, _ = api.get(DISTRICT_DISPATCHER, iid)
    assert item["owner_code"] == DISTRICT and item["escalation_level"] == 1
    assert item["status"] == "dispatched" and item["sla_state"] == "ok"
    auto = [t for t in api.timeline(DISPATCHER, iid) if t["action"] == "escalate"]
    assert len(auto) == 1 and auto[0]["data"]["auto"] is True and auto[0]["role"] == "system"
    assert auto[0]["data"] == {"from_owner": TOWN, "to_owner": DISTRICT, "auto": True}
    # The ticket now belongs to the district: the town's centre can no longer verify or close it.
    assert api.act(HANDLER_GA, iid, "acknowledge")["status"] == "handling"
    assert api.act(HANDLER_GA, iid, "handle", note="已联系施工方停工")["status"] == "handling"
    assert api.act(HANDLER_GA, iid, "feedback", note="已停工整改")["status"] == "feedback"
    r = api.act_raw(DISPATCHER, iid, "verify", passed=True)
    assert_problem(r, 403, code="not_owner")
    api.act(DISTRICT_DISPATCHER, iid, "verify", passed=True)
    api.act(DISTRICT_DISPATCHER, iid, "close")
    item = api.act(DISTRICT_DISPATCHER, iid, "rate", rating=1)
    assert item["status"] == "rated" and item["rating"] == 1 and "reopen" in item["actions"]

    # A poor rating 差评 reopens the ticket: a reason is required.
    assert_problem(api.act_raw(DISTRICT_DISPATCHER, iid, "reopen"), 422, field="note", code="reason_required")
    item = api.act(DISTRICT_DISPATCHER, iid, "reopen", note="市民不满意，重新办理")
    assert item["status"] == "registered" and item["rating"] is None
    item = api.act(DISTRICT_DISPATCHER, iid, "dispatch", departments=[f"{DISTRICT}-CG"])
    assert item["status"] == "dispatched"
    api.act(DISTRICT_HANDLER_CG, iid, "acknowledge")
    assert api.act(DISTRICT_HANDLER_CG, iid, "feedback", note="区城管执法到场处理")["status"] == "feedback"
    api.act(DISTRICT_DISPATCHER, iid, "verify", passed=True)
    api.act(DISTRICT_DISPATCHER, iid, "close")
    item = api.act(DISTRICT_DISPATCHER, iid, "rate", rating=4)
    assert item["status"] == "rated" and item["rating"] == 4 and "reopen" not in item["actions"]

    # The tick stamps its entry with its own (simulated, later) time, so it is placed by that time.
    actions = [t["action"] for t in api.timeline(DISTRICT_DISPATCHER, iid)]
    assert actions.count("escalate") == 1
    actions.remove("escalate")
    assert actions == ["report", "accept", "register", "dispatch", "acknowledge", "handle", "feedback", "verify",
                       "close", "rate", "reopen", "dispatch", "acknowledge", "feedback", "verify", "close", "rate"]


# --------------------------------------------------------------------------- dispute 矛盾纠纷


def test_dispute_lifecycle_masks_parties_and_reveal_is_audited(api: Api, client: Any, db: Database) -> None:
    from shiyu.platform.audit.models import AuditEntry

    ids = [resident_id(), resident_id(birth="19701201")]
    phones = [phone(), phone()]
    item = api.create(MEDIATOR, {
        "kind": "dispute", "title": "邻里漏水纠纷", "description": "楼上漏水致楼下墙面受损", "category": "DS-01",
        "unit": "320102001002", "source": "visit",
        "parties": [
            {"role": "applicant", "name": "张三丰", "id_number": ids[0], "phone": phones[0],
             "address": "幸福路1号2单元301"},
            {"role": "respondent", "name": "李四", "id_number": ids[1], "phone": phones[1]},
        ],
        "dispute": {"risk_level": "medium", "mediation_channel": "people"},
    })
    iid = item["id"]
    assert item["number"].startswith("JF") and item["owner_code"] == TOWN
    assert item["data"]["dispute"]["risk_level"] == "medium"
    masked = item["parties"]
    assert [p["id_number"] for p in masked] == [i[:3] + "*" * 11 + i[-4:] for i in ids]
    assert [p["phone"] for p in masked] == [p[:3] + "****" + p[-4:] for p in phones]
    assert [p["name"] for p in masked] == ["张**", "李*"]
    assert masked[0]["address"].endswith("****")
    again, _ = api.get(DISPATCHER, iid)
    assert again["parties"] == masked

    # Reveal: needs a reason, shows everything, and is audited.
    r = client.post(f"/api/v1/items/{iid}/reveal", json={"reason": ""}, headers=api.h(MEDIATOR))
    assert_problem(r, 422, field="reason")
    with db.unit_of_work(write=False) as s:
        before = s.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "pii.reveal", AuditEntry.object_id == str(iid))).scalar_one()
    r = client.post(f"/api/v1/items/{iid}/reveal", json={"reason": "调解需联系当事人"}, headers=api.h(MEDIATOR))
    assert r.status_code == 200, r.text
    shown = r.json()["parties"]
    assert [p["id_number"] for p in shown] == ids and [p["phone"] for p in shown] == phones
    assert shown[0]["name"] == "张三丰" and shown[0]["address"] == "幸福路1号2单元301"
    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(AuditEntry).where(AuditEntry.action == "pii.reveal",
                                                  AuditEntry.object_id == str(iid))).scalars().all()
    assert len(rows) == before + 1
    assert rows[-1].actor == MEDIATOR and rows[-1].detail["reason"] == "调解需联系当事人"
    # The audit entry itself holds no personal data.
    assert not any(i in json.dumps(rows[-1].detail, ensure_ascii=False) for i in ids)
    # A leader may read but not reveal.
    r = client.post(f"/api/v1/items/{iid}/reveal", json={"reason": "查看当事人信息"}, headers=api.h(LEADER))
    assert r.status_code == 403, r.text

    api.act(DISPATCHER, iid, "accept")
    api.act(DISPATCHER, iid, "register")
    api.act(DISPATCHER, iid, "dispatch", departments=[f"{TOWN}-SF"])
    api.act(MEDIATOR, iid, "acknowledge")
    api.act(MEDIATOR, iid, "handle", note="第一次调解，双方初步同意")
    assert api.act(MEDIATOR, iid, "feedback", note="达成调解协议，赔偿2000元")["status"] == "feedback"
    api.act(DISPATCHER, iid, "verify", passed=True)
    item = api.act(DISPATCHER, iid, "close")
    assert item["status"] == "closed"
    assert [p["phone"] for p in item["parties"]] == [p[:3] + "****" + p[-4:] for p in phones]
    assert steps(api.timeline(DISPATCHER, iid)) == [
        ("report", MEDIATOR), ("accept", DISPATCHER), ("register", DISPATCHER), ("dispatch", DISPATCHER),
        ("acknowledge", MEDIATOR), ("handle", MEDIATOR), ("feedback", MEDIATOR), ("verify", DISPATCHER),
        ("close", DISPATCHER)]


# --------------------------------------------------------------------------- petition 信访


def test_petition_deadlines_extension_and_reply_before_close(api: Api) -> None:
    pid = resident_id(birth="19600808")
    item = api.create(DISPATCHER, {
        "kind": "petition", "title": "拆迁补偿信访", "description": "对补偿标准有异议", "category": "PT-01",
        "unit": VILLAGE, "source": "online",
        "parties": [{"role": "petitioner", "name": "赵六", "id_number": pid, "phone": phone()}],
        "petition": {"channel": "online", "matter": "拆迁补偿标准"},
    })
    iid = item["id"]
    assert item["number"].startswith("XF")
    assert item["data"]["petition"]["channel"] == "online"
    assert item["data"]["petition"]["matter"] == "拆迁补偿标准"
    received = datetime.fromisoformat(item["received_at"])
    assert datetime.fromisoformat(item["due_at"]) - received >= timedelta(days=15)  # accept within 15 days

    item = api.act(DISPATCHER, iid, "accept")
    handle_due = datetime.fromisoformat(item["handle_due_at"])
    days = (handle_due - datetime.fromisoformat(item["updated_at"])).total_seconds() / 86400
    assert 59.9 <= days <= 63, days  # 60 days (moved off a holiday at most)
    # Extend once, by up to 30 days, with a reason.
    assert_problem(api.act_raw(DISPATCHER, iid, "extend", days=30), 422, field="note", code="reason_required")
    assert_problem(api.act_raw(DISPATCHER, iid, "extend", days=31, note="情况复杂"), 422, field="days")
    item = api.act(DISPATCHER, iid, "extend", days=30, note="情况复杂，需延期办理")
    assert item["extensions"] == 1
    extended = datetime.fromisoformat(item["handle_due_at"])
    assert timedelta(days=29.9) <= extended - handle_due <= timedelta(days=33)
    assert datetime.fromisoformat(item["due_at"]) == extended
    r = api.act_raw(DISPATCHER, iid, "extend", days=10, note="再次延期")
    assert_problem(r, 409, code="extension_limit")
    assert api.get(DISPATCHER, iid)[0]["extensions"] == 1

    api.act(DISPATCHER, iid, "register")
    api.act(DISPATCHER, iid, "dispatch", departments=[f"{TOWN}-GA"])
    api.act(HANDLER_GA, iid, "acknowledge")
    api.act(HANDLER_GA, iid, "feedback", note="已核实并提出处理意见")
    api.act(DISPATCHER, iid, "verify", passed=True)
    # 件件有回复: no close without a recorded reply.
    r = api.act_raw(DISPATCHER, iid, "close")
    assert_problem(r, 409, code="reply_required")
    assert api.get(DISPATCHER, iid)[0]["status"] == "verified"
    assert_problem(api.act_raw(DISPATCHER, iid, "reply"), 422, field="reply")
    item = api.act(DISPATCHER, iid, "reply", reply="经核实，补偿标准符合规定，已书面答复信访人。")
    assert item["replied"] is True and item["status"] == "verified"
    item = api.act(DISPATCHER, iid, "close")
    assert item["status"] == "closed"
    assert [t["action"] for t in api.timeline(DISPATCHER, iid)] == [
        "report", "accept", "extend", "register", "dispatch", "acknowledge", "feedback", "verify", "reply",
        "close"]


def test_repeat_petition_is_flagged(api: Api, client: Any) -> None:
    pid = resident_id(birth="19550505")
    body = {"kind": "petition", "title": "养老金待遇", "category": "PT-02", "unit": VILLAGE, "source": "letter",
            "parties": [{"role": "petitioner", "name": "钱七", "id_number": pid}],
            "petition": {"channel": "letter", "matter": "养老金"}}
    first = api.create(DISPATCHER, body)
    second = api.create(DISPATCHER, {**body, "title": "养老金待遇（再次来信）"})
    assert first["repeat_of"] is None and second["repeat_of"] == first["id"]
    r = client.get("/api/v1/items", params={"repeat": "true", "kind": "petition", "limit": 500},
                   headers=api.h(DISPATCHER))
    ids = [i["id"] for i in r.json()["items"]]
    assert second["id"] in ids and first["id"] not in ids


# --------------------------------------------------------------------------- duplicates 并单


def test_duplicates_merge_and_dismiss(api: Api, client: Any) -> None:
    lon, lat = api.rep_point(GRID_DUP, VILLAGE_DUP)
    body = event_body(lon, lat, category="EV-01-05", title="占道经营")
    first = api.create(GRID_DUP, body)
    near = api.create(GRID_DUP, {**body, "lat": lat + 0.0005, "title": "占道经营（重复上报）"})  # ~55 m north
    assert first["id"] in [d["item_id"] for d in near["duplicates"]]
    dup = next(d for d in near["duplicates"] if d["item_id"] == first["id"])
    assert 40 < dup["distance_m"] < 70
    far = api.create(GRID_DUP, {**body, "lat": lat + 0.003, "title": "占道经营（较远）"})  # ~330 m
    assert first["id"] not in [d["item_id"] for d in far["duplicates"]]

    # Merge the duplicate into the first report.
    assert_problem(api.act_raw(DISPATCHER, near["id"], "merge"), 422, field="target")
    assert_problem(api.act_raw(DISPATCHER, near["id"], "merge", target=near["id"]), 422, field="target")
    merged = api.act(DISPATCHER, near["id"], "merge", target=first["id"], note="同一事件")
    assert merged["status"] == "merged" and merged["merged_into"] == first["id"]
    assert merged["actions"] == [] and merged["duplicates"] == []
    tl = api.timeline(DISPATCHER, first["id"])
    assert tl[-1]["action"] == "merged_in" and tl[-1]["data"] == {"item": near["id"]}

    # Another report close by: dismiss the candidate instead.
    other = api.create(GRID_DUP, {**body, "lon": lon + 0.0004, "title": "占道经营（另一摊位）"})
    assert first["id"] in [d["item_id"] for d in other["duplicates"]]
    assert near["id"] not in [d["item_id"] for d in other["duplicates"]]  # merged items are no candidates
    r = client.post(f"/api/v1/items/{other['id']}/duplicates/{first['id']}/dismiss", headers=api.h(DISPATCHER))
    assert r.status_code == 204, r.text
    again, _ = api.get(DISPATCHER, other["id"])
    assert first["id"] not in [d["item_id"] for d in again["duplicates"]]
    assert api.timeline(DISPATCHER, other["id"])[-1]["action"] == "dismiss_duplicate"
    r = client.post(f"/api/v1/items/{other['id']}/duplicates/{first['id']}/dismiss", headers=api.h(GRID_DUP))
    assert r.status_code == 403, r.text
    r = client.post(f"/api/v1/items/{other['id']}/duplicates/{far['id']}/dismiss", headers=api.h(DISPATCHER))
    assert_problem(r, 404)


# --------------------------------------------------------------------------- supervision, reject, return


def test_supervision_by_a_leader(api: Api, client: Any) -> None:
    lon, lat = api.rep_point(GRID, VILLAGE, 1)
    item = api.create(GRID, event_body(lon, lat, category="EV-02-01", title="路灯损坏"))
    iid = item["id"]
    assert item["supervised"] is False
    order = {"note": "请加快处置", "days": 2}
    r = client.post(f"/api/v1/items/{iid}/supervisions", json=order, headers=api.h(DISPATCHER))
    assert r.status_code == 403, r.text
    r = client.post(f"/api/v1/items/{iid}/supervisions", json=order, headers=api.h(LEADER))
    assert r.status_code == 201, r.text
    sup = r.json()
    assert sup["state"] == "open" and sup["issued_by"] == LEADER and sup["resolved_at"] is None
    assert api.get(DISPATCHER, iid)[0]["supervised"] is True
    r = client.get("/api/v1/items", params={"supervised": "true", "limit": 500}, headers=api.h(DISPATCHER))
    assert iid in [i["id"] for i in r.json()["items"]]
    r = client.get("/api/v1/notifications", headers=api.h(DISPATCHER))
    assert any(n["item_id"] == iid and n["kind"] == "supervision" for n in r.json())
    r = client.get(f"/api/v1/items/{iid}/supervisions", headers=api.h(DISPATCHER))
    assert [s["id"] for s in r.json()] == [sup["id"]]

    r = client.post(f"/api/v1/items/{iid}/supervisions/{sup['id']}/resolve", headers=api.h(LEADER))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "resolved" and r.json()["resolved_at"] is not None
    assert api.get(DISPATCHER, iid)[0]["supervised"] is False
    r = client.post(f"/api/v1/items/{iid}/supervisions/{sup['id']}/resolve", headers=api.h(LEADER))
    assert_problem(r, 409, code="already_resolved")
    assert [t["action"] for t in api.timeline(LEADER, iid)][-2:] == ["supervise", "resolve_supervision"]


def test_reject_needs_a_reason(api: Api) -> None:
    item = api.create(DISPATCHER, {"kind": "hotline", "title": "咨询公积金政策", "unit": VILLAGE, "source": "hotline"})
    iid = item["id"]
    assert_problem(api.act_raw(DISPATCHER, iid, "reject"), 422, field="note", code="reason_required")
    assert_problem(api.act_raw(DISPATCHER, iid, "reject", note="   "), 422, field="note")
    item = api.act(DISPATCHER, iid, "reject", note="不属于受理范围，已告知转公积金中心")
    assert item["status"] == "rejected" and item["actions"] == ["reply"]
    tl = api.timeline(DISPATCHER, iid)
    assert tl[-1]["action"] == "reject" and tl[-1]["note"] == "不属于受理范围，已告知转公积金中心"


def test_department_returns_an_item(api: Api) -> None:
    lon, lat = api.rep_point(GRID, VILLAGE, 2)
    item = api.create(GRID, event_body(lon, lat, category="EV-03-05", title="违章搭建"))
    iid = item["id"]
    api.act(DISPATCHER, iid, "accept")
    api.act(DISPATCHER, iid, "register")
    api.act(DISPATCHER, iid, "dispatch", departments=[f"{TOWN}-GA"])
    # Only an assigned department may return it, and only with a reason.
    assert_problem(api.act_raw(HANDLER_CG, iid, "return", note="不归我们管"), 403, code="not_assigned")
    assert_problem(api.act_raw(HANDLER_GA, iid, "return"), 422, field="note", code="reason_required")
    item = api.act(HANDLER_GA, iid, "return", note="属城管职责，退回重新派遣")
    assert item["status"] == "registered"
    assert [a["state"] for a in item["assignments"]] == ["returned"]
    item = api.act(DISPATCHER, iid, "dispatch", departments=[f"{TOWN}-CG"])
    assert item["status"] == "dispatched"
    assert {a["department_code"]: a["state"] for a in item["assignments"]} == {
        f"{TOWN}-GA": "returned", f"{TOWN}-CG": "assigned"}
    tl = api.timeline(DISPATCHER, iid)
    ret = next(t for t in tl if t["action"] == "return")
    assert ret["actor"] == HANDLER_GA and ret["unit_code"] == f"{TOWN}-GA"
    assert ret["from_status"] == "dispatched" and ret["to_status"] == "registered"
    assert ret["note"] == "属城管职责，退回重新派遣"


def test_dispatch_checks_departments(api: Api) -> None:
    item = api.create(DISPATCHER, {"kind": "hotline", "title": "小区垃圾清运不及时", "unit": VILLAGE})
    iid = item["id"]
    api.act(DISPATCHER, iid, "accept")
    api.act(DISPATCHER, iid, "register")
    assert_problem(api.act_raw(DISPATCHER, iid, "dispatch"), 422, field="departments")
    assert_problem(api.act_raw(DISPATCHER, iid, "dispatch", departments=["NOPE-GA"]), 422, field="departments",
                   code="unknown_department")
    # A department of a sibling town does not serve this area.
    r = api.act_raw(DISPATCHER, iid, "dispatch", departments=[f"{SIBLING_TOWN}-GA"])
    assert_problem(r, 422, field="departments", code="department_out_of_area")
    assert_problem(api.act_raw(DISPATCHER, iid, "whistle", departments=[f"{TOWN}-GA"]), 422, field="departments",
                   code="whistle_needs_two")
    assert api.get(DISPATCHER, iid)[0]["status"] == "registered"


# --------------------------------------------------------------------------- filters, pagination, export


def test_filters_and_pagination(api: Api, client: Any, db: Database) -> None:
    lon, lat = api.rep_point(GRID, VILLAGE, 3)
    tag = uuid.uuid4().hex[:8]
    late = api.create(GRID, event_body(lon, lat, category="EV-01-12", title=f"垃圾满溢 {tag}", priority="high"))
    fresh = api.create(GRID, event_body(lon, lat, category="EV-01-12", title=f"垃圾满溢 {tag} 新"))
    hot = api.create(DISPATCHER, {"kind": "hotline", "title": f"热线 {tag}", "unit": VILLAGE})
    sibling = api.create(SIBLING_DISPATCHER, {"kind": "hotline", "title": f"热线 {tag} 邻镇", "unit": "320102002001"})
    with db.unit_of_work() as s:  # the accept deadline passed long ago
        s.execute(update(WorkItem).where(WorkItem.id == late["id"]).values(due_at=datetime.now().astimezone()
                                                                           - timedelta(hours=3)))

    def summaries(user: str, **params: Any) -> list[dict[str, Any]]:
        r = client.get("/api/v1/items", params={"limit": 500, **params}, headers=api.h(user))
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == len(page["items"])
        items: list[dict[str, Any]] = page["items"]
        return items

    def ids(user: str, **params: Any) -> list[int]:
        return [i["id"] for i in summaries(user, **params)]

    overdue = summaries(DISPATCHER, kind="event", overdue="true", mine="true")
    assert late["id"] in [i["id"] for i in overdue] and fresh["id"] not in [i["id"] for i in overdue]
    for i in overdue:
        assert i["kind"] == "event" and i["owner_code"] == TOWN and i["status"] in (
            "reported", "accepted", "registered", "dispatched", "handling", "feedback", "verified")
    assert summaries(DISPATCHER, q=tag)[0]["id"] == late["id"]  # overdue first
    not_overdue = ids(DISPATCHER, overdue="false", q=tag)
    assert late["id"] not in not_overdue and fresh["id"] in not_overdue and hot["id"] in not_overdue

    assert sorted(ids(DISPATCHER, q=tag)) == sorted([late["id"], fresh["id"], hot["id"]])
    assert sorted(ids(SIBLING_DISPATCHER, q=tag)) == [sibling["id"]]  # jurisdiction
    assert sorted(ids(DISTRICT_DISPATCHER, q=tag)) == sorted([late["id"], fresh["id"], hot["id"], sibling["id"]])
    assert ids(DISPATCHER, q=late["number"]) == [late["id"]]
    assert ids(DISPATCHER, q=tag, kind="hotline") == [hot["id"]]
    assert sorted(ids(DISPATCHER, q=tag, category="EV-01")) == sorted([late["id"], fresh["id"]])
    assert ids(DISPATCHER, q=tag, category="EV-01-12", priority="high") == [late["id"]]
    assert sorted(ids(DISPATCHER, q=tag, unit=VILLAGE)) == sorted([late["id"], fresh["id"], hot["id"]])
    assert ids(DISTRICT_DISPATCHER, q=tag, unit="320102002001") == [sibling["id"]]
    assert sorted(ids(DISPATCHER, q=tag, status="reported", open="true")) == sorted(
        [late["id"], fresh["id"], hot["id"]])
    assert ids(DISPATCHER, q=tag, status="closed") == []
    since = late["created_at"]
    assert late["id"] in ids(DISPATCHER, q=tag, since=since)
    assert ids(DISPATCHER, q=tag, until=since) == []
    assert ids(DISPATCHER, q=tag, supervised="true") == []
    # A grid worker's "mine" is what their unit owns: the town owns these, so none.
    assert late["id"] in ids(GRID, q=tag) and ids(GRID, q=tag, mine="true") == []

    # Pagination: stable, disjoint pages that add up to the total.
    r = client.get("/api/v1/items", params={"q": tag, "limit": 2}, headers=api.h(DISPATCHER))
    page1 = r.json()
    assert page1["total"] == 3 and len(page1["items"]) == 2 and page1["limit"] == 2 and page1["offset"] == 0
    r = client.get("/api/v1/items", params={"q": tag, "limit": 2, "offset": 2}, headers=api.h(DISPATCHER))
    page2 = r.json()
    assert page2["total"] == 3 and len(page2["items"]) == 1
    assert {i["id"] for i in page1["items"] + page2["items"]} == {late["id"], fresh["id"], hot["id"]}

    for params, field in (({"kind": "nope"}, "kind"), ({"status": "nope"}, "status"), ({"limit": 0}, "limit"),
                          ({"priority": "asap"}, "priority"), ({"since": "yesterday"}, "since"),
                          ({"unit": "999999999999"}, "unit")):
        r = client.get("/api/v1/items", params=params, headers=api.h(DISPATCHER))
        assert_problem(r, 422, field=field)
    # Leave nothing overdue behind for later SLA ticks on this shared database.
    assert api.act(DISPATCHER, late["id"], "reject", note="测试数据，不予受理")["status"] == "rejected"


def test_export_csv_and_xlsx_are_masked_and_scoped(api: Api, client: Any) -> None:
    import openpyxl

    tag = uuid.uuid4().hex[:8]
    caller = phone()
    mine = api.create(DISPATCHER, {"kind": "hotline", "title": f"导出测试 {tag}", "unit": VILLAGE,
                                   "reporter": {"name": "孙八", "phone": caller}})
    other = api.create(SIBLING_DISPATCHER, {"kind": "hotline", "title": f"导出测试 {tag} 邻镇", "unit": "320102002001",
                                            "reporter": {"name": "周九", "phone": phone()}})

    def export(user: str, fmt: str = "csv", **params: Any) -> Any:
        r = client.get("/api/v1/items/export", params={"format": fmt, **params}, headers=api.h(user))
        assert r.status_code == 200, r.text
        assert "attachment" in r.headers["content-disposition"]
        return r

    r = export(DISPATCHER)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    header = rows[0]
    assert header[:4] == ["编号", "类型", "状态", "标题"] and "联系电话" in header and "责任中心" in header
    col = {name: n for n, name in enumerate(header)}
    numbers = {row[col["编号"]]: row for row in rows[1:]}
    assert mine["number"] in numbers and other["number"] not in numbers
    mine_row = numbers[mine["number"]]
    assert mine_row[col["联系电话"]] == caller[:3] + "****" + caller[-4:]
    assert mine_row[col["上报人"]] == "孙*"
    assert mine_row[col["类型"]] == "12345工单" and mine_row[col["状态"]] == "待受理"
    assert caller not in r.text
    # Only the caller's jurisdiction: every row is inside the town, none from the sibling town.
    assert all(row[col["所在单位"]].startswith(TOWN[:9]) for row in rows[1:])
    sibling_rows = list(csv.reader(io.StringIO(export(SIBLING_DISPATCHER).content.decode("utf-8-sig"))))[1:]
    sibling_numbers = {row[col["编号"]] for row in sibling_rows}
    assert other["number"] in sibling_numbers and mine["number"] not in sibling_numbers
    assert not sibling_numbers & set(numbers)

    # Filters apply to exports too.
    filtered = list(csv.reader(io.StringIO(export(DISPATCHER, q=tag).content.decode("utf-8-sig"))))
    assert [row[0] for row in filtered[1:]] == [mine["number"]]

    r = export(DISPATCHER, "xlsx", q=tag)
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    sheet = wb.worksheets[0]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == header
    assert len(values) == 2 and values[1][0] == mine["number"]
    assert values[1][col["联系电话"]] == caller[:3] + "****" + caller[-4:]

    # Handlers may not export; bad formats are refused.
    assert client.get("/api/v1/items/export", headers=api.h(HANDLER_GA)).status_code == 403
    assert_problem(client.get("/api/v1/items/export", params={"format": "pdf"}, headers=api.h(DISPATCHER)), 422,
                   field="format")


# --------------------------------------------------------------------------- bad input writes nothing


@pytest.fixture(scope="module")
def reported_event(api: Api) -> dict[str, Any]:
    """An event waiting to be accepted (module-scoped: made before ``unchanged`` counts)."""
    lon, lat = api.rep_point(GRID, VILLAGE, 4)
    return api.create(GRID, event_body(lon, lat, category="EV-01-17", title="绿地损毁"))


@pytest.fixture
def unchanged(db: Database) -> Any:
    """Asserts at the end of the test that no item (and no attachment) was written."""
    with db.unit_of_work(write=False) as s:
        before = (s.execute(select(func.count()).select_from(WorkItem)).scalar_one(),
                  s.execute(select(func.count()).select_from(Attachment)).scalar_one())
    yield
    with db.unit_of_work(write=False) as s:
        after = (s.execute(select(func.count()).select_from(WorkItem)).scalar_one(),
                 s.execute(select(func.count()).select_from(Attachment)).scalar_one())
    assert after == before


def post_item(api: Api, user: str, body: dict[str, Any], idem: str | None = "auto") -> Any:
    headers = api.h(user)
    if idem is not None:
        headers["Idempotency-Key"] = key() if idem == "auto" else idem
    return api.client.post("/api/v1/items", json=body, headers=headers)


@pytest.mark.usefixtures("unchanged")
class TestBadInputWritesNothing:
    def test_unknown_category(self, api: Api) -> None:
        lon, lat = api.rep_point(GRID, VILLAGE)
        assert_problem(post_item(api, GRID, event_body(lon, lat, category="EV-77-77")), 422, field="category")
        assert_problem(post_item(api, GRID, event_body(lon, lat, category="DS-01")), 422, field="category")
        body = event_body(lon, lat)
        del body["category"]
        assert_problem(post_item(api, GRID, body), 422, field="category")

    def test_point_outside_every_grid(self, api: Api) -> None:
        assert_problem(post_item(api, GRID, event_body(0.5, 0.5)), 422, field="lon", code="invalid")
        assert_problem(post_item(api, GRID, event_body(200, 0.5)), 422, field="lon")
        body = event_body(118.7, 32.0)
        del body["lat"]
        assert_problem(post_item(api, GRID, body), 422, field="lat")

    def test_location_outside_jurisdiction_or_unknown_unit(self, api: Api) -> None:
        lon, lat = api.rep_point(SIBLING_DISPATCHER, "320102002001")
        assert_problem(post_item(api, GRID, event_body(lon, lat)), 422, field="lon")
        body = {"kind": "hotline", "title": "无此单位", "unit": "999999999999"}
        assert_problem(post_item(api, DISPATCHER, body), 422, field="unit")
        assert_problem(post_item(api, DISPATCHER, {"kind": "hotline", "title": "无位置"}), 422, field="lon")

    def test_invalid_resident_id_and_phone(self, api: Api) -> None:
        body = {"kind": "dispute", "title": "纠纷", "unit": VILLAGE, "category": "DS-02",
                "parties": [{"role": "applicant", "name": "甲", "id_number": bad_resident_id()}]}
        r = post_item(api, DISPATCHER, body)
        problem = assert_problem(r, 422, field="parties[0].id_number")
        assert problem["field"] == "parties[0].id_number"
        assert problem["errors"][0]["code"] == "check_digit"
        assert body["parties"][0]["id_number"] not in r.text  # never echoed
        body["parties"] = [{"role": "applicant", "name": "甲", "id_number": resident_id(), "phone": "12345"}]
        assert_problem(post_item(api, DISPATCHER, body), 422, field="parties[0].phone")
        body["parties"].append({"role": "respondent", "name": "乙", "id_number": "1234"})
        problem = assert_problem(post_item(api, DISPATCHER, body), 422)
        assert [e["field"] for e in problem["errors"]] == ["parties[0].phone", "parties[1].id_number"]
        body = {"kind": "hotline", "title": "来电", "unit": VILLAGE, "reporter": {"name": "丙", "phone": "139123"}}
        assert_problem(post_item(api, DISPATCHER, body), 422, field="reporter.phone")
        assert_problem(post_item(api, DISPATCHER, {"kind": "dispute", "title": "无当事人", "unit": VILLAGE}), 422,
                       field="parties")
        assert_problem(post_item(api, DISPATCHER, {"kind": "petition", "title": "无信访人", "unit": VILLAGE}), 422,
                       field="parties")

    def test_wrong_or_bad_attachments_in_json(self, api: Api) -> None:
        lon, lat = api.rep_point(GRID, VILLAGE)
        png = base64.b64encode(PNG).decode()
        for att, field in (
            ({"filename": "a.pdf", "content_type": "application/pdf", "data": png}, "attachments[0].data"),
            ({"filename": "a.exe", "content_type": "image/png", "data": base64.b64encode(b"MZ\x90\x00").decode()},
             "attachments[0].data"),
            ({"filename": "a.png", "content_type": "image/png", "data": "not base64!"}, "attachments[0].data"),
            ({"filename": "a.png", "content_type": "image/png", "data": ""}, "attachments[0].data"),
            ({"filename": "a.gif", "content_type": "image/gif", "data": png}, "attachments[0].content_type"),
        ):
            r = post_item(api, GRID, event_body(lon, lat, attachments=[att]))
            assert_problem(r, 422, field=field)

    def test_attachment_uploads(self, api: Api, client: Any, reported_event: dict[str, Any]) -> None:
        iid = reported_event["id"]
        _, etag = api.get(GRID, iid)
        url = f"/api/v1/items/{iid}/attachments"
        headers = api.h(GRID, **{"If-Match": etag})
        oversize = PNG + b"\x00" * (5 * 1024 * 1024 + 1 - len(PNG))
        r = client.post(url, files={"file": ("big.png", oversize, "image/png")}, headers=headers)
        assert r.status_code in (413, 422), r.text
        problem = assert_problem(r, r.status_code)
        assert problem.get("field") in ("file", "file.data", "body"), problem
        r = client.post(url, files={"file": ("tool.exe", b"MZ\x90\x00\x03" + b"\x00" * 100, "image/png")},
                        headers=headers)
        assert_problem(r, 422, field="file.data", code="attachment_mismatch")
        r = client.post(url, files={"file": ("scan.pdf", PNG, "application/pdf")}, headers=headers)
        assert_problem(r, 422, field="file.data")
        r = client.post(url, files={"file": ("a.txt", b"hello", "text/plain")}, headers=headers)
        assert_problem(r, 422, field="file.content_type")
        r = client.post(url, files={"file": ("a.png", PNG, "image/png")}, headers=api.h(GRID))
        assert_problem(r, 428, field="If-Match")
        r = client.post(url, files={"file": ("a.png", PNG, "image/png")}, headers=api.h(GRID, **{"If-Match": '"1-0"'}))
        assert_problem(r, 412)
        assert api.get(GRID, iid)[1] == etag

    def test_idempotency_key_required(self, api: Api) -> None:
        body = {"kind": "hotline", "title": "幂等测试", "unit": VILLAGE}
        assert_problem(post_item(api, DISPATCHER, body, idem=None), 422, field="Idempotency-Key",
                       code="idempotency_key_required")
        assert_problem(post_item(api, DISPATCHER, body, idem=""), 422, field="Idempotency-Key")
        assert_problem(post_item(api, DISPATCHER, body, idem="x" * 129), 422, field="Idempotency-Key")

    def test_illegal_action_and_preconditions(self, api: Api, client: Any, reported_event: dict[str, Any]) -> None:
        iid = reported_event["id"]
        item, etag = api.get(DISPATCHER, iid)
        url = f"/api/v1/items/{iid}/actions"
        r = client.post(f"{url}/close", json={}, headers=api.h(DISPATCHER, **{"If-Match": etag}))
        problem = assert_problem(r, 409, code="transition_not_allowed")
        assert "reported" in problem["detail"] or "待受理" in problem["detail"]
        r = client.post(f"{url}/accept", json={}, headers=api.h(DISPATCHER))
        assert_problem(r, 428, field="If-Match")
        r = client.post(f"{url}/accept", json={}, headers=api.h(DISPATCHER, **{"If-Match": f'"{iid}-999"'}))
        assert_problem(r, 412, field="If-Match", code="stale_etag")
        r = client.post(f"{url}/fly", json={}, headers=api.h(DISPATCHER, **{"If-Match": etag}))
        assert_problem(r, 404)
        r = client.post(f"{url}/accept", json={"bogus": 1}, headers=api.h(DISPATCHER, **{"If-Match": etag}))
        assert_problem(r, 422, field="bogus")
        r = client.post(f"{url}/rate", json={"rating": 9}, headers=api.h(DISPATCHER, **{"If-Match": etag}))
        assert_problem(r, 422, field="rating")
        # A grid worker may not accept; a sibling town's dispatcher cannot even see it.
        assert_problem(api.act_raw(GRID, iid, "accept"), 403)
        r = client.post(f"{url}/accept", json={}, headers=api.h(SIBLING_DISPATCHER, **{"If-Match": etag}))
        assert_problem(r, 404)
        assert api.get(DISPATCHER, iid) == (item, etag)


def test_idempotent_replay_and_mismatch(api: Api, db: Database) -> None:
    idem = key()
    body = {"kind": "hotline", "title": "幂等重放", "unit": VILLAGE, "reporter": {"name": "吴十", "phone": phone()}}
    first = api.create(DISPATCHER, body, idem=idem, expect=201)
    before = item_count(db)
    again = api.create(DISPATCHER, body, idem=idem, expect=200)
    assert again["id"] == first["id"] and again["number"] == first["number"]
    r = post_item(api, DISPATCHER, {**body, "title": "另一个请求"}, idem=idem)
    assert_problem(r, 422, field="Idempotency-Key", code="idempotency_mismatch")
    # Keys belong to a user: the same key from someone else is a new item.
    other = api.create(SIBLING_DISPATCHER, {**body, "unit": "320102002001"}, idem=idem, expect=201)
    assert other["id"] != first["id"]
    assert item_count(db) == before + 1
