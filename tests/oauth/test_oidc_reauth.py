"""prompt=login and max_age survive the login round trip and are enforced: a signed-in
browser must log in again (password and second factor) before a code is issued, the code's
auth_time is that new login's, and neither opening the login's `next` URL directly nor a
login made for another request gets past them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from factories import PASSWORD, make_totp_user
from oauth_helpers import jwt_parts
from oidc_helpers import auth_params, csrf_from, exchange, pkce, query_of, sign_in
from pages_helpers import submit

OLD = 120  # seconds since the browser's earlier login


def _authorize(browser: Any, params: dict[str, Any]) -> Any:
    return browser.get("/oauth/authorize", query_string=params)


def _login_next(response: Any) -> str:
    """The `next` of a redirect to the login page (asserting it is one)."""
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login", response.headers["Location"]
    return parse_qs(location.query)["next"][0]


def _quote(value: str) -> str:
    return quote(value, safe="")


def _auth_time(browser: Any, response: Any, verifier: str, client_id: str) -> int:
    """Redeem the code of an authorization response; the ID token's auth_time."""
    code = query_of(response)["code"]
    token = exchange(browser, code, verifier, client_id).get_json()
    return int(jwt_parts(token["id_token"])[1]["auth_time"])


@pytest.mark.parametrize(
    "extra", [{"prompt": "login"}, {"max_age": "0"}, {"max_age": "60"}], ids=str
)
def test_forced_login_survives_the_round_trip_and_gives_a_fresh_auth_time(
    browser, web, oidc_world, extra
):
    """A signed-in browser (login 2 minutes old) is sent to log in; `next` keeps what
    forced it; after the password the code carries the new login's auth_time."""
    world = oidc_world.base
    sign_in(web, browser, world.alice_id, world.live_id, at=int(time.time()) - OLD)
    verifier, challenge = pkce()
    params = auth_params(oidc_world.first_party_id, challenge, **extra)
    next_url = _login_next(_authorize(browser, params))
    for name, value in extra.items():
        assert parse_qs(urlsplit(next_url).query)[name] == [value]
    before = int(time.time())
    done = submit(
        browser,
        f"/login?aid={world.live_id}&next={_quote(next_url)}",
        {"username": "alice", "password": PASSWORD},
    )
    assert done.status_code == 303 and done.headers["Location"] == next_url
    answer = browser.get(next_url)
    assert "code" in query_of(answer), answer.headers.get("Location")
    assert _auth_time(browser, answer, verifier, oidc_world.first_party_id) >= before


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}], ids=str)
def test_opening_next_directly_does_not_skip_the_login(browser, web, oidc_world, extra):
    """The finding: a signed-in browser opening the login's `next` itself gets no code."""
    world = oidc_world.base
    sign_in(web, browser, world.alice_id, world.live_id, at=int(time.time()) - OLD)
    _, challenge = pkce()
    next_url = _login_next(
        _authorize(browser, auth_params(oidc_world.first_party_id, challenge, **extra))
    )
    assert _login_next(browser.get(next_url)) == next_url


def test_a_new_login_answers_one_request_only(browser, web, oidc_world):
    """The login made for one prompt=login request does not serve that request a second
    time, nor another prompt=login request (no nonce: a repeated one is refused anyway)."""
    world = oidc_world.base
    _, challenge = pkce()
    first = auth_params(oidc_world.first_party_id, challenge, prompt="login", nonce=None)
    next_url = _login_next(_authorize(browser, first))
    submit(
        browser,
        f"/login?aid={world.live_id}&next={_quote(next_url)}",
        {"username": "alice", "password": PASSWORD},
    )
    assert "code" in query_of(browser.get(next_url))
    assert _login_next(browser.get(next_url)) == next_url  # again: a new login is needed
    other = auth_params(
        oidc_world.first_party_id, challenge, prompt="login", state="other", nonce=None
    )
    _login_next(_authorize(browser, other))


def test_a_login_made_for_another_request_does_not_count(browser, web, oidc_world):
    """A fresh login made for a plain request does not meet a later prompt=login."""
    world = oidc_world.base
    _, challenge = pkce()
    plain = auth_params(oidc_world.first_party_id, challenge)
    next_url = _login_next(_authorize(browser, plain))
    submit(
        browser,
        f"/login?aid={world.live_id}&next={_quote(next_url)}",
        {"username": "alice", "password": PASSWORD},
    )
    assert "code" in query_of(browser.get(next_url))
    forced = auth_params(oidc_world.first_party_id, challenge, prompt="login", state="s2")
    _login_next(_authorize(browser, forced))


def test_forced_login_of_a_two_step_user_needs_the_second_factor(browser, web, oidc_world):
    """prompt=login for a TOTP user: after the password the browser is at the code step;
    no code is issued until the second factor passes, then auth_time is fresh."""
    world = oidc_world.base
    user_id, totp = make_totp_user(web, world.live_id, "tina")
    sign_in(
        web, browser, user_id, world.live_id, amr=("pwd", "otp", "mfa"), at=int(time.time()) - OLD
    )
    verifier, challenge = pkce()
    next_url = _login_next(
        _authorize(browser, auth_params(oidc_world.first_party_id, challenge, prompt="login"))
    )
    before = int(time.time())
    first = submit(
        browser,
        f"/login?aid={world.live_id}&next={_quote(next_url)}",
        {"username": "tina", "password": PASSWORD},
    )
    assert first.headers["Location"] == "/login/code"
    _login_next(browser.get(next_url))  # the old login is gone and the new one unfinished
    done = submit(browser, "/login/code", {"code": totp.now()})
    assert done.status_code == 303 and done.headers["Location"] == next_url
    answer = browser.get(next_url)
    assert _auth_time(browser, answer, verifier, oidc_world.first_party_id) >= before


def test_forced_login_then_consent_does_not_loop(browser, web, oidc_world):
    """prompt=login with a client that asks for consent: login, consent page, code."""
    world = oidc_world.base
    sign_in(web, browser, world.alice_id, world.live_id, at=int(time.time()) - OLD)
    verifier, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge, prompt="login")
    next_url = _login_next(_authorize(browser, params))
    submit(
        browser,
        f"/login?aid={world.live_id}&next={_quote(next_url)}",
        {"username": "alice", "password": PASSWORD},
    )
    page = browser.get(next_url)
    assert page.status_code == 200, page.headers.get("Location")
    answer = browser.post(
        "/oauth/authorize/consent",
        query_string=params,
        data={"csrf_token": csrf_from(page.get_data(as_text=True)), "decision": "allow"},
    )
    assert "code" in query_of(answer), answer.headers.get("Location")
    assert _auth_time(browser, answer, verifier, oidc_world.spa_id) >= int(time.time()) - 60


def test_max_age_within_the_login_age_passes_without_a_login(browser, web, oidc_world):
    """Control: max_age longer than the login's age gives a code at once."""
    world = oidc_world.base
    at = int(time.time()) - OLD
    sign_in(web, browser, world.alice_id, world.live_id, at=at)
    verifier, challenge = pkce()
    answer = _authorize(browser, auth_params(oidc_world.first_party_id, challenge, max_age="3600"))
    assert _auth_time(browser, answer, verifier, oidc_world.first_party_id) == at
