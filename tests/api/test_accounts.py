"""The Account resource: GET/PATCH /v1/account, roles, test-account sync, locales, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import PASSWORD, make_user
from oauth_helpers import bearer, login, password_grant
from verification_helpers import guest_token, role_token

from authserver.platform.events import signal
from authserver.platform.extensions import db
from authserver.platform.models import Account, LoginRecord, User

MEDIA = "application/vnd.api+json"


def _patch(client: Any, token: str, attributes: dict[str, Any], **kwargs: Any) -> Any:
    account_id = kwargs.pop("account_id")
    query = kwargs.pop("query", "")
    body = {"data": {"type": "Account", "id": account_id, "attributes": attributes}}
    return client.patch(
        f"/v1/account{query}", data=json.dumps(body), content_type=MEDIA, headers=bearer(token)
    )


def _attributes(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json()["data"]["attributes"])


def test_get_account_for_every_role_and_guests(app, client, world):
    """GET /v1/account answers the token's account to a customer, an owner and a guest."""
    guest = guest_token(client, world.live_prt)
    for token in (
        role_token(app, client, world, "customer"),
        login(client, world)["access_token"],
        guest,
    ):
        response = client.get("/v1/account", headers=bearer(token))
        attrs = _attributes(response)
        assert response.get_json()["data"]["id"] == world.live_id
        assert (attrs["name"], attrs["mode"], attrs["testAccountId"]) == (
            "Acme",
            "live",
            world.test_id,
        )
        assert response.get_json()["meta"] == {"locale": "en"}
        assert response.mimetype == MEDIA


def test_get_account_without_a_token_is_401(client):
    """No bearer token, no account."""
    assert client.get("/v1/account").status_code == 401


def test_patch_changes_the_live_and_the_test_account(app, client, world):
    """An administrator's PATCH changes the live account and copies it to the test account."""
    token = role_token(app, client, world, "administrator")
    changes = {
        "name": "Acme Two",
        "supportEmail": "help@acme.example",
        "caption": "Shop",
        "customData": {"tier": "gold"},
        "websiteUrl": "https://acme.example",
    }
    attrs = _attributes(_patch(client, token, changes, account_id=world.live_id))
    assert {k: attrs[k] for k in changes} == changes
    test_token = login(client, world, username="tess")["access_token"]
    test_attrs = _attributes(client.get("/v1/account", headers=bearer(test_token)))
    assert {k: test_attrs[k] for k in changes} == changes
    assert test_attrs["mode"] == "test" and test_attrs["testAccountId"] is None


@pytest.mark.parametrize("role", ["customer", "read_only", "manager", "support_specialist"])
def test_patch_is_forbidden_to_other_roles(app, client, world, role):
    """Roles other than owner, administrator and developer get 403 and change nothing."""
    token = role_token(app, client, world, role)
    response = _patch(client, token, {"name": "Hacked"}, account_id=world.live_id)
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(Account, world.live_id).name == "Acme"


def test_patch_by_a_guest_or_client_token_is_forbidden(app, client, world):
    """A guest token cannot change the account."""
    guest = guest_token(client, world.live_prt)
    assert _patch(client, guest, {"name": "X"}, account_id=world.live_id).status_code == 403


def test_patch_on_a_test_account_is_422(app, client, world):
    """A test account follows its live one: PATCH answers 422 unprocessable_for_test_account."""
    token = login(client, world, username="tess")["access_token"]  # owner of the test account
    response = _patch(client, token, {"name": "Test only"}, account_id=world.test_id)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == "unprocessable_for_test_account"
    with app.app_context():
        assert db.session.get(Account, world.test_id).name == "Acme"


def test_localized_attributes_are_read_and_written_per_locale(app, client, world):
    """?locale=fr writes a French name; the default locale keeps the original; test follows."""
    token = login(client, world)["access_token"]
    response = _patch(
        client,
        token,
        {"name": "Acmé", "description": "Boutique"},
        account_id=world.live_id,
        query="?locale=fr",
    )
    assert response.get_json()["meta"] == {"locale": "fr"}
    assert _attributes(response)["name"] == "Acmé"
    assert _attributes(client.get("/v1/account", headers=bearer(token)))["name"] == "Acme"
    french = _attributes(client.get("/v1/account?locale=fr", headers=bearer(token)))
    assert (french["name"], french["description"]) == ("Acmé", "Boutique")
    spanish = _attributes(client.get("/v1/account?locale=es", headers=bearer(token)))
    assert spanish["name"] == "Acme"  # no Spanish text: the default
    test_token = login(client, world, username="tess")["access_token"]
    test_fr = _attributes(client.get("/v1/account?locale=fr", headers=bearer(test_token)))
    assert test_fr["name"] == "Acmé"


