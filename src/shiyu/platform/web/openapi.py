"""The OpenAPI document states the errors the API really answers with and which operations need a token.

FastAPI documents only success and a 422 ``HTTPValidationError`` in ``application/json``; every error here
is an RFC 9457 Problem (``application/problem+json``, see ``problems.py``). ``install`` wraps ``app.openapi``
so that, once all routes are in, each operation under ``/api/`` gets:

* the ``bearer`` security requirement when it depends on the principal (``deps._principal``) or on
  a checked token (``deps.checked_token``, batched intake), with 401,
  403 and 404 (out of jurisdiction is 404, never 403);
* 409 for unsafe methods behind a token (conflicting state), 412 and 428 where ``If-Match`` is taken (stale,
  missing);
* 400 and 413 when it takes a body (unparseable, too large), 422 everywhere FastAPI validates input;
* 401 and 423 for ``POST /api/v1/auth/token`` (bad credentials, locked account).

All of them as ``application/problem+json`` with the ``Problem`` schema. ``tools/fuzz.py`` holds the API
to this document.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute

from shiyu.platform.web.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 Problem Details, in the caller's language (Accept-Language).",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "urn:shiyu:problem:<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string", "description": "stable error code"},
        "field": {"type": "string", "description": "the field at fault"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "one entry per field at fault"},
        "request_id": {"type": "string"},
    },
}

REASONS = {
    400: "Malformed request (the body cannot be parsed)",
    401: "Missing, invalid, expired or revoked bearer token; bad credentials",
    403: "The role may not do this anywhere",
    404: "Not found, or outside the caller's jurisdiction",
    409: "Conflicts with the current state",
    412: "Stale If-Match",
    413: "Request body too large",
    422: "Invalid input (the fields at fault are named)",
    423: "Account locked after repeated failures",
    428: "If-Match required",
}
UNSAFE = {"post", "put", "patch", "delete"}


def _api_routes(routes: Sequence[Any]) -> Iterator[tuple[str, set[str], APIRoute]]:
    """(path, methods, route) of every API route, through included routers (FastAPI >= 0.16x keeps
    them nested; ``iter_route_contexts`` walks them, older versions list them flat)."""
    iterate = getattr(routing, "iter_route_contexts", None)
    for entry in (iterate(routes) if iterate is not None else routes):
        route = getattr(entry, "original_route", entry)
        if isinstance(route, APIRoute):
            yield entry.path_format, set(entry.methods or route.methods or ()), route


def _needs_principal(route: APIRoute) -> bool:
    from shiyu.platform.web.deps import _principal, checked_token

    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call is _principal or dep.call is checked_token:
            return True
        stack.extend(dep.dependencies)
    return False


def _problem(code: int) -> dict[str, Any]:
    return {"description": REASONS[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def document(schema: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Add Problem responses and bearer security to ``schema`` (in place) and return it."""
    protected = {(path, m.lower()) for path, methods, r in _api_routes(routes) if _needs_principal(r)
                 for m in methods}
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "description": "token from POST /api/v1/auth/token"}
    for path, item in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, op in item.items():
            if method not in UNSAFE | {"get", "head", "options"}:
                continue
            responses = op.setdefault("responses", {})
            codes: set[int] = set()
            if "422" in responses or op.get("parameters") or op.get("requestBody"):
                codes.add(422)
            if op.get("requestBody"):
                codes |= {400, 413}
            if (path, method) in protected:
                op["security"] = [{"bearer": []}]
                codes |= {401, 403, 404}
                if method in UNSAFE:
                    codes.add(409)
                if any(p.get("in") == "header" and p.get("name", "").lower() == "if-match"
                       for p in op.get("parameters", [])):
                    codes |= {412, 428}
            if path == "/api/v1/auth/token" and method == "post":
                codes |= {401, 423}
            for code in sorted(codes):
                responses[str(code)] = _problem(code)
    schemas = components["schemas"]
    if not any("HTTPValidationError" in str(op) for item in schema.get("paths", {}).values() for op in item.values()):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return schema


def install(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's own, cached until routes change

    def openapi() -> dict[str, Any]:
        schema = generate()
        if "Problem" not in schema.get("components", {}).get("schemas", {}):
            document(schema, app.routes)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
