"""Bad input at /oauth/token (and /v1/token), /oauth/revoke and /oauth/introspect: every
answer is an RFC 6749 JSON error with `Cache-Control: no-store`, never a 500 or HTML, and
a request refused for its framing writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from factories import PASSWORD, World
from oauth_helpers import basic, login, refresh, row_counts

FORM = "application/x-www-form-urlencoded"
OAUTH_PATHS = ["/oauth/token", "/v1/token", "/oauth/revoke", "/oauth/introspect"]


def _password_form(world: World, **changes: str | None) -> dict[str, str]:
    """A password-grant body that would succeed; `None` drops a field."""
    form: dict[str, str | None] = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "client_id": world.public_id,
        "scope": f"openid aid:{world.live_id}",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def _raw(
    client: Any,
    path: str,
    body: bytes,
    content_type: str | None = FORM,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> Any:
    kwargs: dict[str, Any] = {"data": body, "headers": headers or {}}
    if content_type is not None:
        kwargs["content_type"] = content_type
    return client.post(path + (f"?{query}" if query else ""), **kwargs)


def _oauth_error(response: Any, status: int, errors: tuple[str, ...] | str) -> str:
    """Assert an RFC 6749 error response and return its error code."""
    errors = (errors,) if isinstance(errors, str) else errors
    text = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, text)
    assert response.mimetype == "application/json", response.mimetype
    assert "<html" not in text.lower()
    assert response.headers.get("Cache-Control") == "no-store"
    body = json.loads(text)
    assert "errors" not in body  # RFC 6749 JSON, not JSON:API
    assert body["error"] in errors, body
    if body["error"] == "invalid_client":
        assert status == 401 and "WWW-Authenticate" in response.headers
    return str(body["error"])


# --- framing: refused before any grant runs, nothing written ---------------------------


def _body(world: World, extra: str = "", **changes: str | None) -> bytes:
    """The urlencoded password-grant body, changed and with `extra` appended."""
    return (urlencode(_password_form(world, **changes)) + extra).encode()


Case = Callable[[World], tuple[bytes, str | None, str]]  # body, content type, query

# Requests whose credentials are right but whose framing is wrong.
FRAMING_CASES: dict[str, Case] = {
    "missing_grant_type": lambda w: (_body(w, grant_type=None), FORM, ""),
    "empty_grant_type": lambda w: (_body(w, grant_type=""), FORM, ""),
    "grant_type_only_in_query": lambda w: (
        _body(w, grant_type=None),
        FORM,
        "grant_type=password",
    ),
    "repeated_grant_type": lambda w: (_body(w, "&grant_type=password"), FORM, ""),
    "repeated_username": lambda w: (_body(w, "&username=bob"), FORM, ""),
    "repeated_password": lambda w: (_body(w, "&password=x"), FORM, ""),
    "repeated_scope": lambda w: (_body(w, "&scope=openid"), FORM, ""),
    "repeated_body_and_query": lambda w: (_body(w), FORM, "username=alice"),
    "grant_type_body_and_query": lambda w: (_body(w), FORM, "grant_type=password"),
    "grant_type_twice_in_query": lambda w: (
        _body(w, grant_type=None),
        FORM,
        "grant_type=password&grant_type=password",
    ),
    "json_body": lambda w: (json.dumps(_password_form(w)).encode(), "application/json", ""),
    "text_plain": lambda w: (_body(w), "text/plain", ""),
    "no_content_type": lambda w: (_body(w), None, ""),
    "charset_utf16": lambda w: (
        urlencode(_password_form(w)).encode("utf-16"),
        f"{FORM}; charset=utf-16",
        "",
    ),
    "charset_latin1": lambda w: (_body(w), f"{FORM}; charset=iso-8859-1", ""),
    "non_utf8_bytes": lambda w: (_body(w) + b"&device=\xff\xfe", FORM, ""),
    "nul_in_username": lambda w: (_body(w, username="ali\x00ce"), FORM, ""),
    "nul_in_password": lambda w: (_body(w, password=PASSWORD + "\x00"), FORM, ""),
    "nul_in_client_id": lambda w: (_body(w, client_id="a\x00b"), FORM, ""),
    "nul_in_a_key": lambda w: (_body(w, "&x%00y=1"), FORM, ""),
    "nul_in_query": lambda w: (_body(w), FORM, "foo=%00"),
}


@pytest.mark.parametrize("path", ["/oauth/token", "/v1/token"])
@pytest.mark.parametrize("case", list(FRAMING_CASES))
def test_badly_framed_token_request_is_invalid_request_and_writes_nothing(
    app, client, world, case, path
):
    """Framing errors are 400 invalid_request: no login is tried, no refresh token stored."""
    body, content_type, query = FRAMING_CASES[case](world)
    before = row_counts(app)
    response = _raw(client, path, body, content_type, query)
    _oauth_error(response, 400, "invalid_request")
    assert row_counts(app) == before


def test_the_well_framed_request_succeeds(app, client, world):
    """Control: the body the framing cases start from is accepted as is."""
    response = _raw(client, "/oauth/token", urlencode(_password_form(world)).encode())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert row_counts(app)[1] == 1


def test_multipart_body_is_invalid_request(app, client, world):
    """multipart/form-data is not the token endpoint's encoding."""
    before = row_counts(app)
    response = client.post(
        "/oauth/token", data=_password_form(world), content_type="multipart/form-data"
    )
    _oauth_error(response, 400, "invalid_request")
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/v1/token", "/oauth/revoke", "/oauth/introspect"]
)
def test_body_over_64_kib_is_413(app, client, world, path):
    """A body above MAX_CONTENT_LENGTH is 413 with an RFC 6749 error, and nothing is written."""
    before = row_counts(app)
    body = urlencode(_password_form(world, device="x" * (65 * 1024))).encode()
    _oauth_error(_raw(client, path, body), 413, "invalid_request")
    assert row_counts(app) == before


