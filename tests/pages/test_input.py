"""Input no front door can store or parse: a NUL in any page form or query parameter, and
multipart parts without a name, are a clear 400 that writes nothing and starts no job;
the OAuth endpoints and /v1 refuse NULs in their own wire formats."""

from __future__ import annotations

import pytest
from factories import make_user
from oauth_helpers import bearer, login, row_counts
from oidc_helpers import auth_params, pkce
from pages_helpers import csrf, login_records

from authserver.platform import background

NAMELESS = b"--xx\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xx--\r\n"
NAMELESS_FILE = b'--xx\r\nContent-Disposition: form-data; filename="f"\r\n\r\nv\r\n--xx--\r\n'
MULTIPART = "multipart/form-data; boundary=xx"


def _html_400(response) -> str:
    text = response.get_data(as_text=True)
    assert response.status_code == 400, (response.status_code, text[:300])
    assert response.mimetype == "text/html"
    return text


def test_nul_in_username_on_login_is_400_and_tries_no_login(web, world):
    """POST /login with a NUL in the username: a 400 page, no login attempt recorded."""
    client = web.test_client()
    path = f"/login?aid={world.live_id}"
    token = csrf(client.get(path))
    response = client.post(
        path, data={"csrf_token": token, "username": "ali\x00ce", "password": "x"}
    )
    assert "cannot be used" in _html_400(response)
    assert login_records(web, world.alice_id) == []


@pytest.mark.parametrize("query", ["aid=a%00b", "aid={aid}&next=/account%00", "ui_locales=e%00s"])
def test_nul_in_login_query_is_400(web, world, query):
    """A NUL in `aid`, `next` or `ui_locales` of the login page: 400 on GET and POST."""
    client = web.test_client()
    path = "/login?" + query.format(aid=world.live_id)
    _html_400(client.get(path))
    token = csrf(client.get(f"/login?aid={world.live_id}"))
    data = {"csrf_token": token, "username": "alice", "password": "x"}
    _html_400(client.post(path, data=data))
    assert login_records(web, world.alice_id) == []


def test_nul_on_forgot_password_is_400_and_mails_nothing(web, world):
    """A NUL in the username of /forgot-password: 400, no background job, no email."""
    make_user(web, world.live_id, "bob", email="bob@example.com")
    client = web.test_client()
    path = f"/forgot-password?aid={world.live_id}"
    token = csrf(client.get(path))
    _html_400(client.post(path, data={"csrf_token": token, "username": "bob\x00"}))
    background.jobs(web).drain()
    assert web.extensions["authserver.outbox"].of("email") == []


@pytest.mark.parametrize(
    "path", ["/login", "/forgot-password", "/reset-password", "/verify-email", "/logout"]
)
@pytest.mark.parametrize("body", [NAMELESS, NAMELESS_FILE], ids=["field", "file"])
def test_nameless_multipart_part_on_a_page_is_400(web, world, path, body):
    """A multipart part without a name on a CSRF-protected page: a 400 page, not a 500."""
    response = web.test_client().post(
        f"{path}?aid={world.live_id}", data=body, content_type=MULTIPART
    )
    assert "without a name" in _html_400(response)


@pytest.mark.parametrize("path", ["/oauth/authorize/consent", "/oauth/logout/confirm"])
def test_nameless_multipart_part_on_oauth_pages_is_400(web, oidc_world, path):
    """The consent and logout confirmations (CSRF-protected HTML) answer 400 pages too."""
    _, challenge = pkce()
    response = web.test_client().post(
        path,
        query_string=auth_params(oidc_world.spa_id, challenge),
        data=NAMELESS,
        content_type=MULTIPART,
    )
    _html_400(response)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_nameless_multipart_part_at_oauth_endpoints_is_json_400(web, world, path):
    """The token, revocation and introspection endpoints answer RFC 6749 JSON and write
    nothing."""
    before = row_counts(web)
    response = web.test_client().post(path, data=NAMELESS, content_type=MULTIPART)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert row_counts(web) == before


def test_nameless_multipart_part_at_the_api_is_json_api_400(web, world):
    """/v1 answers a nameless part with a JSON:API error (it held before: a control)."""
    response = web.test_client().post("/v1/users", data=NAMELESS, content_type=MULTIPART)
    assert response.status_code in (400, 415)
    assert response.mimetype == "application/vnd.api+json"
    assert "errors" in response.get_json()


@pytest.mark.parametrize(
    "name", ["client_id", "redirect_uri", "scope", "state", "nonce", "prompt", "max_age"]
)
def test_nul_in_any_authorization_parameter_is_400(web, oidc_world, name):
    """A NUL in any parameter of /oauth/authorize: a 400 page (no redirect, nothing read)."""
    _, challenge = pkce()
    params = auth_params(oidc_world.spa_id, challenge)
    params[name] = f"{params.get(name, 'x')}\x00"
    response = web.test_client().get("/oauth/authorize", query_string=params)
    _html_400(response)


@pytest.mark.parametrize(
    "path", ["/oauth/logout", "/oauth/userinfo", "/oauth/revoke", "/oauth/introspect"]
)
def test_nul_at_other_oauth_endpoints_is_400_never_500(web, world, path):
    """A NUL in a parameter of the other OAuth endpoints: refused with a 4xx, never a 500."""
    client = web.test_client()
    response = client.post(path, data={"token": "a\x00b", "client_id": "c\x00", "state": "\x00"})
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize(
    "query",
    [
        "search=a%00b",
        "filter%5Bstatus%5D=%00",
        "filter%5Brole%5D=a%00",
        "page%5Bsize%5D=1%00",
        "page%5Bnumber%5D=%001",
        "sort=%00",
        "include=%00",
        "fields%5BUser%5D=%00",
    ],
)
def test_nul_in_api_query_parameters_is_400(app, client, world, query):
    """A NUL in a /v1 list's query parameters: a JSON:API 400, never a 500."""
    token = login(client, world)["access_token"]
    response = client.get(f"/v1/users?{query}", headers=bearer(token))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/vnd.api+json"


@pytest.mark.parametrize(
    "path",
    ["/v1/users/a%00b", "/v1/user/logins?page%5Bsize%5D=%00", "/v1/logins?filter%5Buser%5D=%00"],
)
def test_nul_in_api_paths_and_other_queries_is_4xx(app, client, world, path):
    """NULs in a /v1 path id or another list's query: a JSON:API 4xx, never a 500."""
    token = login(client, world)["access_token"]
    response = client.get(path, headers=bearer(token))
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/vnd.api+json"
