"""Helpers for the OpenID Connect tests: a signed-in browser, PKCE pairs and the
authorization request -> code -> token steps through the test client (the clients with
redirect URIs are in tests/factories.py)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from factories import SPA_CB
from flask import Flask
from flask.testing import FlaskClient

from authserver.identity import browser_login
from authserver.platform.extensions import db
from authserver.platform.models import OAuthConsent, User


def sign_in(
    app: Flask,
    client: FlaskClient,
    user_id: str,
    account_id: str | None,
    amr: tuple[str, ...] = ("pwd",),
    at: int | None = None,
) -> None:
    """Write a finished browser login into the test client's session cookie."""
    with app.app_context(), client.session_transaction() as sess:
        user = db.session.get(User, user_id)
        browser_login.start_login(sess, user, account_id, list(amr), at or int(time.time()))


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def auth_params(client_id: str, challenge: str, **extra: Any) -> dict[str, Any]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": SPA_CB,
        "scope": "openid profile email",
        "state": "st-123",
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def query_of(response: Any) -> dict[str, str]:
    """The query parameters of a redirect's Location (one value each)."""
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def csrf_from(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def approve(client: FlaskClient, params: dict[str, Any], decision: str = "allow") -> Any:
    """Show the consent page, then POST the decision with its CSRF token."""
    page = client.get("/oauth/authorize", query_string=params)
    assert page.status_code == 200, page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))
    return client.post(
        "/oauth/authorize/consent",
        query_string=params,
        data={"csrf_token": token, "decision": decision},
    )


def exchange(client: FlaskClient, code: str, verifier: str, client_id: str, **extra: str) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": client_id,
        "redirect_uri": SPA_CB,
        **extra,
    }
    return client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})


def assert_replay_ends_the_login(
    client: FlaskClient, code: str, verifier: str, client_id: str, meanwhile: Any = None
) -> None:
    """Exchange `code` (with offline_access), call `meanwhile()`, replay the code: the replay
    gets invalid_grant and the first exchange's access and refresh tokens stop working."""
    first = exchange(client, code, verifier, client_id).get_json()
    assert "refresh_token" in first
    userinfo = {"Authorization": f"Bearer {first['access_token']}"}
    assert client.get("/oauth/userinfo", headers=userinfo).status_code == 200
    if meanwhile is not None:
        meanwhile()
    again = exchange(client, code, verifier, client_id)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert client.get("/oauth/userinfo", headers=userinfo).status_code == 401
    refreshed = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.get_json()["error"] == "invalid_grant"


def consent_count(app: Flask) -> int:
    """How many consents are stored."""
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(OAuthConsent)) or 0