# --- oversized values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "size", "error"),
    [
        ("username", 10 * 1024, "invalid_request"),
        ("password", 2 * 1024, "invalid_request"),
        ("scope", 5 * 1024, "invalid_scope"),
    ],
)
def test_oversized_password_grant_values_are_refused_before_login(
    app, client, world, field, size, error
):
    """A 10 KB username, 2 KB password or 5 KB scope is refused without trying a login."""
    before = row_counts(app)
    value = "openid " * (size // 7) if field == "scope" else "a" * size
    response = client.post("/oauth/token", data=_password_form(world, **{field: value}))
    _oauth_error(response, 400, error)
    assert row_counts(app) == before


def test_oversized_refresh_token_is_invalid_request(client, world):
    """A 10 KB refresh_token is invalid_request."""
    response = refresh(client, "r" * 10 * 1024, world.public_id)
    _oauth_error(response, 400, ("invalid_request", "invalid_grant"))


def test_oversized_client_id_is_invalid_client(client, world):
    """A 10 KB client_id is 401 invalid_client."""
    response = client.post("/oauth/token", data=_password_form(world, client_id="c" * 10 * 1024))
    _oauth_error(response, 401, "invalid_client")


# --- grant types, scopes and aid ------------------------------------------------------


@pytest.mark.parametrize(
    "grant_type",
    [
        "foo",
        "PASSWORD",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "x" * 300,
    ],
)
def test_unknown_grant_type_is_unsupported_grant_type(app, client, world, grant_type):
    """A grant type we do not serve is unsupported_grant_type, with nothing written."""
    before = row_counts(app)
    response = client.post("/oauth/token", data=_password_form(world, grant_type=grant_type))
    _oauth_error(response, 400, "unsupported_grant_type")
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "scope",
    ["admin", "openid admin", "offline_access write:everything", "openid\u00e9", "OPENID"],
)
def test_unsupported_scope_is_invalid_scope(app, client, world, scope):
    """A scope the client may not ask for is invalid_scope, before any login."""
    before = row_counts(app)
    response = client.post(
        "/oauth/token", data=_password_form(world, scope=f"{scope} aid:{world.live_id}")
    )
    _oauth_error(response, 400, "invalid_scope")
    assert row_counts(app) == before


BAD_AIDS: dict[str, Callable[[World], str]] = {
    "empty": lambda w: "aid:",
    "short": lambda w: "aid:x",
    "not_a_uuid": lambda w: "aid:not-a-uuid-at-all",
    "upper_case_uuid": lambda w: f"aid:{w.live_id.upper()}",
    "two_aids_live_and_test": lambda w: f"aid:{w.live_id} aid:{w.test_id}",
    "two_aids_one_unknown": lambda w: f"aid:{w.live_id} aid:{uuid.uuid4()}",
    "uuid_with_suffix": lambda w: f"aid:{w.live_id}x",
}


