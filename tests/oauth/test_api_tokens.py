"""Tokens for an account's own APIs: client_credentials with `resource` (RFC 8707) or API
scopes yields a JWT whose aud is the API and whose scope holds only granted scopes, with
the API's lifetime; unknown resources are invalid_target, ungranted scopes invalid_scope;
/v1 refuses such tokens; introspection and revocation know them; the CLI makes APIs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import World
from oauth_helpers import basic, bearer, introspect, jwt_parts, login, password_grant, refresh

from authserver.cli import cli
from authserver.identity import apis, clients, tokens
from authserver.platform.errors import Unauthenticated
from authserver.platform.extensions import db
from authserver.platform.models import ResourceApi

ORDERS = "https://api.acme.example/orders"
BILLING = "https://api.acme.example/billing"


def _grant(app: Any, client_id: str, grants: dict[str, list[str]]) -> None:
    with app.app_context():
        row = clients.get_client(None, client_id)
        clients.update_client(row, {"api_scopes": grants})
    app.extensions["authserver.clients"].clear()  # the per-process cache (10 s otherwise)


@pytest.fixture
def orders(app: Any, world: World) -> str:
    """The live account's Orders API (read/write/admin) and Billing API; the confidential
    client is granted read and write of Orders only."""
    with app.app_context():
        scopes = [
            {"value": "read:orders", "description": "Read your orders"},
            {"value": "write:orders", "description": "Change your orders"},
            {"value": "admin:orders", "description": "Everything"},
        ]
        api = apis.create_api(world.live_id, ORDERS, "Orders", scopes, 600)
        apis.create_api(world.live_id, BILLING, "Billing", [{"value": "pay", "description": ""}])
        api_id = api.id
    _grant(app, world.conf_id, {ORDERS: ["read:orders", "write:orders"]})
    return api_id


def _token(client: Any, world: World, **form: str) -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers=basic(world.conf_id, world.conf_secret),
    )


def test_resource_gives_a_token_for_the_api_with_granted_scopes(client, world, orders):
    """resource=<API> gives aud = the API, all granted scopes (never admin), its lifetime."""
    response = _token(client, world, resource=ORDERS)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["expires_in"] == 600
    assert body["scope"] == "read:orders write:orders"
    header, claims = jwt_parts(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == ORDERS
    assert claims["scope"] == "read:orders write:orders"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["aid"] == world.live_id and "role" not in claims


def test_scope_alone_names_the_api_and_narrows(client, world, orders):
    """scope=read:orders without resource gives an Orders token with that scope only."""
    response = _token(client, world, scope="read:orders")
    assert response.status_code == 200, response.get_data(as_text=True)
    _, claims = jwt_parts(response.get_json()["access_token"])
    assert claims["aud"] == ORDERS and claims["scope"] == "read:orders"


@pytest.mark.parametrize(
    "form",
    [
        {"resource": ORDERS, "scope": "admin:orders"},  # the API's, not granted
        {"scope": "admin:orders"},
        {"scope": "read:orders admin:orders"},
        {"resource": ORDERS, "scope": "read:orders openid"},  # mixes /v1 and the API
        {"scope": "read:orders openid"},
        {"resource": ORDERS, "scope": f"read:orders aid:{'0' * 8}-0000-0000-0000-{'0' * 12}"},
        {"scope": "nothing:here"},
    ],
)
def test_ungranted_or_mixed_scopes_are_invalid_scope(client, world, orders, form):
    """A scope the client was not granted, or a /v1 scope with an API's, is invalid_scope."""
    response = _token(client, world, **form)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "resource",
    [
        "https://api.acme.example/unknown",
        BILLING,  # the account's, but nothing of it granted
        "https://api.other.example/x",
        "x" * 5000,
        "<script>alert(1)</script>",
    ],
)
def test_unknown_or_ungranted_resource_is_invalid_target(client, world, orders, resource):
    """A resource that is no API the client was granted scopes of is invalid_target."""
    response = _token(client, world, resource=resource)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_target"


def test_resource_on_a_user_grant_is_invalid_target(client, world, orders):
    """The password and refresh grants give no API tokens yet: `resource` there is
    invalid_target, never a silent /v1 token."""
    response = password_grant(client, world, resource=ORDERS)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_target"
    refresh_token = login(client, world)["refresh_token"]
    response = refresh(client, refresh_token, world.public_id, resource=ORDERS)
    assert response.get_json()["error"] == "invalid_target"
    # the refused request burnt nothing: the refresh token still works
    assert refresh(client, refresh_token, world.public_id).status_code == 200


