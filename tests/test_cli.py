"""The ``shiyu`` command line, run for real in subprocesses against temporary SQLite files.

One module-wide database gets ``db upgrade`` + ``demo load --size small`` once; tests that
write (or tamper with the audit log) work on a copy of its file, so they cannot disturb
each other or the session database of the other tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely

from shiyu.demo.city import CITY_CODE, DEMO_PASSWORD, DemoCity

TIMEOUT = 180


# --------------------------------------------------------------------------- helpers


def cli_env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIYU_")}
    env.update(
        SHIYU_DATABASE_URL=f"sqlite:///{db}",
        SHIYU_VAR_DIR=str(db.parent),
        SHIYU_ARGON2_TIME_COST="1",
        SHIYU_ARGON2_MEMORY_KIB="8192",
        COLUMNS="200",
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",
    )
    return env


def shiyu(db: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    feed: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(
        [sys.executable, "-m", "shiyu.cli", *args],
        env=cli_env(db),
        cwd=db.parent,
        **feed,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
    )


Job = tuple[Path, tuple[str, ...], str | None]


def shiyu_many(jobs: dict[Any, Job]) -> dict[Any, subprocess.CompletedProcess[str]]:
    """Run independent commands concurrently: {key: (db, args, stdin)} -> {key: result}."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(shiyu, db, *args, stdin=stdin) for key, (db, args, stdin) in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def flat(text: str) -> str:
    """Output with whitespace (and line wrapping) collapsed, for substring checks."""
    return " ".join(text.split())


