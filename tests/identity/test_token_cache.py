"""Bearer checks from Redis (identity/token_cache.py): no SQL once warm, and no copy in Redis
(stale, raced, flushed, forged or orphaned by a Redis fault) ever lets a revoked token pass,
on the instance that revoked it or on another one sharing the database and Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from factories import World, make_user
from faults import RedisServer
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import basic, bearer, introspect, login
from sql_helpers import statements
from sqlalchemy import select, update

from authserver.identity import accounts, clients, token_cache, tokens
from authserver.platform.extensions import db, store
from authserver.platform.models import Account, OAuthClient, User, UserStatus


def _status(c: FlaskClient, token: str) -> int:
    return int(c.get("/v1/user", headers=bearer(token)).status_code)


def _user(app: Flask, world: World) -> User:
    user = db.session.get(User, world.alice_id)
    assert user is not None
    return user


def _client_row(client_id: str) -> OAuthClient:
    row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert row is not None
    return row


# --- no database once warm ------------------------------------------------------------


def test_warm_checks_issue_no_sql(app, client, world):
    """Once warm: the check itself, introspection and the /v1 guard run no SQL; userinfo
    and GET /v1/user read one row each (the user's claims; the user with its account)."""
    token = login(client, world)["access_token"]
    calls: dict[str, Callable[[], Any]] = {
        "check": lambda: _validate(app, token),
        "introspection": lambda: introspect(client, world, token),
        "userinfo": lambda: client.get("/oauth/userinfo", headers=bearer(token)),
        "/v1/user": lambda: client.get("/v1/user", headers=bearer(token)),
    }
    counts = {}
    for name, call in calls.items():
        call()  # warm
        with statements(app) as seen:
            result = call()
        assert getattr(result, "status_code", 200) == 200
        counts[name] = len(seen)
        if name == "introspection":
            assert result.get_json()["active"] is True
            assert result.get_json()["username"] == "alice"
    assert counts == {"check": 0, "introspection": 0, "userinfo": 1, "/v1/user": 1}


def _validate(app: Flask, token: str) -> None:
    with app.test_request_context():
        tokens.validate_access_token(token)
        db.session.rollback()


def test_cache_off_reads_postgresql(make_app, world):
    """TOKEN_CHECK_CACHE_TTL=0: every check reads the rows from PostgreSQL (the switch the
    README documents), and the answers are the same."""
    app = make_app(TOKEN_CHECK_CACHE_TTL=0)
    token = login(app.test_client(), world)["access_token"]
    _validate(app, token)
    with statements(app) as seen:
        _validate(app, token)
    assert len(seen) == 3  # client, account, user


# --- every revocation path, this instance and another ----------------------------------


def _end_login(app: Flask, world: World, pair: dict[str, Any]) -> None:
    response = app.test_client().post(
        "/oauth/revoke", data={"token": pair["refresh_token"], "client_id": world.public_id}
    )
    assert response.status_code == 200


def _revoke_access_token(app: Flask, world: World, pair: dict[str, Any]) -> None:
    response = app.test_client().post(
        "/oauth/revoke", data={"token": pair["access_token"], "client_id": world.public_id}
    )
    assert response.status_code == 200


def _revoke_app(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        tokens.revoke_client_tokens(world.alice_id, _client_row(world.public_id).id)
        db.session.commit()


def _change_password(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        accounts.set_password(_user(app, world), "another-long-passphrase-42")


def _sign_out_everywhere(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        accounts.sign_out_everywhere(_user(app, world))


def _disable_user(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        accounts.set_status(_user(app, world), UserStatus.DISABLED)


def _delete_account(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        assert account is not None
        accounts.delete_account(account)


def _disable_client(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        clients.update_client(_client_row(world.public_id), {"status": "disabled"})


def _delete_client(app: Flask, world: World, pair: dict[str, Any]) -> None:
    with app.app_context():
        clients.delete_client(_client_row(world.public_id))


def _bulk_disable(app: Flask, world: World, pair: dict[str, Any]) -> None:
    """A bulk UPDATE naming no subject to the cache (as new code might write)."""
    with app.app_context():
        db.session.execute(
            update(User).where(User.id == world.alice_id).values(status=UserStatus.DISABLED)
        )
        db.session.commit()


REVOCATIONS = {
    "logout (family)": _end_login,
    "access token (jti)": _revoke_access_token,
    "app revoked for the user": _revoke_app,
    "password change (generation)": _change_password,
    "sign out everywhere": _sign_out_everywhere,
    "user disabled": _disable_user,
    "account deleted": _delete_account,
    "client disabled": _disable_client,
    "client deleted": _delete_client,
    "bulk UPDATE of a user": _bulk_disable,
}


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=list(REVOCATIONS))
def test_each_revocation_reaches_warm_checks_on_every_instance(app, make_app, world, revoke):
    """A warm copy in Redis answers 200; after the revocation commits on this instance the
    very next check refuses, here and on a second instance that had warmed it too, while a
    token the revocation does not cover (another user's) keeps working."""
    here, there = app.test_client(), make_app().test_client()
    pair, other = login(here, world), login(here, world, username="bob-tc")
    sibling = login(here, world)  # another login of the same user
    for c in (here, there):
        assert _status(c, pair["access_token"]) == 200  # warms each instance's view
    revoke(app, world, pair)
    assert _status(here, pair["access_token"]) == 401
    assert _status(there, pair["access_token"]) == 401
    if revoke not in (_delete_account, _disable_client, _delete_client):
        assert _status(there, other["access_token"]) == 200
    if revoke in (_end_login, _revoke_access_token):  # the gate is open: rows in the copy
        for c in (here, there):
            assert _status(c, sibling["access_token"]) == 200


def test_too_many_deny_list_rows_are_asked_of_postgresql(app, client, world, monkeypatch):
    """A gate with more live rows than a copy carries: the copy says so and the check asks
    PostgreSQL for the token's keys; the revoked token is refused, its sibling passes."""
    monkeypatch.setattr(token_cache, "MAX_ROWS", 0)
    revoked, sibling = login(client, world), login(client, world)
    _revoke_access_token(app, world, revoked)
    assert _status(client, revoked["access_token"]) == 401
    assert _status(client, sibling["access_token"]) == 200
    with app.app_context():
        copy = store().get(f"tc:s:u:{world.alice_id}")
    assert copy is not None and json.loads(copy)["rv"] is None
    with statements(app) as seen:
        assert _status(client, revoked["access_token"]) == 401
    assert any("revoked_tokens" in s for s in seen)


@pytest.fixture(autouse=True)
def _bob(app, world):
    """A second user of the live account, for tokens a user revocation must not touch."""
    make_user(app, world.live_id, "bob-tc", role="owner")


def test_rotated_secret_refused_at_once_on_every_instance(app, make_app, world):
    """Caller authentication reads the secret digest from the client's copy: after
    rotate-secret commits, the old secret is refused by both instances' introspection."""
    token = login(app.test_client(), world)["access_token"]
    here, there = app.test_client(), make_app().test_client()
    for c in (here, there):
        assert introspect(c, world, token).status_code == 200
    with app.app_context():
        new = clients.rotate_secret(_client_row(world.conf_id)).secret
    for c in (here, there):
        assert introspect(c, world, token).status_code == 401
        fresh = c.post(
            "/oauth/introspect", data={"token": token}, headers=basic(world.conf_id, new)
        )
        assert fresh.status_code == 200


# --- races and lost or forged Redis data ---------------------------------------------------


def test_fill_race_stale_snapshot_is_never_used(app, make_app, world, monkeypatch):
    """A reader reads the epochs, then the user's old row, then (before it stores its copy)
    another instance disables the user and commits: the copy it stores is tagged with the
    old epoch, so the next check ignores it and refuses."""
    c = app.test_client()
    token = login(c, world)["access_token"]
    revoker = make_app()
    real_load = token_cache._load
    raced: list[bool] = []

    def load_then_lose_the_race(subject: token_cache.Subject) -> token_cache.Snapshot:
        snapshot = real_load(subject)  # the row as it was
        if subject[0] == "u" and not raced:
            raced.append(True)
            with revoker.app_context():
                accounts.set_status(_user(revoker, world), UserStatus.DISABLED)
        return snapshot

    monkeypatch.setattr(token_cache, "_load", load_then_lose_the_race)
    assert _status(c, token) == 200  # this request read the row before the commit: fine
    assert raced
    monkeypatch.setattr(token_cache, "_load", real_load)
    with app.app_context():
        stored = store().get(f"tc:s:u:{world.alice_id}")
    assert stored is not None and json.loads(stored)["ok"] == 1  # the stale copy is there
    assert _status(c, token) == 401  # and is not believed


def _stale_copy(app: Flask, world: World, revoke: Callable[[], None]) -> str:
    """Warm the user's copy, keep it, revoke, then put the old copy back."""
    with app.app_context():
        old = store().get(f"tc:s:u:{world.alice_id}")
        assert old is not None and json.loads(old)["ok"] == 1
    revoke()
    with app.app_context():
        store().put(f"tc:s:u:{world.alice_id}", old, 60)
    return old


def test_stale_copy_with_epoch_deleted_stays_refused(app, client, world):
    """An old copy put back after its epoch key was evicted: the new random epoch made for
    the missing key never matches its tag, so the disabled user's token stays refused."""
    token = login(client, world)["access_token"]
    assert _status(client, token) == 200

    def revoke() -> None:
        with app.app_context():
            accounts.set_status(_user(app, world), UserStatus.DISABLED)

    _stale_copy(app, world, revoke)
    with app.app_context():
        store().delete(f"tc:e:u:{world.alice_id}", token_cache.GLOBAL)
    assert _status(client, token) == 401


def test_flushed_redis_then_stale_copy_stays_refused(app, client, world):
    """Redis emptied (FLUSHALL for this app) after a revocation, and then an old copy comes
    back (a replica that had it): every epoch is new, the copy is ignored, still 401; a
    token nothing revoked still works."""
    pair, other = login(client, world), login(client, world, username="bob-tc")
    assert _status(client, pair["access_token"]) == 200

    def revoke() -> None:
        with app.app_context():
            accounts.sign_out_everywhere(_user(app, world))

    old = _stale_copy(app, world, revoke)
    with app.app_context():
        store().flush_prefix()
        store().put(f"tc:s:u:{world.alice_id}", old, 60)
    assert _status(client, pair["access_token"]) == 401
    assert _status(client, other["access_token"]) == 200


def test_forged_or_mistagged_copy_is_ignored(app, client, world):
    """A copy that says "active" under a tag other than the current epochs (or that is not
    JSON at all) is read again from PostgreSQL: the disabled user stays refused."""
    token = login(client, world)["access_token"]
    assert _status(client, token) == 200
    with app.app_context():
        accounts.set_status(_user(app, world), UserStatus.DISABLED)
    name = f"tc:s:u:{world.alice_id}"
    for forged in (json.dumps({"t": "wrong.tag", "ok": 1, "g": 0, "gate": None, "rv": []}), "{"):
        with app.app_context():
            store().put(name, forged, 60)
        assert _status(client, token) == 401


def test_uncommitted_change_is_not_cached(app, client, world):
    """A check inside a transaction that changed the user (not committed) stores no copy of
    what it read: after the rollback, the next check does not see the uncommitted state."""
    token = login(client, world)["access_token"]
    with app.test_request_context():
        user = _user(app, world)
        store().delete(f"tc:s:u:{world.alice_id}")
        user.kept_family_id = "not-committed"
        tokens.validate_access_token(token)  # autoflushes the change, then reads it
        assert store().get(f"tc:s:u:{world.alice_id}") is None
        db.session.rollback()
    assert _status(client, token) == 200


# --- Redis faults -------------------------------------------------------------------------


def test_redis_killed_checks_answer_from_postgresql(make_app, own_redis: RedisServer, world):
    """Redis killed: valid tokens still pass and a revocation made meanwhile is refused (from
    PostgreSQL); Redis back empty: still refused, and the good token still passes."""
    app = make_app(REDIS_URL=own_redis.url)
    c = app.test_client()
    good, bad = login(c, world, username="bob-tc"), login(c, world)
    assert _status(c, good["access_token"]) == 200
    assert _status(c, bad["access_token"]) == 200
    own_redis.kill()
    with app.app_context():
        accounts.set_status(_user(app, world), UserStatus.DISABLED)  # invalidation fails
    assert _status(c, bad["access_token"]) == 401
    assert _status(c, good["access_token"]) == 200
    own_redis.start()
    app.extensions[token_cache.EXTENSION].paused_until = 0.0  # no need to wait the pause
    assert _status(c, bad["access_token"]) == 401
    assert _status(c, good["access_token"]) == 200


def test_invalidation_missed_while_frozen_is_delivered_at_next_contact(
    make_app, own_redis: RedisServer, world
):
    """The revoking instance cannot reach Redis (frozen) while another instance's copy stays
    in it; once Redis answers, the revoking instance delivers the missed invalidation before
    it uses Redis again, and from then on the other instance refuses too."""
    writer, reader = make_app(REDIS_URL=own_redis.url), make_app(REDIS_URL=own_redis.url)
    w, r = writer.test_client(), reader.test_client()
    token = login(w, world)["access_token"]
    assert _status(r, token) == 200  # the reader's copy is in Redis
    own_redis.freeze()
    try:
        with writer.app_context():
            accounts.set_status(_user(writer, world), UserStatus.DISABLED)
        assert writer.extensions[token_cache.EXTENSION].pending
    finally:
        own_redis.thaw()
    assert _status(w, token) == 401  # from PostgreSQL while paused
    writer.extensions[token_cache.EXTENSION].paused_until = 0.0
    assert _status(w, token) == 401  # delivers the owed epochs first
    assert not writer.extensions[token_cache.EXTENSION].pending
    assert _status(r, token) == 401
