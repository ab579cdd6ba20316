"""CORS for /v1: the account's `allowedOrigins` (validated, normalised), preflights
answered for an origin some account lists, actual answers readable only by an origin the
token's own account lists, `Vary: Origin` always; the OAuth endpoints keep `*`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from oauth_helpers import bearer, login
from verification_helpers import role_token

from authserver.identity import accounts
from authserver.platform.extensions import db
from authserver.platform.models import Account

MEDIA = "application/vnd.api+json"
SHOP = "https://shop.example"


def _patch(client: Any, token: str, account_id: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": "Account", "id": account_id, "attributes": attributes}}
    return client.patch(
        "/v1/account", data=json.dumps(body), content_type=MEDIA, headers=bearer(token)
    )


def _allow(app: Any, account_id: str, *origins: str) -> None:
    with app.app_context():
        accounts.update_account(
            db.session.get(Account, account_id), {"allowed_origins": [*origins]}
        )


def _preflight(client: Any, origin: str, method: str = "GET", path: str = "/v1/user") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_owner_sets_allowed_origins_normalised_and_the_test_twin_follows(app, client, world):
    """PATCH /v1/account stores the origins as browsers send them (lower case, no default
    port, duplicates dropped); GET shows them and the test account has the same list."""
    owner = login(client, world)["access_token"]
    given = ["HTTPS://Shop.Example:443", "http://localhost:5173", "https://shop.example"]
    response = _patch(client, owner, world.live_id, {"allowedOrigins": given})
    assert response.status_code == 200, response.get_data(as_text=True)
    expected = ["https://shop.example", "http://localhost:5173"]
    assert response.get_json()["data"]["attributes"]["allowedOrigins"] == expected
    with app.app_context():
        assert db.session.get(Account, world.test_id).allowed_origins == expected


@pytest.mark.parametrize(
    ("origins", "code"),
    [
        (["http://shop.example"], "insecure_origin"),
        (["https://shop.example/"], "invalid_origin"),
        (["https://shop.example/app"], "invalid_origin"),
        (["https://shop.example?x=1"], "invalid_origin"),
        (["https://user@shop.example"], "invalid_origin"),
        (["https://shop.example:99999"], "invalid_origin"),
        (["ftp://shop.example"], "invalid_origin"),
        (["null"], "invalid_origin"),
        (["*"], "invalid_origin"),
        (["https://shöp.example"], "invalid_origin"),
        ([f"https://{'a' * 250}.example"], "too_long"),
        (["https://a.example"] * 21, "too_many"),
        ("https://shop.example", "invalid_type"),
        ([7], "invalid_type"),
        (None, "invalid_type"),
    ],
)
def test_bad_allowed_origins_are_refused_and_change_nothing(app, client, world, origins, code):
    """Anything but a list of exact https (or loopback http) origins is a 422 pointing
    at allowedOrigins; the stored list stays as it was."""
    _allow(app, world.live_id, SHOP)
    owner = login(client, world)["access_token"]
    response = _patch(client, owner, world.live_id, {"allowedOrigins": origins})
    assert response.status_code == 422, response.get_data(as_text=True)
    [error] = response.get_json()["errors"]
    assert error["source"]["pointer"] == "/data/attributes/allowedOrigins"
    assert error["code"] == code or (code == "invalid_type" and error["code"] == "required")
    with app.app_context():
        assert db.session.get(Account, world.live_id).allowed_origins == [SHOP]


def test_a_preflight_of_a_listed_origin_is_answered_per_the_fetch_spec(app, client, world):
    """OPTIONS with Origin and Access-Control-Request-Method from a listed origin: 204
    echoing the origin, the methods, Authorization and Content-Type, a max-age, Vary."""
    _allow(app, world.live_id, SHOP)
    response = _preflight(client, SHOP, "PATCH")
    assert response.status_code == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert {"GET", "POST", "PATCH", "DELETE"} <= set(
        headers["Access-Control-Allow-Methods"].split(", ")
    )
    assert {"Authorization", "Content-Type"} <= set(
        headers["Access-Control-Allow-Headers"].split(", ")
    )
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers  # no cookies on /v1


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://shop.example.evil.example",
        "https://SHOP.example",  # not what a browser sends
        "http://shop.example",
        "null",
        "https://shop.example/",
        '"https://shop.example"',
        "https://shop.example%22",
    ],
)
def test_a_preflight_of_an_unlisted_origin_gets_no_cors_headers(app, client, world, origin):
    """An origin no account lists (or any variation of a listed one) gets an answer
    without Access-Control-* headers, so the browser never sends the request."""
    _allow(app, world.live_id, SHOP)
    response = _preflight(client, origin)
    assert response.status_code == 204
    assert not [k for k, _ in response.headers.items() if k.lower().startswith("access-control")]


def test_a_preflight_of_a_deleted_accounts_origin_gets_nothing(app, client, world):
    """Only active accounts' origins count."""
    _allow(app, world.live_id, SHOP)
    with app.app_context():
        accounts.delete_account(db.session.get(Account, world.live_id))
    assert "Access-Control-Allow-Origin" not in _preflight(client, SHOP).headers