def checkpoint(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        con.close()


def copy_db(src: Path, dst_dir: Path, name: str = "copy.db") -> Path:
    """A copy of a database file that is safe to write to (WAL folded into the main file first)."""
    checkpoint(src)
    dst = dst_dir / name
    shutil.copy(src, dst)
    return dst


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def scalar(db: Path, sql: str, *params: Any) -> Any:
    return query(db, sql, *params)[0][0]


TABLES = (
    "units",
    "grids",
    "grid_links",
    "unit_boundaries",
    "household_groups",
    "users",
    "grants",
    "audit_entries",
)


def counts(db: Path) -> dict[str, int]:
    out = {t: scalar(db, f"SELECT count(*) FROM {t}") for t in TABLES}
    out["audit_head"] = scalar(db, "SELECT coalesce(max(last_seq), 0) FROM audit_head")
    return out


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``db upgrade`` then ``demo load --size small``, once for the module. Read-only for tests."""
    db = tmp_path_factory.mktemp("cli") / "cli.db"
    up = ok(shiyu(db, "db", "upgrade"))
    assert "revision" in up.stderr
    ok(shiyu(db, "demo", "load", "--size", "small", "--seed", "1"))
    checkpoint(db)
    return db


@pytest.fixture
def demo_copy(demo_db: Path, tmp_path: Path) -> Path:
    return copy_db(demo_db, tmp_path)


@pytest.fixture
def empty_cli_db(tmp_path: Path) -> Path:
    db = tmp_path / "geo.db"
    ok(shiyu(db, "db", "upgrade"))
    return db


# --------------------------------------------------------------------------- --help

HELP_COMMANDS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    ((), ("db", "demo", "user", "geo", "audit", "serve")),
    (("db",), ("upgrade",)),
    (("db", "upgrade"), ()),
    (("demo",), ("load", "users")),
    (("demo", "load"), ("--size", "--seed")),
    (("demo", "users"), ("--json",)),
    (("user",), ("add",)),
    (("user", "add"), ("username", "--role", "--unit", "--password-stdin")),
    (("geo",), ("import", "locate")),
    (("geo", "import"), ("file", "--layer")),
    (("geo", "locate"), ("--lon", "--lat", "--json")),
    (("audit",), ("verify",)),
    (("audit", "verify"), ()),
    (("jobs",), ("status",)),
    (("jobs", "status"), ("--json",)),
    (("serve",), ("--host", "--port")),
]


@pytest.fixture(scope="module")
def help_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], Any]:
    """Every ``--help``, run concurrently (no database is touched)."""
    db = tmp_path_factory.mktemp("help") / "never-created.db"
    out = shiyu_many({cmd: (db, (*cmd, "--help"), None) for cmd, _ in HELP_COMMANDS})
    assert not db.exists(), "--help must not create a database"
    return out


@pytest.mark.parametrize(
    ("command", "mentions"), HELP_COMMANDS, ids=[" ".join(c) or "shiyu" for c, _ in HELP_COMMANDS]
)
def test_help(
    help_outputs: dict[tuple[str, ...], Any], command: tuple[str, ...], mentions: tuple[str, ...]
) -> None:
    result = ok(help_outputs[command])
    assert "Usage" in result.stdout
    for word in mentions:
        assert word.lower() in result.stdout.lower(), (command, word)


def test_no_arguments_shows_help(tmp_path: Path) -> None:
    result = shiyu(tmp_path / "x.db", "geo")
    assert result.returncode != 0
    assert "import" in result.stdout + result.stderr and "locate" in result.stdout + result.stderr


# --------------------------------------------------------------------------- db / demo


def test_db_upgrade_is_idempotent(demo_copy: Path) -> None:
    before = counts(demo_copy)
    result = ok(shiyu(demo_copy, "db", "upgrade"))
    assert "revision" in result.stderr
    assert counts(demo_copy) == before


def test_demo_load_creates_the_city(demo_db: Path, demo_city: DemoCity) -> None:
    c = counts(demo_db)
    assert c["grids"] == len(demo_city.grids) + sum(len(g) for g in demo_city.layer_grids.values())
    assert c["units"] == len(demo_city.units) + len(demo_city.departments)
    assert c["users"] == len(demo_city.users)
    assert c["household_groups"] == len(demo_city.households)
    assert c["grid_links"] > 0
    assert c["audit_entries"] == c["audit_head"] > 0


def test_demo_load_is_idempotent(demo_copy: Path) -> None:
    before = counts(demo_copy)
    ok(shiyu(demo_copy, "demo", "load", "--size", "small"))
    assert counts(demo_copy) == before


def test_demo_load_rejects_unknown_size(tmp_path: Path) -> None:
    result = shiyu(tmp_path / "d.db", "demo", "load", "--size", "huge")
    assert result.returncode != 0
    assert "small" in flat(result.stderr) and "medium" in flat(result.stderr)


def test_demo_users_json(demo_db: Path) -> None:
    accounts = json.loads(ok(shiyu(demo_db, "demo", "users", "--json")).stdout)
    assert isinstance(accounts, list) and accounts
    for a in accounts:
        assert {"username", "password", "role", "unit_code"} <= set(a), a
        assert a["password"] == DEMO_PASSWORD
    usernames = [a["username"] for a in accounts]
    assert len(set(usernames)) == len(usernames)
    assert set(usernames) == {r[0] for r in query(demo_db, "SELECT username FROM users")}

    units = {
        code: (kind, parent)
        for code, kind, parent in query(demo_db, "SELECT code, kind, parent_code FROM units")
    }
    for a in accounts:
        assert a["unit_code"] in units, a
    by_role: dict[str, set[str]] = defaultdict(set)
    for a in accounts:
        by_role[a["role"]].add(a["unit_code"])

    def kind(code: str) -> str:
        return units[code][0]

    def parent(code: str) -> str | None:
        return units[code][1]

    # two towns of one district, each with a dispatcher and a grid worker bound to one of its villages
    towns_by_district: dict[str, list[str]] = defaultdict(list)
    for town in by_role["dispatcher"]:
        if kind(town) != "town":
            continue
        if any(kind(v) == "village" and parent(v) == town for v in by_role["grid_worker"]):
            towns_by_district[parent(town) or ""].append(town)
    assert any(len(towns) >= 2 for towns in towns_by_district.values()), dict(towns_by_district)
    assert all(kind(v) == "village" for v in by_role["grid_worker"])

    # a leader and a dispatcher at the city, at every district and at town level in every district
    districts = [c for c, (k, _) in units.items() if k == "district"]
    assert districts
    for role in ("leader", "dispatcher"):
        assert CITY_CODE in by_role[role], role
        for d in districts:
            assert d in by_role[role], (role, d)
            assert any(kind(t) == "town" and parent(t) == d for t in by_role[role]), (role, d)

    assert by_role["department_handler"] and all(
        kind(u) == "department" for u in by_role["department_handler"]
    )
    assert by_role["mediator"]
    assert by_role["auditor"]
    assert CITY_CODE in by_role["admin"]
    admins = [a for a in accounts if a["role"] == "admin"]
    assert all(a.get("totp_secret") for a in admins), "admins need their TOTP secret to log in"


def test_demo_users_table(demo_db: Path) -> None:
    out = ok(shiyu(demo_db, "demo", "users")).stdout
    assert "admin" in out and "dispatcher" in out and CITY_CODE in out
    assert len(out.strip().splitlines()) == scalar(demo_db, "SELECT count(*) FROM users")


# --------------------------------------------------------------------------- geo locate


def chain_of(city: DemoCity, village: str) -> list[str]:
    parents = {u.code: u.parent_code for u in city.units}
    chain: list[str] = []
    code: str | None = village
    while code:
        chain.append(code)
        code = parents[code]
    return chain


def test_locate_json(demo_db: Path, demo_city: DemoCity) -> None:
    grid = demo_city.grids[len(demo_city.grids) // 2]
    p = grid.polygon.representative_point()
    result = ok(shiyu(demo_db, "geo", "locate", "--lon", repr(p.x), "--lat", repr(p.y), "--json"))
    data = json.loads(result.stdout)
    assert data == {"grid": grid.code, "chain": chain_of(demo_city, grid.village_code)}
    assert len(data["chain"]) == 4 and data["chain"][-1] == CITY_CODE


def test_locate_text_reports_other_layers(demo_db: Path, demo_city: DemoCity) -> None:
    grid = demo_city.grids[0]
    p = grid.polygon.representative_point()
    out = ok(shiyu(demo_db, "geo", "locate", "--lon", repr(p.x), "--lat", repr(p.y))).stdout
    assert f"grid {grid.code}" in out
    assert " > ".join(chain_of(demo_city, grid.village_code)) in out
    for layer, grids in demo_city.layer_grids.items():
        hits = sorted(g.code for g in grids if shapely.intersects(g.polygon, p))
        assert hits, layer
        assert f"layer {layer}: {hits[0]}" in out


def test_locate_outside_every_grid_exits_3(demo_db: Path) -> None:
    result = shiyu(demo_db, "geo", "locate", "--lon", "118.8", "--lat", "40.0", "--json")
    assert result.returncode == 3, result
    assert result.stdout == ""
    assert "no grid" in flat(result.stderr)


# --------------------------------------------------------------------------- geo import

CITY, DISTRICT, TOWN = "320100000000", "320102000000", "320102001000"
V1, V2 = "320102001001", "320102001002"


def box(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(
    code: str, name: str, kind: str, parent: str, geometry: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name, "kind": kind, "parent": parent},
        "geometry": geometry,
    }


def small_world() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            feature(CITY, "测试市", "city", ""),
            feature(DISTRICT, "玄湖区", "district", CITY),
            feature(TOWN, "梅园街道", "town", DISTRICT),
            feature(V1, "桂园社区", "village", TOWN, box(118.00, 32.00, 118.10, 32.10)),
            feature(V2, "兰桥村", "village", TOWN, box(118.10, 32.00, 118.20, 32.10)),
            feature(V1 + "001", "桂园第一网格", "grid", V1, box(118.00, 32.00, 118.05, 32.10)),
            feature(V1 + "002", "桂园第二网格", "grid", V1, box(118.05, 32.00, 118.10, 32.10)),
            feature(V2 + "001", "兰桥第一网格", "grid", V2, box(118.10, 32.00, 118.15, 32.10)),
            feature(V2 + "002", "兰桥第二网格", "grid", V2, box(118.15, 32.00, 118.20, 32.10)),
        ],
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


REPORT = re.compile(r"created (\d+), updated (\d+), unchanged (\d+) of (\d+) features")


def report_of(result: subprocess.CompletedProcess[str]) -> tuple[int, ...]:
    m = REPORT.search(result.stdout)
    assert m, result.stdout
    return tuple(int(x) for x in m.groups())


@pytest.fixture(scope="module")
def geo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """An empty database (``db upgrade``) with the small hand-made world imported once."""
    tmp = tmp_path_factory.mktemp("geo")
    db = tmp / "geo.db"
    ok(shiyu(db, "db", "upgrade"))
    first = ok(shiyu(db, "geo", "import", str(write_json(tmp / "world.geojson", small_world()))))
    checkpoint(db)
    return db, first


def test_geo_import_good_file_twice(geo_db: tuple[Path, Any], tmp_path: Path) -> None:
    db, first = geo_db
    assert report_of(first) == (9, 0, 0, 9)
    before = counts(db)
    assert (before["units"], before["grids"], before["unit_boundaries"]) == (5, 4, 2)
    assert before["audit_head"] > 0
    again = ok(
        shiyu(
            db,
            "geo",
            "import",
            str(write_json(tmp_path / "same.geojson", small_world())),
            "--layer",
            "unified",
        )
    )
    assert report_of(again) == (0, 0, 9, 9)
    assert counts(db) == before


def test_geo_locate_in_imported_world(geo_db: tuple[Path, Any]) -> None:
    db, _ = geo_db
    located = json.loads(
        ok(shiyu(db, "geo", "locate", "--lon", "118.125", "--lat", "32.05", "--json")).stdout
    )
    assert located == {"grid": V2 + "001", "chain": [V2, TOWN, DISTRICT, CITY]}


def test_geo_import_other_layer_is_mapped_and_located(geo_db: tuple[Path, Any], tmp_path: Path) -> None:
    """多格合一: a police beat over village 1 is linked to its unified grids and reported by locate."""
    db = copy_db(geo_db[0], tmp_path)
    police = write_json(
        tmp_path / "police.geojson",
        {
            "type": "FeatureCollection",
            "features": [
                feature("P320102001001", "第1警务区", "grid", V1, box(118.00, 32.00, 118.10, 32.10))
            ],
        },
    )
    assert report_of(ok(shiyu(db, "geo", "import", str(police), "--layer", "police"))) == (1, 0, 0, 1)
    links = query(db, "SELECT unified_code FROM grid_links WHERE grid_code = ? ORDER BY 1", "P320102001001")
    assert [c for (c,) in links] == [V1 + "001", V1 + "002"]
    inside, outside = shiyu_many(
        {
            "inside": (db, ("geo", "locate", "--lon", "118.07", "--lat", "32.05"), None),
            "outside": (db, ("geo", "locate", "--lon", "118.17", "--lat", "32.05"), None),
        }
    ).values()
    assert f"grid {V1}002" in ok(inside).stdout and "layer police: P320102001001" in inside.stdout
    assert f"grid {V2}002" in ok(outside).stdout and "layer police" not in outside.stdout


BOW_TIE = {
    "type": "Polygon",
    "coordinates": [[[118.10, 32.00], [118.15, 32.10], [118.15, 32.00], [118.10, 32.10], [118.10, 32.00]]],
}


def _bad_features() -> Any:
    bad = small_world()
    bad["features"][5]["properties"]["name"] = "改名不该生效"  # fine alone, must not be written
    bad["features"][3]["properties"]["kind"] = "county"
    bad["features"][7]["geometry"] = BOW_TIE
    return bad


def _overlap() -> Any:
    data = small_world()
    data["features"].append(feature(V2 + "003", "重叠网格", "grid", V2, box(118.16, 32.02, 118.18, 32.04)))
    return data


def _markup() -> Any:
    # user text is printed as text, never interpreted as console markup
    return {"type": "FeatureCollection", "features": [feature("320102002000", "[bold]镇", "town", "[/oops]")]}


# (id, file content, extra arguments, patterns expected in stderr)
BAD_IMPORTS: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "bad-features",
        json.dumps(_bad_features()),
        (),
        (r"feature 3: properties\.kind: kind must be one of", r"feature 7: geometry: geometry is invalid"),
    ),
    ("overlap", json.dumps(_overlap()), (), (r"feature (8|9): geometry: grid \S+ overlaps grid",)),
    ("markup", json.dumps(_markup()), (), (r"feature 0: properties\.parent: unknown parent \[/oops\]",)),
    ("broken-json", "{not json", (), (r"not valid JSON",)),
    ("a-feature", '{"type": "Feature"}', (), (r"file: type: not a GeoJSON FeatureCollection",)),
    ("unknown-layer", json.dumps(small_world()), ("--layer", "fire-brigade"), (r"unknown layer",)),
]


@pytest.fixture(scope="module")
def bad_import_results(geo_db: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db, _ = geo_db
    tmp = tmp_path_factory.mktemp("bad")
    before = counts(db)
    names = query(db, "SELECT code, name FROM units UNION ALL SELECT code, name FROM grids ORDER BY 1")
    jobs: dict[str, Job] = {}
    for name, content, extra, _ in BAD_IMPORTS:
        path = tmp / f"{name}.geojson"
        path.write_text(content, encoding="utf-8")
        jobs[name] = (db, ("geo", "import", str(path), *extra), None)
    jobs["missing-file"] = (db, ("geo", "import", str(tmp / "nope.geojson")), None)
    results = shiyu_many(jobs)
    # nothing of any of these files was written
    assert counts(db) == before
    assert (
        query(db, "SELECT code, name FROM units UNION ALL SELECT code, name FROM grids ORDER BY 1") == names
    )
    return results


@pytest.mark.parametrize(
    ("name", "patterns"), [(c[0], c[3]) for c in BAD_IMPORTS], ids=[c[0] for c in BAD_IMPORTS]
)
def test_geo_import_bad_file_is_reported_and_changes_nothing(
    bad_import_results: dict[str, Any], name: str, patterns: tuple[str, ...]
) -> None:
    result = bad_import_results[name]
    assert result.returncode == 2, result  # a clean error exit, not a crash (1) nor success
    assert "Traceback" not in result.stderr
    assert "created" not in result.stdout
    for pattern in patterns:
        assert re.search(pattern, flat(result.stderr)), (pattern, result.stderr)


def test_geo_import_missing_file(bad_import_results: dict[str, Any]) -> None:
    result = bad_import_results["missing-file"]
    assert result.returncode == 2
    assert "nope.geojson" in flat(result.stderr)


# --------------------------------------------------------------------------- user add / serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_user_add_then_log_in_through_serve(demo_copy: Path) -> None:
    db = demo_copy
    before = counts(db)
    password = "Zhang#2026pw"
    result = ok(
        shiyu(
            db,
            "user",
            "add",
            "zhang.san",
            "--role",
            "dispatcher",
            "--unit",
            "320102001000",
            "--password-stdin",
            stdin=password + "\n",
        )
    )
    assert "created user zhang.san" in result.stdout
    assert password not in result.stdout + result.stderr
    assert query(db, "SELECT role, unit_code FROM users WHERE username = 'zhang.san'") == [
        ("dispatcher", "320102001000")
    ]
    after = counts(db)
    assert after["users"] == before["users"] + 1
    assert after["audit_head"] == before["audit_head"] + 1
    assert scalar(db, "SELECT action FROM audit_entries ORDER BY seq DESC LIMIT 1") == "user.create"

    port = free_port()
    log_path = db.parent / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shiyu.cli", "serve", "--port", str(port)],
        env=cli_env(db),
        cwd=db.parent,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text(encoding="utf-8", errors="replace")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        r = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "zhang.san", "password": password}, timeout=10
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200 and me.json()["username"] == "zhang.san"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def test_user_add_admin_gets_totp(demo_copy: Path) -> None:
    result = ok(
        shiyu(
            demo_copy,
            "user",
            "add",
            "root2",
            "--role",
            "admin",
            "--unit",
            CITY_CODE,
            "--password-stdin",
            stdin="Root#2026pw\n",
        )
    )
    assert "TOTP secret" in result.stdout and "otpauth://" in result.stdout


# (id, arguments, password on stdin, word expected in the message)
USER_REJECTS: list[tuple[str, tuple[str, ...], str, str]] = [
    ("bad-role", ("li.si", "--role", "boss", "--unit", CITY_CODE), "Good#Pass2026", "role"),
    ("unknown-unit", ("li.si", "--role", "dispatcher", "--unit", "320199999000"), "Good#Pass2026", "unit"),
    ("short-password", ("li.si", "--role", "dispatcher", "--unit", CITY_CODE), "Ab1!", "password"),
    (
        "simple-password",
        ("li.si", "--role", "dispatcher", "--unit", CITY_CODE),
        "alllowercaseletters",
        "password",
    ),
    ("taken-username", ("admin", "--role", "dispatcher", "--unit", CITY_CODE), "Good#Pass2026", "username"),
    ("bad-username", ("Li Si", "--role", "dispatcher", "--unit", CITY_CODE), "Good#Pass2026", "username"),
]


@pytest.fixture(scope="module")
def user_reject_results(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = copy_db(demo_db, tmp_path_factory.mktemp("users"))
    before = counts(db)
    results = shiyu_many(
        {
            name: (db, ("user", "add", *args, "--password-stdin"), password + "\n")
            for name, args, password, _ in USER_REJECTS
        }
    )
    assert counts(db) == before, "a rejected user add must write nothing"
    return results


@pytest.mark.parametrize(
    ("name", "words"), [(c[0], c[3]) for c in USER_REJECTS], ids=[c[0] for c in USER_REJECTS]
)
def test_user_add_rejects(user_reject_results: dict[str, Any], name: str, words: str) -> None:
    result = user_reject_results[name]
    assert result.returncode != 0
    assert "created" not in result.stdout
    assert "error" in result.stderr and words in flat(result.stderr).lower(), result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- audit verify

Tamper = Callable[[sqlite3.Connection, int], int | None]
COLUMNS_BUT_SEQ = (
    "at",
    "actor_id",
    "actor",
    "role",
    "unit_code",
    "action",
    "object_type",
    "object_id",
    "result",
    "request_id",
    "scope_path",
    "detail",
    "prev_hash",
    "hash",
)


def _intact(con: sqlite3.Connection, n: int) -> None:
    return None


def _edit_result(con: sqlite3.Connection, n: int) -> int:
    con.execute("UPDATE audit_entries SET result = 'denied' WHERE seq = ?", (n // 2,))
    return n // 2


def _edit_detail(con: sqlite3.Connection, n: int) -> int:
    seq = n // 3
    con.execute("UPDATE audit_entries SET detail = ? WHERE seq = ?", (json.dumps({"name": "伪造"}), seq))
    return seq


def _delete_middle(con: sqlite3.Connection, n: int) -> int:
    con.execute("DELETE FROM audit_entries WHERE seq = ?", (n // 2,))
    return n // 2


def _delete_newest(con: sqlite3.Connection, n: int) -> int:
    con.execute("DELETE FROM audit_entries WHERE seq = ?", (n,))
    return n


def _delete_oldest(con: sqlite3.Connection, n: int) -> int:
    con.execute("DELETE FROM audit_entries WHERE seq = 1")
    return 1


def _swap_two(con: sqlite3.Connection, n: int) -> int:
    a, b = n // 4, 3 * n // 4
    cols = ", ".join(COLUMNS_BUT_SEQ)
    row_a = con.execute(f"SELECT {cols} FROM audit_entries WHERE seq = ?", (a,)).fetchone()
    row_b = con.execute(f"SELECT {cols} FROM audit_entries WHERE seq = ?", (b,)).fetchone()
    assignments = ", ".join(f"{c} = ?" for c in COLUMNS_BUT_SEQ)
    con.execute(f"UPDATE audit_entries SET {assignments} WHERE seq = ?", (*row_b, a))
    con.execute(f"UPDATE audit_entries SET {assignments} WHERE seq = ?", (*row_a, b))
    return a


def _edit_prev_hash(con: sqlite3.Connection, n: int) -> int:
    seq = n // 2
    con.execute("UPDATE audit_entries SET prev_hash = ? WHERE seq = ?", ("f" * 64, seq))
    return seq


def _edit_and_rehash(con: sqlite3.Connection, n: int) -> int:
    """An attacker who knows the (keyless) hash recomputes the edited entry's hash: the next
    entry's link gives it away."""
    from datetime import datetime

    from shiyu.platform.audit.models import AuditEntry
    from shiyu.platform.audit.service import entry_hash

    seq = n // 2
    cols = ("seq", *COLUMNS_BUT_SEQ)
    row_values = con.execute(f"SELECT {', '.join(cols)} FROM audit_entries WHERE seq = ?", (seq,)).fetchone()
    values = dict(zip(cols, row_values, strict=True))
    values["at"] = datetime.fromisoformat(values["at"])
    values["detail"] = json.loads(values["detail"]) if values["detail"] else {}
    row = AuditEntry(**values)
    assert entry_hash(row) == values["hash"], "recomputing an untouched entry's hash must match"
    row.result = "denied"
    con.execute("UPDATE audit_entries SET result = 'denied', hash = ? WHERE seq = ?", (entry_hash(row), seq))
    return seq + 1


TAMPERS: list[tuple[str, Tamper]] = [
    ("edit-result", _edit_result),
    ("edit-detail", _edit_detail),
    ("delete-middle", _delete_middle),
    ("delete-newest", _delete_newest),
    ("delete-oldest", _delete_oldest),
    ("swap-two-entries", _swap_two),
    ("edit-prev-hash", _edit_prev_hash),
    ("edit-and-rehash", _edit_and_rehash),
]


@pytest.fixture(scope="module")
def verify_results(
    demo_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, int, Any]]:
    """``audit verify`` on the intact database and on tampered copies (one fresh copy each):
    {name: (seq expected in the message, entry count before tampering, result)}."""
    jobs: dict[str, Job] = {}
    expected: dict[str, tuple[int | None, int]] = {}
    for name, tamper in [("intact", _intact), *TAMPERS]:
        db = demo_db if name == "intact" else copy_db(demo_db, tmp_path_factory.mktemp(name))
        n = scalar(db, "SELECT count(*) FROM audit_entries")
        if name != "intact":
            con = sqlite3.connect(db)
            try:
                with con:
                    expected[name] = (tamper(con, n), n)
            finally:
                con.close()
        else:
            expected[name] = (None, n)
        jobs[name] = (db, ("audit", "verify"), None)
    results = shiyu_many(jobs)
    return {name: (*expected[name], results[name]) for name in jobs}


