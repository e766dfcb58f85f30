"""Domain errors that carry their HTTP status without importing any web framework.

Each error has a stable ``code`` (used to pick the user-facing message in the
user's language), an optional ``field`` (the input at fault) and ``params``
for the message template.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        field: str | None = None,
        params: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        if code:
            self.code = code
        self.field = field
        self.params = params or {}
        self.errors = errors or []


class Invalid(DomainError):
    status = 422
    code = "invalid"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PreconditionFailed(DomainError):
    status = 412
    code = "precondition_failed"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Locked(DomainError):
    status = 423
    code = "locked"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
