"""Domain exceptions. Each has a stable snake_case `code`; the HTTP layers map them to statuses."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    code = "domain_error"
    title = "Request failed"

    def __init__(
        self, detail: str | None = None, *, field: str | None = None, code: str | None = None
    ):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.field = field  # camelCase attribute name the error is about, if any
        if code:
            self.code = code


class ValidationFailed(DomainError):
    """Input is well formed but breaks a rule (422)."""

    code = "validation_failed"
    title = "Invalid value"


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does (404)."""

    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    """The change collides with existing data, e.g. a taken username (409)."""

    code = "conflict"
    title = "Conflict"


class Forbidden(DomainError):
    """The caller's role does not allow this (403)."""

    code = "forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    """No valid credentials (401)."""

    code = "unauthenticated"
    title = "Authentication required"


class Throttled(DomainError):
    """Too many attempts; try again after `retry_after` seconds (429)."""

    code = "throttled"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None, **kwargs: str | None):
        super().__init__(detail, **kwargs)
        self.retry_after = max(1, int(retry_after))


class ServiceUnavailable(DomainError):
    """A dependency (Redis, the database, a sender) is down; fail closed (503)."""

    code = "service_unavailable"
    title = "Service unavailable"