def test_audit_verify_intact(demo_db: Path, verify_results: dict[str, tuple[Any, int, Any]]) -> None:
    _, n, result = verify_results["intact"]
    ok(result)
    m = re.search(r"(\d+) entries checked", result.stdout)
    assert m, result.stdout
    assert int(m.group(1)) == n == scalar(demo_db, "SELECT last_seq FROM audit_head")
    assert n > 100


@pytest.mark.parametrize("name", [name for name, _ in TAMPERS])
def test_audit_verify_detects_tampering(verify_results: dict[str, tuple[Any, int, Any]], name: str) -> None:
    expected_seq, _, result = verify_results[name]
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "BROKEN" in result.stdout
    if expected_seq is not None:
        assert re.search(rf"\bentry {expected_seq}\b", result.stdout), (expected_seq, result.stdout)


@pytest.fixture(scope="module", autouse=True)
def _module_db_stays_untouched(demo_db: Path) -> Iterator[None]:
    """The module database is only ever read by the tests (writes go to copies)."""
    before = counts(demo_db)
    yield
    assert counts(demo_db) == before


# --------------------------------------------------------------------------- jobs


def test_jobs_status(empty_cli_db: Path) -> None:
    import sqlite3

    assert ok(shiyu(empty_cli_db, "jobs", "status")).stdout.strip() == "no job has run yet"
    assert json.loads(ok(shiyu(empty_cli_db, "jobs", "status", "--json")).stdout) == []
    with sqlite3.connect(empty_cli_db) as conn:
        conn.execute("INSERT INTO job_runs (name, status, started_at, finished_at, holder, error) VALUES "
                     "('sla.tick', 'failed', '2026-12-07 04:00:00.000000', '2026-12-07 04:00:01.500000', "
                     "'host:123:0001', 'RuntimeError: boom')")
    [run] = json.loads(ok(shiyu(empty_cli_db, "jobs", "status", "--json")).stdout)
    assert run == {"name": "sla.tick", "status": "failed", "started_at": "2026-12-07T04:00:00+00:00",
                   "finished_at": "2026-12-07T04:00:01.500000+00:00", "holder": "host:123:0001",
                   "error": "RuntimeError: boom"}
    table = ok(shiyu(empty_cli_db, "jobs", "status")).stdout
    assert "sla.tick" in table and "failed" in table and "RuntimeError: boom" in table
