"""The web workbench 工作台 in a real browser: report on the map, dispatch with a whistle
吹哨报到, report back, verify and close; the dashboard moves; jurisdiction, masking,
form errors, keyboard and bulk actions; screenshots at desktop and phone sizes."""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from typing import Any

import pytest
from shapely.geometry import shape

from shiyu.kit.pii import find_unmasked, mask_resident_id, resident_id_check_digit

from .conftest import DESKTOP, PHONE, LiveServer, Pages, audit_entries, item_id_from, login

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

VILLAGE_GRID = "320102001001001"  # 桂林社区第1网格, a grid of grid_320102001001's village
GRID_WORKER = "grid_320102001001"
DISPATCHER = "dispatcher_320102001000"
HANDLERS = {"320102001000-GA": "handler_320102001000_ga", "320102001000-CG": "handler_320102001000_cg"}
SIBLING_DISPATCHER = "dispatcher_320102002000"
#: A point inside VILLAGE_GRID (the report test finds its own point from the map's GeoJSON).
INSIDE = (118.9207, 32.3653)
FIGURES = ("today", "open", "overdue", "closure", "ontime", "period")


# --------------------------------------------------------------------------- helpers

def png(width: int = 8, height: int = 8) -> bytes:
    """A small valid red PNG, made here so the test needs no fixture file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xc0\x20\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def resident_id(first17: str) -> str:
    return first17 + resident_id_check_digit(first17)


def assert_masked(page: Any) -> None:
    leaked = find_unmasked(page.content())
    assert leaked == [], f"{page.url} shows {len(leaked)} unmasked values"


def wait_for_map(page: Any, lon: float | None = None, lat: float | None = None) -> None:
    """Wait until the page's Leaflet map drew its grids and stopped moving (and shows the point)."""
    page.wait_for_function(
        """([lon, lat]) => {
          const m = window.__currentMap();
          if (!m || !m._loaded || m._animatingZoom || (m._panAnim && m._panAnim._inProgress)) return false;
          let n = 0; m.eachLayer(l => { if (l.feature) n++; });
          return n > 0 && (lon === null || m.getBounds().contains([lat, lon]));
        }""", arg=[lon, lat])


def map_pixel(page: Any, lon: float, lat: float) -> tuple[float, float]:
    wait_for_map(page, lon, lat)
    js = "([lon, lat]) => { const p = window.__currentMap().latLngToContainerPoint([lat, lon]); return [p.x, p.y]; }"
    for _ in range(50):  # the same pixel twice: the view has settled
        first = page.evaluate(js, [lon, lat])
        page.wait_for_timeout(100)
        second = page.evaluate(js, [lon, lat])
        if first == second:
            return float(second[0]), float(second[1])
    raise AssertionError("the map kept moving")


def grid_point(page: Any, grid_code: str) -> tuple[float, float]:
    """A point surely inside ``grid_code``, from the same GeoJSON the map draws."""
    fc = page.evaluate("() => fetch('/map/grids.geojson').then(r => r.json())")
    feat = next(f for f in fc["features"] if f["properties"]["code"] == grid_code)
    p = shape(feat["geometry"]).buffer(-0.001).representative_point()
    return p.x, p.y


def event_category(page: Any) -> str:
    return str(page.locator("#category option[data-kind=event]").first.get_attribute("value"))


def field_error(page: Any, input_id: str) -> Any:
    """The error shown next to a field: the ``.fielderr`` of the ``.field`` holding the input."""
    holder = page.locator(f"#{input_id}").locator("xpath=ancestor::div[contains(@class,'field')][1]")
    return holder.locator(".fielderr")


def act(page: Any, action: str, *, note: str | None = None, departments: list[str] | None = None) -> None:
    """Run an action from the item page's ``<details class="action">`` block; the page reloads."""
    form = page.locator(f"details.action form[hx-post$='/act/{action}']")
    details = form.locator("xpath=ancestor::details[1]")
    if not details.evaluate("d => d.open"):
        details.locator("summary").click()
    if departments:
        form.locator("select[name=departments]").select_option(departments)
    if note is not None:
        form.locator("textarea[name=note]").fill(note)
    try:
        with page.expect_navigation(timeout=10_000):
            form.locator("button[type=submit]").click()
    except Exception as exc:
        raise AssertionError(f"{action} failed: {page.inner_text('#action-errors')!r}") from exc


