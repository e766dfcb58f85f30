from __future__ import annotations


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_livez_answers_without_the_database(client):
    r = client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert "version" not in r.json()  # liveness says nothing about the build


def test_openapi(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in ("/api/v1/auth/token", "/api/v1/units/{code}", "/api/v1/units/{code}/children", "/api/v1/grids",
              "/api/v1/geo/locate", "/api/v1/audit", "/healthz"):
        assert p in paths, p
