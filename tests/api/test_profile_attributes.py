"""Profile attributes of seed 004 on the User resource: createdAt, updatedAt, lastLoginAt
and emailAddedAt (read-only), and allowSupportLogin, the user's own choice."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from factories import PASSWORD, make_user
from oauth_helpers import bearer, login, password_grant
from verification_helpers import role_token

from authserver.platform.extensions import db
from authserver.platform.models import User

MEDIA = "application/vnd.api+json"


def _patch(client: Any, token: str, path: str, attributes: dict[str, Any], **data: Any) -> Any:
    body = {"data": {"type": "User", **data, "attributes": attributes}}
    return client.patch(path, data=json.dumps(body), content_type=MEDIA, headers=bearer(token))


def _me(client: Any, token: str) -> dict[str, Any]:
    response = client.get("/v1/user", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json()["data"]["attributes"])


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_times_are_shown_and_a_login_moves_only_last_login_at(app, client, world):
    """A new user shows createdAt, updatedAt and emailAddedAt; a login sets lastLoginAt
    and leaves updatedAt alone; a failed login changes nothing."""
    make_user(app, world.live_id, "bob", email="bob@example.com")
    token = login(client, world, username="bob")["access_token"]
    first = _me(client, token)
    assert first["createdAt"] and first["emailAddedAt"] and first["lastLoginAt"]
    assert _time(first["lastLoginAt"]) >= _time(first["createdAt"])
    password_grant(client, world, "bob", "wrong-password")
    assert _me(client, token)["lastLoginAt"] == first["lastLoginAt"]
    login(client, world, username="bob")
    again = _me(client, token)
    assert _time(again["lastLoginAt"]) > _time(first["lastLoginAt"])
    assert again["updatedAt"] == first["updatedAt"]


def test_a_new_email_moves_email_added_at_and_updated_at(app, client, world):
    """Changing the email (with the password) gives a new emailAddedAt; clearing it, null."""
    make_user(app, world.live_id, "bob", email="bob@example.com")
    token = login(client, world, username="bob")["access_token"]
    before = _me(client, token)
    changed = _patch(
        client,
        token,
        "/v1/user",
        {"email": "robert@example.com", "currentPassword": PASSWORD},
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    after = changed.get_json()["data"]["attributes"]
    assert _time(after["emailAddedAt"]) > _time(before["emailAddedAt"])
    assert _time(after["updatedAt"]) > _time(before["updatedAt"])


def test_a_user_never_logged_in_has_null_last_login(app, client, world):
    """lastLoginAt is null until the first login; a user without email has no emailAddedAt."""
    user_id = make_user(app, world.live_id, "quiet")
    owner = login(client, world)["access_token"]
    attrs = client.get(f"/v1/users/{user_id}", headers=bearer(owner)).get_json()["data"]
    assert attrs["attributes"]["lastLoginAt"] is None
    assert attrs["attributes"]["emailAddedAt"] is None


def test_allow_support_login_is_the_users_own_choice(app, client, world):
    """Default false; the user turns it on and off with PATCH /v1/user; an owner cannot set
    it for anyone (422 unknown_attribute) and it stays as the user left it."""
    user_id = make_user(app, world.live_id, "bob")
    token = login(client, world, username="bob")["access_token"]
    assert _me(client, token)["allowSupportLogin"] is False
    on = _patch(client, token, "/v1/user", {"allowSupportLogin": True})
    assert on.status_code == 200 and on.get_json()["data"]["attributes"]["allowSupportLogin"]
    owner = login(client, world)["access_token"]
    refused = _patch(
        client, owner, f"/v1/users/{user_id}", {"allowSupportLogin": False}, id=user_id
    )
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["code"] == "unknown_attribute"
    with app.app_context():
        assert db.session.get(User, user_id).allow_support_login is True


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ({"allowSupportLogin": "yes"}, "invalid_type"),
        ({"allowSupportLogin": None}, "invalid_type"),
        ({"allowSupportLogin": 1}, "invalid_type"),
        ({"createdAt": "2020-01-01T00:00:00Z"}, "unknown_attribute"),
        ({"lastLoginAt": None}, "unknown_attribute"),
        ({"emailAddedAt": "2020-01-01T00:00:00Z"}, "unknown_attribute"),
        ({"updatedAt": "2020-01-01T00:00:00Z"}, "unknown_attribute"),
    ],
)
def test_bad_or_read_only_profile_attributes_are_refused(app, client, world, attributes, code):
    """A non-boolean allowSupportLogin and any of the read-only times are 422 with a
    pointer; nothing changes."""
    user_id = make_user(app, world.live_id, "bob")
    token = login(client, world, username="bob")["access_token"]
    response = _patch(client, token, "/v1/user", attributes)
    assert response.status_code == 422, response.get_data(as_text=True)
    [error] = response.get_json()["errors"]
    assert error["code"] == code
    assert error["source"]["pointer"] == f"/data/attributes/{next(iter(attributes))}"
    with app.app_context():
        assert db.session.get(User, user_id).allow_support_login is False


def test_an_administrator_sees_the_times_of_members(app, client, world):
    """The times are on /v1/users too (an administrator's view of the account)."""
    make_user(app, world.live_id, "bob")
    admin = role_token(app, client, world, "administrator")
    listed = client.get("/v1/users?sort=-createdAt", headers=bearer(admin)).get_json()["data"]
    assert all("createdAt" in u["attributes"] and "lastLoginAt" in u["attributes"] for u in listed)
