"""Test fixtures: a real database built from the migrations (SQLite by default,
PostgreSQL when SHIYU_DATABASE_URL says so), loaded with the small demo city once
per test session, and the HTTP app on top of it."""

from __future__ import annotations

import os
import tempfile

# Cheap password hashing in tests only (production uses the defaults in config).
os.environ.setdefault("SHIYU_ARGON2_TIME_COST", "1")
# Files the app writes (archived reports, uploads) go to a scratch directory, never the checkout.
os.environ.setdefault("SHIYU_VAR_DIR", tempfile.mkdtemp(prefix="shiyu-test-var-"))
os.environ.setdefault("SHIYU_ARGON2_MEMORY_KIB", "8192")

import itertools  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pyotp  # noqa: E402
import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from shiyu.config import get_settings  # noqa: E402
from shiyu.dbadmin import create_database, drop_database  # noqa: E402
from shiyu.demo.city import DEMO_PASSWORD, DemoCity, generate_city  # noqa: E402
from shiyu.kit.db import Database  # noqa: E402
from shiyu.kit.pii import find_unmasked  # noqa: E402

get_settings.cache_clear()


def fresh_database_url(tmp: Path, name: str) -> str:
    """A new empty database: a SQLite file, or a new PostgreSQL database next to the
    one SHIYU_DATABASE_URL names."""
    base = os.environ.get("SHIYU_DATABASE_URL", "")
    if not base or make_url(base).get_backend_name() == "sqlite":
        return f"sqlite:///{tmp / (name + '.db')}"
    url = make_url(base)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    dbname = f"{url.database}_{name}_{worker}_{os.getpid()}_{next(_counter)}".lower()
    _created.append((url.render_as_string(hide_password=False), dbname))
    return create_database(url, dbname)


_counter = itertools.count()
_created: list[tuple[str, str]] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL databases this run created."""
    for base, dbname in _created:
        try:
            drop_database(base, dbname)
        except Exception:  # best effort: a leftover database is harmless
            pass


def make_db(url: str) -> Database:
    from shiyu.dbadmin import upgrade

    db = Database(url)
    upgrade(db)
    return db


@pytest.fixture(scope="session")
def demo_city() -> DemoCity:
    return generate_city("small", seed=1)


@pytest.fixture(scope="session")
def db(tmp_path_factory: pytest.TempPathFactory, demo_city: DemoCity) -> Iterator[Database]:
    from shiyu.demo.load import load_city

    url = fresh_database_url(tmp_path_factory.mktemp("db"), "shiyu")
    database = make_db(url)
    with database.unit_of_work() as session:
        load_city(session, demo_city)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory, demo_city: DemoCity) -> Iterator[Database]:
    """A migrated, seeded database of the test module's own, with the small demo city,
    for tests that change what they like (the shared ``db`` stays as loaded)."""
    from shiyu.demo.load import load_city

    database = make_db(fresh_database_url(tmp_path_factory.mktemp("city"), "city"))
    with database.unit_of_work() as s:
        load_city(s, demo_city)
    yield database
    database.dispose()


@pytest.fixture
def session(city_db: Database) -> Iterator[Any]:
    """One transaction on ``city_db`` per test, rolled back at the end: nothing any test
    makes is seen by another."""
    s = city_db.session(write=True)
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture
def empty_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated database with nothing in it, for tests that need their own world."""
    database = make_db(fresh_database_url(tmp_path, "empty"))
    yield database
    database.dispose()


class CheckedClient(TestClient):
    """A test client that fails the test when any response shows an unmasked resident
    ID or phone number, except responses to an explicit reveal."""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        if "/reveal" not in str(url):
            leaked = find_unmasked(response.text)
            assert not leaked, f"unmasked personal data in {method} {url}: {len(leaked)} values"
        return response


@pytest.fixture(scope="session")
def app(db: Database) -> Any:
    from shiyu.main import create_app

    return create_app(db=db)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[CheckedClient]:
    with CheckedClient(app) as c:
        yield c


def totp_now(secret: str) -> str:
    return pyotp.TOTP(secret).now()


@pytest.fixture(scope="session")
def login(client: CheckedClient, db: Database) -> Callable[..., dict[str, str]]:
    """login(username) -> Authorization headers (cached per username)."""
    from shiyu.platform.identity.models import User

    cache: dict[str, dict[str, str]] = {}

    def _login(username: str, password: str = DEMO_PASSWORD, *, fresh: bool = False) -> dict[str, str]:
        if username in cache and not fresh:
            return cache[username]
        with db.unit_of_work(write=False) as s:
            secret = s.execute(select(User.totp_secret).where(User.username == username)).scalar_one_or_none()
        form = {"username": username, "password": password}
        if secret:
            form["totp"] = totp_now(secret)
        r = client.post("/api/v1/auth/token", data=form)
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        if not fresh:
            cache[username] = headers
        return headers

    return _login
