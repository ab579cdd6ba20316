"""CAPTCHA escalation at the token endpoint and in /v1, against a local fake siteverify
service: the password grant asks for `captcha_token` only past CAPTCHA_AFTER_FAILURES;
the reset request and guest sign-up always need one (meta.captchaToken or seed 001's
recaptcha_token); a refused token (400) and an unreachable verifier (503) differ."""

from __future__ import annotations

from typing import Any

import pytest
from captcha_helpers import GOOD, SECRET, Verifier, verifier  # noqa: F401 - the fixture
from factories import PASSWORD, World, make_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import password_grant
from verification_helpers import assert_no_content, call, guest_token, mails, one_error

AFTER = 3
WRONG = "not-the-password"
RESET = "identity.password_reset_token.create.success"


@pytest.fixture
def guarded(make_app: Any, app: Flask, verifier: Verifier) -> Flask:  # noqa: F811
    """An app on `app`'s tables that checks CAPTCHA tokens with the fake verifier."""
    return make_app(
        CAPTCHA_VERIFY_URL=verifier.url, CAPTCHA_SECRET=SECRET, CAPTCHA_AFTER_FAILURES=AFTER
    )


def fail(client: FlaskClient, world: World, times: int, username: str = "alice", **kw: Any) -> None:
    for _ in range(times):
        assert password_grant(client, world, username, WRONG, **kw).status_code == 400


# --- the password grant -------------------------------------------------------------------


def test_no_captcha_below_the_threshold_and_the_verifier_is_not_asked(guarded, world, verifier):  # noqa: F811
    """Fewer failures than CAPTCHA_AFTER_FAILURES: the right password logs in as before."""
    client = guarded.test_client()
    fail(client, world, AFTER - 1)
    assert password_grant(client, world).status_code == 200
    assert verifier.requests == []


def test_past_the_threshold_the_grant_asks_for_a_captcha_then_takes_the_same_request(
    guarded,
    world,
    verifier,  # noqa: F811
):
    """After AFTER failures the right password gets 400 captcha_required (the password is
    not even checked); the same request with a good captcha_token gets the tokens, and the
    verifier got the secret, the token and the client's IP."""
    client = guarded.test_client()
    fail(client, world, AFTER)
    asked = password_grant(client, world, ip="198.51.100.9")
    assert asked.status_code == 400
    assert asked.get_json()["error"] == "captcha_required"
    wrong_too = password_grant(client, world, "alice", WRONG)
    assert wrong_too.get_json()["error"] == "captcha_required"  # tells nothing of the password
    assert verifier.requests == []
    done = password_grant(client, world, ip="198.51.100.9", captcha_token=GOOD)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert verifier.requests == [
        {"secret": [SECRET], "response": [GOOD], "remoteip": ["198.51.100.9"]}
    ]


def test_a_refused_token_is_400_invalid_captcha(guarded, world, verifier):  # noqa: F811
    """The verifier says no: 400 invalid_captcha, and no login."""
    client = guarded.test_client()
    fail(client, world, AFTER)
    response = password_grant(client, world, captcha_token="forged")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_captcha"


@pytest.mark.parametrize("mode", ["error", "garbage"])
def test_a_verifier_that_answers_wrongly_is_503(guarded, world, verifier, mode):  # noqa: F811
    """HTTP 500 or a non-siteverify answer: 503 temporarily_unavailable naming the
    verifier (the person is not blamed), never a login."""
    client = guarded.test_client()
    fail(client, world, AFTER)
    verifier.mode = mode
    response = password_grant(client, world, captcha_token=GOOD)
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "temporarily_unavailable" and "CAPTCHA" in body["error_description"]


def test_an_unreachable_verifier_is_503(make_app, app, world, unused_port):
    """Nothing listens at the verifier's address: 503, not 400 and not a login."""
    down = make_app(
        CAPTCHA_VERIFY_URL=f"http://127.0.0.1:{unused_port}/siteverify",
        CAPTCHA_SECRET=SECRET,
        CAPTCHA_AFTER_FAILURES=0,
    )
    response = password_grant(down.test_client(), world, captcha_token=GOOD)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"


def test_a_known_device_is_never_asked(guarded, world, verifier):  # noqa: F811
    """The app's device_token of an earlier login passes without a CAPTCHA, while
    strangers are asked."""
    client = guarded.test_client()
    device = password_grant(client, world).get_json()["device_token"]
    fail(client, world, AFTER)
    assert password_grant(client, world).get_json()["error"] == "captcha_required"
    assert password_grant(client, world, device_token=device).status_code == 200


def test_failures_from_one_ip_over_many_usernames_count_too(guarded, world):
    """Spraying: AFTER failures from an IP over other usernames make that IP's next login
    need a CAPTCHA; another IP is not asked."""
    client = guarded.test_client()
    for i in range(AFTER):
        assert password_grant(client, world, f"nobody{i}", WRONG, ip="203.0.113.50").status_code
    asked = password_grant(client, world, ip="203.0.113.50")
    assert asked.get_json()["error"] == "captcha_required"
    assert password_grant(client, world, ip="203.0.113.51").status_code == 200


