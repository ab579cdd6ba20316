"""GET/POST /oauth/authorize: error pages before the client is known, errors at the
redirect URI after, PKCE, scopes, prompt/max_age/id_token_hint, login and consent."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from factories import OTHER_CB, SPA_CB, WEB_CB, OidcWorld, make_client, make_user
from oidc_helpers import (
    approve,
    auth_params,
    consent_count,
    csrf_from,
    exchange,
    pkce,
    query_of,
    sign_in,
)

from authserver.identity import users
from authserver.platform.extensions import db
from authserver.platform.models import Account

ISSUER = "http://127.0.0.1:5000"


def _signed_in(web: Any, browser: Any, oidc_world: OidcWorld, **kw: Any) -> None:
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id, **kw)


def _is_page(response: Any) -> None:
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers


def test_unknown_or_missing_client_gets_an_error_page(browser, oidc_world):
    """An unknown or missing client_id renders our 400 page and never redirects."""
    _, challenge = pkce()
    for client_id in ("nope", None):
        response = browser.get("/oauth/authorize", query_string=auth_params(client_id, challenge))
        _is_page(response)


@pytest.mark.parametrize(
    "uri",
    [
        SPA_CB + "/",
        SPA_CB + "?x=1",
        SPA_CB + "#frag",
        "https://SPA.example/cb",
        "https://spa.example.evil/cb",
        "https://spa.example@evil.example/cb",
        "https://evil.example/cb",
    ],
)
def test_redirect_uri_must_match_exactly(browser, web, oidc_world, uri):
    """Any redirect_uri but a registered one, byte for byte, gets the page, no redirect."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    response = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge, redirect_uri=uri)
    )
    _is_page(response)


def test_missing_redirect_uri_with_two_registered_is_refused(browser, web, oidc_world):
    """With two registered URIs there is no fallback: the page, not a redirect."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge, redirect_uri=None)
    _is_page(browser.get("/oauth/authorize", query_string=params))


def test_missing_redirect_uri_with_one_registered_uses_it(browser, web, oidc_world):
    """A client with one registered URI may leave redirect_uri out; the code goes there."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.first_party_id, challenge, redirect_uri=None)
    response = browser.get("/oauth/authorize", query_string=params)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(SPA_CB + "?code=")


def test_repeated_client_id_is_a_page_and_repeated_scope_an_error(browser, web, oidc_world):
    """client_id twice: the page; scope twice (client known): invalid_request at the URI."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = list(auth_params(oidc_world.spa_id, challenge).items())
    _is_page(browser.get("/oauth/authorize", query_string=[*params, ("client_id", "x")]))
    response = browser.get("/oauth/authorize", query_string=[*params, ("scope", "openid")])
    assert query_of(response)["error"] == "invalid_request"
    assert "code" not in query_of(response)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "a" * 42}, "invalid_request"),
        ({"code_challenge": "a" * 42 + "+"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"response_mode": "form_post"}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"scope": "openid aid:123"}, "invalid_scope"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "sometimes"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"max_age": "soon"}, "invalid_request"),
        ({"id_token_hint": "not.a.token"}, "invalid_request"),
        ({"request": "eyJ..."}, "request_not_supported"),
        ({"request_uri": "https://x.example/r"}, "request_uri_not_supported"),
    ],
)
def test_bad_requests_go_back_to_the_client(browser, web, oidc_world, store, change, error):
    """Once the redirect URI is known, errors go there with state and iss, and no code
    is stored."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    response = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge, **change)
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith(SPA_CB + "?")
    query = query_of(response)
    assert query["error"] == error
    assert query["state"] == "st-123"
    assert query["iss"] == ISSUER
    assert "code" not in query
    with web.app_context():
        assert not list(store._client.scan_iter(match=store.key("authz-code:*")))


def test_a_client_without_the_code_grant_is_unauthorized(browser, web, oidc_world, app):
    """A client registered without authorization_code gets unauthorized_client."""
    new_id = make_client(
        app,
        oidc_world.base.live_id,
        "No code",
        public=True,
        redirect_uris=[SPA_CB],
        grant_types=["password"],
    ).client_id
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    response = browser.get("/oauth/authorize", query_string=auth_params(new_id, challenge))
    assert query_of(response)["error"] == "unauthorized_client"