def test_unsupported_locale_is_400(client, world):
    """?locale=de is refused with invalid_locale."""
    token = login(client, world)["access_token"]
    response = client.get("/v1/account?locale=de", headers=bearer(token))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["code"] == "invalid_locale"


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"mode": "test"}, "/data/attributes/mode"),  # read-only
        ({"status": "deleted"}, "/data/attributes/status"),  # read-only
        ({"testAccountId": "x"}, "/data/attributes/testAccountId"),
        ({"name": ""}, "/data/attributes/name"),
        ({"name": None}, "/data/attributes/name"),
        ({"name": 5}, "/data/attributes/name"),
        ({"name": "x" * 256}, "/data/attributes/name"),
        ({"supportEmail": "not-an-email"}, "/data/attributes/supportEmail"),
        ({"techEmail": "a@b.c\r\nBcc: x@y.z"}, "/data/attributes/techEmail"),
        ({"websiteUrl": "javascript:alert(1)"}, "/data/attributes/websiteUrl"),
        ({"defaultAuthMethod": "magic"}, "/data/attributes/defaultAuthMethod"),
        ({"apiVersion": "yesterday"}, "/data/attributes/apiVersion"),
        ({"customData": [1, 2]}, "/data/attributes/customData"),
        ({"customData": {"k": "v" * 17000}}, "/data/attributes/customData"),
    ],
)
def test_bad_attributes_are_refused_with_a_pointer(app, client, world, attributes, pointer):
    """Read-only, unknown, wrongly typed or invalid attributes: 4xx with a pointer, no change."""
    token = login(client, world)["access_token"]
    response = _patch(client, token, attributes, account_id=world.live_id)
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["source"]["pointer"] == pointer
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        assert (account.name, account.support_email, account.custom_data) == ("Acme", None, {})


def test_patch_with_another_id_or_type_is_409(client, world):
    """The body's id must be the token's account and its type Account (JSON:API: 409)."""
    token = login(client, world)["access_token"]
    assert _patch(client, token, {"name": "X"}, account_id=world.other_id).status_code == 409
    body = {"data": {"type": "User", "id": world.live_id, "attributes": {"name": "X"}}}
    response = client.patch(
        "/v1/account", data=json.dumps(body), content_type=MEDIA, headers=bearer(token)
    )
    assert response.status_code == 409


def test_patch_emits_the_update_event_after_commit(app, client, world):
    """identity.account.update.success fires once, with the committed account and the user."""
    seen: list[tuple[str, str | None]] = []

    def record(sender: Any, **payload: Any) -> None:
        with app.app_context():
            committed = db.session.get(Account, payload["account"].id)
            seen.append((committed.name, payload["user"].username if payload["user"] else None))

    signal("identity.account.update.success").connect(record, sender=app)
    try:
        token = login(client, world)["access_token"]
        _patch(client, token, {"name": "Evented"}, account_id=world.live_id)
    finally:
        signal("identity.account.update.success").disconnect(record, sender=app)
    assert seen == [("Evented", "alice")]


def _guest(client: Any, prt: str) -> Any:
    return client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": prt})


def test_publishable_token_read_and_regenerated_by_an_administrator(app, client, world):
    """GET shows the account's prt; POST makes a new one; the old one stops giving tokens."""
    token = role_token(app, client, world, "administrator")
    shown = client.get("/v1/account/publishable_token", headers=bearer(token)).get_json()
    assert shown["data"]["attributes"] == {"value": world.live_prt, "mode": "live"}
    response = client.post("/v1/account/publishable_token", headers=bearer(token))
    assert response.status_code == 201
    new = response.get_json()["data"]["attributes"]["value"]
    assert new.startswith("prt-live-") and new != world.live_prt
    assert _guest(client, world.live_prt).status_code == 400
    assert _guest(client, new).status_code == 200
    assert _guest(client, world.test_prt).status_code == 200  # the test account's is untouched


