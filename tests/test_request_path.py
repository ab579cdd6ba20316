"""The lean request path: the page machinery (session cookie, language, page headers)
runs on the hosted pages only, the CSRF check still refuses a form without its token; the
token endpoint, /v1, the documents and the health checks set no cookie."""

from __future__ import annotations

from factories import World
from flask import Flask
from oauth_helpers import basic, bearer, login
from pages_helpers import csrf


def _no_page_machinery(response) -> None:
    assert "Set-Cookie" not in response.headers, response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
    assert "Content-Language" not in response.headers


def test_api_token_and_documents_set_no_cookie(web: Flask, world: World):
    """With CSRF on as in production: /healthz, the documents, the token endpoint and /v1
    answer without a cookie, without reading the session and without page headers, even
    when the caller sends a session cookie of its own."""
    client = web.test_client()
    token = login(client, world)["access_token"]
    answers = [
        client.get("/healthz"),
        client.get("/.well-known/openid-configuration"),
        client.get("/oauth/jwks"),
        client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(world.conf_id, world.conf_secret),
        ),
        client.get("/v1/user", headers=bearer(token)),
    ]
    for response in answers:
        assert response.status_code == 200, response.get_data(as_text=True)
        _no_page_machinery(response)
    client.set_cookie("session", "forged-or-stale")
    for path in ("/healthz", "/oauth/jwks"):
        _no_page_machinery(client.get(path))


def test_pages_still_get_session_csrf_and_language(browser, world: World):
    """A page still negotiates its language, sets its session cookie with the CSRF token,
    and a form POST without that token is refused (400 page, nothing done)."""
    page = browser.get(f"/login?aid={world.live_id}", headers={"Accept-Language": "fr"})
    assert page.status_code == 200
    assert page.headers["Content-Language"] == "fr"
    assert page.headers["Cache-Control"] == "no-store"
    assert "session=" in page.headers.get("Set-Cookie", "")
    assert csrf(page)
    refused = browser.post(
        f"/login?aid={world.live_id}",
        data={"username": "alice", "password": "x"},
        headers={"Accept-Language": "fr"},
    )
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert refused.headers["Content-Language"] == "fr"


def test_an_unmatched_page_path_still_gets_page_headers(browser):
    """A 404 page (no route, so no blueprint hook) still gets its language and no-store."""
    response = browser.get("/no-such-page", headers={"Accept-Language": "es"})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert response.headers["Content-Language"] == "es"
    assert response.headers["Cache-Control"] == "no-store"
