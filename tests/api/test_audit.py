"""Audit log through HTTP: each administrative change leaves one row in its own
transaction, and GET /v1/audit_events lists an account's rows to its owner and
administrators only, newest first, filtered and paginated.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from factories import World, make_email_otp_user, make_user
from flask import Flask
from oauth_helpers import bearer, login
from verification_helpers import (
    OTHER_ROLES,
    call,
    client_token,
    document,
    guest_token,
    one_error,
    role_token,
)

from authserver.cli import cli
from authserver.platform.extensions import db
from authserver.platform.models import Account, AuditEvent

IP = "198.51.100.7"
NEW_PASSWORD = "a brand new passphrase 42"


def recorded(app: Flask) -> list[dict[str, Any]]:
    """Every audit row made through a front door (setup through factories is `system`),
    newest first."""
    with app.app_context():
        rows = db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.actor_type != "system")
            .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        ).all()
        return [
            {
                "action": r.action,
                "actor": (r.actor_type, r.actor_id),
                "ip": r.ip,
                "account": r.account_id,
                "target": (r.target_type, r.target_id),
                "changed": r.changed,
            }
            for r in rows
        ]


def forget_setup(app: Flask) -> None:
    """Drop the rows the test's setup wrote (factories act as `system`), so a listing
    shows only what the test did through the API."""
    with app.app_context():
        db.session.execute(sa.delete(AuditEvent))
        db.session.commit()


def reset_test_account(client: Any, world: World) -> tuple[str, Any]:
    """tess (owner of the test account) resets it: (her token, the response)."""
    token = login(client, world, username="tess")["access_token"]
    response = client.post(
        "/v1/account_resets", headers=bearer(token), environ_base={"REMOTE_ADDR": IP}
    )
    return token, response


def one_new(app: Flask, before: int) -> dict[str, Any]:
    """The one row a change added (asserts it is exactly one)."""
    rows = recorded(app)
    assert len(rows) == before + 1, rows
    return rows[0]


def patch_user(client: Any, token: str, user_id: str, **attributes: Any) -> Any:
    body = {"data": {"type": "User", "id": user_id, "attributes": attributes}}
    return call(client, "PATCH", f"/v1/users/{user_id}", body, token, ip=IP)


def test_each_administrative_change_leaves_one_row(app, client, world):
    """Creating, changing (role, password, someone else's two-step method), deleting a
    user, changing the account, a new publishable token and deleting the account: one row
    each, naming the acting user, the IP, the target and the changed fields, never a value."""
    owner = login(client, world)["access_token"]
    me = ("user", world.alice_id)

    response = call(
        client,
        "POST",
        "/v1/users",
        document("User", username="bob", password=NEW_PASSWORD, role="developer"),
        owner,
        ip=IP,
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    bob = response.get_json()["data"]["id"]
    assert one_new(app, 0) == {
        "action": "user.create",
        "actor": me,
        "ip": IP,
        "account": world.live_id,
        "target": ("User", bob),
        "changed": ["password", "role", "username"],
    }

    assert (
        patch_user(client, owner, bob, role="manager", password=NEW_PASSWORD + "!").status_code
        == 200
    )
    row = one_new(app, 1)
    assert (row["action"], row["target"], row["changed"]) == (
        "user.update",
        ("User", bob),
        ["password", "role"],
    )

    eve = make_email_otp_user(app, world.live_id, "eve")
    assert patch_user(client, owner, eve, authMethod="simple").status_code == 200
    row = one_new(app, 2)
    assert (row["action"], row["target"], row["changed"]) == (
        "user.update",
        ("User", eve),
        ["auth_method"],
    )

    assert call(client, "DELETE", f"/v1/users/{bob}", None, owner, ip=IP).status_code == 204
    row = one_new(app, 3)
    assert (row["action"], row["target"], row["changed"]) == ("user.delete", ("User", bob), [])

    account_patch = {
        "data": {"type": "Account", "id": world.live_id, "attributes": {"caption": "Hi"}}
    }
    assert call(client, "PATCH", "/v1/account", account_patch, owner, ip=IP).status_code == 200
    row = one_new(app, 4)
    assert (row["action"], row["target"], row["changed"]) == (
        "account.update",
        ("Account", world.live_id),
        ["caption"],
    )

    response = call(client, "POST", "/v1/account/publishable_token", None, owner, ip=IP)
    assert response.status_code == 201
    row = one_new(app, 5)
    assert (row["action"], row["target"]) == (
        "account.publishable_token.regenerate",
        ("Account", world.live_id),
    )

    assert call(client, "DELETE", "/v1/account", None, owner, ip=IP).status_code == 204
    row = one_new(app, 6)
    assert (row["action"], row["actor"], row["ip"], row["account"]) == (
        "account.delete",
        me,
        IP,
        world.live_id,
    )
    assert NEW_PASSWORD not in json.dumps(recorded(app))  # names, never values


def test_resetting_the_test_account_is_recorded_in_the_test_account(app, client, world):
    """POST /v1/account_resets leaves one `account.reset` row in the test account."""
    make_user(app, world.test_id, "gone", role="customer")
    _, response = reset_test_account(client, world)
    assert response.status_code == 204
    row = one_new(app, 0)
    assert (row["action"], row["actor"], row["account"], row["target"]) == (
        "account.reset",
        ("user", world.tess_id),
        world.test_id,
        ("Account", world.test_id),
    )


def test_a_client_token_is_recorded_as_its_client(app, client, world):
    """A change made with a client-credentials token names the client as the actor."""
    token = client_token(client, world)
    body = {"data": {"type": "Account", "id": world.live_id, "attributes": {"caption": "C"}}}
    assert call(client, "PATCH", "/v1/account", body, token, ip=IP).status_code == 200
    row = one_new(app, 0)
    assert (row["action"], row["actor"], row["ip"]) == (
        "account.update",
        ("client", world.conf_id),
        IP,
    )


def test_sign_ups_and_own_changes_are_not_administrative(app, client, world):
    """A guest signing up a customer and a user changing their own profile add no row."""
    guest = guest_token(client, world.live_prt)
    response = call(
        client, "POST", "/v1/users", document("User", username="sam", password=NEW_PASSWORD), guest
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    owner = login(client, world)["access_token"]
    body = {"data": {"type": "User", "id": world.alice_id, "attributes": {"name": "Alice"}}}
    assert call(client, "PATCH", "/v1/user", body, owner).status_code == 200
    assert recorded(app) == []


def test_a_refused_change_leaves_no_row(app, client, world):
    """A change refused by validation (422) or by role (403) writes no audit row."""
    owner = login(client, world)["access_token"]
    bob = make_user(app, world.live_id, "bob", role="developer")
    assert patch_user(client, owner, bob, email="not an email").status_code == 422
    customer = role_token(app, client, world, "customer")
    body = {"data": {"type": "Account", "id": world.live_id, "attributes": {"caption": "X"}}}
    assert call(client, "PATCH", "/v1/account", body, customer).status_code == 403
    assert recorded(app) == []


@pytest.fixture
def refuse_account_commits(app: Flask):
    """A deferred PostgreSQL trigger that fails, at COMMIT, any transaction that updated
    an account: the change and everything written with it must roll back together."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("deferred constraint triggers are PostgreSQL's")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION audit_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'unique_violation'; "
                "END $$"
            )
            conn.exec_driver_sql(
                "CREATE CONSTRAINT TRIGGER audit_test_refuse AFTER UPDATE ON accounts "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_test_refuse()"
            )
    try:
        yield
    finally:
        with app.app_context(), db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER audit_test_refuse ON accounts")
            conn.exec_driver_sql("DROP FUNCTION audit_test_refuse()")


