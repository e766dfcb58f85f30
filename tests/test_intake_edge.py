"""The intake edge 受理入口 (``items.edge.IntakeEdge``): ``POST /api/v1/items`` served
without FastAPI's routing once the token has been checked, and answered exactly as the
route answers. Every case is made twice, once with a token the edge has not seen checked
(the route serves it) and once with a token it has (the edge serves it), and the answers
compared: status, headers, Problem Details code, field and language."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shiyu.demo.city import DemoCity
from shiyu.domains.items import edge
from shiyu.domains.items.schemas import ItemCreate
from shiyu.platform.web import deps

DISPATCHER = "dispatcher_320102001000"  # town 320102001000
VILLAGE = "320102001001"


class _Counting:
    """Stands in for ``ItemCreate`` in the edge, counting the bodies the edge validated
    and so served itself (the route never calls ``model_validate_json``: FastAPI
    validates the parsed body)."""

    calls = 0

    @staticmethod
    def model_validate_json(*args: Any, **kwargs: Any) -> Any:
        data = ItemCreate.model_validate_json(*args, **kwargs)
        _Counting.calls += 1
        return data


@pytest.fixture
def served_by_edge(monkeypatch: pytest.MonkeyPatch) -> type[_Counting]:
    monkeypatch.setattr(edge, "ItemCreate", _Counting)
    # A token's check is remembered for 5 s; on a loaded machine a test's requests can
    # outlast that, and the route would then serve (and check) what the edge should.
    monkeypatch.setattr(deps, "TOKEN_SEEN_TTL", 600.0)
    _Counting.calls = 0
    return _Counting


@pytest.fixture(scope="module")
def point(demo_city: DemoCity) -> tuple[float, float]:
    p = demo_city.grids_of(VILLAGE)[0].polygon.representative_point()
    return round(p.x, 7), round(p.y, 7)


def _body(point: tuple[float, float], **extra: Any) -> dict[str, Any]:
    data = {"kind": "event", "title": "路灯不亮", "description": "小区门口路灯不亮", "category": "EV-01-01",
            "lon": point[0], "lat": point[1], "source": "grid"}
    data.update(extra)
    return data


def _fresh(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Headers with a new token, which no request has had checked yet."""
    return login(DISPATCHER, fresh=True)


def _post(client: Any, headers: dict[str, str], data: Any, key: str | None = "new", **kw: Any) -> Any:
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = uuid.uuid4().hex if key == "new" else key
    h.update(kw.pop("extra_headers", {}))
    return client.post("/api/v1/items", json=data, headers=h, **kw)


def test_edge_serves_a_checked_token_with_the_routes_answer(client: Any, login: Any, point: Any,
                                                            served_by_edge: Any) -> None:
    headers = _fresh(login)
    assert not deps.token_checked_lately(headers["Authorization"].split()[1])
    first = _post(client, headers, _body(point))
    assert first.status_code == 201, first.text
    assert served_by_edge.calls == 0  # the route served it, and checked the token
    assert deps.token_checked_lately(headers["Authorization"].split()[1])

    second = _post(client, headers, _body(point, title="路灯又不亮"))
    assert second.status_code == 201, second.text
    assert served_by_edge.calls == 1  # the edge served this one
    for r in (first, second):
        assert r.headers["content-type"] == "application/json"
        assert r.headers["location"] == f"/api/v1/items/{r.json()['id']}"
        assert r.headers["etag"]
        assert r.headers["x-request-id"] and r.headers["server-timing"].startswith("app;dur=")
    assert set(second.json()) == set(first.json())
    assert second.json()["title"] == "路灯又不亮" and second.json()["id"] > first.json()["id"]
    assert second.json()["status"] == first.json()["status"] == "reported"


