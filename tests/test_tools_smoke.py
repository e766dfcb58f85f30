"""Fast checks of the helpers behind ``make fuzz`` and ``make crash`` (``tools/``), and of the OpenAPI
document they hold the API to. The runs themselves are ``make fuzz`` and ``make crash``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import fuzz  # noqa: E402
import harness  # noqa: E402

CITY, DISTRICT, TOWN_A, TOWN_B = "320100000000", "320102000000", "320102001000", "320102002000"
UNITS: dict[str, tuple[str, str, str | None]] = {
    CITY: (f"/{CITY}/", "city", None),
    DISTRICT: (f"/{CITY}/{DISTRICT}/", "district", CITY),
    TOWN_A: (f"/{CITY}/{DISTRICT}/{TOWN_A}/", "town", DISTRICT),
    TOWN_B: (f"/{CITY}/{DISTRICT}/{TOWN_B}/", "town", DISTRICT),
    "320102001001": (f"/{CITY}/{DISTRICT}/{TOWN_A}/320102001001/", "village", TOWN_A),
    f"{TOWN_A}-GA": (f"/{CITY}/{DISTRICT}/{TOWN_A}/{TOWN_A}-GA/", "department", TOWN_A),
    f"{DISTRICT}-GA": (f"/{CITY}/{DISTRICT}/{DISTRICT}-GA/", "department", DISTRICT),
}
PATH_B = UNITS[TOWN_B][0]


def test_leak_scan_flags_codes_outside_the_jurisdiction_only() -> None:
    jur = fuzz.Jurisdiction(UNITS)
    # Own subtree, ancestors (owners of escalated items) and their departments are visible.
    own = json.dumps({"unit_code": TOWN_B, "owner_code": DISTRICT, "dept": f"{DISTRICT}-GA", "city": CITY})
    assert jur.foreign_in_text(own, PATH_B) == []
    # The sibling town, its villages, grids (15 digits), households and departments are not.
    other = json.dumps({"grid_code": "320102001001003", "household": "320102001001003-02", "d": f"{TOWN_A}-GA",
                        "user": f"dispatcher_{TOWN_A}"})
    assert set(jur.foreign_in_text(other, PATH_B)) == {"320102001001", TOWN_A}
    # Unknown 12-digit numbers are not markers; the whole city sees everything.
    assert jur.foreign_in_text("999999999999 123456789012", PATH_B) == []
    assert jur.foreign_in_text(other, UNITS[CITY][0]) == []


class _Case:
    def __init__(self, path_parameters: dict[str, Any], query: dict[str, Any] | None = None) -> None:
        self.path_parameters = path_parameters
        self.query = query or {}


def test_objects_named_in_path_and_query() -> None:
    jur = fuzz.Jurisdiction(UNITS)
    assert jur.foreign_params(_Case({"code": "320102001001"}), PATH_B) == ["code=320102001001"]
    assert jur.foreign_params(_Case({"unit_code": TOWN_B, "period": "2026-10"}), PATH_B) == []
    assert jur.foreign_query_unit(_Case({}, {"unit": TOWN_A}), PATH_B) == [f"unit={TOWN_A}"]
    assert jur.foreign_query_unit(_Case({}, {"unit": DISTRICT}), PATH_B) == []


class _Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


def test_only_unparseable_or_oversized_bodies_may_be_refused_before_authentication() -> None:
    assert fuzz._refused_before_auth(_Response(422, {"errors": [{"type": "json_invalid"}]}))
    assert fuzz._refused_before_auth(_Response(400, {"code": "http_error"}))
    assert fuzz._refused_before_auth(_Response(413, {"code": "payload_too_large"}))
    assert not fuzz._refused_before_auth(_Response(413, {"code": "other"}))
    assert not fuzz._refused_before_auth(_Response(422, {"errors": [{"type": "missing"}]}))
    assert not fuzz._refused_before_auth(_Response(200, {}))


def test_fraction_digits_are_not_personal_data() -> None:
    from shiyu.kit.pii import find_unmasked

    # -1/17's fraction digits pass the resident ID check digit; the scanner leaves them alone.
    assert find_unmasked('{"yoy": -0.058823529411764705}') == []
    assert find_unmasked('{"phone": "13812345678"}') == ["13812345678"]


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="schemathesis">
<testcase name="GET /api/v1/a"><failure type="failure" message="ST101">1. Test Case ID: abc

- ST101 Server error

- ST103 Undocumented status code

    Received: 500
    Documented: 200, 422

Reproduce with:

    curl -X GET 'http://127.0.0.1:1/api/v1/a?x=1'

2. Test Case ID: def

- ST105 Undocumented Content-Type

    Received: application/pdf
    Documented: application/json

[200] OK:

Reproduce with:

    curl -X GET 'http://127.0.0.1:1/api/v1/a?format=pdf'</failure></testcase>
<testcase name="POST /api/v1/b"><error type="error">Hook Error

boom</error></testcase>
<testcase name="GET /api/v1/c" />
</testsuite></testsuites>"""


