"""Global users and accounts: POST /v1/accounts by a global user, /v1/memberships (owner
and administrators) and /v1/user/memberships (a global user's own accounts, leaving).

Roles, the owner rules, token revocation on role change and removal, the last-owner rule,
account isolation and bad input.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import PASSWORD, World, make_user
from oauth_helpers import bearer, login
from verification_helpers import guest_token, link_token, mails, role_token

from authserver.platform.extensions import db
from authserver.platform.models import Account, AccountMembership, AuditEvent, User

MEDIA = "application/vnd.api+json"


def _send(client: Any, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None and not isinstance(body, str | bytes) else body
    return client.open(path, method=method, data=data, content_type=MEDIA, headers=bearer(token))


def global_login(client: Any, world: World, username: str) -> str:
    """A global login (no aid) through the live account's public client: its access token."""
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": PASSWORD,
            "client_id": world.public_id,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["access_token"])


def _memberships(app: Any, account_id: str) -> dict[str, str]:
    """{user id: role} of the account's memberships (a fresh read)."""
    with app.app_context():
        rows = db.session.scalars(
            db.select(AccountMembership).where(AccountMembership.account_id == account_id)
        )
        return {m.user_id: m.role for m in rows}


def _add(client: Any, token: str, username: Any, role: Any = "manager") -> Any:
    body = {"data": {"type": "Membership", "attributes": {"username": username, "role": role}}}
    return _send(client, "POST", "/v1/memberships", token, body)


@pytest.fixture
def gina(app: Any) -> str:
    """A global user who belongs to no account yet."""
    return make_user(app, None, "gina@example.com", role="customer", email="gina@example.com")


@pytest.fixture
def owner(app: Any, client: Any, world: World) -> str:
    """An owner's token for the live account (alice)."""
    return str(login(client, world, username="alice")["access_token"])


# --- POST /v1/accounts ------------------------------------------------------------------


def test_global_user_creates_an_account_pair_and_owns_both(app, client, world, gina):
    """POST /v1/accounts makes a live account and its test twin; the caller owns both and
    can log into the new account as owner."""
    token = global_login(client, world, "gina@example.com")
    body = {"data": {"type": "Account", "attributes": {"name": "Gina's shop"}}}
    response = _send(client, "POST", "/v1/accounts", token, body)
    assert response.status_code == 201, response.get_data(as_text=True)
    data = response.get_json()["data"]
    live_id, test_id = data["id"], data["attributes"]["testAccountId"]
    assert data["attributes"]["name"] == "Gina's shop" and data["attributes"]["mode"] == "live"
    assert _memberships(app, live_id) == {gina: "owner"}
    assert _memberships(app, test_id) == {gina: "owner"}
    with app.app_context():
        actions = set(db.session.scalars(db.select(AuditEvent.action)))
    assert {"account.create", "membership.create"} <= actions
    mine = client.get("/v1/user/memberships", headers=bearer(token)).get_json()
    assert {m["relationships"]["account"]["data"]["id"] for m in mine["data"]} == {
        live_id,
        test_id,
    }


def test_account_user_may_not_create_accounts(app, client, world, owner):
    """An account user (even an owner) gets 403 from POST /v1/accounts; nothing is made."""
    with app.app_context():
        before = db.session.scalar(db.select(db.func.count()).select_from(Account))
    body = {"data": {"type": "Account", "attributes": {"name": "Nope"}}}
    response = _send(client, "POST", "/v1/accounts", owner, body)
    assert response.status_code == 403
    assert response.get_json()["errors"][0]["code"] == "not_global_user"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Account)) == before


@pytest.mark.parametrize(
    ("attributes", "status"),
    [
        ({}, 422),
        ({"name": ""}, 422),
        ({"name": "   "}, 422),
        ({"name": "x" * 256}, 422),
        ({"name": 7}, 422),
        ({"name": "ok", "mode": "test"}, 422),
    ],
)
def test_create_account_refuses_bad_input(app, client, world, gina, attributes, status):
    """A missing, blank, long or mistyped name or an unknown attribute is a 4xx; nothing made."""
    token = global_login(client, world, "gina@example.com")
    body = {"data": {"type": "Account", "attributes": attributes}}
    response = _send(client, "POST", "/v1/accounts", token, body)
    assert response.status_code == status, response.get_data(as_text=True)
    assert _memberships(app, world.live_id) == {}
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AccountMembership)) == 0


def test_account_creation_is_throttled_per_user(app, client, world, gina):
    """The eleventh account in an hour is 429 with Retry-After."""
    token = global_login(client, world, "gina@example.com")
    body = {"data": {"type": "Account", "attributes": {"name": "Shop"}}}
    for _ in range(10):
        assert _send(client, "POST", "/v1/accounts", token, body).status_code == 201
    response = _send(client, "POST", "/v1/accounts", token, body)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


