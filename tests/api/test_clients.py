"""The Client resource: /v1/clients and /v1/clients/{client_id}.

Safe default grants, the secret shown once, the rules of registration on every change,
account and live/test isolation, bad input changing nothing, and a disabled or deleted
client whose tokens stop at once, also on another instance that cached the client.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from factories import PASSWORD, World, make_client
from oauth_helpers import basic, bearer, login, refresh
from verification_helpers import role_token

from authserver.platform.extensions import db
from authserver.platform.models import OAuthClient, OAuthConsent, RefreshToken
from authserver.platform.security import digest

MEDIA = "application/vnd.api+json"
CB = "https://app.example.com/cb"


def _send(client: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    return client.open(path, method=method, data=data, content_type=MEDIA, headers=bearer(token))


def _create(client: Any, token: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": "Client", "attributes": attributes}}
    return _send(client, "POST", "/v1/clients", token, body)


def _patch(client: Any, token: str, client_id: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": "Client", "id": client_id, "attributes": attributes}}
    return _send(client, "PATCH", f"/v1/clients/{client_id}", token, body)


def _row(app: Any, client_id: str) -> dict[str, Any]:
    with app.app_context():
        row = db.session.query(OAuthClient).filter_by(client_id=client_id).one()
        return {c.name: getattr(row, c.name) for c in OAuthClient.__table__.columns}


def _rows(app: Any) -> list[dict[str, Any]]:
    with app.app_context():
        return [
            {c.name: getattr(row, c.name) for c in OAuthClient.__table__.columns}
            for row in db.session.query(OAuthClient).order_by(OAuthClient.id)
        ]


@pytest.fixture
def owner(client: Any, world: World) -> str:
    """alice's access token (owner of the live account)."""
    return str(login(client, world)["access_token"])


def _password_login(client: Any, client_id: str, secret: str | None, aid: str) -> Any:
    data = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    data["scope"] = f"openid aid:{aid}"
    headers = basic(client_id, secret) if secret else {}
    if not secret:
        data["client_id"] = client_id
    return client.post("/oauth/token", data=data, headers=headers)


# --- create ---------------------------------------------------------------------------


def test_create_gets_safe_default_grants_and_the_secret_once(app, client, owner):
    """Without grantTypes a client gets authorization_code and refresh_token only; the
    secret is in the 201 answer, stored as a digest, and never shown again."""
    response = _create(client, owner, {"name": "Web", "redirectUris": [CB]})
    assert response.status_code == 201, response.get_data(as_text=True)
    data = response.get_json()["data"]
    assert data["type"] == "Client"
    assert response.headers["Location"] == f"/v1/clients/{data['id']}"
    attrs = data["attributes"]
    assert attrs["grantTypes"] == ["authorization_code", "refresh_token"]
    assert attrs["status"] == "active" and attrs["public"] is False
    secret = attrs["clientSecret"]
    assert len(secret) >= 43
    assert _row(app, data["id"])["client_secret_hash"] == digest(secret)
    shown = _send(client, "GET", f"/v1/clients/{data['id']}", owner)
    assert shown.status_code == 200
    assert "clientSecret" not in shown.get_json()["data"]["attributes"]
    listed = _send(client, "GET", "/v1/clients", owner).get_data(as_text=True)
    assert secret not in listed


def test_default_client_gets_no_password_or_client_credentials_grant(client, owner, world):
    """A client made with the defaults is refused the password and client_credentials
    grants at the token endpoint."""
    made = _create(client, owner, {"name": "Web", "redirectUris": [CB]}).get_json()["data"]
    secret = made["attributes"]["clientSecret"]
    password = _password_login(client, made["id"], secret, world.live_id)
    assert password.status_code in (400, 401)
    assert password.get_json()["error"] == "unauthorized_client"
    credentials = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(made["id"], secret),
    )
    assert credentials.get_json()["error"] == "unauthorized_client"


def test_password_and_client_credentials_when_asked_for(client, owner, world):
    """Grants listed at creation work: the password grant and client credentials."""
    attrs = {"name": "Backend", "grantTypes": ["password", "refresh_token", "client_credentials"]}
    made = _create(client, owner, attrs).get_json()["data"]
    secret = made["attributes"]["clientSecret"]
    assert _password_login(client, made["id"], secret, world.live_id).status_code == 200
    credentials = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(made["id"], secret),
    )
    assert credentials.status_code == 200


