"""GET/POST /oauth/logout (OpenID Connect RP-Initiated Logout 1.0): silent logout only for
a hint of this very login, a CSRF-checked confirmation otherwise, and every refusal an
HTML page that never redirects and never signs anyone out."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from factories import CODE_GRANTS, SPA_CB, OidcWorld, make_client
from joserfc import jwt
from oidc_helpers import approve, auth_params, csrf_from, exchange, pkce, query_of, sign_in

from authserver.platform.keys import ID_TOKEN_ALG, keyring

ISSUER = "http://127.0.0.1:5000"
BYE = "https://spa.example/bye"
PATH = "/oauth/logout"


@pytest.fixture
def rp(app: Any, oidc_world: OidcWorld) -> str:
    """A public client of the live account with BYE as its post-logout redirect URI."""
    return make_client(
        app,
        oidc_world.base.live_id,
        "Acme Logout",
        public=True,
        redirect_uris=[SPA_CB],
        post_logout_redirect_uris=[BYE],
        grant_types=CODE_GRANTS,
    ).client_id


def _sign_in(web: Any, browser: Any, oidc_world: OidcWorld, **kw: Any) -> None:
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id, **kw)


def _signed_in(browser: Any) -> bool:
    return browser.get("/account").status_code == 200


def _id_token(browser: Any, client_id: str) -> str:
    """An ID token for the signed-in browser's login, through consent and the code grant."""
    verifier, challenge = pkce()
    code = query_of(approve(browser, auth_params(client_id, challenge)))["code"]
    response = exchange(browser, code, verifier, client_id)
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["id_token"])


def _signed(web: Any, **claims: Any) -> str:
    """An ID token signed with our key, with the given claims."""
    with web.app_context():
        key = keyring().signing_key(ID_TOKEN_ALG)
        return jwt.encode({"alg": ID_TOKEN_ALG, "kid": str(key.kid)}, claims, key)


def _refused(response: Any) -> None:
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers


def test_discovery_lists_the_end_session_endpoint(browser):
    """The discovery document names /oauth/logout as end_session_endpoint."""
    document = browser.get("/.well-known/openid-configuration").get_json()
    assert document["end_session_endpoint"] == f"{ISSUER}{PATH}"


