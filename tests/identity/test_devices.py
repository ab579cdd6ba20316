"""devices.py: which device tokens count as a known device (ours, for a user, within the
lifetime) and which are strangers (forged, expired, malformed, signed for something else)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from factories import World
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from authserver.identity import devices
from authserver.platform.extensions import db
from authserver.platform.models import User


class _LastYearSigner(TimestampSigner):
    """Signs as if it were LIFETIME + 1 minute ago (a token that has just expired)."""

    def get_timestamp(self) -> int:
        return int(time.time()) - devices.LIFETIME - 60


def _serializer(app: Any, **kwargs: Any) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=devices.SALT, **kwargs)


def test_an_issued_token_names_its_user_and_a_fresh_device(app: Any, world: World) -> None:
    """issue() then read(): the user's id, and another device id for every login."""
    with app.app_context():
        alice = db.session.get(User, world.alice_id)
        assert alice is not None
        first, second = devices.read(devices.issue(alice)), devices.read(devices.issue(alice))
    assert first is not None and second is not None
    assert first.user_id == second.user_id == world.alice_id
    assert first.id != second.id


@pytest.mark.parametrize(
    "token",
    [None, 5, "", "null", "a.b.c", "\x00", "\udcff", "é.é", "x" * (devices.TOKEN_MAX + 1)],
)
def test_malformed_tokens_are_strangers(app: Any, token: object) -> None:
    """Anything that is not a short ASCII token we signed reads as no device (no error)."""
    with app.app_context():
        assert devices.read(token) is None


def test_forged_expired_and_foreign_tokens_are_strangers(app: Any, world: World) -> None:
    """A changed signature, a token past LIFETIME, one signed with another salt or key, and
    our signature over the wrong shape all read as no device."""
    payload = {"d": "device", "u": world.alice_id}
    with app.app_context():
        good = _serializer(app).dumps(payload)
        assert devices.read(good) == devices.Device("device", world.alice_id)
        forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
        expired = _serializer(app, signer=_LastYearSigner).dumps(payload)
        other_salt = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="x").dumps(payload)
        other_key = URLSafeTimedSerializer("another-secret-key" * 3, salt=devices.SALT).dumps(
            payload
        )
        shapes = [_serializer(app).dumps(p) for p in ([1], "s", {"d": 1, "u": "x"}, {"d": "a"})]
        for token in [forged, expired, other_salt, other_key, *shapes]:
            assert devices.read(token) is None, token
