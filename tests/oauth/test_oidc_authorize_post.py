"""POST /oauth/authorize with the request in a form body (OIDC Core 3.1.2.1), and why a
cross-site POST cannot approve consent: decisions are taken only at the CSRF-checked
/oauth/authorize/consent."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from factories import SPA_CB, OidcWorld
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

PATH = "/oauth/authorize"


def _signed_in(web: Any, browser: Any, oidc_world: OidcWorld) -> None:
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id)


def _is_page(response: Any, status: int = 400) -> None:
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers


def test_a_posted_request_after_consent_gets_a_code_that_exchanges(browser, web, oidc_world):
    """Signed in with consent given: a form POST gets a code with the state, and the code
    exchanges with the verifier like one from a GET."""
    _signed_in(web, browser, oidc_world)
    _, first = pkce()
    approve(browser, auth_params(oidc_world.spa_id, first))
    verifier, challenge = pkce()
    response = browser.post(PATH, data=auth_params(oidc_world.spa_id, challenge))
    assert response.status_code == 302
    query = query_of(response)
    assert response.headers["Location"].startswith(SPA_CB + "?")
    assert query["state"] == "st-123"
    token = exchange(browser, query["code"], verifier, oidc_world.spa_id)
    assert token.status_code == 200 and "id_token" in token.get_json()


def test_a_posted_request_without_a_login_goes_to_the_login_page(browser, oidc_world):
    """No login: to /login, coming back with a GET that carries the posted parameters."""
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    response = browser.post(PATH, data=params)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    back = urlsplit(parse_qs(location.query)["next"][0])
    assert back.path == PATH
    assert parse_qs(back.query)["code_challenge"] == [challenge]


def test_the_consent_page_of_a_post_approves_through_the_consent_path(browser, web, oidc_world):
    """The consent page of a posted request posts its decision to the consent path, with
    the request in the query string; "Allow" gives the code."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    page = browser.post(PATH, data=params)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    action = html.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert urlsplit(action).path == "/oauth/authorize/consent"
    assert parse_qs(urlsplit(action).query)["client_id"] == [oidc_world.spa_id]
    response = browser.post(action, data={"csrf_token": csrf_from(html), "decision": "allow"})
    assert "code" in query_of(response) and consent_count(web) == 1


def test_a_cross_site_post_cannot_approve_consent(browser, web, oidc_world):
    """A foreign page POSTing decision=allow to /oauth/authorize only gets the consent
    page: no code, no redirect, nothing remembered."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = {**auth_params(oidc_world.spa_id, challenge), "decision": "allow"}
    response = browser.post(PATH, data=params, headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "Location" not in response.headers
    assert consent_count(web) == 0


def test_a_cross_site_post_to_the_consent_path_is_refused(browser, web, oidc_world):
    """The consent path without the session's CSRF token: a 400 page, nothing remembered."""
    _signed_in(web, browser, oidc_world)
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    response = browser.post(
        "/oauth/authorize/consent", query_string=params, data={"decision": "allow"}
    )
    _is_page(response)
    assert consent_count(web) == 0


def test_a_post_needs_its_parameters_in_a_form_body(browser, oidc_world):
    """A POST with the request in the query string or as JSON: an error page, no redirect."""
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    _is_page(browser.post(PATH, query_string=params))
    _is_page(browser.post(PATH, json=params))


def test_errors_of_a_posted_request_go_to_the_client(browser, oidc_world):
    """Once client and redirect URI are known, a posted request's error goes back there."""
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge, code_challenge=None)
    query = query_of(browser.post(PATH, data=params))
    assert query["error"] == "invalid_request" and query["state"] == "st-123"


def test_a_repeated_parameter_in_a_posted_body_is_refused(browser, oidc_world):
    """client_id twice in the body: an error page, as for a GET."""
    body = f"client_id={oidc_world.spa_id}&client_id={oidc_world.spa_id}&response_type=code"
    response = browser.post(
        PATH, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    _is_page(response)


def test_the_consent_path_answers_post_only(browser, oidc_world):
    """GET /oauth/authorize/consent: a 405 page."""
    _is_page(browser.get("/oauth/authorize/consent"), 405)
