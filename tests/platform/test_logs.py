"""The request log line: client IP, client_id and user id (never a secret), and the JSON
format beside logfmt (platform/logs.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from factories import PASSWORD
from flask import Flask
from oauth_helpers import basic, bearer, login, password_grant

from authserver import ConfigError


def request_lines(stream: io.StringIO, path: str) -> list[str]:
    return [
        line
        for line in stream.getvalue().splitlines()
        if "logger=authserver.request" in line and f"path={path}" in line
    ]


def test_token_request_line_names_ip_client_and_user(client, world, log_stream):
    """A password grant's line names the caller's IP, the client_id and the user who
    logged in, and never the password."""
    assert password_grant(client, world, "alice", ip="192.0.2.44").status_code == 200
    [line] = request_lines(log_stream, "/oauth/token")
    assert " ip=192.0.2.44 " in line
    assert f" client_id={world.public_id} " in line
    assert line.endswith(f" user_id={world.alice_id}")
    assert PASSWORD not in log_stream.getvalue()


def test_basic_auth_names_the_client_never_its_secret(client, world, log_stream):
    """A confidential client's call names its client_id from Basic auth; the secret is on
    no line."""
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.conf_id, world.conf_secret),
    )
    assert response.status_code == 200
    [line] = request_lines(log_stream, "/oauth/token")
    assert f" client_id={world.conf_id} " in line
    assert " user_id=- " in line + " "
    assert world.conf_secret not in log_stream.getvalue()


def test_api_request_line_names_the_token_user_and_client(client, world, log_stream):
    """An API call with a bearer token names the token's user and client, not the token."""
    token = login(client, world)["access_token"]
    assert client.get("/v1/user", headers=bearer(token)).status_code == 200
    [line] = request_lines(log_stream, "/v1/user")
    assert f" client_id={world.public_id} " in line
    assert line.endswith(f" user_id={world.alice_id}")
    assert token not in log_stream.getvalue()


def test_anonymous_line_says_dash(client, log_stream):
    """A request with no client or user says `-` for both, and names loopback as its IP."""
    client.get("/healthz")
    [line] = request_lines(log_stream, "/healthz")
    assert line.endswith(" ip=127.0.0.1 client_id=- user_id=-")


@pytest.fixture
def json_stream(app, make_app) -> Iterator[tuple[Flask, io.StringIO]]:
    """An app logging JSON (built after `app`: the process's one handler takes the format
    of the app built last), its handler pointed at a buffer."""
    http_app = make_app(LOG_FORMAT="json")
    handler = next(
        h for h in logging.getLogger("authserver").handlers if h.get_name() == "authserver.logfmt"
    )
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    old = handler.setStream(stream)
    yield http_app, stream
    handler.setStream(old)


def test_json_format_is_one_object_per_line(json_stream, world):
    """LOG_FORMAT=json writes each record as one JSON object with the same fields; CR/LF
    from the URL stays inside its string."""
    http_app, stream = json_stream
    http = http_app.test_client()
    http.get("/healthz", headers={"X-Request-Id": "json-test-01"})
    http.get("/v1/x%0D%0Ainjected=1%0Alevel=ERROR")
    assert password_grant(http, world, "alice", "wrong password").status_code == 400
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 4
    healthz = next(r for r in records if r.get("path") == "/healthz")
    assert healthz["request_id"] == "json-test-01"
    assert healthz["logger"] == "authserver.request"
    assert (healthz["status"], healthz["ip"], healthz["client_id"]) == (200, "127.0.0.1", "-")
    assert any(r.get("path") == "/v1/x\r\ninjected=1\nlevel=ERROR" for r in records)
    failed = next(r for r in records if r["msg"] == "login failed")
    assert failed["user_id"] == world.alice_id and failed["level"] == "INFO"
    token = next(r for r in records if r.get("path") == "/oauth/token")
    assert token["user_id"] == world.alice_id and token["client_id"] == world.public_id


def test_unknown_log_format_is_refused(make_app):
    """LOG_FORMAT other than logfmt or json stops the app with the setting's name."""
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        make_app(LOG_FORMAT="xml")