@pytest.mark.parametrize("case", list(BAD_AIDS))
def test_malformed_or_foreign_aid_is_invalid_scope(app, client, world, case):
    """Empty, malformed or duplicated aid values are invalid_scope, before login."""
    before = row_counts(app)
    scope = f"openid {BAD_AIDS[case](world)}"
    response = client.post("/oauth/token", data=_password_form(world, scope=scope))
    _oauth_error(response, 400, "invalid_scope")
    assert row_counts(app) == before


@pytest.mark.parametrize("case", ["empty", "short", "two_aids_live_and_test"])
def test_malformed_aid_on_refresh_is_invalid_scope_and_keeps_the_token(client, world, case):
    """The refresh grant refuses a malformed aid without burning the refresh token."""
    value = login(client, world)["refresh_token"]
    response = refresh(client, value, world.public_id, scope=BAD_AIDS[case](world))
    _oauth_error(response, 400, "invalid_scope")
    assert refresh(client, value, world.public_id).status_code == 200


def test_client_credentials_with_another_accounts_aid_is_invalid_scope(client, world):
    """A client's token is for its own account: aid of another account is invalid_scope."""
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": f"aid:{world.other_id}"},
        headers=basic(world.conf_id, world.conf_secret),
    )
    _oauth_error(response, 400, "invalid_scope")


# --- odd characters that are well framed ---------------------------------------------


ODD_BODIES: dict[str, Callable[[World], bytes]] = {
    "percent_encoded_non_utf8": lambda w: _body(w, "&username=%ff%fe", username=None),
    "non_ascii_username": lambda w: _body(w, username="\u00e4lice"),
    "zero_width_space": lambda w: _body(w, username="alice\u200b"),
    "non_ascii_password": lambda w: _body(w, password="\ud7ff\ufffd" * 10),
    "blank_username": lambda w: _body(w, username=" "),
    "empty_username": lambda w: _body(w, username=""),
    "empty_password": lambda w: _body(w, password=""),
}


@pytest.mark.parametrize("case", list(ODD_BODIES))
def test_odd_characters_in_credentials_never_crash(client, world, case):
    """Percent-encoded non-UTF-8, non-ASCII, blank or empty values: an OAuth error, no 500."""
    response = _raw(client, "/oauth/token", ODD_BODIES[case](world))
    _oauth_error(response, 400, ("invalid_request", "invalid_grant"))


# --- client authentication ------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": None},
        {"client_id": "no-such-client"},
        {"client_id": ""},
        {"client_secret": "guess"},
    ],
)
def test_failed_client_authentication_is_401_with_a_challenge(app, client, world, changes):
    """Missing, unknown or wrongly authenticated clients: 401 invalid_client, nothing written."""
    before = row_counts(app)
    response = client.post("/oauth/token", data=_password_form(world, **changes))
    _oauth_error(response, 401, "invalid_client")
    assert row_counts(app) == before


def test_basic_and_post_credentials_together_do_not_crash(client, world):
    """Credentials in both the header and the body: an answer, never a 500."""
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": world.conf_id,
            "client_secret": world.conf_secret,
        },
        headers=basic(world.conf_id, world.conf_secret),
    )
    assert response.status_code in (200, 400, 401)
    assert response.headers["Cache-Control"] == "no-store"


# --- wrong methods --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", OAUTH_PATHS)
def test_wrong_method_is_405_with_allow(client, path, method):
    """Anything but POST is 405 with `Allow: POST` and an RFC 6749 error."""
    response = client.open(path, method=method)
    _oauth_error(response, 405, "invalid_request")
    assert "POST" in response.headers["Allow"]


# --- /oauth/revoke and /oauth/introspect ----------------------------------------------


def _token_body(token: str, client_id: str, extra: str = "") -> bytes:
    return (urlencode({"token": token, "client_id": client_id}) + extra).encode()