# --- /v1/memberships ------------------------------------------------------------------


def test_owner_adds_lists_changes_and_removes_a_member(app, client, world, gina, owner):
    """Add by username with a role (201), list, change the role (200), remove (204)."""
    response = _add(client, owner, " Gina@Example.com ", "manager")
    assert response.status_code == 201, response.get_data(as_text=True)
    made = response.get_json()["data"]
    assert made["attributes"]["role"] == "manager" and made["attributes"]["username"] == (
        "gina@example.com"
    )
    assert response.headers["Location"] == f"/v1/memberships/{made['id']}"
    listed = client.get("/v1/memberships", headers=bearer(owner)).get_json()
    assert [m["id"] for m in listed["data"]] == [made["id"]] and listed["meta"]["totalCount"] == 1
    body = {"data": {"type": "Membership", "id": made["id"], "attributes": {"role": "developer"}}}
    changed = _send(client, "PATCH", f"/v1/memberships/{made['id']}", owner, body)
    assert changed.status_code == 200 and changed.get_json()["data"]["attributes"]["role"] == (
        "developer"
    )
    assert _memberships(app, world.live_id) == {gina: "developer"}
    assert _send(client, "DELETE", f"/v1/memberships/{made['id']}", owner).status_code == 204
    assert _memberships(app, world.live_id) == {}


def test_role_change_and_removal_end_the_members_tokens(app, client, world, gina, owner):
    """A member's token for the account stops when their role changes, and a new one stops
    when they are removed (a token carries its role)."""
    made = _add(client, owner, "gina@example.com", "manager").get_json()["data"]
    token = login(client, world, username="gina@example.com")["access_token"]
    assert client.get("/v1/user", headers=bearer(token)).status_code == 200
    body = {"data": {"type": "Membership", "id": made["id"], "attributes": {"role": "read_only"}}}
    assert _send(client, "PATCH", f"/v1/memberships/{made['id']}", owner, body).status_code == 200
    assert client.get("/v1/user", headers=bearer(token)).status_code == 401
    again = login(client, world, username="gina@example.com")["access_token"]
    assert client.get("/v1/user", headers=bearer(again)).get_json()["data"]["attributes"][
        "role"
    ] == ("read_only")
    assert _send(client, "DELETE", f"/v1/memberships/{made['id']}", owner).status_code == 204
    assert client.get("/v1/user", headers=bearer(again)).status_code == 401


def test_only_an_owner_makes_or_touches_an_owner(app, client, world, gina):
    """An administrator may not add an owner, nor change or remove an owner member (403)."""
    admin = role_token(app, client, world, "administrator")
    response = _add(client, admin, "gina@example.com", "owner")
    assert response.status_code == 403 and _memberships(app, world.live_id) == {}
    owner_member = make_user(
        app, None, "olga@example.com", role="customer", member_of={world.live_id: "owner"}
    )
    with app.app_context():
        mid = db.session.scalar(
            db.select(AccountMembership.id).where(AccountMembership.user_id == owner_member)
        )
    body = {"data": {"type": "Membership", "id": mid, "attributes": {"role": "customer"}}}
    assert _send(client, "PATCH", f"/v1/memberships/{mid}", admin, body).status_code == 403
    assert _send(client, "DELETE", f"/v1/memberships/{mid}", admin).status_code == 403
    assert _memberships(app, world.live_id) == {owner_member: "owner"}


def test_a_manager_may_not_remove_themselves_here(app, client, world):
    """An administrator member cannot change or remove their own membership here (403)."""
    me = make_user(
        app, None, "adam@example.com", role="customer", member_of={world.live_id: "administrator"}
    )
    token = login(client, world, username="adam@example.com")["access_token"]
    with app.app_context():
        mid = db.session.scalar(
            db.select(AccountMembership.id).where(AccountMembership.user_id == me)
        )
    assert _send(client, "DELETE", f"/v1/memberships/{mid}", token).status_code == 403
    assert _memberships(app, world.live_id) == {me: "administrator"}


@pytest.mark.parametrize(
    ("username", "role", "status", "code"),
    [
        ("nobody@example.com", "manager", 404, "not_found"),
        ("alice", "manager", 404, "not_found"),  # an account user, not a global one
        ("gina@example.com", "emperor", 422, None),
        ("gina@example.com", None, 422, None),
        ("bad name!", "manager", 422, None),
        ("x" * 300, "manager", 422, None),
        (["gina@example.com"], "manager", 422, None),
    ],
)
def test_add_refuses_bad_input(app, client, world, gina, owner, username, role, status, code):
    """Unknown users, account users, bad roles and malformed usernames are 4xx; nothing added."""
    response = _add(client, owner, username, role)
    assert response.status_code == status, response.get_data(as_text=True)
    if code:
        assert response.get_json()["errors"][0]["code"] == code
    assert _memberships(app, world.live_id) == {}