def test_developer_may_register_a_public_client(app, client, world):
    """A developer registers clients; a public client has no secret."""
    token = role_token(app, client, world, "developer")
    response = _create(
        client,
        token,
        {"name": "Mobile", "public": True, "redirectUris": ["com.example.app:/cb"]},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    attrs = response.get_json()["data"]["attributes"]
    assert attrs["public"] is True and "clientSecret" not in attrs


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"name": "X", "redirectUris": ["javascript:alert(1)"]}, "redirectUris"),
        ({"name": "X", "redirectUris": ["http://evil.example.com/cb"]}, "redirectUris"),
        ({"name": "X", "redirectUris": [CB + "#f"]}, "redirectUris"),
        ({"name": "X", "postLogoutRedirectUris": ["data:text/html,x"]}, "postLogoutRedirectUris"),
        ({"name": "X"}, "redirectUris"),  # the default browser flow needs a redirect URI
        ({"name": "X", "grantTypes": ["implicit"]}, "grantTypes"),
        ({"name": "X", "grantTypes": []}, "grantTypes"),
        ({"name": "X", "grantTypes": "password"}, "grantTypes"),
        ({"name": "X", "public": True, "grantTypes": ["client_credentials"]}, "grantTypes"),
        ({"name": "X", "redirectUris": [CB], "scope": "openid admin"}, "scope"),
        ({"name": "X", "redirectUris": [CB] * 9}, "redirectUris"),
        ({"name": "X", "redirectUris": [CB + "x" * 240]}, "redirectUris"),
        ({"name": "X", "redirectUris": [7]}, "redirectUris"),
        ({"name": "  ", "redirectUris": [CB]}, "name"),
        ({"name": "X", "redirectUris": [CB], "status": "disabled"}, "status"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(app, client, owner, attributes, pointer):
    """Unsafe URIs, impossible grants, unknown scopes and wrong types answer 422 (or 400
    for an unknown member) naming the attribute, and no client is made."""
    before = _rows(app)
    response = _create(client, owner, attributes)
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    error = response.get_json()["errors"][0]
    assert error["source"]["pointer"] == f"/data/attributes/{pointer}"
    assert _rows(app) == before


# --- read, isolation ------------------------------------------------------------------


def test_list_and_get_show_only_the_token_accounts_clients(app, client, owner, world):
    """GET lists the live account's clients only; another account's client, the test
    twin's and a made-up id answer 404."""
    ids = {c["id"] for c in _send(client, "GET", "/v1/clients", owner).get_json()["data"]}
    assert ids == {world.public_id, world.conf_id}
    for other in (world.other_id_client, world.test_public_id, "nope", "x" * 65):
        assert _send(client, "GET", f"/v1/clients/{other}", owner).status_code == 404
        assert _patch(client, owner, other, {"name": "Mine"}).status_code == 404
        assert _send(client, "DELETE", f"/v1/clients/{other}", owner).status_code == 404
    assert _row(app, world.other_id_client)["name"] == "Other backend"


def test_roles_without_client_management_are_refused(app, client, world):
    """A manager or customer may not see or change clients (403)."""
    for role in ("manager", "customer"):
        token = role_token(app, client, world, role)
        assert _send(client, "GET", "/v1/clients", token).status_code == 403
        assert _patch(client, token, world.conf_id, {"name": "Mine"}).status_code == 403


# --- update ---------------------------------------------------------------------------


def test_patch_changes_settings_under_the_rules_of_registration(app, client, owner, world):
    """PATCH replaces lists and flags; the new settings reach the token endpoint."""
    response = _patch(
        client,
        owner,
        world.conf_id,
        {
            "name": "Backend v2",
            "redirectUris": [CB],
            "postLogoutRedirectUris": ["https://app.example.com/"],
            "grantTypes": ["authorization_code", "refresh_token"],
            "skipConsent": True,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    row = _row(app, world.conf_id)
    assert row["name"] == "Backend v2" and row["skip_consent"] is True
    assert row["redirect_uris"] == [CB]
    assert row["grant_types"] == ["authorization_code", "refresh_token"]
    app.extensions["authserver.clients"].clear()  # this instance's cache; others wait TTL
    credentials = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.conf_id, world.conf_secret),
    )
    assert credentials.get_json()["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    "attributes",
    [
        {"redirectUris": ["javascript:alert(1)"]},
        {"grantTypes": ["authorization_code"]},  # the client has no redirect URI
        {"grantTypes": []},
        {"status": "deleted"},
        {"skipConsent": "yes"},
        {"public": True},  # fixed at registration
        {"name": "Fine", "scope": "everything"},  # one bad attribute: nothing changes
    ],
)
def test_patch_refuses_bad_input_and_changes_nothing(app, client, owner, world, attributes):
    """A refused PATCH answers 4xx (never 500) and leaves the client as it was."""
    before = _row(app, world.conf_id)
    response = _patch(client, owner, world.conf_id, attributes)
    assert 400 <= response.status_code < 500 and response.status_code != 404
    assert _row(app, world.conf_id) == before


def test_patch_with_another_id_in_the_body_is_a_conflict(app, client, owner, world):
    """data.id must be the client in the URL (409)."""
    body = {"data": {"type": "Client", "id": world.public_id, "attributes": {"name": "X"}}}
    response = _send(client, "PATCH", f"/v1/clients/{world.conf_id}", owner, body)
    assert response.status_code == 409
    assert _row(app, world.conf_id)["name"] == "Backend"


# --- disable, enable, delete: tokens stop at once ---------------------------------------


def _client_tokens(client: Any, world: World) -> tuple[str, str, str]:
    """(alice's access token, her refresh token, a client-credentials token), all of the
    live account's confidential client."""
    login_response = _password_login(client, world.conf_id, world.conf_secret, world.live_id)
    assert login_response.status_code == 200, login_response.get_data(as_text=True)
    tokens = login_response.get_json()
    credentials = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.conf_id, world.conf_secret),
    ).get_json()
    return tokens["access_token"], tokens["refresh_token"], credentials["access_token"]


