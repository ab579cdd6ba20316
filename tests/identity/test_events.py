"""Events not covered by a resource's own tests: each fires once, after its transaction
committed (the receiver reads the state through another connection), with its payload."""

from __future__ import annotations

from typing import Any

from oauth_helpers import bearer, login, password_grant
from verification_helpers import call, mails, record_events

from authserver.identity import accounts
from authserver.platform.extensions import db
from authserver.platform.models import Account, LoginRecord, User


def _committed(app: Any, statement: Any) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(statement).all()


def test_account_create_fires_after_both_accounts_committed(app):
    """identity.account.create.success carries the live account; both rows are committed."""
    seen = record_events(
        app,
        "identity.account.create.success",
        lambda p: (
            p["account"].mode,
            len(_committed(app, db.select(Account.id).where(Account.name == "Evented"))),
        ),
    )
    with app.app_context():
        accounts.create_account("Evented")
    assert seen == [("live", 2)]


def test_account_delete_fires_after_the_status_committed(app, client, world):
    """DELETE /v1/account emits identity.account.delete.success once, after commit."""
    seen = record_events(
        app,
        "identity.account.delete.success",
        lambda p: _committed(app, db.select(Account.status).where(Account.id == p["account"].id))[
            0
        ][0],
    )
    token = login(client, world)["access_token"]
    assert client.delete("/v1/account", headers=bearer(token)).status_code == 204
    assert seen == ["deleted"]


def test_account_reset_fires_after_the_users_are_gone(app, client, world):
    """POST /v1/account_resets emits identity.account_reset.create.success after commit,
    naming the test account and the caller."""
    seen = record_events(
        app,
        "identity.account_reset.create.success",
        lambda p: (
            p["account"].id,
            p["user"].id,
            len(_committed(app, db.select(User.id).where(User.account_id == p["account"].id))),
        ),
    )
    token = login(client, world, username="tess")["access_token"]
    assert call(client, "POST", "/v1/account_resets", "", token).status_code == 204
    assert seen == [(world.test_id, world.tess_id, 1)]


def test_login_failure_fires_after_its_record_committed(app, client, world):
    """A wrong password emits identity.login.failure (user, account, reason) after the
    login record is committed; an unknown username has no user."""
    seen = record_events(
        app,
        "identity.login.failure",
        lambda p: (
            p["user"].id if p["user"] else None,
            p["account"].id if p["account"] else None,
            p["reason"],
            len(_committed(app, db.select(LoginRecord.id).where(LoginRecord.success.is_(False)))),
        ),
    )
    for username in ("alice", "nobody"):
        response = password_grant(client, world, username, "wrong password")
        assert response.status_code == 400
    assert seen == [
        (world.alice_id, world.live_id, "bad_credentials", 1),
        (None, world.live_id, "bad_credentials", 2),
    ]


def test_admin_changing_the_two_step_method_tells_the_user(app, client, world):
    """An administrator switching a user's two-step method emails the user about it."""
    owner = login(client, world)["access_token"]
    created = call(
        client,
        "POST",
        "/v1/users",
        {
            "data": {
                "type": "User",
                "attributes": {
                    "username": "uma",
                    "role": "customer",
                    "password": "uma passphrase 1",
                    "email": "uma@example.com",
                    "emailVerified": True,
                },
            }
        },
        owner,
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["data"]["id"]
    body = {"data": {"type": "User", "id": user_id, "attributes": {"authMethod": "tfa_email"}}}
    assert call(client, "PATCH", f"/v1/users/{user_id}", body, owner).status_code == 200
    [mail] = mails(app, "identity.tfa.update.success")
    assert mail.to == "uma@example.com"
    body["data"]["attributes"] = {"name": "Uma"}
    assert call(client, "PATCH", f"/v1/users/{user_id}", body, owner).status_code == 200
    assert len(mails(app, "identity.tfa.update.success")) == 1