def test_an_overlong_captcha_token_is_invalid_request(guarded, world):
    """More than 4096 characters is no token: 400 invalid_request before anything else."""
    response = password_grant(guarded.test_client(), world, captcha_token="x" * 4097)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_without_a_verifier_nothing_is_asked(client, world):
    """CAPTCHA_VERIFY_URL empty (the default): failures lead to the usual throttle only."""
    fail(client, world, 8)
    assert password_grant(client, world).status_code == 200


# --- /v1: reset request and guest sign-up -------------------------------------------------


def _reset(client: FlaskClient, world: World, **top: Any) -> Any:
    body = {"data": {"type": "PasswordResetToken", "attributes": {"username": "bob"}}, **top}
    return call(
        client, "POST", "/v1/password_reset_tokens", body, guest_token(client, world.live_prt)
    )


def test_a_reset_request_needs_a_captcha(guarded, world, verifier):  # noqa: F811
    """No token: 400 captcha_required and no email; meta.captchaToken or recaptcha_token
    accepted by the verifier: 204 and the email."""
    make_user(guarded, world.live_id, "bob", email="bob@example.com")
    client = guarded.test_client()
    one_error(_reset(client, world), 400, "captcha_required")
    assert mails(guarded, RESET) == []
    assert_no_content(_reset(client, world, meta={"captchaToken": GOOD}))
    assert_no_content(_reset(client, world, recaptcha_token=GOOD))
    assert len(mails(guarded, RESET)) == 2


def test_a_refused_or_unverifiable_reset_token_sends_nothing(guarded, world, verifier):  # noqa: F811
    """A refused token is 400 invalid_captcha, a verifier failing 503 captcha_unavailable;
    neither sends an email."""
    make_user(guarded, world.live_id, "bob", email="bob@example.com")
    client = guarded.test_client()
    one_error(_reset(client, world, meta={"captchaToken": "forged"}), 400, "invalid_captcha")
    verifier.mode = "error"
    one_error(_reset(client, world, recaptcha_token=GOOD), 503, "captcha_unavailable")
    assert mails(guarded, RESET) == []


@pytest.mark.parametrize(
    ("top", "pointer"),
    [
        ({"recaptcha_token": 5}, "/recaptcha_token"),
        ({"recaptcha_token": None}, "/recaptcha_token"),
        ({"meta": {"captchaToken": None}}, "/meta/captchaToken"),
        ({"recaptcha_token": ["x"]}, "/recaptcha_token"),
        ({"meta": {"captchaToken": {"a": 1}}}, "/meta/captchaToken"),
        ({"meta": {"captchaToken": "x" * 4097}}, "/meta/captchaToken"),
        ({"other_token": "x"}, "/other_token"),
    ],
)
def test_malformed_captcha_members_are_400(guarded, world, top, pointer):
    """A token that is not a string of at most 4096 characters, or another unknown
    top-level member: 400 invalid_document pointing at it."""
    one_error(_reset(guarded.test_client(), world, **top), 400, "invalid_document", pointer)


def test_seed_001s_recaptcha_token_is_accepted_without_a_verifier(client, world):
    """CAPTCHA off: a seed 001 client sending recaptcha_token is not refused (it is not
    checked either)."""
    assert_no_content(_reset(client, world, recaptcha_token="anything"))


def _sign_up(client: FlaskClient, world: World, **top: Any) -> Any:
    body = {
        "data": {"type": "User", "attributes": {"username": "newbie", "password": PASSWORD}},
        **top,
    }
    return call(client, "POST", "/v1/users", body, guest_token(client, world.live_prt))


def test_guest_sign_up_needs_a_captcha(guarded, world, verifier):  # noqa: F811
    """A guest's sign-up: 400 captcha_required without a token (no user made), 201 with
    a good one."""
    client = guarded.test_client()
    one_error(_sign_up(client, world), 400, "captcha_required")
    one_error(_sign_up(client, world, recaptcha_token="forged"), 400, "invalid_captcha")
    made = _sign_up(client, world, meta={"captchaToken": GOOD})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["data"]["attributes"]["username"] == "newbie"


def test_an_administrator_creating_a_user_needs_no_captcha(guarded, world, verifier):  # noqa: F811
    """Only guests are asked: an owner's token creates users as before."""
    client = guarded.test_client()
    token = password_grant(client, world).get_json()["access_token"]
    body = {
        "data": {
            "type": "User",
            "attributes": {"username": "staff", "role": "customer", "password": PASSWORD},
        }
    }
    assert call(client, "POST", "/v1/users", body, token).status_code == 201
    assert verifier.requests == []