def _refresh_confidential(client: Any, world: World, refresh_token: str) -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers=basic(world.conf_id, world.conf_secret),
    )


def test_disabling_a_client_stops_its_tokens_at_once_on_every_instance(
    app, client, owner, world, make_app
):
    """Disabled through PATCH on one instance: another instance that has the client cached
    refuses its access tokens, refresh token and secret on the very next request, and
    enabling the client again revives none of them."""
    other = make_app().test_client()
    access, refresh_token, client_access = _client_tokens(other, world)  # other caches it
    assert other.get("/v1/account", headers=bearer(access)).status_code == 200
    response = _patch(client, owner, world.conf_id, {"status": "disabled"})
    assert response.status_code == 200
    assert response.get_json()["data"]["attributes"]["status"] == "disabled"
    assert other.get("/v1/account", headers=bearer(access)).status_code == 401
    assert other.get("/v1/account", headers=bearer(client_access)).status_code == 401
    assert other.get("/oauth/userinfo", headers=bearer(access)).status_code == 401
    assert _refresh_confidential(other, world, refresh_token).status_code in (400, 401)
    assert _password_login(other, world.conf_id, world.conf_secret, world.live_id).status_code in (
        400,
        401,
    )
    with app.app_context():
        assert (
            db.session.query(RefreshToken)
            .filter_by(client_id=_row(app, world.conf_id)["id"])
            .count()
            == 0
        )

    assert _patch(client, owner, world.conf_id, {"status": "active"}).status_code == 200
    assert other.get("/v1/account", headers=bearer(access)).status_code == 401
    assert other.get("/v1/account", headers=bearer(client_access)).status_code == 401
    # Tokens carry whole seconds: one issued in the second of the disable counts as before.
    time.sleep(1.01 - time.time() % 1)
    fresh = _password_login(other, world.conf_id, world.conf_secret, world.live_id)
    assert fresh.status_code == 200
    assert (
        other.get("/v1/account", headers=bearer(fresh.get_json()["access_token"])).status_code
        == 200
    )


def test_disabling_one_client_leaves_the_others_tokens(client, owner, world):
    """Only the disabled client's tokens stop: alice's token from another client works."""
    assert _patch(client, owner, world.conf_id, {"status": "disabled"}).status_code == 200
    assert client.get("/v1/account", headers=bearer(owner)).status_code == 200


def test_deleting_a_client_ends_its_tokens_and_consents(app, client, owner, world):
    """DELETE answers 204; the client is gone from the API, its tokens are refused at once,
    its consents and secret are gone, and its client_id cannot come back."""
    access, refresh_token, client_access = _client_tokens(client, world)
    pk = _row(app, world.conf_id)["id"]
    with app.app_context():
        db.session.add(OAuthConsent(user_id=world.alice_id, client_id=pk, scope="openid"))
        db.session.commit()
    assert _send(client, "DELETE", f"/v1/clients/{world.conf_id}", owner).status_code == 204
    assert _send(client, "GET", f"/v1/clients/{world.conf_id}", owner).status_code == 404
    ids = {c["id"] for c in _send(client, "GET", "/v1/clients", owner).get_json()["data"]}
    assert world.conf_id not in ids
    for token in (access, client_access):
        assert client.get("/v1/account", headers=bearer(token)).status_code == 401
    assert _refresh_confidential(client, world, refresh_token).status_code in (400, 401)
    row = _row(app, world.conf_id)
    assert row["status"] == "deleted" and row["client_secret_hash"] is None
    with app.app_context():
        assert db.session.query(OAuthConsent).filter_by(client_id=pk).count() == 0
    assert _patch(client, owner, world.conf_id, {"status": "active"}).status_code == 404


def test_public_client_refresh_stops_when_disabled(app, client, owner, world):
    """A public client's refresh token is refused once the client is disabled."""
    tokens = login(client, world)
    assert _patch(client, owner, world.public_id, {"status": "disabled"}).status_code == 200
    assert refresh(client, tokens["refresh_token"], world.public_id).status_code in (400, 401)
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).status_code == 401


def test_guest_tokens_without_a_client_are_not_affected(app, client, world):
    """A guest token made from a publishable token has no client row and stays valid."""
    guest = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": world.live_prt}
    ).get_json()["access_token"]
    assert client.get("/v1/account", headers=bearer(guest)).status_code == 200


def test_a_client_made_in_code_lists_with_its_settings(app, client, owner, world):
    """A client registered by the domain appears in the list with its attributes."""
    made = make_client(app, world.live_id, "Extra", redirect_uris=[CB], skip_consent=True)
    data = _send(client, "GET", f"/v1/clients/{made.client_id}", owner).get_json()["data"]
    assert data["attributes"]["skipConsent"] is True
    assert data["attributes"]["redirectUris"] == [CB]