def status_of(page: Any) -> str:
    cls = page.locator(".pagehead .status").get_attribute("class") or ""
    return cls.split("s-", 1)[1].split()[0]


def figures(page: Any) -> dict[str, str]:
    page.goto("/dashboard")
    return {k: page.inner_text(f"#fig-{k}").strip() for k in FIGURES}


def create_item(api: Any, username: str, **body: Any) -> dict[str, Any]:
    r = api(username).post("/api/v1/items", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return dict(r.json())


def town_event(api: Any, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """An event in the worker's village grid, created through the API."""
    cats = api(DISPATCHER).get("/api/v1/categories", params={"kind": "event", "active": "true"})
    assert cats.status_code == 200, cats.text
    code = next(c["code"] for c in cats.json() if c["parent_code"])
    body = {"kind": "event", "title": title or f"路灯不亮 {uuid.uuid4().hex[:6]}", "category": code,
            "lon": INSIDE[0], "lat": INSIDE[1], **extra}
    return create_item(api, GRID_WORKER, **body)


# --------------------------------------------------------------------------- login, logout, session

def test_login_shows_errors_and_lets_the_user_in(page: Any) -> None:
    page.goto("/login")
    page.fill("input[name=username]", "leader_320102000000")
    page.fill("input[name=password]", "wrong-password")
    page.click("form[action='/login'] button[type=submit]")
    assert page.locator(".error").inner_text() == "用户名或密码错误。"
    assert page.input_value("input[name=username]") == "leader_320102000000"
    login(page, "leader_320102000000")
    assert page.url.endswith("/inbox")
    assert "leader_320102000000" in page.inner_text(".who")


def test_session_required_and_logout(page: Any) -> None:
    page.goto("/inbox")
    assert re.search(r"/login\?next=/inbox$", page.url), page.url
    login(page, DISPATCHER)
    page.goto("/inbox")
    assert page.url.endswith("/inbox")
    with page.expect_navigation(url=re.compile(r"/login$")):
        page.click(".who button:has-text('退出')")
    assert not [c for c in page.context.cookies() if c["name"] == "shiyu_session"]
    page.goto("/inbox")
    assert "/login?next=" in page.url


# --------------------------------------------------------------------------- the whole workflow

def test_report_whistle_feedback_close_and_dashboard(pages: Pages, live_server: LiveServer) -> None:
    dispatcher = pages.login(DISPATCHER)
    before = figures(dispatcher)

    # A grid worker reports an event by tapping the map inside a grid of the village.
    worker = pages.login(GRID_WORKER)
    worker.goto("/report")
    lon, lat = grid_point(worker, VILLAGE_GRID)
    x, y = map_pixel(worker, lon, lat)
    worker.locator("#pickmap").click(position={"x": x, "y": y})
    worker.wait_for_function("g => document.getElementById('gridinfo').textContent.includes(g)", arg=VILLAGE_GRID)
    assert abs(float(worker.input_value("#lon")) - lon) < 0.001
    assert abs(float(worker.input_value("#lat")) - lat) < 0.001
    title = f"井盖缺失 {uuid.uuid4().hex[:6]}"
    worker.select_option("#category", event_category(worker))
    worker.fill("#title", title)
    worker.fill("#description", "人行道井盖缺失，存在安全隐患")
    worker.set_input_files("#photos", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png()}])
    with worker.expect_navigation(url=re.compile(r"/items/\d+$")):
        worker.click("form.report button[type=submit]")
    item_id = item_id_from(worker.url)
    assert worker.inner_text("h1") == title
    assert status_of(worker) == "reported"
    assert VILLAGE_GRID in worker.inner_text("dl.kv")
    assert worker.locator(".thumbs img").count() == 1

    # The town dispatcher finds it in the inbox, accepts, registers and whistles two departments.
    dispatcher.goto("/inbox")
    row = dispatcher.locator("table.inbox tbody tr", has_text=title)
    assert row.count() == 1
    row.locator("a").first.click()
    dispatcher.wait_for_url(f"**/items/{item_id}")
    assert_masked(dispatcher)
    act(dispatcher, "accept")
    assert status_of(dispatcher) == "accepted"
    act(dispatcher, "register")
    assert status_of(dispatcher) == "registered"
    act(dispatcher, "whistle", departments=list(HANDLERS), note="联合处置")
    assert status_of(dispatcher) == "dispatched"
    assert dispatcher.locator(".pagehead .tag", has_text="吹哨").count() == 1
    assert dispatcher.locator("table.grid.small tbody tr").count() == 2

    # Both departments report in (报到) and report back (反馈).
    for n, (dept, username) in enumerate(HANDLERS.items()):
        handler = pages.login(username)
        handler.goto(f"/items/{item_id}")
        act(handler, "acknowledge")
        assert status_of(handler) == "handling"
        if n == 0:  # reporting back needs a note: the empty form is not sent
            handler.locator("details.action summary", has_text=re.compile("^反馈$")).click()
            button = handler.locator("form[hx-post$='/act/feedback'] button[type=submit]")
            assert button.inner_text() == "反馈"  # the action, not the state 已反馈
            button.click()
            assert handler.locator("form[hx-post$='/act/feedback'] textarea[name=note]:invalid").count() == 1
            handler.reload()
            assert status_of(handler) == "handling"
        act(handler, "feedback", note=f"{dept} 已处置完毕")
        assert status_of(handler) == ("feedback" if n == len(HANDLERS) - 1 else "handling")

    # The dispatcher verifies and closes.
    dispatcher.goto(f"/items/{item_id}")
    act(dispatcher, "verify", note="现场核查通过")
    assert status_of(dispatcher) == "verified"
    act(dispatcher, "close")
    assert status_of(dispatcher) == "closed"
    timeline = dispatcher.inner_text("ol.timeline")
    for step in ("上报", "受理", "立案", "吹哨报到", "报到", "反馈", "核查", "结案"):
        assert step in timeline, step

    # The dashboard counted the new item and its closing.
    after = figures(dispatcher)
    period0 = int(before["period"])
    closed0 = 0 if before["closure"] == "-" else round(float(before["closure"].rstrip("%")) / 100 * period0)
    assert int(after["today"]) == int(before["today"]) + 1
    assert int(after["period"]) == period0 + 1
    assert int(after["open"]) == int(before["open"])  # opened and closed again
    assert int(after["overdue"]) == int(before["overdue"])
    assert after["closure"] == f"{(closed0 + 1) / (period0 + 1) * 100:.1f}%"
    assert after["ontime"] != "-"

    # A dispatcher of a sibling town cannot reach it by URL: the 404 page, and a denial in the audit log.
    sibling = pages.login(SIBLING_DISPATCHER)
    response = sibling.goto(f"/items/{item_id}")
    assert response is not None and response.status == 404
    assert title not in sibling.content()
    assert sibling.inner_text("h1") == "未找到"
    denials = audit_entries(live_server, actor=SIBLING_DISPATCHER, object_id=str(item_id), result="denied")
    assert denials, "the denied read was not audited"


