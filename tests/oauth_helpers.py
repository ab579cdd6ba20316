"""Helpers for OAuth tests: token calls through the Flask test client, JWT pieces and
timing and threading aids. The data they work on comes from tests/factories.py.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pyotp
from factories import PASSWORD, World
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from werkzeug.test import TestResponse

from authserver.platform.extensions import db
from authserver.platform.models import LoginRecord, RefreshToken

SCOPE = "openid profile email"


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An HTTP Basic Authorization header (RFC 6749 2.3.1)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_form(
    client: FlaskClient,
    path: str,
    data: dict[str, Any] | list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> Any:
    return client.post(path, data=data, headers=headers or {})


def password_grant(
    client: FlaskClient,
    world: World,
    username: str = "alice",
    password: str = PASSWORD,
    *,
    scope: str = "",
    aid: str | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    **extra: str,
) -> Any:
    """POST /oauth/token with grant_type=password through the public client of the live
    account (of the test account for tess, or `client_id`) with scope `scope` aid:<account>;
    `extra` (otp, recovery_code, ...) joins the form. The response, whatever it is."""
    aid = aid or (world.test_id if username == "tess" else world.live_id)
    client_id = client_id or (world.test_public_id if username == "tess" else world.public_id)
    data = {
        "grant_type": "password",
        "username": username,
        "password": password,
        "client_id": client_id,
        "scope": f"{scope} aid:{aid}".strip(),
        **extra,
    }
    environ = {"REMOTE_ADDR": ip} if ip else {}
    return client.post("/oauth/token", data=data, environ_base=environ)


def login(
    client: FlaskClient,
    world: World,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    client_id: str | None = None,
    aid: str | None = None,
    scope: str = SCOPE,
) -> dict[str, Any]:
    """Password grant for a simple user; asserts success and returns the token response."""
    response = password_grant(
        client, world, username, password, scope=scope, aid=aid, client_id=client_id
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh(client: FlaskClient, refresh_token: str, client_id: str | None, **extra: str) -> Any:
    """A refresh_token grant by a public client (or none when client_id is None)."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if client_id is not None:
        data["client_id"] = client_id
    return client.post("/oauth/token", data=data)


def introspect(client: FlaskClient, world: World, token: str, **extra: str) -> Any:
    """Introspection by the live account's confidential client."""
    return client.post(
        "/oauth/introspect",
        data={"token": token, **extra},
        headers=basic(world.conf_id, world.conf_secret),
    )


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, unverified."""
    head, body, _ = token.split(".")
    return json.loads(unb64url(head)), json.loads(unb64url(body))


def access_claims(app: Flask, **overrides: Any) -> dict[str, Any]:
    """Claims of a well-formed access token for nobody in particular; override any."""
    now = int(time.time())
    issuer = app.config["ISSUER"]
    claims = {
        "iss": issuer,
        "sub": str(uuid.uuid4()),
        "aud": issuer + "/v1",
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "someone",
        "scope": "",
        "aid": None,
        "mode": "live",
        "role": "owner",
    }
    claims.update(overrides)
    return claims


def sign_with_app_key(
    app: Flask, claims: dict[str, Any], *, alg: str = "ES256", typ: str = "at+jwt"
) -> str:
    """A JWT signed by the app's own current key of `alg`."""
    key = app.extensions["authserver.keys"].signing_key(alg)
    header = {"alg": alg, "typ": typ, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[alg])


def row_counts(app: Flask) -> tuple[int, int]:
    """(LoginRecord rows, RefreshToken rows)."""
    with app.app_context():
        return (
            db.session.scalar(db.select(db.func.count()).select_from(LoginRecord)) or 0,
            db.session.scalar(db.select(db.func.count()).select_from(RefreshToken)) or 0,
        )


def settle_totp_step(margin: float = 3.0) -> None:
    """Wait for a fresh 30 s step when the current one ends within `margin` seconds."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.2)


def wrong_totp(totp: pyotp.TOTP) -> str:
    """A code no step in the +-1 window accepts."""
    now = time.time()
    valid = {totp.at(now + k * 30) for k in (-2, -1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def run_together(count: int, job: Callable[[int], TestResponse]) -> list[TestResponse]:
    """Runs `job(i)` in `count` threads released at once; returns the responses."""
    barrier = threading.Barrier(count)
    results: list[TestResponse | BaseException] = [RuntimeError("not run")] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = job(i)
        except BaseException as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    return [r for r in results if isinstance(r, TestResponse)]