def test_a_change_that_rolls_back_at_commit_leaves_no_row(
    app, client, world, refuse_account_commits
):
    """PATCH /v1/account whose COMMIT fails (409) leaves neither the change nor an audit
    row: the row is written in the change's own transaction, not beside it."""
    owner = login(client, world)["access_token"]
    body = {"data": {"type": "Account", "id": world.live_id, "attributes": {"caption": "Nope"}}}
    response = call(client, "PATCH", "/v1/account", body, owner, ip=IP)
    assert response.status_code == 409, response.get_data(as_text=True)
    assert recorded(app) == []
    with app.app_context():
        assert db.session.get(Account, world.live_id).caption != "Nope"


# ------------------------------------------------------------------ listing


def make_history(app: Flask, client: Any, world: World) -> tuple[str, list[str]]:
    """An owner token and three users it created then renamed: six rows."""
    owner = login(client, world)["access_token"]
    ids = []
    for name in ("u1", "u2", "u3"):
        response = call(
            client,
            "POST",
            "/v1/users",
            document("User", username=name, password=NEW_PASSWORD, role="customer"),
            owner,
        )
        assert response.status_code == 201
        ids.append(response.get_json()["data"]["id"])
    for user_id in ids:
        assert patch_user(client, owner, user_id, name="Renamed").status_code == 200
    return owner, ids


def listing(client: Any, token: str, query: str = "") -> Any:
    return client.get(f"/v1/audit_events{query}", headers=bearer(token))


