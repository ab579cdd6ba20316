"""The refresh retry grace: a client that lost only the answer to its refresh (the rotation
committed, the response never arrived) may present the just-rotated token again, once,
within REFRESH_TOKEN_RETRY_GRACE seconds while its successor is unused, and keeps its
login. Everything else that presents a rotated token is still reuse and ends the login."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from factories import World
from flask import Flask
from oauth_helpers import bearer, login, refresh
from sqlalchemy import select

from authserver.platform.extensions import db
from authserver.platform.models import RefreshToken
from authserver.platform.security import digest


def _api(client: Any, token: str) -> int:
    return int(client.get("/v1/user", headers=bearer(token)).status_code)


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


def _family_revoked(app: Flask, value: str) -> bool:
    with app.app_context():
        family = db.session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.token_hash == digest(value))
        )
        rows = db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == family))
        return all(row.revoked_at is not None for row in rows)


def test_a_retried_refresh_keeps_the_login(app, client, world: World):
    """The answer to a refresh is lost; the retry with the same token gets a working pair,
    and the login goes on."""
    first = login(client, world)
    _ok(refresh(client, first["refresh_token"], world.public_id))  # the answer is lost
    retried = _ok(refresh(client, first["refresh_token"], world.public_id))
    assert _api(client, retried["access_token"]) == 200
    assert _api(client, first["access_token"]) == 200
    _ok(refresh(client, retried["refresh_token"], world.public_id))
    assert not _family_revoked(app, first["refresh_token"])


def test_the_lost_successor_ends_the_login_if_it_turns_up(app, client, world):
    """After a retry, the successor nobody should have (the lost answer) is reuse: whoever
    holds it, presenting it ends the whole login, the retry's tokens included."""
    first = login(client, world)
    lost = _ok(refresh(client, first["refresh_token"], world.public_id))
    retried = _ok(refresh(client, first["refresh_token"], world.public_id))
    assert refresh(client, lost["refresh_token"], world.public_id).status_code == 400
    assert refresh(client, retried["refresh_token"], world.public_id).status_code == 400
    assert _api(client, retried["access_token"]) == 401
    assert _family_revoked(app, first["refresh_token"])


def test_a_replay_after_the_successor_was_used_is_reuse(app, client, world):
    """Within the grace, but the successor was already used (the client got its answer):
    a replay of the old token is reuse and ends the login."""
    first = login(client, world)
    second = _ok(refresh(client, first["refresh_token"], world.public_id))
    third = _ok(refresh(client, second["refresh_token"], world.public_id))
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 400
    assert _api(client, third["access_token"]) == 401
    assert refresh(client, third["refresh_token"], world.public_id).status_code == 400


def test_only_one_retry(app, client, world):
    """A second retry of the same token is reuse: the grace gives one more answer, not many."""
    first = login(client, world)
    _ok(refresh(client, first["refresh_token"], world.public_id))
    retried = _ok(refresh(client, first["refresh_token"], world.public_id))
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 400
    assert _api(client, retried["access_token"]) == 401


def test_a_retry_after_the_grace_is_reuse(app, client, world):
    """A retry later than REFRESH_TOKEN_RETRY_GRACE seconds after the rotation is reuse."""
    first = login(client, world)
    second = _ok(refresh(client, first["refresh_token"], world.public_id))
    grace = app.config["REFRESH_TOKEN_RETRY_GRACE"]
    with app.app_context():
        row = db.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == digest(first["refresh_token"]))
        )
        assert row is not None and row.rotated_at is not None
        row.rotated_at -= timedelta(seconds=grace + 1)
        db.session.commit()
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 400
    assert refresh(client, second["refresh_token"], world.public_id).status_code == 400


def test_grace_zero_turns_retries_off(make_app, world):
    """REFRESH_TOKEN_RETRY_GRACE = 0: every second use of a token is reuse, as before."""
    client = make_app(REFRESH_TOKEN_RETRY_GRACE=0).test_client()
    first = login(client, world)
    second = _ok(refresh(client, first["refresh_token"], world.public_id))
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 400
    assert refresh(client, second["refresh_token"], world.public_id).status_code == 400


def test_another_client_gets_no_grace(app, client, world):
    """The rotated token presented by another client: invalid_grant; the login goes on for
    its own client (a token bound to one client is nobody else's to retry)."""
    first = login(client, world)
    second = _ok(refresh(client, first["refresh_token"], world.public_id))
    assert refresh(client, first["refresh_token"], world.other_public_id).status_code == 400
    _ok(refresh(client, second["refresh_token"], world.public_id))