def test_edge_replays_a_key_as_the_route_does(client: Any, login: Any, point: Any, served_by_edge: Any) -> None:
    headers = login(DISPATCHER)
    _post(client, headers, _body(point))  # the token is checked
    served_by_edge.calls = 0
    key = uuid.uuid4().hex
    made = _post(client, headers, _body(point), key=key)
    again = _post(client, headers, _body(point), key=key)
    other = _post(client, headers, _body(point, title="另一条内容"), key=key)
    assert served_by_edge.calls == 3
    assert (made.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == made.json()["id"] and again.headers["etag"] == made.headers["etag"]
    assert other.status_code == 422 and other.json()["code"] == "idempotency_mismatch"


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_edge_errors_are_the_routes_errors(client: Any, login: Any, point: Any, served_by_edge: Any,
                                           lang: str) -> None:
    """The same bad requests, served by the route (fresh token) and by the edge (checked
    token): one Problem Details answer, in the user's language."""
    checked = login(DISPATCHER)
    _post(client, checked, _body(point))
    served_by_edge.calls = 0
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no key", {"data": _body(point), "key": None}),
        ("bad body", {"data": _body(point, title="x")}),
        ("not an object", {"data": [1, 2]}),
        ("long key", {"data": _body(point), "key": "k" * 129}),
        ("unknown category", {"data": _body(point, category="EV-99-99")}),
        ("outside the grids", {"data": _body((0.0, 0.0))}),
    ]
    for name, case in cases:
        answers = []
        for headers in (_fresh(login), checked):
            r = _post(client, headers, case["data"], key=case.get("key", "new"),
                      extra_headers={"Accept-Language": lang})
            assert r.headers["content-type"] == "application/problem+json", (name, r.text)
            p = r.json()
            answers.append((r.status_code, p["code"], p.get("field"), p["title"], p["detail"]))
        assert answers[0] == answers[1], name
        assert 400 <= answers[0][0] < 500, name
        title = answers[0][3]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in title) == (lang == "zh-CN"), (name, title)
    # The edge served the checked token's requests with a valid body and a key within
    # its limit (no key, unknown category, outside the grids); the rest were the route's.
    assert served_by_edge.calls == 3


def test_edge_refuses_a_token_revoked_since_its_check(client: Any, login: Any, point: Any,
                                                      served_by_edge: Any) -> None:
    headers = _fresh(login)
    assert _post(client, headers, _body(point)).status_code == 201
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert deps.token_checked_lately(headers["Authorization"].split()[1])  # still remembered as good
    served_by_edge.calls = 0
    r = _post(client, headers, _body(point))
    assert served_by_edge.calls == 1  # the edge took it; the batch read the token again
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_edge_keeps_the_body_limit(client: Any, login: Any, point: Any, served_by_edge: Any) -> None:
    headers = login(DISPATCHER)
    _post(client, headers, _body(point))
    served_by_edge.calls = 0
    r = _post(client, headers, _body(point, description="长" * 600_000))
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert served_by_edge.calls == 0


def test_edge_leaves_other_requests_to_the_application(client: Any, login: Any, point: Any,
                                                       served_by_edge: Any) -> None:
    headers = login(DISPATCHER)
    _post(client, headers, _body(point))
    served_by_edge.calls = 0
    # Not JSON, another method, a session cookie instead of a bearer token: all the route's.
    form = client.post("/api/v1/items", content=b"kind=event", headers={
        **headers, "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 422
    listed = client.get("/api/v1/items?limit=1", headers=headers)
    assert listed.status_code == 200
    cookie = client.post("/api/v1/items", json=_body(point), headers={"Idempotency-Key": uuid.uuid4().hex},
                         cookies={deps.SESSION_COOKIE: headers["Authorization"].split()[1]})
    assert cookie.status_code == 401  # no CSRF header
    assert served_by_edge.calls == 0


def test_edge_answers_an_unexpected_error_with_a_logged_500(client: Any, login: Any, point: Any,
                                                           served_by_edge: Any, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A batch that fails unexpectedly answers 500 Problem Details, and the log keeps the
    traceback although the handler runs outside the ``except`` that caught it."""
    from shiyu.domains.items import intake

    headers = login(DISPATCHER)
    _post(client, headers, _body(point))  # the token is checked
    served_by_edge.calls = 0

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("batch writer broke")

    monkeypatch.setattr(intake, "take_in", broken)
    with caplog.at_level("ERROR"):
        r = _post(client, headers, _body(point))
    assert served_by_edge.calls == 1
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "internal" and "batch writer broke" not in r.text
    logged = [rec for rec in caplog.records if rec.getMessage().startswith("unhandled error on POST")]
    assert logged and logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], RuntimeError)
