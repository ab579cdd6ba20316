"""The Api resource (/v1/apis) and a client's `apiScopes`: managers register the account's
own APIs; bad, duplicate, oversized and hostile input is refused and changes nothing;
other accounts' APIs stay invisible; roles below developer cannot manage them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import World, make_user
from oauth_helpers import bearer, login
from verification_helpers import role_token

from authserver.identity import apis
from authserver.platform.extensions import db
from authserver.platform.models import OAuthClient, ResourceApi

MEDIA = "application/vnd.api+json"
ORDERS = "https://api.acme.example/orders"


def _send(client: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    return client.open(path, method=method, data=data, content_type=MEDIA, headers=bearer(token))


def _create(client: Any, token: str, attributes: dict[str, Any]) -> Any:
    return _send(
        client, "POST", "/v1/apis", token, {"data": {"type": "Api", "attributes": attributes}}
    )


def _snapshot(app: Any) -> tuple[Any, ...]:
    """Every API row and every client's grants: what a refused call must not change."""
    with app.app_context():
        rows = db.session.execute(
            db.select(
                ResourceApi.id, ResourceApi.identifier, ResourceApi.name, ResourceApi.token_lifetime
            )
        ).all()
        scopes = [json.dumps(a.scopes) for a in db.session.scalars(db.select(ResourceApi))]
        grants = [
            json.dumps(c.api_scopes, sort_keys=True)
            for c in db.session.scalars(db.select(OAuthClient))
        ]
        return sorted(map(tuple, rows)), sorted(scopes), sorted(grants)


@pytest.fixture
def owner(client: Any, world: World) -> str:
    """alice's access token (owner of the live account)."""
    return str(login(client, world)["access_token"])