def test_another_accounts_api_is_invalid_target(app, client, world, orders):
    """The same identifier in another account gives that account's client nothing here."""
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": ORDERS},
        headers=basic(world.other_id_client, world.other_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_target"


def test_api_token_is_refused_by_v1(client, world, orders):
    """A token whose aud is the account's API is no /v1 token: 401, while a /v1 one works."""
    api_token = _token(client, world, resource=ORDERS).get_json()["access_token"]
    response = client.get("/v1/clients", headers=bearer(api_token))
    assert response.status_code == 401
    v1_token = _token(client, world).get_json()["access_token"]
    assert jwt_parts(v1_token)[1]["aud"].endswith("/v1")
    assert client.get("/v1/clients", headers=bearer(v1_token)).status_code == 200


def test_introspection_reports_the_api_token_until_revoked(app, client, world, orders):
    """Introspection says active with aud and scope; after revocation, and after the API
    is deleted, it says inactive."""
    token = _token(client, world, resource=ORDERS).get_json()["access_token"]
    body = introspect(client, world, token).get_json()
    assert body["active"] is True
    assert body["aud"] == ORDERS and body["scope"] == "read:orders write:orders"
    revoked = client.post(
        "/oauth/revoke", data={"token": token}, headers=basic(world.conf_id, world.conf_secret)
    )
    assert revoked.status_code == 200
    assert introspect(client, world, token).get_json() == {"active": False}
    other = _token(client, world, resource=ORDERS).get_json()["access_token"]
    assert introspect(client, world, other).get_json()["active"] is True
    with app.app_context():
        apis.delete_api(db.session.get(ResourceApi, orders))
    assert introspect(client, world, other).get_json() == {"active": False}


def test_introspection_by_another_account_says_inactive(client, world, orders):
    """Another account's client learns nothing of this account's API token."""
    token = _token(client, world, resource=ORDERS).get_json()["access_token"]
    response = client.post(
        "/oauth/introspect",
        data={"token": token},
        headers=basic(world.other_id_client, world.other_secret),
    )
    assert response.get_json() == {"active": False}


def test_disabled_client_api_tokens_stop(app, client, world, orders):
    """The standing checks apply: disabling the client ends its API tokens at once."""
    token = _token(client, world, resource=ORDERS).get_json()["access_token"]
    with app.test_request_context():
        assert tokens.validate_api_token(token).claims["aud"] == ORDERS
        clients.update_client(clients.get_client(None, world.conf_id), {"status": "disabled"})
    with app.test_request_context(), pytest.raises(Unauthenticated):
        tokens.validate_api_token(token)


# --- CLI --------------------------------------------------------------------------------


def test_cli_creates_lists_grants_and_deletes(app, world):
    """`apis create/list/delete` and `clients update --api-scope` work end to end."""
    runner = app.test_cli_runner()
    made = runner.invoke(
        cli,
        [
            "apis", "create", "--account", world.live_id, "--identifier", ORDERS,
            "--scope", "read:orders=Read your orders", "--scope", "write:orders",
            "--lifetime", "900", "--json",
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    data = json.loads(made.output)
    assert data["scopes"] == {"read:orders": "Read your orders", "write:orders": ""}
    assert data["tokenLifetime"] == 900
    listed = runner.invoke(cli, ["apis", "list", "--account", world.live_id, "--json"])
    assert [a["identifier"] for a in json.loads(listed.output)["apis"]] == [ORDERS]
    granted = runner.invoke(
        cli, ["clients", "update", world.conf_id, "--api-scope", f"{ORDERS}=read:orders", "--json"]
    )
    assert granted.exit_code == 0, granted.output
    assert json.loads(granted.output)["apiScopes"] == {ORDERS: ["read:orders"]}
    gone = runner.invoke(cli, ["apis", "delete", data["id"]])
    assert gone.exit_code == 0, gone.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(ResourceApi)) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--identifier", "http://api.example.com"],
        ["--identifier", ORDERS, "--scope", "aid:x"],
        ["--identifier", ORDERS, "--lifetime", "5"],
        ["--identifier", ORDERS, "--scope", "a", "--scope", "a"],
    ],
)
def test_cli_refuses_bad_input(app, world, args):
    """A bad identifier, scope or lifetime is a one-line error, exit 1, and no row."""
    result = app.test_cli_runner().invoke(
        cli, ["apis", "create", "--account", world.live_id, *args]
    )
    assert result.exit_code == 1, result.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(ResourceApi)) == 0
