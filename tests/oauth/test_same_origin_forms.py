"""The consent and logout confirmations are our own forms: a POST another site sent
(`Origin: null`, a foreign Origin, Sec-Fetch-Site cross-site) is refused with a 400 page
although its CSRF token is valid; our own origin gets through."""

from __future__ import annotations

from typing import Any

import pytest
from factories import OidcWorld
from oidc_helpers import auth_params, consent_count, csrf_from, pkce, query_of, sign_in

from authserver.identity import browser_login

OURS = "http://localhost"
CROSS_SITE = [
    {"Origin": "null"},
    {"Origin": "https://evil.example"},
    {"Origin": OURS, "Sec-Fetch-Site": "cross-site"},
]


def _sign_in(web: Any, browser: Any, oidc_world: OidcWorld) -> None:
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id)


def _consent(browser: Any, oidc_world: OidcWorld, headers: dict[str, str]) -> Any:
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    page = browser.get("/oauth/authorize", query_string=params)
    assert page.status_code == 200
    return browser.post(
        "/oauth/authorize/consent",
        query_string=params,
        data={"csrf_token": csrf_from(page.get_data(as_text=True)), "decision": "allow"},
        headers=headers,
    )


@pytest.mark.parametrize("headers", CROSS_SITE, ids=str)
def test_cross_site_consent_post_is_refused(browser, web, oidc_world, headers):
    """A consent "allow" that another site posted: a 400 page, no code, no consent kept."""
    _sign_in(web, browser, oidc_world)
    response = _consent(browser, oidc_world, headers)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "Location" not in response.headers
    assert consent_count(web) == 0


def test_our_own_consent_post_gets_a_code(browser, web, oidc_world):
    """Control: the same POST from our own origin answers with a code."""
    _sign_in(web, browser, oidc_world)
    response = _consent(browser, oidc_world, {"Origin": OURS, "Sec-Fetch-Site": "same-origin"})
    assert "code" in query_of(response)


@pytest.mark.parametrize("headers", CROSS_SITE, ids=str)
def test_cross_site_logout_confirmation_is_refused(browser, web, oidc_world, headers):
    """A logout confirmation another site posted: a 400 page, still signed in."""
    _sign_in(web, browser, oidc_world)
    page = browser.get("/oauth/logout", query_string={"client_id": oidc_world.spa_id})
    assert page.status_code == 200
    response = browser.post(
        "/oauth/logout/confirm",
        query_string={"client_id": oidc_world.spa_id},
        data={"csrf_token": csrf_from(page.get_data(as_text=True))},
        headers=headers,
    )
    assert response.status_code == 400 and response.mimetype == "text/html"
    with web.test_request_context(), browser.session_transaction() as session:
        assert session.get(browser_login.KEY) is not None