@pytest.fixture
def orders(client: Any, owner: str) -> dict[str, Any]:
    """An API of the live account with two scopes."""
    response = _create(
        client,
        owner,
        {
            "identifier": ORDERS,
            "name": "Orders",
            "scopes": {"read:orders": "Read your orders", "write:orders": "Change your orders"},
            "tokenLifetime": 600,
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return dict(response.get_json()["data"])


def test_create_list_get_patch_delete(client, owner, orders):
    """A manager registers an API, sees it listed and alone, renames it, and deletes it."""
    assert orders["attributes"]["identifier"] == ORDERS
    assert orders["attributes"]["scopes"] == {
        "read:orders": "Read your orders",
        "write:orders": "Change your orders",
    }
    assert orders["attributes"]["tokenLifetime"] == 600
    listed = _send(client, "GET", "/v1/apis", owner).get_json()
    assert [a["id"] for a in listed["data"]] == [orders["id"]]
    path = f"/v1/apis/{orders['id']}"
    assert _send(client, "GET", path, owner).get_json()["data"]["id"] == orders["id"]
    body = {"data": {"type": "Api", "id": orders["id"], "attributes": {"name": "Orders v2"}}}
    patched = _send(client, "PATCH", path, owner, body)
    assert patched.status_code == 200, patched.get_data(as_text=True)
    assert patched.get_json()["data"]["attributes"]["name"] == "Orders v2"
    assert _send(client, "DELETE", path, owner).status_code == 204
    assert _send(client, "GET", path, owner).status_code == 404


@pytest.mark.parametrize(
    "attributes",
    [
        {"identifier": "not a uri"},
        {"identifier": "ftp://api.acme.example"},
        {"identifier": "http://api.acme.example/orders"},  # plain http off loopback
        {"identifier": "https://api.acme.example/orders#frag"},
        {"identifier": "https://api.acme.example/orders?x=1"},
        {"identifier": "https://user@api.acme.example/"},
        {"identifier": "https://api.acme.example/\x00"},
        {"identifier": "https://api.acme.example/" + "a" * 300},
        {"identifier": ORDERS, "scopes": {f"s{i}": "" for i in range(apis.SCOPES_MAX + 1)}},
        {"identifier": ORDERS, "scopes": {"aid:x": "sneaky"}},
        {"identifier": ORDERS, "scopes": {"bad scope": ""}},
        {"identifier": ORDERS, "scopes": {"read\n": ""}},
        {"identifier": ORDERS, "scopes": {'<script>"': ""}},
        {"identifier": ORDERS, "scopes": {"read": 5}},
        {"identifier": ORDERS, "scopes": {"read": "x" * 300}},
        {"identifier": ORDERS, "scopes": {"read": "line\nbreak"}},
        {"identifier": ORDERS, "scopes": ["read"]},
        {"identifier": ORDERS, "tokenLifetime": 10},
        {"identifier": ORDERS, "tokenLifetime": 10**9},
        {"identifier": ORDERS, "tokenLifetime": "600"},
        {"identifier": ORDERS, "tokenLifetime": True},
        {"identifier": ORDERS, "name": "\x00"},
        {"identifier": ORDERS, "unknown": 1},
        {"name": "no identifier"},
    ],
)
def test_bad_input_is_refused_and_changes_nothing(app, client, owner, attributes):
    """Malformed, oversized and hostile attributes get a 4xx JSON:API error; no row is made."""
    before = _snapshot(app)
    response = _create(client, owner, attributes)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json()["errors"]
    assert _snapshot(app) == before


def test_duplicate_identifier_is_409_and_changes_nothing(app, client, owner, orders):
    """An account has one API per identifier: a second is 409 and changes nothing."""
    before = _snapshot(app)
    response = _create(client, owner, {"identifier": ORDERS, "name": "Again"})
    assert response.status_code == 409
    assert _snapshot(app) == before


def test_identifier_is_fixed(app, client, owner, orders):
    """PATCH cannot change the identifier (the audience resource servers trust)."""
    before = _snapshot(app)
    body = {
        "data": {
            "type": "Api",
            "id": orders["id"],
            "attributes": {"identifier": "https://x.example"},
        }
    }
    response = _send(client, "PATCH", f"/v1/apis/{orders['id']}", owner, body)
    assert 400 <= response.status_code < 500
    assert _snapshot(app) == before


def test_other_accounts_apis_are_invisible(app, client, world, orders):
    """Another account's manager neither lists, reads, changes nor deletes this API."""
    make_user(app, world.other_id, "olga", role="owner")
    other_owner = login(
        client, world, username="olga", client_id=world.other_public_id, aid=world.other_id
    )["access_token"]
    before = _snapshot(app)
    assert _send(client, "GET", "/v1/apis", other_owner).get_json()["data"] == []
    path = f"/v1/apis/{orders['id']}"
    assert _send(client, "GET", path, other_owner).status_code == 404
    assert _send(client, "DELETE", path, other_owner).status_code == 404
    assert _snapshot(app) == before


def test_customer_cannot_manage_apis(app, client, world, orders):
    """A customer (or read-only user) gets 403 on every /v1/apis route and changes nothing."""
    before = _snapshot(app)
    for role in ("customer", "read_only"):
        token = role_token(app, client, world, role)
        assert _send(client, "GET", "/v1/apis", token).status_code == 403
        assert _create(client, token, {"identifier": "https://x.example/api"}).status_code == 403
        path = f"/v1/apis/{orders['id']}"
        assert _send(client, "DELETE", path, token).status_code == 403
    assert _snapshot(app) == before


def _grant(client: Any, owner: str, client_id: str, grants: Any) -> Any:
    body = {"data": {"type": "Client", "id": client_id, "attributes": {"apiScopes": grants}}}
    return _send(client, "PATCH", f"/v1/clients/{client_id}", owner, body)


def test_client_api_scopes_are_set_shown_and_follow_the_api(client, owner, world, orders):
    """apiScopes grants a client scopes of an API; removing a scope from the API or
    deleting the API takes it out of the grant."""
    response = _grant(client, owner, world.conf_id, {ORDERS: ["read:orders", "write:orders"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["apiScopes"] == {
        ORDERS: ["read:orders", "write:orders"]
    }
    body = {
        "data": {"type": "Api", "id": orders["id"], "attributes": {"scopes": {"read:orders": ""}}}
    }
    assert _send(client, "PATCH", f"/v1/apis/{orders['id']}", owner, body).status_code == 200
    shown = _send(client, "GET", f"/v1/clients/{world.conf_id}", owner).get_json()
    assert shown["data"]["attributes"]["apiScopes"] == {ORDERS: ["read:orders"]}
    assert _send(client, "DELETE", f"/v1/apis/{orders['id']}", owner).status_code == 204
    shown = _send(client, "GET", f"/v1/clients/{world.conf_id}", owner).get_json()
    assert shown["data"]["attributes"]["apiScopes"] == {}


@pytest.mark.parametrize(
    "grants",
    [
        {"https://nowhere.example/api": ["read:orders"]},
        {ORDERS: ["delete:everything"]},
        {ORDERS: "read:orders"},
        {ORDERS: [1]},
        ["read:orders"],
        {"https://api.acme.example/\u0000": ["read:orders"]},
        {"https://api.acme.example/" + "a" * 5000: ["read:orders"]},
    ],
)
def test_bad_client_api_scopes_are_refused(app, client, owner, world, orders, grants):
    """Unknown APIs, scopes the API does not define and malformed grants are a 4xx; no change."""
    before = _snapshot(app)
    response = _grant(client, owner, world.conf_id, grants)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert _snapshot(app) == before


def test_another_accounts_api_cannot_be_granted(app, client, world, owner):
    """A client is granted scopes of its own account's APIs only."""
    with app.app_context():
        apis.create_api(
            world.other_id, ORDERS, "Theirs", [{"value": "read:orders", "description": ""}]
        )
    before = _snapshot(app)
    response = _grant(client, owner, world.conf_id, {ORDERS: ["read:orders"]})
    assert response.status_code == 422
    assert _snapshot(app) == before
