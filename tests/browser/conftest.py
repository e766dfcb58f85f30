"""Browser tests 浏览器测试: the real app under uvicorn, driven by Debian's chromium through Playwright.

One server per test session on a fresh database (SQLite, or PostgreSQL when
SHIYU_DATABASE_URL says so) loaded with the small demo city. Every test gets its own
browser context (cookies, language) and fails when any HTML or JSON response outside
an explicit reveal carries an unmasked resident ID or mobile number.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import fresh_database_url, make_db
from shiyu.demo.city import DEMO_PASSWORD, generate_city
from shiyu.kit.db import Database
from shiyu.kit.pii import find_unmasked

CHROMIUM = os.environ.get("SHIYU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}

#: Extra accounts the scenarios need beyond the demo city's.
EXTRA_USERS = [("handler_320102001000_cg", "department_handler", "320102001000-CG")]

#: Captures every Leaflet map the page creates (``window.__maps``), so tests can turn a
#: longitude/latitude into a pixel to click. Leaflet sets ``window.L`` when it loads.
LEAFLET_HOOK = """
(() => {
  let lib;
  Object.defineProperty(window, "L", {
    configurable: true,
    get() { return lib; },
    set(v) {
      lib = v;
      if (v && v.Map && v.Map.addInitHook && !v.__shiyuHooked) {
        v.__shiyuHooked = true;
        v.Map.addInitHook(function () { (window.__maps = window.__maps || []).push(this); });
      }
    },
  });
  // The map drawn in the page's current map element (the report form's picker or the overview).
  window.__currentMap = () => {
    const el = document.querySelector("[data-pick], [data-overview]");
    return (window.__maps || []).find(m => m._container === el);
  };
})();
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the web UI in a real browser (Debian chromium)")


@dataclass
class LiveServer:
    base_url: str
    database_url: str
    db: Database
    log: Path

    def url(self, path: str) -> str:
        return self.base_url + path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from shiyu.demo.load import load_city
    from shiyu.platform.authz.principal import Principal
    from shiyu.platform.identity import service as identity
    from shiyu.platform.identity.models import User

    tmp = tmp_path_factory.mktemp("browser")
    url = fresh_database_url(tmp, "browser")
    db = make_db(url)
    with db.unit_of_work() as session:
        load_city(session, generate_city("small", seed=1))
        have = set(session.execute(select(User.username)).scalars())
        for username, role, unit in EXTRA_USERS:
            if username not in have:
                identity.create_user(session, Principal.system(), username=username, password=DEMO_PASSWORD,
                                     role=role, unit_code=unit, display_name=username)
    port = _free_port()
    env = {**os.environ, "SHIYU_DATABASE_URL": url, "SHIYU_SCHEDULER": "false", "SHIYU_ARGON2_TIME_COST": "1",
           "SHIYU_ARGON2_MEMORY_KIB": "8192", "PYTHONUNBUFFERED": "1"}
    log = tmp / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "shiyu.asgi:app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not answer /healthz in 60 s:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)
        yield LiveServer(base, url, db, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        db.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium. A missing browser fails the run: these tests are never skipped."""
    from playwright.sync_api import Error, sync_playwright

    exe = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    if exe is None:
        pytest.fail(f"chromium not found at {CHROMIUM}: install Debian's package (apt-get install chromium "
                    "fonts-wqy-microhei) or point SHIYU_CHROMIUM at a chromium binary", pytrace=False)
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        except Error as exc:
            pytest.fail(f"chromium at {exe} did not start: {exc}", pytrace=False)
        yield b
        b.close()


@dataclass
class Pages:
    """Opens browser contexts (one per user) for a test and closes them afterwards."""

    browser: Any
    server: LiveServer
    contexts: list[Any] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)

    def new(self, *, viewport: dict[str, int] | None = None, lang: str | None = None) -> Any:
        ctx = self.browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN", base_url=self.server.base_url)
        ctx.set_default_timeout(15_000)
        ctx.add_init_script(LEAFLET_HOOK)
        if lang:
            ctx.add_cookies([{"name": "shiyu_lang", "value": lang, "url": self.server.base_url}])
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("response", self._check_response)
        return page

    def _check_response(self, response: Any) -> None:
        """Nothing but an explicit reveal may carry an unmasked resident ID or mobile."""
        if "/reveal" in response.url or not response.url.startswith(self.server.base_url):
            return
        ctype = response.headers.get("content-type", "")
        if not ("html" in ctype or "json" in ctype) or response.status in (204, 301, 302, 303, 307):
            return
        try:
            body = response.text()
        except Exception:  # the page navigated away before the body was read
            return
        leaked = find_unmasked(body)
        if leaked:
            self.leaks.append(f"{response.request.method} {response.url}: {len(leaked)} unmasked values")

    def login(self, username: str, *, viewport: dict[str, int] | None = None, lang: str | None = None,
              password: str = DEMO_PASSWORD) -> Any:
        """A new context logged in through the login form."""
        page = self.new(viewport=viewport, lang=lang)
        login(page, username, password)
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            try:
                ctx.close()
            except Exception:
                pass


def login(page: Any, username: str, password: str = DEMO_PASSWORD) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    assert "/login" not in page.url, f"login of {username} failed: {page.inner_text('main')}"


@pytest.fixture
def pages(browser: Any, live_server: LiveServer) -> Iterator[Pages]:
    p = Pages(browser, live_server)
    yield p
    p.close()
    assert not p.leaks, "unmasked personal data shown: " + "; ".join(p.leaks)


@pytest.fixture
def page(pages: Pages) -> Any:
    """A fresh, logged-out page (desktop size, Chinese)."""
    return pages.new()


@pytest.fixture(scope="session")
def screenshots() -> Callable[[Any, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(page: Any, name: str) -> Path:
        vp = page.viewport_size
        path = SCREENSHOTS / f"{name}-{vp['width']}x{vp['height']}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return shoot


@pytest.fixture(scope="session")
def api(live_server: LiveServer) -> Callable[[str], httpx.Client]:
    """api(username) -> an httpx client with that user's bearer token, for setting up data."""
    cache: dict[str, httpx.Client] = {}

    def client_for(username: str) -> httpx.Client:
        if username not in cache:
            r = httpx.post(live_server.url("/api/v1/auth/token"),
                           data={"username": username, "password": DEMO_PASSWORD}, timeout=10)
            assert r.status_code == 200, r.text
            cache[username] = httpx.Client(base_url=live_server.base_url, timeout=10,
                                           headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        return cache[username]

    yield client_for  # type: ignore[misc]
    for c in cache.values():
        c.close()


def audit_entries(server: LiveServer, **where: Any) -> list[Any]:
    from shiyu.platform.audit.models import AuditEntry

    stmt = select(AuditEntry)
    for key, value in where.items():
        stmt = stmt.where(getattr(AuditEntry, key) == value)
    with server.db.unit_of_work(write=False) as s:
        rows = s.execute(stmt.order_by(AuditEntry.seq)).scalars().all()
        s.expunge_all()
        return list(rows)


def item_id_from(url: str) -> int:
    m = re.search(r"/items/(\d+)", url)
    assert m, f"not an item page: {url}"
    return int(m.group(1))