def test_without_a_login_the_browser_goes_to_the_login_page(browser, oidc_world):
    """Nobody signed in: /login?next=<the authorize URL, path and query>."""
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    response = browser.get("/oauth/authorize", query_string=params)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    next_url = parse_qs(location.query)["next"][0]
    assert next_url.startswith("/oauth/authorize?")
    assert parse_qs(urlsplit(next_url).query)["code_challenge"] == [challenge]


@pytest.mark.parametrize("signed_in", [False, True])
def test_prompt_none_never_shows_a_page(browser, web, oidc_world, signed_in):
    """prompt=none: login_required without a login, consent_required without consent."""
    if signed_in:
        _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    response = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge, prompt="none")
    )
    query = query_of(response)
    assert query["error"] == ("consent_required" if signed_in else "login_required")
    assert query["state"] == "st-123" and query["iss"] == ISSUER
    assert "code" not in query


def test_consent_is_remembered_then_prompt_none_is_silent(browser, web, oidc_world):
    """After one "Allow", the same client gets codes without a page, even with prompt=none."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    first = approve(browser, auth_params(oidc_world.spa_id, challenge))
    assert "code" in query_of(first)
    assert consent_count(web) == 1
    again = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge, prompt="none")
    )
    assert again.status_code == 302 and "code" in query_of(again)
    wider = browser.get(
        "/oauth/authorize",
        query_string=auth_params(oidc_world.spa_id, challenge, scope="openid phone", prompt="none"),
    )
    assert query_of(wider)["error"] == "consent_required"


def test_consent_page_names_the_app_and_the_scopes(browser, web, oidc_world):
    """The page shows the app's name and the scopes in words, and is not cached."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    page = browser.get(
        "/oauth/authorize",
        query_string=auth_params(oidc_world.spa_id, challenge, scope="openid email phone"),
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Acme SPA" in html and "See your email address" in html
    assert "See your phone number" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_consent_page_follows_ui_locales(browser, web, oidc_world):
    """ui_locales=fr gives the consent page in French."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    page = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge, ui_locales="fr")
    )
    assert 'lang="fr"' in page.get_data(as_text=True)
    assert "Autoriser" in page.get_data(as_text=True)


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_consent_post_without_a_good_csrf_token_changes_nothing(browser, web, oidc_world, token):
    """A missing or forged CSRF token: a 400 page, no code, no remembered consent."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    assert browser.get("/oauth/authorize", query_string=params).status_code == 200
    data = {"decision": "allow", **({"csrf_token": token} if token else {})}
    response = browser.post("/oauth/authorize/consent", query_string=params, data=data)
    _is_page(response)
    assert consent_count(web) == 0


def test_csrf_token_of_another_session_is_refused(browser, web, oidc_world):
    """A CSRF token from another browser's session does not work in this one."""
    _signed_in(web, browser, oidc_world)
    other = web.test_client()
    _signed_in(web, other, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    theirs = csrf_from(other.get("/oauth/authorize", query_string=params).get_data(as_text=True))
    browser.get("/oauth/authorize", query_string=params)
    response = browser.post(
        "/oauth/authorize/consent",
        query_string=params,
        data={"csrf_token": theirs, "decision": "allow"},
    )
    _is_page(response)
    assert consent_count(web) == 0


def test_cancel_sends_access_denied(browser, web, oidc_world):
    """ "Cancel" on the consent page: access_denied at the redirect URI, nothing remembered."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    response = approve(browser, auth_params(oidc_world.spa_id, challenge), decision="deny")
    query = query_of(response)
    assert query["error"] == "access_denied" and query["state"] == "st-123"
    assert "code" not in query
    assert consent_count(web) == 0


def test_first_party_client_skips_consent_only_when_set(browser, web, oidc_world):
    """skip_consent on the client: a code without the page; an ordinary client asks."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    skip = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.first_party_id, challenge)
    )
    assert skip.status_code == 302 and "code" in query_of(skip)
    ask = browser.get("/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge))
    assert ask.status_code == 200


def test_a_login_for_another_account_is_not_accepted(browser, web, oidc_world, app):
    """Signed in to another account: asked to log in again (login_required with none)."""
    bob_id = make_user(app, oidc_world.base.other_id, "bob", password="x" * 12, role="owner")
    sign_in(web, browser, bob_id, oidc_world.base.other_id)
    _, challenge = pkce()
    response = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge)
    )
    assert urlsplit(response.headers["Location"]).path == "/login"
    silent = browser.get(
        "/oauth/authorize", query_string=auth_params(oidc_world.spa_id, challenge, prompt="none")
    )
    assert query_of(silent)["error"] == "login_required"


