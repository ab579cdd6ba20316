"""The hosted pages' proof-of-work check (built-in ALTCHA): the login page shows it only
past the failure threshold and then needs a solved challenge (once); the forgotten-
password page always shows and needs it when a verifier is configured; the challenge
endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from captcha_helpers import solved
from factories import PASSWORD, World, make_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import password_grant
from pages_helpers import csrf, signed_in
from verification_helpers import mails

AFTER = 2
RESET = "identity.password_reset_token.create.success"


@pytest.fixture
def guarded(make_app: Any, app: Flask) -> Flask:
    """CSRF on, the built-in proof of work, a CAPTCHA after AFTER failures."""
    return make_app(
        WTF_CSRF_ENABLED=True, CAPTCHA_VERIFY_URL="altcha:", CAPTCHA_AFTER_FAILURES=AFTER
    )


def post_login(client: FlaskClient, world: World, **extra: str) -> Any:
    path = f"/login?aid={world.live_id}"
    form = client.get(path)
    data = {"csrf_token": csrf(form), "username": "alice", "password": PASSWORD, **extra}
    return client.post(path, data=data)


def test_the_login_page_shows_the_check_only_past_the_threshold(guarded, world):
    """Before: no check and a normal login. After AFTER failures: the right password gets
    the page again (400) with the check and its script, and no login."""
    client = guarded.test_client()
    page = client.get(f"/login?aid={world.live_id}").get_data(as_text=True)
    assert "data-captcha" not in page and "captcha.js" not in page
    for _ in range(AFTER):
        password_grant(guarded.test_client(), world, "alice", "wrong")
    asked = post_login(client, world)
    assert asked.status_code == 400 and not signed_in(client)
    html = asked.get_data(as_text=True)
    assert "data-captcha" in html and "/static/captcha.js" in html
    assert 'data-challenge-url="/captcha/challenge"' in html


def test_a_solved_check_signs_in_once(guarded, world):
    """A solved challenge lets the login through; the same solution again is refused."""
    for _ in range(AFTER):
        password_grant(guarded.test_client(), world, "alice", "wrong")
    client = guarded.test_client()
    token = solved(client)
    done = post_login(client, world, captcha_token=token)
    assert done.status_code == 303 and signed_in(client)
    again = guarded.test_client()
    refused = post_login(again, world, captcha_token=token)
    assert refused.status_code == 400 and not signed_in(again)
    assert "The check did not work" in refused.get_data(as_text=True)


@pytest.mark.parametrize("token", ["garbage", "e30=", "x" * 4097, "\u00e9" * 10])
def test_forged_or_hostile_solutions_are_refused(guarded, world, token):
    """Anything but a fresh solution of our own challenge: no login, a 4xx page."""
    for _ in range(AFTER):
        password_grant(guarded.test_client(), world, "alice", "wrong")
    client = guarded.test_client()
    response = post_login(client, world, captcha_token=token)
    assert 400 <= response.status_code < 500 and not signed_in(client)


def test_a_challenge_signed_with_another_key_is_refused(guarded, make_app, world):
    """A solution of another server's challenge (another secret) does not pass."""
    other = make_app(CAPTCHA_VERIFY_URL="altcha:", CAPTCHA_SECRET="another-secret-entirely")
    token = solved(other.test_client())
    for _ in range(AFTER):
        password_grant(guarded.test_client(), world, "alice", "wrong")
    client = guarded.test_client()
    assert post_login(client, world, captcha_token=token).status_code == 400


def test_the_forgot_password_page_needs_the_check(guarded, world):
    """Configured: the page always shows the check; without a solution no email goes, with
    one the usual answer and the email."""
    make_user(guarded, world.live_id, "bob", email="bob@example.com")
    client = guarded.test_client()
    path = f"/forgot-password?aid={world.live_id}"
    form = client.get(path)
    assert "data-captcha" in form.get_data(as_text=True)
    refused = client.post(path, data={"csrf_token": csrf(form), "username": "bob"})
    assert refused.status_code == 400
    assert mails(guarded, RESET) == []
    form = client.get(path)
    token = solved(client)
    sent = client.post(
        path, data={"csrf_token": csrf(form), "username": "bob", "captcha_token": token}
    )
    assert sent.status_code == 200
    assert [m.to for m in mails(guarded, RESET)] == ["bob@example.com"]


def test_the_challenge_endpoint(guarded, client):
    """Configured: a fresh signed challenge, not cached. Off (the default): 404."""
    response = guarded.test_client().get("/captcha/challenge")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"algorithm", "challenge", "maxNumber", "salt", "signature"}
    assert "expires=" in body["salt"]
    assert client.get("/captcha/challenge").status_code == 404