@pytest.mark.parametrize("role", ["developer", "customer", "read_only"])
def test_publishable_token_is_for_administrators_only(app, client, world, role):
    """Other roles get 403 on both GET and POST, and the token stays the same."""
    token = role_token(app, client, world, role)
    assert client.get("/v1/account/publishable_token", headers=bearer(token)).status_code == 403
    assert client.post("/v1/account/publishable_token", headers=bearer(token)).status_code == 403
    assert _guest(client, world.live_prt).status_code == 200


def test_owner_deletes_the_account_and_every_token_stops(app, client, world):
    """DELETE by the owner: 204; both accounts deleted; old access, refresh and guest tokens
    of both accounts answer 401 / invalid_grant; logins are refused."""
    owner = login(client, world)  # alice owns the live account
    tester = login(client, world, username="tess")
    guest = guest_token(client, world.live_prt)
    response = client.delete("/v1/account", headers=bearer(owner["access_token"]))
    assert response.status_code == 204
    with app.app_context():
        statuses = {db.session.get(Account, i).status for i in (world.live_id, world.test_id)}
        assert statuses == {"deleted"}
    for token in (owner["access_token"], tester["access_token"], guest):
        assert client.get("/v1/account", headers=bearer(token)).status_code == 401
    for refresh_token, client_id in (
        (owner["refresh_token"], world.public_id),
        (tester["refresh_token"], world.test_public_id),
    ):
        again = client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
        )
        assert again.status_code in (400, 401)
    assert _guest(client, world.live_prt).status_code == 400
    assert _guest(client, world.other_prt).status_code == 200  # another account is untouched
    relogin = password_grant(client, world, "alice", PASSWORD)
    assert relogin.status_code in (400, 401) and "access_token" not in relogin.get_json()
    with app.app_context():
        assert db.session.get(Account, world.other_id).status == "active"


@pytest.mark.parametrize("role", ["administrator", "developer", "customer"])
def test_only_the_owner_deletes_the_account(app, client, world, role):
    """Any other role gets 403 and the account stays active."""
    token = role_token(app, client, world, role)
    assert client.delete("/v1/account", headers=bearer(token)).status_code == 403
    with app.app_context():
        assert db.session.get(Account, world.live_id).status == "active"


def test_deleting_from_a_test_account_token_is_422(app, client, world):
    """The owner of the test account cannot delete it alone (it goes with the live one)."""
    token = login(client, world, username="tess")["access_token"]
    response = client.delete("/v1/account", headers=bearer(token))
    assert response.status_code == 422
    with app.app_context():
        assert db.session.get(Account, world.test_id).status == "active"


def _count_users(app: Any, account_id: str) -> int:
    with app.app_context():
        return len(
            db.session.scalars(db.select(User.id).where(User.account_id == account_id)).all()
        )


def test_reset_wipes_the_test_accounts_users_but_the_caller(app, client, world):
    """POST /v1/account_resets with a test token: other test users go (with their logins),
    the caller stays, and the live account's users are untouched."""
    role_token(app, client, world, "customer", account_id=world.test_id)  # logs in: has history
    make_user(app, world.test_id, "t-two")
    live_before = _count_users(app, world.live_id)
    token = login(client, world, username="tess")["access_token"]
    response = client.post("/v1/account_resets", headers=bearer(token))
    assert response.status_code == 204
    with app.app_context():
        left = db.session.scalars(db.select(User.username).where(User.account_id == world.test_id))
        assert list(left) == ["tess"]
        records = db.session.scalars(db.select(LoginRecord.user_id)).all()
        assert set(records) <= {world.tess_id, world.alice_id, None}
    assert _count_users(app, world.live_id) == live_before
    assert client.get("/v1/account", headers=bearer(token)).status_code == 200


def test_reset_of_a_live_account_is_422(app, client, world):
    """A live account is never wiped: 422 unprocessable_for_live_account, nothing removed."""
    before = _count_users(app, world.live_id)
    token = login(client, world)["access_token"]
    response = client.post("/v1/account_resets", headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == "unprocessable_for_live_account"
    assert _count_users(app, world.live_id) == before


def test_reset_is_refused_to_customers(app, client, world):
    """A customer of the test account gets 403 and nobody is removed."""
    token = role_token(app, client, world, "customer", account_id=world.test_id)
    before = _count_users(app, world.test_id)
    assert client.post("/v1/account_resets", headers=bearer(token)).status_code == 403
    assert _count_users(app, world.test_id) == before
