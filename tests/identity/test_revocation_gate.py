"""The access-token hot path: the deny-list table is read only while the token's user has
a revocation that can still match a live token, and no Redis is needed to validate."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from oauth_helpers import login
from sql_helpers import statements

from authserver.identity import tokens
from authserver.platform.extensions import db
from authserver.platform.models import User, utcnow


def _deny_list_reads(app: Flask, token: str) -> int:
    with app.test_request_context(), statements(app) as seen:
        tokens.validate_access_token(token)
        db.session.rollback()
    return sum("revoked_tokens" in s for s in seen)


def test_validation_reads_the_deny_list_only_while_the_user_has_a_revocation(app, client, world):
    """No revocation: no deny-list query. After one of the user's tokens is revoked, the
    user's other tokens are checked against it until the last it matches has expired."""
    kept, revoked = login(client, world), login(client, world)
    assert _deny_list_reads(app, kept["access_token"]) == 0
    response = client.post(
        "/oauth/revoke", data={"token": revoked["access_token"], "client_id": world.public_id}
    )
    assert response.status_code == 200
    assert _deny_list_reads(app, kept["access_token"]) == 1
    with app.app_context():
        user = db.session.get(User, world.alice_id)
        assert user is not None and user.token_revocations_until is not None
        user.token_revocations_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert _deny_list_reads(app, kept["access_token"]) == 0


def test_validation_needs_no_redis(make_app, world, unused_port):
    """With Redis unreachable, a valid access token still validates (nothing it depends on
    is in Redis), and a revoked one is still refused."""
    app = make_app()
    client = app.test_client()
    good, bad = login(client, world), login(client, world)
    assert (
        client.post(
            "/oauth/revoke", data={"token": bad["access_token"], "client_id": world.public_id}
        ).status_code
        == 200
    )
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port}/0").test_client()
    assert (
        down.get(
            "/v1/user", headers={"Authorization": f"Bearer {good['access_token']}"}
        ).status_code
        == 200
    )
    assert (
        down.get("/v1/user", headers={"Authorization": f"Bearer {bad['access_token']}"}).status_code
        == 401
    )