def test_list_newest_first_with_filters_and_pagination(app, client, world):
    """The owner sees the account's rows newest first; filters by action, target type and
    target id narrow them; page[size] pages them with links that keep the filters."""
    forget_setup(app)
    owner, ids = make_history(app, client, world)
    response = listing(client, owner)
    assert response.status_code == 200
    body = response.get_json()
    assert body["meta"] == {"totalCount": 6}
    rows = [item["attributes"] for item in body["data"]]
    assert {item["type"] for item in body["data"]} == {"AuditEvent"}
    assert [(r["action"], r["targetId"]) for r in rows] == [
        *(("user.update", i) for i in reversed(ids)),
        *(("user.create", i) for i in reversed(ids)),
    ]
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    assert rows[0]["actorType"] == "user" and rows[0]["actorId"] == world.alice_id
    assert rows[0]["changed"] == ["name"]

    page = listing(client, owner, "?filter[action]=user.create&page[size]=2").get_json()
    assert page["meta"] == {"totalCount": 3}
    assert [item["attributes"]["targetId"] for item in page["data"]] == [ids[2], ids[1]]
    assert "filter%5Baction%5D=user.create" in page["links"]["next"]
    last = client.get(page["links"]["next"], headers=bearer(owner)).get_json()
    assert [item["attributes"]["targetId"] for item in last["data"]] == [ids[0]]

    one = listing(client, owner, f"?filter[targetType]=User&filter[targetId]={ids[1]}")
    assert [item["attributes"]["action"] for item in one.get_json()["data"]] == [
        "user.update",
        "user.create",
    ]
    assert listing(client, owner, "?filter[targetType]=Account").get_json()["data"] == []


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("?filter[action]=user.explode", "filter[action]"),
        ("?filter[targetType]=", "filter[targetType]"),
        ("?filter[targetId]=" + "x" * 256, "filter[targetId]"),
        ("?filter[targetId]=a%00b", "filter[targetId]"),
        ("?page[size]=0", "page[size]"),
    ],
)
def test_bad_query_parameters_are_400(app, client, world, query, parameter):
    """A filter or page parameter out of range is a 400 naming the parameter."""
    owner = login(client, world)["access_token"]
    error = one_error(listing(client, owner, query), 400, "invalid_parameter")
    assert error["source"] == {"parameter": parameter}


def test_only_owner_and_administrators_may_list(app, client, world):
    """Every other role, a guest and a client token get 403; no token gets 401; an
    administrator gets 200."""
    for role in OTHER_ROLES:
        token = role_token(app, client, world, role)
        assert listing(client, token).status_code == 403, role
    assert listing(client, guest_token(client, world.live_prt)).status_code == 403
    assert listing(client, client_token(client, world)).status_code == 403
    assert client.get("/v1/audit_events").status_code == 401
    admin = role_token(app, client, world, "administrator")
    assert listing(client, admin).status_code == 200


def test_an_account_sees_only_its_own_events(app, client, world):
    """Another account's administrator and the paired test account's owner see none of
    the live account's rows, and the live owner none of theirs."""
    make_user(app, world.other_id, "oadmin", role="administrator")
    make_user(app, world.test_id, "gone", role="customer")
    forget_setup(app)
    owner, _ = make_history(app, client, world)
    tess, response = reset_test_account(client, world)
    assert response.status_code == 204
    other_admin = login(
        client, world, username="oadmin", aid=world.other_id, client_id=world.other_public_id
    )["access_token"]
    assert listing(client, other_admin).get_json()["meta"] == {"totalCount": 0}
    test_rows = listing(client, tess).get_json()
    assert [item["attributes"]["action"] for item in test_rows["data"]] == ["account.reset"]
    assert listing(client, owner).get_json()["meta"] == {"totalCount": 6}


def test_client_changes_are_recorded(app, client, world):
    """Registering, changing (disable included), rotating the secret of and deleting an
    OAuth client through /v1/clients and the CLI: one row each, never the secret."""
    owner = login(client, world)["access_token"]
    me = ("user", world.alice_id)
    body = document("Client", name="Shop", redirectUris=["https://shop.example/cb"])
    created = call(client, "POST", "/v1/clients", body, owner, ip=IP)
    assert created.status_code == 201, created.get_data(as_text=True)
    client_id = created.get_json()["data"]["id"]
    secret = created.get_json()["data"]["attributes"]["clientSecret"]
    assert one_new(app, 0)["action"] == "client.create"

    patch = {"data": {"type": "Client", "id": client_id, "attributes": {"status": "disabled"}}}
    assert call(client, "PATCH", f"/v1/clients/{client_id}", patch, owner, ip=IP).status_code == 200
    assert one_new(app, 1) == {
        "action": "client.update",
        "actor": me,
        "ip": IP,
        "account": world.live_id,
        "target": ("OAuthClient", client_id),
        "changed": ["status"],
    }
    rotated = app.test_cli_runner().invoke(cli, ["clients", "rotate-secret", client_id])
    assert rotated.exit_code == 0, rotated.output
    row = one_new(app, 2)
    assert row["action"] == "client.secret.rotate" and row["actor"][0] == "cli"
    assert call(client, "DELETE", f"/v1/clients/{client_id}", None, owner, ip=IP).status_code == 204
    assert one_new(app, 3)["action"] == "client.delete"
    assert secret not in json.dumps(recorded(app))
