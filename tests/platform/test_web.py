"""Health checks, request ids, log lines and security headers (platform/web.py, logs.py)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"
FRESH_ID = re.compile(r"^[0-9a-f]{32}$")


def test_healthz_is_200(client: FlaskClient) -> None:
    """/healthz answers 200 {"status": "ok"} without touching dependencies."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_200_on_real_services(client: FlaskClient) -> None:
    """/readyz answers 200 with both checks ok when the database and Redis answer."""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.parametrize(
    ("setting", "value", "checks"),
    [
        ("REDIS_URL", CLOSED_REDIS, {"database": "ok", "redis": "unavailable"}),
        ("DATABASE_URL", CLOSED_DATABASE, {"database": "unavailable", "redis": "ok"}),
    ],
)
def test_readyz_is_503_when_a_dependency_is_down(
    make_app: Callable[..., Flask], setting: str, value: str, checks: dict[str, str]
) -> None:
    """With Redis or the database at a closed port, /readyz answers 503 naming it, fast."""
    client = make_app(**{setting: value}).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "checks": checks}


def test_readyz_503_does_not_leak_errors(make_app: Callable[..., Flask]) -> None:
    """The 503 body names only the failed check, not hosts, ports or driver messages."""
    client = make_app(DATABASE_URL=CLOSED_DATABASE, REDIS_URL=CLOSED_REDIS).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert "127.0.0.1" not in text and "refused" not in text.lower()


@pytest.mark.parametrize("request_id", ["abcdef12", "req-2026.01_x", "A" * 64])
def test_well_formed_request_id_is_echoed(client: FlaskClient, request_id: str) -> None:
    """A well-formed inbound X-Request-Id comes back unchanged."""
    response = client.get("/healthz", headers={"X-Request-Id": request_id})
    assert response.headers["X-Request-Id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["a\r\nb", "a\r\nSet-Cookie: x=1", "x" * 200, "", "short", "has space 123", "../../etc/passwd"],
)
def test_hostile_request_id_is_replaced(client: FlaskClient, request_id: str) -> None:
    """A malformed X-Request-Id (CR/LF, too long, empty, odd characters) is replaced."""
    # environ_overrides: the test client itself refuses CR/LF in header values.
    response = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": request_id})
    assert FRESH_ID.match(response.headers["X-Request-Id"])
    assert "Set-Cookie" not in response.headers


def test_missing_request_id_is_generated_per_request(client: FlaskClient) -> None:
    """Without an inbound id each response gets its own fresh id."""
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert FRESH_ID.match(first) and FRESH_ID.match(second) and first != second


def test_every_log_line_has_the_request_id_and_no_raw_crlf(
    client: FlaskClient, log_stream: io.StringIO
) -> None:
    """Log lines carry the request id, and CR/LF from the URL or headers cannot split a line."""
    client.get("/healthz", headers={"X-Request-Id": "log-test-0001"})
    client.get("/v1/x%0D%0Ainjected=1%0Alevel=ERROR", headers={"X-Request-Id": "log-test-0002"})
    client.get("/readyz", environ_overrides={"HTTP_X_REQUEST_ID": "a\r\nrequest_id=forged"})
    output = log_stream.getvalue()
    lines = output.splitlines()
    assert len(lines) >= 3
    assert output.endswith("\n") and "\r" not in output
    for line in lines:
        assert line.startswith("time="), line
        assert re.search(r" request_id=(log-test-000[12]|[0-9a-f]{32}) ", line), line
    assert "request_id=forged" not in output
    injected = next(line for line in lines if "log-test-0002" in line)
    assert "injected=1" in injected  # kept, but inside the escaped path value
    assert 'path="/v1/x\\r\\ninjected=1\\nlevel=ERROR"' in injected


def test_warning_logged_by_readyz_has_the_request_id(
    make_app: Callable[..., Flask], log_stream: io.StringIO
) -> None:
    """Lines logged inside a request (the readiness warning) carry that request's id."""
    client = make_app(REDIS_URL=CLOSED_REDIS).test_client()
    client.get("/readyz", headers={"X-Request-Id": "ready-warn-01"})
    lines = [line for line in log_stream.getvalue().splitlines() if "level=WARNING" in line]
    assert lines
    assert all("request_id=ready-warn-01" in line for line in lines)


def _proxy_warnings(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if "PROXY_FIX is 0" in line]


def test_forwarded_requests_without_proxy_fix_warn_once(
    client: FlaskClient, log_stream: io.StringIO
) -> None:
    """X-Forwarded-For while PROXY_FIX is 0: one WARNING naming PROXY_FIX, not one a request;
    requests without the header warn nothing."""
    client.get("/healthz")
    assert _proxy_warnings(log_stream) == []
    for i in range(3):
        client.get("/healthz", headers={"X-Forwarded-For": f"203.0.113.{i}"})
    warnings = _proxy_warnings(log_stream)
    assert len(warnings) == 1 and "level=WARNING" in warnings[0]


def test_forwarded_requests_with_proxy_fix_do_not_warn(
    make_app: Callable[..., Flask], log_stream: io.StringIO
) -> None:
    """With PROXY_FIX set the header is expected (it is trusted): no warning."""
    client = make_app(PROXY_FIX=1).test_client()
    client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.5"})
    assert _proxy_warnings(log_stream) == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/nope", "/nope"])
def test_security_headers_on_every_response(client: FlaskClient, path: str) -> None:
    """Responses, errors included, carry nosniff, a referrer policy that sends nothing to
    other sites (same-origin on HTML pages, so their forms carry an Origin), DENY framing
    and a CSP."""
    response = client.get(path)
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    html = response.mimetype == "text/html"
    assert headers["Referrer-Policy"] == ("same-origin" if html else "no-referrer")
    assert headers["X-Frame-Options"] == "DENY"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