def test_a_hint_of_this_login_signs_out_and_returns_with_state(browser, web, oidc_world, rp):
    """id_token_hint of this login + registered URI: signed out at once, back to the app
    with its state; the old cookie is no login afterwards."""
    _sign_in(web, browser, oidc_world)
    hint = _id_token(browser, rp)
    response = browser.get(
        PATH,
        query_string={
            "id_token_hint": hint,
            "client_id": rp,
            "post_logout_redirect_uri": BYE,
            "state": "bye-1",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{BYE}?state=bye-1"
    assert not _signed_in(browser)


def test_the_client_is_found_from_the_hint_alone(browser, web, oidc_world, rp):
    """Without client_id, the hint's audience names the client whose URI is checked."""
    _sign_in(web, browser, oidc_world)
    hint = _id_token(browser, rp)
    response = browser.get(
        PATH, query_string={"id_token_hint": hint, "post_logout_redirect_uri": BYE}
    )
    assert response.status_code == 303 and response.headers["Location"] == BYE
    assert not _signed_in(browser)


def test_an_expired_hint_of_this_login_is_accepted(browser, web, oidc_world, rp):
    """An expired ID token is still a hint (RP-Initiated Logout 2)."""
    now = int(time.time())  # once: the hint's auth_time must be this very login's
    _sign_in(web, browser, oidc_world, at=now - 100)
    with web.app_context():
        issuer = web.config["ISSUER"]
    hint = _signed(
        web,
        iss=issuer,
        sub=oidc_world.base.alice_id,
        aud=[rp],
        iat=now - 7200,
        exp=now - 3600,
        auth_time=now - 100,
    )
    response = browser.get(
        PATH, query_string={"id_token_hint": hint, "post_logout_redirect_uri": BYE}
    )
    assert response.status_code == 303 and response.headers["Location"] == BYE
    assert not _signed_in(browser)


def test_without_a_hint_the_person_confirms_first(browser, web, oidc_world, rp):
    """client_id alone: a confirmation page (still signed in); its POST signs out and
    returns to the registered URI with the state."""
    _sign_in(web, browser, oidc_world)
    params = {"client_id": rp, "post_logout_redirect_uri": BYE, "state": "s2"}
    page = browser.get(PATH, query_string=params)
    assert page.status_code == 200 and "Acme Logout" in page.get_data(as_text=True)
    assert _signed_in(browser)
    action = page.get_data(as_text=True).split('action="', 1)[1].split('"', 1)[0]
    assert urlsplit(action.replace("&amp;", "&")).path == "/oauth/logout/confirm"
    response = browser.post(
        action.replace("&amp;", "&"), data={"csrf_token": csrf_from(page.get_data(as_text=True))}
    )
    assert response.status_code == 303 and response.headers["Location"] == f"{BYE}?state=s2"
    assert not _signed_in(browser)


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_confirmation_without_a_good_csrf_token_changes_nothing(
    browser, web, oidc_world, rp, token
):
    """A cross-site POST to the confirmation path: a 400 page, still signed in."""
    _sign_in(web, browser, oidc_world)
    browser.get(PATH, query_string={"client_id": rp})
    data = {"csrf_token": token} if token else {}
    response = browser.post(
        "/oauth/logout/confirm",
        query_string={"client_id": rp, "post_logout_redirect_uri": BYE},
        data=data,
    )
    _refused(response)
    assert _signed_in(browser)


def test_a_cross_site_form_post_without_a_hint_only_asks(browser, web, oidc_world, rp):
    """An app's form POST to /oauth/logout without a hint shows the question; nobody is
    signed out and nothing redirects."""
    _sign_in(web, browser, oidc_world)
    response = browser.post(PATH, data={"client_id": rp, "post_logout_redirect_uri": BYE})
    assert response.status_code == 200 and "Location" not in response.headers
    assert "csrf_token" in response.get_data(as_text=True)
    assert _signed_in(browser)


def test_a_form_post_with_the_hint_signs_out(browser, web, oidc_world, rp):
    """The same logout request as a form POST (RP-Initiated Logout 2: GET and POST)."""
    _sign_in(web, browser, oidc_world)
    hint = _id_token(browser, rp)
    response = browser.post(PATH, data={"id_token_hint": hint, "post_logout_redirect_uri": BYE})
    assert response.status_code == 303 and response.headers["Location"] == BYE
    assert not _signed_in(browser)


def test_a_hint_of_someone_else_or_an_earlier_login_asks(browser, web, oidc_world, rp, app):
    """A hint for another user, or for an earlier login of the same user, is no proof:
    the confirmation page, still signed in."""
    _sign_in(web, browser, oidc_world)
    with web.app_context():
        issuer = web.config["ISSUER"]
    now = int(time.time())
    for sub, auth_time in (("someone-else", now), (oidc_world.base.alice_id, now - 5000)):
        hint = _signed(
            web, iss=issuer, sub=sub, aud=[rp], iat=now, exp=now + 60, auth_time=auth_time
        )
        page = browser.get(
            PATH, query_string={"id_token_hint": hint, "post_logout_redirect_uri": BYE}
        )
        assert page.status_code == 200 and "Location" not in page.headers
        assert _signed_in(browser)


def test_nobody_signed_in_goes_straight_back(browser, rp):
    """With no login there is nothing to confirm: back to the registered URI."""
    response = browser.get(PATH, query_string={"client_id": rp, "post_logout_redirect_uri": BYE})
    assert response.status_code == 303 and response.headers["Location"] == BYE


def test_without_a_redirect_uri_our_page_says_signed_out(browser, web, oidc_world, rp):
    """A hint but no post_logout_redirect_uri: signed out, our page says so."""
    _sign_in(web, browser, oidc_world)
    hint = _id_token(browser, rp)
    response = browser.get(PATH, query_string={"id_token_hint": hint})
    assert response.status_code == 200 and "signed out" in response.get_data(as_text=True)
    assert not _signed_in(browser)


def test_signed_out_page_links_to_the_sign_in_page_of_the_login_account(
    browser, web, oidc_world, rp
):
    """The "signed out" page's sign-in link keeps the ended login's account (`aid`): the
    bare /login takes global users only, so it could not sign this person in again."""
    _sign_in(web, browser, oidc_world)
    hint = _id_token(browser, rp)
    body = browser.get(PATH, query_string={"id_token_hint": hint}).get_data(as_text=True)
    assert f'href="/login?aid={oidc_world.base.live_id}"' in body


@pytest.mark.parametrize(
    "uri",
    [
        f"{BYE}/",
        "https://spa.example/BYE",
        f"{BYE}?x=1",
        "https://spa.example.evil/bye",
        "https://evil.example/",
        SPA_CB,  # a redirect_uri of the client, not a post-logout one
    ],
)
def test_an_unregistered_redirect_is_refused(browser, web, oidc_world, rp, uri):
    """Any post_logout_redirect_uri that is not registered byte for byte: a page, no
    redirect, still signed in (even with a good hint)."""
    _sign_in(web, browser, oidc_world)
    hint = _id_token(browser, rp)
    response = browser.get(
        PATH,
        query_string={"id_token_hint": hint, "client_id": rp, "post_logout_redirect_uri": uri},
    )
    _refused(response)
    assert _signed_in(browser)


def test_an_unknown_client_is_refused(browser, web, oidc_world):
    """An unknown client_id: a page, no redirect, still signed in."""
    _sign_in(web, browser, oidc_world)
    response = browser.get(
        PATH, query_string={"client_id": "nope", "post_logout_redirect_uri": BYE}
    )
    _refused(response)
    assert _signed_in(browser)


def test_a_redirect_needs_a_named_client(browser, web, oidc_world):
    """post_logout_redirect_uri with neither client_id nor hint: refused."""
    _sign_in(web, browser, oidc_world)
    _refused(browser.get(PATH, query_string={"post_logout_redirect_uri": BYE}))
    assert _signed_in(browser)


def test_a_hint_of_another_client_is_refused(browser, web, oidc_world, rp):
    """A hint issued to another app: refused next to this app's client_id, and alone it
    cannot borrow this app's post-logout URI."""
    _sign_in(web, browser, oidc_world)
    other_hint = _id_token(browser, oidc_world.spa_id)
    with_client = browser.get(
        PATH,
        query_string={
            "id_token_hint": other_hint,
            "client_id": rp,
            "post_logout_redirect_uri": BYE,
        },
    )
    _refused(with_client)
    alone = browser.get(
        PATH, query_string={"id_token_hint": other_hint, "post_logout_redirect_uri": BYE}
    )
    _refused(alone)
    assert _signed_in(browser)


@pytest.mark.parametrize("kind", ["garbage", "other_issuer", "other_key"])
def test_a_hint_we_did_not_issue_is_refused(browser, web, oidc_world, rp, kind):
    """A hint that is not our ID token (malformed, another issuer, another key): refused."""
    _sign_in(web, browser, oidc_world)
    now = int(time.time())
    claims = {"sub": oidc_world.base.alice_id, "aud": [rp], "iat": now, "exp": now + 60}
    if kind == "garbage":
        hint = "not.a.token"
    elif kind == "other_issuer":
        hint = _signed(web, iss="https://evil.example", **claims)
    else:
        from joserfc.jwk import RSAKey

        key = RSAKey.generate_key(2048)
        hint = jwt.encode({"alg": ID_TOKEN_ALG}, {"iss": ISSUER, **claims}, key)
    response = browser.get(
        PATH, query_string={"id_token_hint": hint, "client_id": rp, "post_logout_redirect_uri": BYE}
    )
    _refused(response)
    assert _signed_in(browser)


def test_repeated_or_oversized_parameters_are_refused(browser, web, oidc_world, rp):
    """A repeated client_id, an oversized state or a JSON body: a page, still signed in."""
    _sign_in(web, browser, oidc_world)
    _refused(browser.post(PATH, json={"client_id": rp}))
    _refused(browser.get(f"{PATH}?client_id={rp}&client_id={rp}"))
    _refused(browser.get(PATH, query_string={"client_id": rp, "state": "x" * 3000}))
    assert _signed_in(browser)


def test_a_get_to_the_confirmation_path_is_not_allowed(browser, web, oidc_world, rp):
    """GET /oauth/logout/confirm: 405 page; GET never signs out without the question."""
    _sign_in(web, browser, oidc_world)
    response = browser.get("/oauth/logout/confirm", query_string={"client_id": rp})
    assert response.status_code == 405 and response.mimetype == "text/html"
    assert _signed_in(browser)