def test_add_twice_and_username_clash_are_conflicts(app, client, world, gina, owner):
    """Adding a member twice is 409; a global user whose name an account user has is 409."""
    assert _add(client, owner, "gina@example.com").status_code == 201
    assert _add(client, owner, "gina@example.com").status_code == 409
    make_user(app, None, "dup@example.com", role="customer", email="dup@example.com")
    make_user(app, world.live_id, "dup@example.com", role="customer")
    assert _add(client, owner, "dup@example.com").status_code == 409
    assert _memberships(app, world.live_id) == {gina: "manager"}


def test_memberships_are_per_account(app, client, world, gina, owner):
    """Another account's owner neither sees nor touches this account's membership (404)."""
    made = _add(client, owner, "gina@example.com").get_json()["data"]
    make_user(app, world.other_id, "otto", role="owner")
    other = login(
        client, world, username="otto", aid=world.other_id, client_id=world.other_public_id
    )["access_token"]
    assert client.get("/v1/memberships", headers=bearer(other)).get_json()["data"] == []
    body = {"data": {"type": "Membership", "id": made["id"], "attributes": {"role": "customer"}}}
    assert _send(client, "PATCH", f"/v1/memberships/{made['id']}", other, body).status_code == 404
    assert _send(client, "DELETE", f"/v1/memberships/{made['id']}", other).status_code == 404
    assert _send(client, "DELETE", "/v1/memberships/not-a-uuid", owner).status_code == 404
    assert _memberships(app, world.live_id) == {gina: "manager"}


def test_change_refuses_bad_input(app, client, world, gina, owner):
    """A bad role, a mismatched id or no attributes is a 4xx; the role stays."""
    made = _add(client, owner, "gina@example.com").get_json()["data"]
    path = f"/v1/memberships/{made['id']}"
    bad = [
        {"data": {"type": "Membership", "id": made["id"], "attributes": {"role": "king"}}},
        {"data": {"type": "Membership", "id": "x", "attributes": {"role": "customer"}}},
        {"data": {"type": "Membership", "id": made["id"], "attributes": {}}},
        {"data": {"type": "User", "id": made["id"], "attributes": {"role": "customer"}}},
        "{not json",
    ]
    for body in bad:
        response = _send(client, "PATCH", path, owner, body)
        assert 400 <= response.status_code < 500, body
    assert _memberships(app, world.live_id) == {gina: "manager"}


# --- /v1/user/memberships -------------------------------------------------------------


def test_global_user_lists_and_leaves(app, client, world, gina, owner):
    """A global user sees their memberships and leaves one; a global login keeps working,
    their token for the left account stops."""
    _add(client, owner, "gina@example.com", "manager")
    account_token = login(client, world, username="gina@example.com")["access_token"]
    token = global_login(client, world, "gina@example.com")
    mine = client.get("/v1/user/memberships", headers=bearer(token)).get_json()["data"]
    assert [m["attributes"]["accountName"] for m in mine] == ["Acme"]
    assert _send(client, "DELETE", f"/v1/user/memberships/{mine[0]['id']}", token).status_code == (
        204
    )
    assert _memberships(app, world.live_id) == {}
    assert client.get("/v1/user", headers=bearer(token)).status_code == 200
    assert client.get("/v1/user", headers=bearer(account_token)).status_code == 401
    assert client.get("/v1/user/memberships", headers=bearer(token)).get_json()["data"] == []


def test_last_owner_cannot_leave(app, client, world, gina):
    """The only owner of an account gets 409 last_owner and stays."""
    token = global_login(client, world, "gina@example.com")
    body = {"data": {"type": "Account", "attributes": {"name": "Solo"}}}
    live_id = _send(client, "POST", "/v1/accounts", token, body).get_json()["data"]["id"]
    with app.app_context():
        mid = db.session.scalar(
            db.select(AccountMembership.id).where(AccountMembership.account_id == live_id)
        )
    response = _send(client, "DELETE", f"/v1/user/memberships/{mid}", token)
    assert response.status_code == 409 and response.get_json()["errors"][0]["code"] == "last_owner"
    assert _memberships(app, live_id) == {gina: "owner"}


