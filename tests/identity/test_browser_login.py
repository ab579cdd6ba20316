"""browser_login.py: the hosted pages' login in the session, and when it stops being good."""

from __future__ import annotations

from typing import Any

import pytest
from factories import World

from authserver.identity import browser_login
from authserver.identity.tokens import revoke_user_tokens
from authserver.platform.extensions import db
from authserver.platform.models import User

NOW = 1_800_000_000


def _start(app: Any, world: World, session: dict[str, Any]) -> None:
    with app.app_context():
        alice = db.session.get(User, world.alice_id)
        session["csrf_token"] = "from before the login"
        browser_login.start_login(session, alice, world.live_id, ["pwd", "otp", "mfa"], NOW)


def test_a_login_reads_back_and_the_session_was_cleared(app, world):
    """start_login clears what was in the session; current_login returns who, how, when."""
    session: dict[str, Any] = {}
    _start(app, world, session)
    assert "csrf_token" not in session
    with app.app_context():
        login = browser_login.current_login(session, NOW + 5)
    assert login == browser_login.BrowserLogin(
        world.alice_id, world.live_id, ("pwd", "otp", "mfa"), NOW
    )


@pytest.mark.parametrize(
    "later",
    [browser_login.IDLE_TIMEOUT + 1, browser_login.ABSOLUTE_TIMEOUT + 1],
    ids=["idle", "absolute"],
)
def test_timeouts_end_the_login(app, world, later):
    """Idle for longer than IDLE_TIMEOUT, or older than ABSOLUTE_TIMEOUT: no login, cleared."""
    session: dict[str, Any] = {}
    _start(app, world, session)
    with app.app_context():
        if (
            later > browser_login.IDLE_TIMEOUT + 1
        ):  # keep it active, so only the absolute limit hits
            for step in range(0, later, browser_login.IDLE_TIMEOUT - 60):
                assert browser_login.current_login(session, NOW + step) is not None
        assert browser_login.current_login(session, NOW + later) is None
    assert session == {}


def test_sign_out_everywhere_and_disabling_end_browser_logins(app, world):
    """Raising the user's token generation, or disabling the user, ends the login."""
    for change in ("revoke", "disable"):
        session: dict[str, Any] = {}
        _start(app, world, session)
        with app.app_context():
            alice = db.session.get(User, world.alice_id)
            if change == "revoke":
                revoke_user_tokens(alice)
                db.session.commit()
            else:
                alice.status = "disabled"
                db.session.commit()
            assert browser_login.current_login(session, NOW + 1) is None
            alice.status = "active"
            db.session.commit()


@pytest.mark.parametrize(
    "tampered",
    [{"uid": 5}, {"amr": "pwd"}, {"at": "yesterday"}, {"gen": None}, {"sid": 1}, "not a dict"],
)
def test_malformed_session_data_is_no_login(app, world, tampered):
    """Anything but the shape start_login writes reads as no login (and is cleared)."""
    session: dict[str, Any] = {}
    _start(app, world, session)
    session["login"] = tampered if isinstance(tampered, str) else {**session["login"], **tampered}
    with app.app_context():
        assert browser_login.current_login(session, NOW + 1) is None
    assert session == {}


def test_a_cookie_copied_before_logout_is_no_login_after_it(app, world):
    """end_login deletes the login id in Redis: a copy of the session taken before logout
    (a replayed cookie) reads as no login."""
    session: dict[str, Any] = {}
    _start(app, world, session)
    copy = {
        key: dict(value) if isinstance(value, dict) else value for key, value in session.items()
    }
    with app.app_context():
        assert browser_login.current_login(copy, NOW + 1) is not None
        browser_login.end_login(session)
        assert browser_login.current_login(copy, NOW + 2) is None