# (token, client_id) -> (body, content type, query) with wrong framing.
REVOKE_CASES: dict[str, Callable[[str, str], tuple[bytes, str | None, str]]] = {
    "json_body": lambda t, c: (
        json.dumps({"token": t, "client_id": c}).encode(),
        "application/json",
        "",
    ),
    "repeated_token": lambda t, c: (_token_body(t, c, "&token=other"), FORM, ""),
    "token_in_body_and_query": lambda t, c: (_token_body(t, c), FORM, "token=other"),
    "charset_utf16": lambda t, c: (
        urlencode({"token": t, "client_id": c}).encode("utf-16"),
        f"{FORM}; charset=utf-16",
        "",
    ),
    "non_utf8": lambda t, c: (_token_body(t, c) + b"&x=\xff", FORM, ""),
    "nul_in_token": lambda t, c: (_token_body(t, c, "%00"), FORM, ""),
    "no_content_type": lambda t, c: (_token_body(t, c), None, ""),
}


@pytest.mark.parametrize("case", list(REVOKE_CASES))
def test_badly_framed_revocation_is_invalid_request_and_revokes_nothing(client, world, case):
    """A badly framed revocation is invalid_request, and the token it carried still works."""
    value = login(client, world)["refresh_token"]
    body, content_type, query = REVOKE_CASES[case](value, world.public_id)
    _oauth_error(_raw(client, "/oauth/revoke", body, content_type, query), 400, "invalid_request")
    assert refresh(client, value, world.public_id).status_code == 200


@pytest.mark.parametrize("case", list(REVOKE_CASES))
def test_badly_framed_introspection_is_invalid_request(client, world, case):
    """The same framing errors at the introspection endpoint are invalid_request."""
    value = login(client, world)["refresh_token"]
    body, content_type, query = REVOKE_CASES[case](value, world.conf_id)
    headers = basic(world.conf_id, world.conf_secret)
    response = _raw(client, "/oauth/introspect", body, content_type, query, headers)
    _oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
def test_revoke_and_introspect_parameter_errors(client, world, path):
    """Missing token is invalid_request; an unknown hint is unsupported_token_type (400)."""
    headers = basic(world.conf_id, world.conf_secret)
    missing = client.post(path, data={}, headers=headers, content_type=FORM)
    _oauth_error(missing, 400, "invalid_request")
    hint = client.post(path, data={"token": "t", "token_type_hint": "id_token"}, headers=headers)
    _oauth_error(hint, 400, "unsupported_token_type")


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
@pytest.mark.parametrize(
    "auth",
    [
        {"client_id": "no-such-client"},
        {"client_id": "c" * 5000},
        {"basic": ("no-such-client", "x")},
        {"basic": ("CONF", "wrong-secret")},
        {"header": "Basic %%%"},
    ],
)
def test_revoke_and_introspect_failed_client_authentication(client, world, path, auth):
    """Unknown clients, wrong secrets and broken Basic headers: 401 invalid_client."""
    data = {"token": "whatever"}
    headers: dict[str, str] = {}
    if "client_id" in auth:
        data["client_id"] = auth["client_id"]
    elif "basic" in auth:
        client_id, secret = auth["basic"]
        headers = basic(world.conf_id if client_id == "CONF" else client_id, secret)
    else:
        headers = {"Authorization": auth["header"]}
    _oauth_error(client.post(path, data=data, headers=headers), 401, "invalid_client")


@pytest.mark.parametrize("size", [5000, 10 * 1024])
def test_oversized_tokens_at_revoke_and_introspect_are_handled(client, world, size):
    """Huge token values are unknown tokens: revoke answers 200, introspection inactive."""
    token = "t" * size
    revoked = client.post("/oauth/revoke", data={"token": token, "client_id": world.public_id})
    assert revoked.status_code == 200 and revoked.headers["Cache-Control"] == "no-store"
    looked = client.post(
        "/oauth/introspect", data={"token": token}, headers=basic(world.conf_id, world.conf_secret)
    )
    assert looked.status_code == 200 and looked.get_json() == {"active": False}


@pytest.mark.parametrize("path", OAUTH_PATHS)
def test_successful_answers_are_no_store_too(client, world, path):
    """Not only errors: every answer of these endpoints carries Cache-Control: no-store."""
    body = login(client, world)
    if path in ("/oauth/token", "/v1/token"):
        response = client.post(
            path,
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": world.public_id,
            },
        )
    elif path == "/oauth/revoke":
        response = client.post(
            path, data={"token": body["access_token"], "client_id": world.public_id}
        )
    else:
        response = client.post(
            path,
            data={"token": body["access_token"]},
            headers=basic(world.conf_id, world.conf_secret),
        )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