def test_nobody_leaves_for_someone_else(app, client, world, gina, owner):
    """Another user's membership id is 404 on DELETE /v1/user/memberships/{id}."""
    made = _add(client, owner, "gina@example.com").get_json()["data"]
    make_user(app, None, "hal@example.com", role="customer")
    token = global_login(client, world, "hal@example.com")
    assert _send(client, "DELETE", f"/v1/user/memberships/{made['id']}", token).status_code == 404
    assert _send(client, "DELETE", "/v1/user/memberships/zzz", token).status_code == 404
    assert _memberships(app, world.live_id) == {gina: "manager"}


# --- POST /v1/global_users (GLOBAL_SIGNUP) ---------------------------------------------


def _sign_up(client: Any, attributes: dict[str, Any], ip: str = "198.51.100.7") -> Any:
    body = {"data": {"type": "User", "attributes": attributes}}
    return client.post(
        "/v1/global_users",
        data=json.dumps(body),
        content_type=MEDIA,
        environ_base={"REMOTE_ADDR": ip},
    )


def _global_users(app: Any) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(db.select(User.username).where(User.account_id.is_(None))))


def test_global_sign_up_is_off_by_default(app, client):
    """Without GLOBAL_SIGNUP, POST /v1/global_users is 404 and creates nobody."""
    response = _sign_up(client, {"username": "new@example.com", "password": PASSWORD})
    assert response.status_code == 404
    assert _global_users(app) == []


def test_global_sign_up_needs_a_verified_email_before_login(make_app, world):
    """A sign-up is pending (its login refused) until the emailed link is used; then it
    logs in without aid and creates an account."""
    app = make_app(GLOBAL_SIGNUP=True)
    client = app.test_client()
    response = _sign_up(client, {"username": "New@Example.com", "password": PASSWORD, "name": "N"})
    assert response.status_code == 201, response.get_data(as_text=True)
    attributes = response.get_json()["data"]["attributes"]
    assert (attributes["username"], attributes["email"], attributes["status"]) == (
        "new@example.com",
        "new@example.com",
        "pending",
    )
    refused = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "new@example.com",
            "password": PASSWORD,
            "client_id": world.public_id,
        },
    )
    assert refused.status_code == 400
    [mail] = mails(app, "identity.email_verification_token.create.success")
    token = link_token(mail.text, "/verify-email")
    guest = guest_token(client, world.live_prt)
    body = {"data": {"type": "EmailVerification", "attributes": {"token": token}}}
    verified = client.post(
        "/v1/email_verifications", data=json.dumps(body), content_type=MEDIA, headers=bearer(guest)
    )
    assert verified.status_code == 204, verified.get_data(as_text=True)
    access = global_login(client, world, "new@example.com")
    created = _send(
        client,
        "POST",
        "/v1/accounts",
        access,
        {"data": {"type": "Account", "attributes": {"name": "New Co"}}},
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("attributes", "status", "code"),
    [
        ({"username": "plainname", "password": PASSWORD}, 422, "username_not_email"),
        (
            {"username": "a@example.com", "email": "b@example.com", "password": PASSWORD},
            422,
            "email_not_username",
        ),
        ({"username": "a@example.com"}, 422, "required"),
        ({"username": "a@example.com", "password": "short"}, 422, "too_short"),
        ({"username": "a@example.com", "password": PASSWORD, "role": "owner"}, 422, None),
        ({"username": "a@example.com", "password": PASSWORD, "status": "active"}, 422, None),
        ({"username": "x" * 300 + "@example.com", "password": PASSWORD}, 422, None),
        ({"username": 5, "password": PASSWORD}, 422, None),
    ],
)
def test_global_sign_up_refuses_bad_input(make_app, attributes, status, code):
    """A username that is no email, a different email, a missing or weak password and
    attributes a sign-up may not set are 422; nobody is created."""
    app = make_app(GLOBAL_SIGNUP=True)
    response = _sign_up(app.test_client(), attributes)
    assert response.status_code == status, response.get_data(as_text=True)
    if code:
        assert response.get_json()["errors"][0]["code"] == code
    assert _global_users(app) == []


def test_global_sign_up_is_throttled_per_ip_and_names_are_unique(make_app):
    """A taken username is 409; the 21st sign-up from one IP in an hour is 429."""
    app = make_app(GLOBAL_SIGNUP=True)
    client = app.test_client()
    first = {"username": "u0@example.com", "password": PASSWORD}
    assert _sign_up(client, first).status_code == 201
    assert _sign_up(client, first).status_code == 409
    for i in range(1, 19):
        made = _sign_up(client, {"username": f"u{i}@example.com", "password": PASSWORD})
        assert made.status_code == 201
    response = _sign_up(client, {"username": "late@example.com", "password": PASSWORD})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert "late@example.com" not in _global_users(app)
    other_ip = _sign_up(client, {"username": "late@example.com", "password": PASSWORD}, "192.0.2.9")
    assert other_ip.status_code == 201
