"""Seed behaviours the API now follows: PATCH /v1/user without data.id (seed 000's own
example), a default apiVersion on new accounts, and the account's requireUniqueEmails
(owner/administrator; enforced on create and update, also when two requests race)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from factories import PASSWORD, make_account, make_user
from oauth_helpers import bearer, login
from sqlalchemy.exc import IntegrityError
from verification_helpers import role_token

from authserver.identity import accounts, unique_emails, users
from authserver.platform.extensions import db
from authserver.platform.models import Account, User

MEDIA = "application/vnd.api+json"


def _send(client: Any, method: str, path: str, token: str, body: Any) -> Any:
    return client.open(
        path, method=method, data=json.dumps(body), content_type=MEDIA, headers=bearer(token)
    )


def _account_patch(client: Any, token: str, account_id: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": "Account", "id": account_id, "attributes": attributes}}
    return _send(client, "PATCH", "/v1/account", token, body)


def _create(client: Any, token: str, username: str, email: str) -> Any:
    attributes = {"username": username, "password": PASSWORD, "role": "customer", "email": email}
    return _send(
        client, "POST", "/v1/users", token, {"data": {"type": "User", "attributes": attributes}}
    )


def _require_unique(app: Any, account_id: str) -> None:
    with app.app_context():
        account = db.session.get(Account, account_id)
        accounts.update_account(account, {"require_unique_emails": True})


# --- PATCH /v1/user as the seeds send it --------------------------------------------------


def test_seed_example_without_id_updates_the_current_user(app, client, world):
    """Seed 000's "Update current user" body (no data.id) is taken: 200, name changed."""
    token = login(client, world)["access_token"]
    body = {"data": {"type": "User", "attributes": {"name": "Captain Good"}}}
    response = _send(client, "PATCH", "/v1/user", token, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["name"] == "Captain Good"


@pytest.mark.parametrize(("given", "status"), [("someone-else", 409), (7, 400), (None, 400)])
def test_a_wrong_id_on_the_current_user_is_still_refused(app, client, world, given, status):
    """A data.id that is not the current user's (or not a string) is refused, nothing
    changes; /v1/users/{id} still requires the id."""
    token = login(client, world)["access_token"]
    body = {"data": {"type": "User", "id": given, "attributes": {"name": "Captain Good"}}}
    assert _send(client, "PATCH", "/v1/user", token, body).status_code == status
    body = {"data": {"type": "User", "attributes": {"name": "Captain Good"}}}
    path = f"/v1/users/{world.alice_id}"
    assert _send(client, "PATCH", path, token, body).status_code == 400
    with app.app_context():
        assert db.session.get(User, world.alice_id).name is None


def test_new_accounts_get_the_current_api_version(app, client, world):
    """A new account (and its test twin) says which /v1 behaviour it is on."""
    pair = make_account(app, "Fresh")
    with app.app_context():
        for account_id in (pair.live_id, pair.test_id):
            assert db.session.get(Account, account_id).api_version == accounts.CURRENT_API_VERSION
    token = login(client, world)["access_token"]
    attrs = client.get("/v1/account", headers=bearer(token)).get_json()["data"]["attributes"]
    assert attrs["apiVersion"] == accounts.CURRENT_API_VERSION


# --- requireUniqueEmails ------------------------------------------------------------------


def test_an_owner_requires_unique_emails_and_creation_then_refuses_a_shared_one(app, client, world):
    """Off by default: two users may share an email. On: a third with the same address in
    any case is 409 email_taken pointing at email, and no user is made."""
    owner = login(client, world)["access_token"]
    assert _create(client, owner, "ann", "same@example.com").status_code == 201
    response = _account_patch(client, owner, world.live_id, {"requireUniqueEmails": True})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["requireUniqueEmails"] is True
    refused = _create(client, owner, "ben", "SAME@example.com")
    assert refused.status_code == 409
    [error] = refused.get_json()["errors"]
    assert (error["code"], error["source"]["pointer"]) == ("email_taken", "/data/attributes/email")
    with app.app_context():
        assert db.session.scalar(db.select(User).where(User.username == "ben")) is None


def test_unique_emails_hold_on_update_by_an_administrator_and_by_the_user(app, client, world):
    """Changing a user's email to another user's is 409, by an administrator or by the
    user themselves; the test account (its own users) follows the setting too."""
    _require_unique(app, world.live_id)
    make_user(app, world.live_id, "ann", email="ann@example.com")
    bob = make_user(app, world.live_id, "bob", email="bob@example.com")
    admin = role_token(app, client, world, "administrator")
    body = {"data": {"type": "User", "id": bob, "attributes": {"email": "Ann@example.com"}}}
    assert _send(client, "PATCH", f"/v1/users/{bob}", admin, body).status_code == 409
    token = login(client, world, username="bob")["access_token"]
    mine = {"email": "ann@example.com", "currentPassword": PASSWORD}
    own = {"data": {"type": "User", "attributes": mine}}
    assert _send(client, "PATCH", "/v1/user", token, own).status_code == 409
    with app.app_context():
        assert db.session.get(User, bob).email == "bob@example.com"
        assert db.session.get(Account, world.test_id).require_unique_emails is True


def test_turning_it_on_is_refused_while_users_share_an_email(app, client, world):
    """Two users with one address (any case): 409 emails_not_unique, the setting stays
    off; after one changes, it can be turned on. Turning it off frees the address."""
    make_user(app, world.live_id, "ann", email="dup@example.com")
    ben = make_user(app, world.live_id, "ben", email="DUP@example.com")
    owner = login(client, world)["access_token"]
    refused = _account_patch(client, owner, world.live_id, {"requireUniqueEmails": True})
    assert refused.status_code == 409
    assert refused.get_json()["errors"][0]["code"] == "emails_not_unique"
    with app.app_context():
        assert db.session.get(Account, world.live_id).require_unique_emails is False
    deleted = client.delete(f"/v1/users/{ben}", headers=bearer(owner))
    assert deleted.status_code == 204
    assert (
        _account_patch(client, owner, world.live_id, {"requireUniqueEmails": True}).status_code
        == 200
    )
    assert _create(client, owner, "cat", "dup@example.com").status_code == 409
    assert (
        _account_patch(client, owner, world.live_id, {"requireUniqueEmails": False}).status_code
        == 200
    )
    assert _create(client, owner, "cat", "dup@example.com").status_code == 201


@pytest.mark.parametrize("role", ["developer", "manager", "customer"])
def test_only_owner_or_administrator_may_change_it(app, client, world, role):
    """A developer may edit the account but not this setting (403 pointing at it); other
    roles may not edit the account at all."""
    token = role_token(app, client, world, role)
    response = _account_patch(client, token, world.live_id, {"requireUniqueEmails": True})
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(Account, world.live_id).require_unique_emails is False


@pytest.mark.parametrize("value", ["yes", None, 1, []])
def test_a_non_boolean_is_refused(app, client, world, value):
    """requireUniqueEmails takes true or false only: 422."""
    owner = login(client, world)["access_token"]
    response = _account_patch(client, owner, world.live_id, {"requireUniqueEmails": value})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["source"]["pointer"] == (
        "/data/attributes/requireUniqueEmails"
    )


def test_two_concurrent_creations_with_one_email_make_one_user(app, world):
    """Two POSTs with different usernames and the same email at once: one 201, one 409."""
    _require_unique(app, world.live_id)
    owner = login(app.test_client(), world)["access_token"]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post(name: str) -> None:
        own = app.test_client()
        barrier.wait()
        statuses.append(_create(own, owner, name, "race@example.com").status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in ("racer1", "racer2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409]
    with app.app_context():
        count = db.session.scalar(
            db.select(db.func.count()).select_from(User).where(User.email == "race@example.com")
        )
        assert count == 1


def test_the_database_refuses_a_second_key_even_past_the_checks(app, world):
    """The unique index is the last word (SQLite has no row lock): a row slipped in with a
    taken key is refused, and that refusal reads as email_taken."""
    _require_unique(app, world.live_id)
    make_user(app, world.live_id, "ann", email="ann@example.com")
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        db.session.add(
            User(account=account, username="sly", role="customer", email_key="ann@example.com")
        )
        with pytest.raises(IntegrityError) as caught:
            db.session.flush()
        db.session.rollback()
        assert users.user_conflict(caught.value).code == unique_emails.email_taken().code