def test_a_global_member_may_sign_in_and_a_global_non_member_may_not(browser, web, oidc_world, app):
    """A global user signed in globally gets through if a member of the client's account."""
    gus_id = make_user(app, None, "gus", password="x" * 12, role="owner")
    sign_in(web, browser, gus_id, None)
    _, challenge = pkce()
    params = auth_params(oidc_world.first_party_id, challenge)
    assert (
        urlsplit(browser.get("/oauth/authorize", query_string=params).headers["Location"]).path
        == "/login"
    )
    with app.app_context():
        live = db.session.get(Account, oidc_world.base.live_id)
        users.add_member(live, db.session.get(users.User, gus_id), "customer")
    response = browser.get("/oauth/authorize", query_string=params)
    assert "code" in query_of(response)


def test_prompt_login_and_max_age_ask_to_log_in_again(browser, web, oidc_world):
    """prompt=login and an exceeded max_age go to the login page; the next URL keeps what
    forced it (a login made for that request meets it, see test_oidc_reauth.py); a max_age
    within the login's age passes."""
    _signed_in(web, browser, oidc_world, at=int(time.time()) - 120)
    _, challenge = pkce()
    response = browser.get(
        "/oauth/authorize",
        query_string=auth_params(oidc_world.first_party_id, challenge, prompt="login consent"),
    )
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    next_query = parse_qs(urlsplit(parse_qs(location.query)["next"][0]).query)
    assert next_query["prompt"] == ["login consent"]
    stale = browser.get(
        "/oauth/authorize",
        query_string=auth_params(oidc_world.first_party_id, challenge, max_age="60"),
    )
    assert urlsplit(stale.headers["Location"]).path == "/login"
    fresh = browser.get(
        "/oauth/authorize",
        query_string=auth_params(oidc_world.first_party_id, challenge, max_age="3600"),
    )
    assert "code" in query_of(fresh)
    silent = browser.get(
        "/oauth/authorize",
        query_string=auth_params(oidc_world.first_party_id, challenge, max_age="60", prompt="none"),
    )
    assert query_of(silent)["error"] == "login_required"


def test_id_token_hint_for_someone_else_needs_a_login(browser, web, oidc_world, app):
    """An id_token_hint naming another user than the signed-in one: login_required (none);
    the hint of the signed-in user: a silent code."""
    _signed_in(web, browser, oidc_world)
    verifier, challenge = pkce()
    params = auth_params(oidc_world.first_party_id, challenge)
    code = query_of(browser.get("/oauth/authorize", query_string=params))["code"]
    id_token = exchange(browser, code, verifier, oidc_world.first_party_id).get_json()["id_token"]
    ok = browser.get(
        "/oauth/authorize",
        query_string=auth_params(
            oidc_world.first_party_id, challenge, prompt="none", id_token_hint=id_token
        ),
    )
    assert "code" in query_of(ok)
    carol_id = make_user(app, oidc_world.base.live_id, "carol", password="x" * 12, role="owner")
    sign_in(web, browser, carol_id, oidc_world.base.live_id)
    other = browser.get(
        "/oauth/authorize",
        query_string=auth_params(
            oidc_world.first_party_id, challenge, prompt="none", id_token_hint=id_token
        ),
    )
    assert query_of(other)["error"] == "login_required"


def test_a_nonce_is_accepted_once(browser, web, oidc_world):
    """A nonce a code was already issued with is refused (invalid_request) for the client."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.first_party_id, challenge, nonce="n-1")
    assert "code" in query_of(browser.get("/oauth/authorize", query_string=params))
    again = query_of(browser.get("/oauth/authorize", query_string=params))
    assert again["error"] == "invalid_request" and "code" not in again


def test_unknown_parameters_are_ignored_and_other_uri_works(browser, web, oidc_world):
    """An unknown parameter is ignored; the second registered redirect URI works too."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    response = browser.get(
        "/oauth/authorize",
        query_string=auth_params(
            oidc_world.spa_id,
            challenge,
            redirect_uri=OTHER_CB,
            extra="foobar",
            prompt="consent",
        ),
    )
    assert response.status_code == 200
    assert WEB_CB not in response.get_data(as_text=True)