# --------------------------------------------------------------------------- personal data

def test_personal_data_masked_until_revealed_and_reveal_audited(pages: Pages, live_server: LiveServer,
                                                                 api: Any) -> None:
    phone, party_phone = "13912345678", "13787654321"
    idn = resident_id("32010219850312123")
    item = create_item(api, DISPATCHER, kind="dispute", title=f"邻里纠纷 {uuid.uuid4().hex[:6]}",
                       lon=INSIDE[0], lat=INSIDE[1], reporter={"name": "王小明", "phone": phone},
                       parties=[{"role": "applicant", "name": "张三", "id_number": idn, "phone": party_phone},
                                {"role": "respondent", "name": "李四"}])
    page = pages.login(DISPATCHER)
    page.goto(f"/items/{item['id']}")
    html = page.content()
    assert find_unmasked(html) == []
    assert phone not in html and idn not in html and party_phone not in html
    assert "139****5678" in page.inner_text("#people") and mask_resident_id(idn) in page.inner_text("#people")

    page.fill("#people input[name=reason]", "核实当事人身份")
    page.click("#people button[type=submit]")
    page.wait_for_selector("#people >> text=审计日志")
    people = page.inner_text("#people")
    assert phone in people and idn in people and party_phone in people
    assert sorted(find_unmasked(page.content())) == sorted([phone, idn, party_phone])
    reveals = audit_entries(live_server, action="pii.reveal", actor=DISPATCHER, object_id=str(item["id"]))
    assert reveals and reveals[-1].detail.get("reason") == "核实当事人身份"

    # A reload shows the masked values again.
    page.reload()
    assert find_unmasked(page.content()) == []


# --------------------------------------------------------------------------- form errors