def test_parse_junit_classifies_failures(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT, encoding="utf-8")
    found = fuzz.parse_junit(path)
    assert [(f["operation"], f["kind"], f["status"]) for f in found] == [
        ("GET /api/v1/a", "server_error", 500), ("GET /api/v1/a", "schema_violation", 200),
        ("POST /api/v1/b", "error", None)]
    assert found[0]["curl"] == "curl -X GET 'http://127.0.0.1:1/api/v1/a?x=1'"


def test_merge_json_keeps_other_figures(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"other": 1, "crash": {"sqlite": {"passed": True}}}), encoding="utf-8")
    harness.merge_json(path, "crash", {"postgres": {"passed": True}}, merge_keys=True)
    assert json.loads(path.read_text()) == {"other": 1, "crash": {"sqlite": {"passed": True},
                                                                  "postgres": {"passed": True}}}


def test_bench_run_id_stamps_figures_and_the_table_checks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import bench_table

    path = tmp_path / "results.json"
    monkeypatch.setenv("SHIYU_BENCH_RUN", "run-1")
    for key in bench_table.FIGURES:
        harness.merge_json(path, key, {"date": "2026-12-07", "cpu_count": 2})
    assert {v["run"] for v in json.loads(path.read_text()).values()} == {"run-1"}
    assert bench_table.main([str(path), "--run", "run-1"]) == 0
    assert "every figure written by this run" in capsys.readouterr().out
    # One figure from another run (or none at all) fails the table for run-1.
    monkeypatch.setenv("SHIYU_BENCH_RUN", "run-2")
    harness.merge_json(path, "sla_tick", {"date": "2026-12-07"})
    assert bench_table.main([str(path), "--run", "run-1"]) == 1
    assert "NOT from this run: sla_tick" in capsys.readouterr().out
    monkeypatch.delenv("SHIYU_BENCH_RUN")
    assert bench_table.main([str(tmp_path / "none.json")]) == 0  # no run asked for: the table only


@pytest.fixture(scope="module")
def spec(client: Any) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


def test_openapi_documents_problem_responses_and_bearer(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    public = set()
    for path, item in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in item.items():
            responses = op["responses"]
            for code, resp in responses.items():
                if code.startswith(("4", "5")):
                    assert list(resp["content"]) == ["application/problem+json"], (method, path, code)
            if op.get("security"):
                assert {"401", "403", "404"} <= set(responses), (method, path)
            else:
                public.add(f"{method.upper()} {path}")
    assert "POST /api/v1/auth/token" in public
    assert not public & {"GET /api/v1/items", "POST /api/v1/items", "GET /api/v1/audit", "POST /api/v1/auth/logout"}
    assert {"412", "428"} <= set(spec["paths"]["/api/v1/items/{item_id}/actions/{action}"]["post"]["responses"])


# --------------------------------------------------------------------------- what the fuzz runs found


def test_fuzz_findings_stay_fixed(client: Any, login: Any, spec: dict[str, Any]) -> None:
    admin = login("admin")
    # An empty parent code was a foreign-key error (500); explicit nulls failed the response model (500).
    r = client.post("/api/v1/categories", headers=admin, json={"code": "AA-0", "name": "0", "kind": "event",
                                                                "parent_code": ""})
    assert r.status_code == 422 and r.json()["field"] == "parent_code", r.text
    r = client.patch("/api/v1/categories/EV-01-08", headers=admin, json={"name_en": None, "active": None})
    assert r.status_code == 422 and r.json()["field"] in ("name_en", "active"), r.text
    # Ids beyond PostgreSQL's integer were "integer out of range" (500 there); 422 on every database.
    for url in ("/api/v1/items/2147483648", "/api/v1/items/1/timeline", "/api/v1/users/2147483648"):
        r = client.get(url, headers=admin)
        assert r.status_code in (200, 404, 422) and (r.status_code == 422) == url.endswith("2147483648"), (url, r.text)
    # The replay of an item POST (same Idempotency-Key and body) answers 200: documented.
    assert "200" in spec["paths"]["/api/v1/items"]["post"]["responses"]