def test_the_token_account_decides_who_reads_the_answer(app, client, world):
    """GET /v1/user with a listed Origin: ACAO echoes it, Location and Retry-After are
    exposed, Vary says Origin. An origin only another account lists gets no ACAO."""
    _allow(app, world.live_id, SHOP)
    _allow(app, world.other_id, "https://other.example")
    token = login(client, world)["access_token"]
    mine = client.get("/v1/user", headers={**bearer(token), "Origin": SHOP})
    assert mine.status_code == 200
    assert mine.headers["Access-Control-Allow-Origin"] == SHOP
    exposed = {h.strip() for h in mine.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "Retry-After"} <= exposed
    assert "Origin" in mine.headers["Vary"]
    theirs = client.get("/v1/user", headers={**bearer(token), "Origin": "https://other.example"})
    assert theirs.status_code == 200
    assert "Access-Control-Allow-Origin" not in theirs.headers


def test_errors_after_the_token_check_are_readable_and_without_origin_nothing_is_added(
    app, client, world
):
    """A 404 of a valid token's request is readable by its listed origin (the app can
    show it); a request without Origin (curl, servers) gets no CORS headers, but Vary."""
    _allow(app, world.live_id, SHOP)
    token = role_token(app, client, world, "owner")
    missing = client.get("/v1/users/nobody", headers={**bearer(token), "Origin": SHOP})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == SHOP
    plain = client.get("/v1/user", headers=bearer(token))
    assert "Access-Control-Allow-Origin" not in plain.headers
    assert "Origin" in plain.headers["Vary"]


def test_no_token_no_cors(app, client, world):
    """Without a valid token there is no account to ask: a 401 is not readable cross-origin
    (the browser reports a network error, as for any unlisted origin)."""
    _allow(app, world.live_id, SHOP)
    response = client.get("/v1/user", headers={"Origin": SHOP, **bearer("not-a-token")})
    assert response.status_code == 401
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_oauth_endpoints_keep_answering_any_origin(client):
    """The token endpoint's preflight (also at /v1/token) still allows `*`."""
    for path in ("/oauth/token", "/v1/token"):
        response = _preflight(client, "https://anyone.example", "POST", path)
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_developer_may_set_origins_but_a_customer_may_not(app, client, world):
    """allowedOrigins is an account setting like the others (owner, administrator,
    developer); a customer's PATCH is 403 and changes nothing."""
    developer = role_token(app, client, world, "developer")
    assert _patch(client, developer, world.live_id, {"allowedOrigins": [SHOP]}).status_code == 200
    customer = role_token(app, client, world, "customer")
    assert _patch(client, customer, world.live_id, {"allowedOrigins": []}).status_code == 403
    with app.app_context():
        assert db.session.get(Account, world.live_id).allowed_origins == [SHOP]