def test_report_form_errors_next_to_fields_keep_input(pages: Pages) -> None:
    page = pages.login(GRID_WORKER)
    page.goto("/report")
    wait_for_map(page)

    # An unknown category (not offered; a stale or forged form) and a point outside every grid.
    page.evaluate("""() => { const s = document.getElementById('category');
                            s.add(new Option('已停用分类', 'NO-SUCH-CAT')); s.value = 'NO-SUCH-CAT'; }""")
    page.fill("#title", "楼道堆放杂物")
    page.fill("#description", "三楼楼道堆满纸箱")
    page.fill("#lon", "100.5")
    page.fill("#lat", "10.25")
    page.click("form.report button[type=submit]")
    page.wait_for_selector(".fielderr")
    assert field_error(page, "category").inner_text() == "分类不存在"
    assert field_error(page, "lon").inner_text() == "该位置不在任何网格内"
    assert page.input_value("#title") == "楼道堆放杂物"
    assert page.input_value("#description") == "三楼楼道堆满纸箱"
    assert page.input_value("#lon") == "100.5" and page.input_value("#lat") == "10.25"
    assert "/report" in page.url
    wait_for_map(page)  # the map works again after the form came back

    # An empty title, with everything else fine.
    lon, lat = grid_point(page, VILLAGE_GRID)
    page.select_option("#category", event_category(page))
    page.fill("#title", "")
    page.fill("#description", "描述仍在")
    page.fill("#lon", f"{lon:.6f}")
    page.fill("#lat", f"{lat:.6f}")
    page.click("form.report button[type=submit]")
    page.wait_for_selector("#title >> xpath=ancestor::div[contains(@class,'field')][1]//p[@class='fielderr']")
    assert field_error(page, "title").inner_text() == "内容太短"
    assert page.locator(".fielderr").count() == 1
    assert page.input_value("#description") == "描述仍在"
    assert page.input_value("#lon") == f"{lon:.6f}"

    # The same in English, after the language switch.
    with page.expect_navigation():
        page.click("a.lang")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.url.endswith("/report")
    page.select_option("#category", event_category(page))
    page.fill("#title", "Blocked corridor")
    page.fill("#description", "Boxes everywhere")
    page.fill("#lon", "100.5")
    page.fill("#lat", "10.25")
    page.click("form.report button[type=submit]")
    page.wait_for_selector(".fielderr")
    assert field_error(page, "lon").inner_text() == "The point lies in no grid"
    assert page.input_value("#title") == "Blocked corridor"
    assert page.input_value("#description") == "Boxes everywhere"


# --------------------------------------------------------------------------- inbox keys and bulk

def test_inbox_keyboard_opens_an_item(pages: Pages, api: Any) -> None:
    town_event(api)
    town_event(api)
    page = pages.login(DISPATCHER)
    page.goto("/inbox")
    rows = page.locator("table.inbox tbody tr[data-href]")
    assert rows.count() >= 2
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.locator("table.inbox tbody tr.cur").count() == 1
    assert "cur" in (rows.nth(0).get_attribute("class") or "")
    target = rows.nth(0).get_attribute("data-href")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(str(target))


