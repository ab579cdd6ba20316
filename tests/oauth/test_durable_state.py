"""Security state outlives Redis: after the app's Redis keys are all deleted (what FLUSHDB,
a failover to an empty replica or a restart without persistence do to it), nothing revoked
or spent comes back; and a revocation made while Redis is down is whole once it is back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from factories import World, make_totp_user
from faults import RedisServer
from flask import Flask
from oauth_helpers import (
    basic,
    bearer,
    introspect,
    login,
    password_grant,
    refresh,
    settle_totp_step,
)
from oidc_helpers import (
    approve,
    assert_replay_ends_the_login,
    auth_params,
    exchange,
    pkce,
    query_of,
    sign_in,
)
from verification_helpers import client_token

from authserver.platform.security import digest
from authserver.platform.store import Store


def _flush(app: Flask, *, some: bool = True) -> None:
    """Every key of this app's Redis gone, as after FLUSHDB (the shared server is untouched);
    `some`: check there were keys to lose (throttles, codes...)."""
    store: Store = app.extensions["authserver.store"]
    deleted = store.flush_prefix()
    assert deleted > 0 or not some


def _api(client: Any, token: str) -> int:
    return int(client.get("/v1/user", headers=bearer(token)).status_code)


def _active(client: Any, world: World, token: str) -> bool:
    return bool(introspect(client, world, token).get_json()["active"])


def _revoke(client: Any, world: World, token: str) -> Any:
    return client.post("/oauth/revoke", data={"token": token, "client_id": world.public_id})


def test_revoked_access_token_stays_revoked_after_a_flush(app, client, world):
    """/oauth/revoke on an access token, then Redis emptied: still 401 and inactive."""
    tokens = login(client, world)
    assert _revoke(client, world, tokens["access_token"]).status_code == 200
    _flush(app)
    assert _api(client, tokens["access_token"]) == 401
    assert not _active(client, world, tokens["access_token"])


def test_family_ended_by_reuse_stays_ended_after_a_flush(app, client, world):
    """Refresh-token reuse ends the login; after a flush its access tokens are still refused."""
    first = login(client, world)
    second = refresh(client, first["refresh_token"], world.public_id).get_json()
    assert refresh(client, second["refresh_token"], world.public_id).status_code == 200
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 400  # reuse
    _flush(app)
    for token in (first["access_token"], second["access_token"]):
        assert _api(client, token) == 401
        assert not _active(client, world, token)


def test_family_ended_by_revoke_stays_ended_after_a_flush(app, client, world):
    """/oauth/revoke on a refresh token ends its login; after a flush its access token is
    still refused and the refresh token too."""
    tokens = login(client, world)
    assert _revoke(client, world, tokens["refresh_token"]).status_code == 200
    _flush(app)
    assert _api(client, tokens["access_token"]) == 401
    assert not _active(client, world, tokens["access_token"])
    assert refresh(client, tokens["refresh_token"], world.public_id).status_code == 400


def test_spent_totp_code_does_not_log_in_again_after_a_flush(app, client, world):
    """A TOTP code that logged in once is refused after Redis lost its used-step marker."""
    settle_totp_step(margin=5.0)
    make_totp_user(app, world.live_id, "tina")
    _, totp = make_totp_user(app, world.live_id, "tom")
    code = totp.now()
    assert password_grant(client, world, "tom", otp=code).status_code == 200
    _flush(app)
    again = password_grant(client, world, "tom", otp=code)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_otp"


def test_replayed_code_still_revokes_its_tokens_after_a_flush(app, web, browser, oidc_world):
    """A spent authorization code replayed after a flush: invalid_grant, and the tokens it
    issued stop working (the link from code to login is durable)."""
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id, amr=("pwd",))
    verifier, challenge = pkce()
    params = auth_params(
        oidc_world.spa_id, challenge, scope="openid offline_access", prompt="consent"
    )
    code = query_of(approve(browser, params))["code"]
    assert_replay_ends_the_login(
        browser, code, verifier, oidc_world.spa_id, meanwhile=lambda: _flush(web)
    )


def test_revoked_client_token_stays_revoked_after_a_flush(app, client, world):
    """A client-credentials token (no user) revoked, then Redis emptied: still refused."""
    token = client_token(client, world)
    assert _api(client, token) == 404  # valid, but it has no user
    revoked = client.post(
        "/oauth/revoke", data={"token": token}, headers=basic(world.conf_id, world.conf_secret)
    )
    assert revoked.status_code == 200
    _flush(app, some=False)  # its revocation is not in Redis at all
    assert _api(client, token) == 401
    assert not _active(client, world, token)


def test_a_code_given_back_by_a_stale_redis_is_still_spent(app, web, browser, oidc_world):
    """Redis failed over to a replica that still holds a redeemed code: the second
    exchange is a replay (invalid_grant) and ends the login the first one began."""
    store: Store = web.extensions["authserver.store"]  # the serving app's (memory:// too)
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id, amr=("pwd",))
    verifier, challenge = pkce()
    code = query_of(approve(browser, auth_params(oidc_world.spa_id, challenge)))["code"]
    key = f"authz-code:{digest(code)}"
    live = store.get(key)
    assert live is not None
    first = exchange(browser, code, verifier, oidc_world.spa_id).get_json()
    store.put(key, live, 60)  # the stale replica's copy
    again = exchange(browser, code, verifier, oidc_world.spa_id)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert browser.get("/oauth/userinfo", headers=bearer(first["access_token"])).status_code == 401


# --- a Redis of our own that we stop and start ------------------------------------------


@pytest.fixture
def own_app(app: Flask, make_app: Callable[..., Flask], own_redis: RedisServer) -> Flask:
    """An app on the shared database and on our own Redis."""
    return make_app(REDIS_URL=own_redis.url)


def test_access_token_revoked_while_redis_is_down_stays_revoked(own_app, own_redis, world):
    """/oauth/revoke on an access token with Redis down; Redis comes back with its old data:
    the token is refused (401, inactive)."""
    client = own_app.test_client()
    tokens = login(client, world)
    own_redis.stop()
    response = _revoke(client, world, tokens["access_token"])
    assert response.status_code in (200, 503)
    own_redis.start()
    assert own_redis.keys() > 0  # Redis came back with its data, not empty
    assert _api(client, tokens["access_token"]) == 401
    assert not _active(client, world, tokens["access_token"])


def test_login_revoked_while_redis_is_down_stays_revoked(own_app, own_redis, world):
    """/oauth/revoke on a refresh token with Redis down: once Redis is back (with its old
    data), neither the refresh token nor the login's access token works."""
    client = own_app.test_client()
    tokens = login(client, world)
    own_redis.stop()
    _revoke(client, world, tokens["refresh_token"])
    own_redis.start()
    assert own_redis.keys() > 0
    assert _api(client, tokens["access_token"]) == 401
    assert refresh(client, tokens["refresh_token"], world.public_id).status_code == 400


def test_reuse_detected_while_redis_is_down_ends_the_login(own_app, own_redis, world):
    """A rotated refresh token replayed while Redis is down: once Redis is back, the login's
    access tokens are refused (the revocation was not half applied)."""
    client = own_app.test_client()
    first = login(client, world)
    second = refresh(client, first["refresh_token"], world.public_id).get_json()
    assert refresh(client, second["refresh_token"], world.public_id).status_code == 200
    own_redis.stop()
    replay = refresh(client, first["refresh_token"], world.public_id)
    assert replay.status_code in (400, 503)
    own_redis.start()
    if replay.status_code == 503:  # nothing was done: the replay is detected now
        assert refresh(client, first["refresh_token"], world.public_id).status_code == 400
    assert _api(client, second["access_token"]) == 401


def test_revoke_with_redis_down_needs_no_redis(own_app, own_redis, world):
    """Revocation lives in the database: with Redis down /oauth/revoke still answers 200."""
    client = own_app.test_client()
    tokens = login(client, world)
    own_redis.stop()
    assert _revoke(client, world, tokens["access_token"]).status_code == 200
    assert _revoke(client, world, tokens["refresh_token"]).status_code == 200
    own_redis.start()
    assert _api(client, tokens["access_token"]) == 401