def test_inbox_bulk_accept(pages: Pages, api: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    made = [town_event(api, title=f"批量受理 {tag} {n}") for n in range(2)]
    page = pages.login(DISPATCHER)
    page.goto(f"/inbox?q={tag}&status=reported")
    rows = page.locator("table.inbox tbody tr[data-href]")
    assert rows.count() == 2
    page.check("input[data-all]")
    assert page.inner_text("#selcount") == "2"
    with page.expect_navigation():  # the server asks for a refresh
        page.click("#bulk button[value=accept]")
    for it in made:
        r = api(DISPATCHER).get(f"/api/v1/items/{it['id']}")
        assert r.json()["status"] == "accepted", r.text
    page.goto(f"/inbox?q={tag}")
    statuses = page.locator("table.inbox tbody .status").all_inner_texts()
    assert statuses == ["已受理", "已受理"]


# --------------------------------------------------------------------------- screenshots

@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_screenshots(pages: Pages, api: Any, screenshots: Any, viewport: dict[str, int]) -> None:
    item = create_item(api, GRID_WORKER, kind="dispute", title="小区停车位纠纷", lon=INSIDE[0], lat=INSIDE[1],
                       description="业主与物业就停车位收费发生争执", reporter={"name": "赵六", "phone": "13600001111"},
                       parties=[{"role": "applicant", "name": "赵六", "phone": "13600001111"}])
    page = pages.login(DISPATCHER, viewport=viewport)
    name = "desktop" if viewport == DESKTOP else "phone"
    shots = []

    page.goto("/inbox")
    assert page.locator("table.inbox tbody tr[data-href]").count() >= 1
    shots.append(screenshots(page, f"inbox-{name}"))

    page.goto(f"/items/{item['id']}")
    assert "小区停车位纠纷" in page.inner_text("h1")
    assert_masked(page)
    shots.append(screenshots(page, f"item-{name}"))

    page.goto("/map")
    wait_for_map(page)
    page.wait_for_function("() => { let n = 0; window.__currentMap().eachLayer(l => { if (l.feature && "
                           "l.feature.geometry.type === 'Point') n++; }); return n > 0; }")
    shots.append(screenshots(page, f"map-{name}"))

    page.goto("/dashboard")
    page.wait_for_selector("#trend canvas")
    page.wait_for_timeout(1500)  # ECharts animates the series in
    shots.append(screenshots(page, f"dashboard-{name}"))

    for path in shots:
        assert path.stat().st_size > 5000, path
    # Chinese text is laid out with a real CJK font (no missing-glyph boxes): the title has glyph width.
    width = page.evaluate("""() => { const c = document.createElement('canvas').getContext('2d');
                                    c.font = '16px sans-serif'; return [c.measureText('驾驶舱').width,
                                    c.measureText('\\u{10FFFF}\\u{10FFFF}\\u{10FFFF}').width]; }""")
    assert width[0] > 30 and width[0] != width[1], width


# --------------------------------------------------------------------------- analysis report 一分析三报告

def test_analysis_report_page(pages: Pages, api: Any, screenshots: Any) -> None:
    """A town dispatcher opens 分析研判 from the menu, reads last month's report for the town in
    the preview, and downloads the PDF; a sibling town's dispatcher cannot open it."""
    town_event(api, title="分析报告测试事件")
    page = pages.login(DISPATCHER)
    page.click("nav.mainnav a[href='/analysis']")
    page.wait_for_url("**/analysis")
    assert page.locator("#analysis-unit").input_value() == "320102001000"
    page.select_option("#analysis-audience", "police")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    frame = page.frame_locator("#report-preview")
    title = frame.locator("h1").first
    title.wait_for()
    assert "社会治安形势分析报告" in title.inner_text()
    assert "报公安机关" in frame.locator("body").inner_text()
    assert frame.locator("img, svg").count() >= 2  # charts and the hot-spot map
    href = page.locator("#dl-pdf").get_attribute("href")
    pdf = page.request.get(href)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body()[:5] == b"%PDF-"
    screenshots(page, "analysis-desktop")

    other = pages.login(SIBLING_DISPATCHER)
    other.goto(f"/analysis?unit=320102001000&period={page.locator('#analysis-period').input_value()}")
    assert other.locator("[role=alert]").count() == 1
    assert other.locator("#report-preview").count() == 0
    denied = other.request.get(href)
    assert denied.status == 404


# --------------------------------------------------------------------------- citizen channel (Open311 adapter)

def test_citizen_reports_and_follows_without_login(pages: Pages) -> None:
    """A citizen, not logged in, reports rubbish on a phone-sized screen, gets a tracking
    token and follows the issue with it."""
    page = pages.new(viewport=PHONE)
    page.goto("/citizen/report")
    assert page.locator("#citizen-report").count() == 1 and "/login" not in page.url
    page.select_option("#service_code", "HL-TOPIC-01-01")
    page.locator("input[name='attribute[waste_kind][]'][value='household']").wait_for()
    page.check("input[name='attribute[waste_kind][]'][value='household']")
    page.fill("#description", "小区门口垃圾堆积，已有三天无人清运")
    page.fill("#lat", f"{INSIDE[1]:.6f}")
    page.fill("#long", f"{INSIDE[0]:.6f}")
    with page.expect_navigation():
        page.click("#citizen-report button[type=submit]")
    token = page.inner_text("#tracking-token").strip()
    number = page.inner_text("#request-number").strip()
    assert token and number.startswith("RX")
    with page.expect_navigation():
        page.click(f"a[href='/citizen/follow?token={token}']")
    body = page.inner_text("main")
    assert number in body and "小区门口垃圾堆积" in body
