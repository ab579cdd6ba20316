"""The User resource: /v1/users (administrators; guest sign-up), /v1/users/{id}, /v1/user.

Roles, the owner and self rules, account and live/test isolation, username rules, a
concurrent creation, pagination and search, bad input, events, emails, token revocation
and a guest's sign-up with SMS two-step login (the texted code answers the first login).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from factories import PASSWORD, World, make_user
from oauth_helpers import basic, bearer, login, password_grant
from verification_helpers import guest_token, role_token

from authserver.api import users as users_api
from authserver.identity import twofactor, users, verification
from authserver.platform.errors import Conflict
from authserver.platform.events import signal
from authserver.platform.extensions import db
from authserver.platform.models import ROLES, Account, AccountMembership, LoginRecord, User

MEDIA = "application/vnd.api+json"
FORBIDDEN_ROLES = [r for r in ROLES if r not in ("owner", "administrator")]


def _send(client: Any, method: str, path: str, token: str | None, body: Any = None) -> Any:
    headers = bearer(token) if token else {}
    data = json.dumps(body) if body is not None and not isinstance(body, str | bytes) else body
    return client.open(path, method=method, data=data, content_type=MEDIA, headers=headers)


def _create(client: Any, token: str | None, attributes: dict[str, Any]) -> Any:
    return _send(
        client, "POST", "/v1/users", token, {"data": {"type": "User", "attributes": attributes}}
    )


def _patch(
    client: Any, token: str, user_id: str, attributes: dict[str, Any], path: str = ""
) -> Any:
    body = {"data": {"type": "User", "id": user_id, "attributes": attributes}}
    return _send(client, "PATCH", path or f"/v1/users/{user_id}", token, body)


def _row(app: Any, user_id: str) -> dict[str, Any]:
    """The user's stored columns (a fresh read)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return {c.name: getattr(user, c.name) for c in User.__table__.columns}


def _usernames(app: Any, account_id: str) -> list[str]:
    with app.app_context():
        return sorted(
            db.session.scalars(db.select(User.username).where(User.account_id == account_id))
        )


def _errors(response: Any) -> list[tuple[str, str | None]]:
    return [(e["code"], e.get("source", {}).get("pointer")) for e in response.get_json()["errors"]]


def _details(response: Any) -> list[str]:
    return [e["detail"] for e in response.get_json()["errors"]]


def _outbox(app: Any) -> Any:
    return app.extensions["authserver.outbox"]


@pytest.fixture
def admin(app: Any, client: Any, world: World) -> str:
    return role_token(app, client, world, "administrator")


@pytest.fixture
def carl(app: Any, world: World) -> str:
    """A customer of the live account with an email."""
    return make_user(
        app, world.live_id, "carl", role="customer", email="carl@example.com", name="Carl"
    )


@pytest.fixture
def events(app: Any) -> Iterator[list[tuple[str, str, str | None, str]]]:
    """(event, user id, account id, the user's committed username) for every user event."""
    seen: list[tuple[str, str, str | None, str]] = []
    names = [
        "identity.user.create.success",
        "identity.user.update.success",
        "identity.current_user.update.success",
        "identity.user.delete.success",
        "identity.password.update.success",
    ]

    def receiver(name: str) -> Any:
        def record(sender: Any, **payload: Any) -> None:
            user, account = payload["user"], payload.get("account")
            with app.app_context():  # a fresh session: sees only what was committed
                committed = db.session.get(User, user.id)
                seen.append((name, user.id, account.id if account else None, committed.username))

        return record

    receivers = [(n, receiver(n)) for n in names]
    for name, fn in receivers:
        signal(name).connect(fn, sender=app)
    yield seen
    for name, fn in receivers:
        signal(name).disconnect(fn, sender=app)


# --- create ---------------------------------------------------------------------------


def test_admin_creates_a_user_normalised_with_the_account_default_method(
    app, client, world, admin, events
):
    """POST by an administrator: 201, trimmed lower-case username, the account's
    defaultAuthMethod, meta.locale, a Location, the create event after commit."""
    with app.app_context():
        db.session.get(Account, world.live_id).default_auth_method = "tfa_email"
        db.session.commit()
    response = _create(
        client,
        admin,
        {
            "username": "  Bob.Smith+1@Example.COM ",
            "password": "a long and fine password",
            "role": "developer",
            "email": "bob@example.com",
            "emailVerified": True,
            "name": "Bob",
            "customData": {"tier": "gold"},
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    attrs = body["data"]["attributes"]
    assert attrs["username"] == "bob.smith+1@example.com"
    assert (attrs["authMethod"], attrs["role"], attrs["status"]) == (
        "tfa_email",
        "developer",
        "active",
    )
    assert attrs["emailVerified"] is True and attrs["emailVerifiedAt"]
    assert attrs["passwordUpdatedAt"] and "password" not in attrs and "passwordHash" not in attrs
    assert attrs["customData"] == {"tier": "gold"}
    assert body["meta"] == {"locale": "en"}
    assert body["data"]["relationships"]["account"]["data"]["id"] == world.live_id
    assert response.headers["Location"] == f"/v1/users/{body['data']['id']}"
    assert events == [
        ("identity.user.create.success", body["data"]["id"], world.live_id, attrs["username"])
    ]
    assert _outbox(app).of("email") == []  # verified: no verification mail


def test_create_with_an_unverified_email_sends_the_verification_email(app, client, world, admin):
    """A user created with an email and emailVerified false is emailed a verification link."""
    seen: list[str] = []

    def record(sender: Any, **payload: Any) -> None:
        seen.append(payload["user"].username)

    signal("identity.email_verification_token.create.success").connect(record, sender=app)
    try:
        response = _create(
            client,
            admin,
            {
                "username": "dan",
                "password": PASSWORD,
                "role": "customer",
                "email": "dan@example.com",
            },
        )
    finally:
        signal("identity.email_verification_token.create.success").disconnect(record, sender=app)
    assert response.status_code == 201
    assert seen == ["dan"]
    mails = _outbox(app).of("email")
    assert [(m.event, m.to) for m in mails] == [
        ("identity.email_verification_token.create.success", "dan@example.com")
    ]


def test_pending_user_without_password_gets_an_activation_email(app, client, world, admin):
    """An invitation (status pending, no password): 201 pending, an activation link is
    emailed, and the pending user cannot log in yet."""
    response = _create(
        client,
        admin,
        {"username": "ivy", "role": "manager", "status": "pending", "email": "ivy@example.com"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["status"] == "pending"
    events = [m.event for m in _outbox(app).of("email") if m.to == "ivy@example.com"]
    assert "identity.activation_token.create.success" in events
    row = _row(app, response.get_json()["data"]["id"])
    assert row["password_hash"] is None


@pytest.mark.parametrize(
    ("attributes", "pointer", "code"),
    [
        (
            {"status": "pending", "email": "x@example.com", "password": PASSWORD},
            "/data/attributes/password",
            "not_allowed",
        ),
        ({"status": "pending"}, "/data/attributes/email", "required"),
        ({"status": "deleted", "password": PASSWORD}, "/data/attributes/status", "invalid_choice"),
        ({"status": "active"}, "/data/attributes/password", "required"),
    ],
)
def test_pending_rules(app, client, world, admin, attributes, pointer, code):
    """A pending user has no password but an email; other statuses need a password."""
    before = _usernames(app, world.live_id)
    response = _create(client, admin, {"username": "ivy", "role": "customer", **attributes})
    assert response.status_code == 422
    assert _errors(response) == [(code, pointer)]
    assert _usernames(app, world.live_id) == before


def test_owner_may_make_an_owner_an_administrator_may_not(app, client, world, admin):
    """Only an owner creates an owner; an administrator's attempt is 403 and creates nobody."""
    response = _create(client, admin, {"username": "boss", "password": PASSWORD, "role": "owner"})
    assert response.status_code == 403
    assert "boss" not in _usernames(app, world.live_id)
    owner = login(client, world)["access_token"]
    response = _create(client, owner, {"username": "boss", "password": PASSWORD, "role": "owner"})
    assert response.status_code == 201


# --- guest sign-up --------------------------------------------------------------------


def test_guest_signs_up_a_customer(app, client, world):
    """A publishable (guest) token creates a customer; it can then log in."""
    guest = guest_token(client, world.live_prt)
    response = _create(client, guest, {"username": "Newbie", "password": PASSWORD})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["role"] == "customer"
    login(client, world, username="newbie")


def test_guest_sign_ups_are_throttled_per_ip(app, client, world):
    """A guest signs up at most SIGN_UPS_PER_IP users an hour from one IP (each sends a
    verification email to any address it names): then 429 with Retry-After, nobody more
    is created and no more mail goes out; another IP is unaffected."""
    guest = guest_token(client, world.live_prt)
    limit = users.SIGN_UPS_PER_IP[0]

    def sign_up(name: str, ip: str) -> Any:
        body = {"username": name, "password": PASSWORD, "email": "victim@example.com"}
        return client.post(
            "/v1/users",
            data=json.dumps({"data": {"type": "User", "attributes": body}}),
            content_type=MEDIA,
            headers=bearer(guest),
            environ_base={"REMOTE_ADDR": "203.0.113.9" if ip == "a" else "203.0.113.10"},
        )

    assert [sign_up(f"u{i}", "a").status_code for i in range(limit)] == [201] * limit
    mails = len(_outbox(app).of("email"))
    refused = sign_up("one-more", "a")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "one-more" not in _usernames(app, world.live_id)
    assert len(_outbox(app).of("email")) == mails
    assert sign_up("elsewhere", "b").status_code == 201


@pytest.mark.parametrize(
    ("attributes", "status", "pointer"),
    [
        ({"role": "administrator"}, 403, "/data/attributes/role"),
        ({"role": "owner"}, 403, "/data/attributes/role"),
        ({"status": "pending", "email": "a@example.com"}, 422, "/data/attributes/status"),
        ({"emailVerified": True, "email": "a@example.com"}, 422, "/data/attributes/emailVerified"),
    ],
)
def test_guest_may_not_choose_role_status_or_email_verified(
    app, client, world, attributes, status, pointer
):
    """A guest choosing a role, status or emailVerified is refused and nobody is created."""
    guest = guest_token(client, world.live_prt)
    response = _create(client, guest, {"username": "sneaky", "password": PASSWORD, **attributes})
    assert response.status_code == status
    assert response.get_json()["errors"][0]["source"]["pointer"] == pointer
    assert "sneaky" not in _usernames(app, world.live_id)


def _phone_code(app: Any, world: World, phone: str) -> str:
    """Text a phone verification code (as POST /v1/phone_verification_codes would) and
    read it from the memory: SMS outbox."""
    with app.test_request_context():
        verification.send_phone_code(phone, account=db.session.get(Account, world.live_id))
    match = re.search(r"\b(\d{6})\b", _outbox(app).of("sms")[-1].text)
    assert match is not None
    return match.group(1)


def _sms_sign_up(client: Any, guest: str, username: str, phone: str, code: str | None) -> Any:
    attributes = {"username": username, "password": PASSWORD, "phoneNumber": phone}
    attributes["authMethod"] = "tfa_sms"
    if code is not None:
        attributes["phoneVerificationCode"] = code
    return _create(client, guest, attributes)


def test_guest_sign_up_with_sms_two_step_login_spends_the_code_on_the_first_login(
    app, client, world
):
    """A guest signs up with phoneNumber, the texted phoneVerificationCode and tfa_sms: the
    phone is verified, the code is spent, and it answers the first login's OTP."""
    code = _phone_code(app, world, "+15550001111")
    guest = guest_token(client, world.live_prt)
    response = _sms_sign_up(client, guest, "smsy", "+15550001111", code)
    assert response.status_code == 201, response.get_data(as_text=True)
    row = _row(app, response.get_json()["data"]["id"])
    assert (row["auth_method"], row["phone_verified"]) == ("tfa_sms", True)
    token = password_grant(client, world, "smsy", PASSWORD, otp=code)
    assert token.status_code == 200, token.get_data(as_text=True)
    again = _sms_sign_up(client, guest, "smsy2", "+15550001111", code)
    assert again.status_code == 422  # the code was spent
    assert _errors(again) == [
        ("invalid_phone_verification_code", "/data/attributes/phoneVerificationCode")
    ]
    assert "smsy2" not in _usernames(app, world.live_id)


def test_tfa_sms_sign_up_without_a_code_is_refused(app, client, world):
    """tfa_sms without phoneVerificationCode: 422 required, nobody created."""
    guest = guest_token(client, world.live_prt)
    response = _sms_sign_up(client, guest, "nocode", "+15550002222", None)
    assert response.status_code == 422
    assert _errors(response) == [("required", "/data/attributes/phoneVerificationCode")]
    assert "nocode" not in _usernames(app, world.live_id)


def test_choosing_tfa_email_needs_a_verified_email(app, client, world, admin):
    """authMethod tfa_email with an unverified email is 422; an admin vouching works."""
    base = {
        "username": "emma",
        "password": PASSWORD,
        "role": "customer",
        "email": "emma@example.com",
    }
    response = _create(client, admin, {**base, "authMethod": "tfa_email"})
    assert response.status_code == 422
    assert _errors(response) == [("email_not_verified", "/data/attributes/authMethod")]
    response = _create(client, admin, {**base, "authMethod": "tfa_email", "emailVerified": True})
    assert response.status_code == 201


# --- roles ----------------------------------------------------------------------------


def _admin_endpoints(target: str) -> list[tuple[str, str, Any]]:
    return [
        (
            "POST",
            "/v1/users",
            {
                "data": {
                    "type": "User",
                    "attributes": {"username": "made", "password": PASSWORD, "role": "customer"},
                }
            },
        ),
        ("GET", "/v1/users", None),
        ("GET", f"/v1/users/{target}", None),
        (
            "PATCH",
            f"/v1/users/{target}",
            {"data": {"type": "User", "id": target, "attributes": {"name": "Hacked"}}},
        ),
        ("DELETE", f"/v1/users/{target}", None),
    ]


@pytest.mark.parametrize("role", FORBIDDEN_ROLES)
def test_user_management_is_forbidden_to_other_roles(app, client, world, carl, role):
    """Every /v1/users endpoint answers 403 to roles other than owner and administrator,
    and nothing changes."""
    token = role_token(app, client, world, role)
    before = (_usernames(app, world.live_id), _row(app, carl))
    for method, path, body in _admin_endpoints(carl):
        response = _send(client, method, path, token, body)
        assert response.status_code == 403, (method, path)
    assert (_usernames(app, world.live_id), _row(app, carl)) == before


def test_user_management_anonymous_401_guest_403(app, client, world, carl):
    """No token: 401 everywhere; a guest: 403 everywhere but sign-up; nothing changes."""
    guest = guest_token(client, world.live_prt)
    before = _row(app, carl)
    for method, path, body in _admin_endpoints(carl):
        assert _send(client, method, path, None, body).status_code == 401, (method, path)
        if method != "POST":
            assert _send(client, method, path, guest, body).status_code == 403, (method, path)
    for method in ("GET", "PATCH"):
        body = {"data": {"type": "User", "attributes": {"name": "x"}}}
        assert _send(client, method, "/v1/user", None, body).status_code == 401
        assert _send(client, method, "/v1/user", guest, body).status_code == 403
    assert _row(app, carl) == before
    assert "made" not in _usernames(app, world.live_id)


def test_client_token_has_no_current_user(app, client, world):
    """A client-credentials token: GET and PATCH /v1/user answer 404."""
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.conf_id, world.conf_secret),
    ).get_json()["access_token"]
    assert client.get("/v1/user", headers=bearer(token)).status_code == 404
    body = {"data": {"type": "User", "id": "x", "attributes": {"name": "x"}}}
    assert _send(client, "PATCH", "/v1/user", token, body).status_code == 404


def test_owner_manages_like_an_administrator(app, client, world, carl):
    """The owner lists, reads, changes and deletes users."""
    owner = login(client, world)["access_token"]
    assert client.get("/v1/users", headers=bearer(owner)).status_code == 200
    assert client.get(f"/v1/users/{carl}", headers=bearer(owner)).status_code == 200
    assert _patch(client, owner, carl, {"name": "C"}).status_code == 200
    assert _send(client, "DELETE", f"/v1/users/{carl}", owner).status_code == 204


# --- owner and self rules -------------------------------------------------------------


def test_administrator_cannot_touch_the_owner(app, client, world, admin):
    """PATCH or DELETE of the owner by an administrator: 403; the owner is unchanged;
    reading the owner is allowed."""
    before = _row(app, world.alice_id)
    assert client.get(f"/v1/users/{world.alice_id}", headers=bearer(admin)).status_code == 200
    for attributes in (
        {"name": "Pwned"},
        {"role": "customer"},
        {"password": "another long password"},
        {"status": "disabled"},
    ):
        response = _patch(client, admin, world.alice_id, attributes)
        assert response.status_code == 403
        assert response.get_json()["errors"][0]["code"] == "owner_protected"
    assert _send(client, "DELETE", f"/v1/users/{world.alice_id}", admin).status_code == 403
    assert _row(app, world.alice_id) == before


def test_administrator_cannot_promote_to_owner(app, client, world, admin, carl):
    """Making someone owner is the owner's call: 403, role unchanged."""
    response = _patch(client, admin, carl, {"role": "owner"})
    assert response.status_code == 403
    assert _row(app, carl)["role"] == "customer"


def test_nobody_deletes_themselves_or_changes_their_own_role(app, client, world, admin):
    """Self-delete, own role and own status changes: 403, nothing changes (owner too)."""
    owner = login(client, world)["access_token"]
    for token, user_id in (
        (admin, _id_of(app, world, "administrator-" + world.live_id[:8])),
        (owner, world.alice_id),
    ):
        before = _row(app, user_id)
        assert _send(client, "DELETE", f"/v1/users/{user_id}", token).status_code == 403
        assert _patch(client, token, user_id, {"role": "customer"}).status_code == 403
        assert _patch(client, token, user_id, {"status": "disabled"}).status_code == 403
        assert _row(app, user_id) == before
        assert client.get("/v1/user", headers=bearer(token)).status_code == 200


def test_managers_editing_themselves_keep_the_self_rules(app, client, world, admin):
    """PATCH /v1/users/{own id} is no way around PATCH /v1/user: an owner with TOTP cannot
    switch it off with a bearer token alone (422 tfa_disablement_required), and an
    administrator cannot set their own password without the current one, mark their own
    email verified, or move their own email or phone (403: PATCH /v1/user asks for the
    password); nothing changes and the token still works."""
    owner = login(client, world)["access_token"]
    setup = _send(
        client,
        "POST",
        "/v1/totp_setups",
        owner,
        {"data": {"type": "TotpSetup", "attributes": {"password": PASSWORD}}},
    )
    code = pyotp.TOTP(setup.get_json()["data"]["attributes"]["secret"]).now()
    body = {"data": {"type": "TotpConfirmation", "attributes": {"code": code}}}
    assert _send(client, "POST", "/v1/totp_confirmations", owner, body).status_code == 201
    before = _row(app, world.alice_id)
    response = _patch(client, owner, world.alice_id, {"authMethod": "simple"})
    assert _errors(response) == [("tfa_disablement_required", "/data/attributes/authMethod")]
    assert _details(response) == [
        "Switching two-step login off needs your password and a code: use "
        "POST /v1/tfa_disablements (or ask an administrator)."
    ]
    assert _row(app, world.alice_id) == before

    admin_id = _id_of(app, world, "administrator-" + world.live_id[:8])
    before = _row(app, admin_id)
    use_password = "Not for yourself here: use PATCH /v1/password, or the emailed link."
    use_profile = "Change your own email or phone with PATCH /v1/user (it asks for your password)."
    for attributes, pointer, detail in (
        ({"password": "a brand new long password"}, "/data/attributes/password", use_password),
        (
            {"email": "adm@example.com", "emailVerified": True},
            "/data/attributes/emailVerified",
            use_password,
        ),
        ({"email": "adm@example.com"}, "/data/attributes/email", use_profile),
        ({"phoneNumber": "+15550007777"}, "/data/attributes/phoneNumber", use_profile),
    ):
        response = _patch(client, admin, admin_id, attributes)
        assert response.status_code == 403, response.get_data(as_text=True)
        assert _errors(response) == [("self_not_allowed", pointer)]
        assert _details(response) == [detail]
        assert _row(app, admin_id) == before
    assert client.get("/v1/user", headers=bearer(admin)).status_code == 200


def _login_with_emailed_code(app: Any, client: Any, world: World, username: str) -> str:
    """An access token for an email-code user: the code is primed as a login would send it."""
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == username))
        assert user is not None
        twofactor.prime_challenge(user, "424242")
    response = password_grant(client, world, username, otp="424242")
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["access_token"])


def test_a_manager_moving_their_own_second_factor_is_sent_to_patch_v1_user(app, client, world):
    """An administrator with email codes switching their own second factor to SMS through
    PATCH /v1/users/{own id} gets 403 self_not_allowed at authMethod, told to use
    PATCH /v1/user (which asks for the password); nothing changes."""
    admin_id = make_user(
        app,
        world.live_id,
        "adm-tfa",
        role="administrator",
        email="adm@example.com",
        email_verified=True,
    )
    owner = login(client, world)["access_token"]
    assert _patch(client, owner, admin_id, {"authMethod": "tfa_email"}).status_code == 200
    # The change ended the administrator's logins: log in again, with the emailed code.
    admin = _login_with_emailed_code(app, client, world, "adm-tfa")
    before = _row(app, admin_id)
    response = _patch(client, admin, admin_id, {"authMethod": "tfa_sms"})
    assert response.status_code == 403, response.get_data(as_text=True)
    assert _errors(response) == [("self_not_allowed", "/data/attributes/authMethod")]
    assert _details(response) == [
        "Change your own two-step login with PATCH /v1/user (it asks for your password)."
    ]
    assert _row(app, admin_id) == before


def _id_of(app: Any, world: World, username: str, account_id: str | None = None) -> str:
    with app.app_context():
        return str(
            db.session.scalar(
                db.select(User.id).where(
                    User.username == username, User.account_id == (account_id or world.live_id)
                )
            )
        )


# --- isolation ------------------------------------------------------------------------


def test_users_of_another_account_or_the_test_twin_are_404(app, client, world, admin):
    """Ids of another account's user and of the test twin's user: 404 on GET, PATCH and
    DELETE, and they stay unchanged; they never show in the list."""
    stranger = make_user(app, world.other_id, "stranger", role="customer")
    for user_id in (stranger, world.tess_id):
        before = _row(app, user_id)
        assert client.get(f"/v1/users/{user_id}", headers=bearer(admin)).status_code == 404
        assert _patch(client, admin, user_id, {"name": "X"}).status_code == 404
        assert _send(client, "DELETE", f"/v1/users/{user_id}", admin).status_code == 404
        assert _row(app, user_id) == before
    listed = {
        u["id"]
        for u in client.get("/v1/users?page[size]=100", headers=bearer(admin)).get_json()["data"]
    }
    assert stranger not in listed and world.tess_id not in listed


def test_test_account_admin_sees_only_test_users(app, client, world):
    """A test-account token lists the test account's users only, and live ids are 404."""
    token = role_token(app, client, world, "administrator", account_id=world.test_id)
    names = {
        u["attributes"]["username"]
        for u in client.get("/v1/users", headers=bearer(token)).get_json()["data"]
    }
    assert "tess" in names and "alice" not in names
    assert client.get(f"/v1/users/{world.alice_id}", headers=bearer(token)).status_code == 404


@pytest.mark.parametrize(
    "bad_id", ["nope", "%00", "1" * 400, "00000000-0000-0000-0000-000000000000"]
)
def test_malformed_or_unknown_ids_are_404(client, world, admin, bad_id):
    """Ids that are not a user of the account, however odd: 404 JSON:API, never 500."""
    response = client.get(f"/v1/users/{bad_id}", headers=bearer(admin))
    assert response.status_code == 404
    assert response.mimetype == MEDIA


# --- usernames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username", ["has space", "émile", "<script>", "a/b", "", "   ", "x" * 256, "a\x00b"]
)
def test_invalid_usernames_are_422(app, client, world, admin, username):
    """Only a-z 0-9 - @ . + _ (after trim and lower-case), 1..255 characters."""
    before = _usernames(app, world.live_id)
    response = _create(
        client, admin, {"username": username, "password": PASSWORD, "role": "customer"}
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["source"]["pointer"] == "/data/attributes/username"
    assert _usernames(app, world.live_id) == before


def test_username_unique_per_account_case_insensitively(app, client, world, admin, carl):
    """'CARL ' clashes with carl (409 taken); the same name in another account is fine."""
    response = _create(
        client, admin, {"username": "CARL ", "password": PASSWORD, "role": "customer"}
    )
    assert response.status_code == 409
    assert _errors(response) == [("taken", "/data/attributes/username")]
    other_admin = role_token(app, client, world, "administrator", account_id=world.test_id)
    assert (
        _create(
            client, other_admin, {"username": "carl", "password": PASSWORD, "role": "customer"}
        ).status_code
        == 201
    )


def test_account_user_cannot_take_a_global_members_username(app, client, world, admin):
    """A global member's username is taken in the accounts it joined (create and
    rename: 409), and free in other accounts."""
    make_user(
        app,
        None,
        "gina@example.com",
        role="customer",
        member_of={world.live_id: "support_specialist"},
    )
    response = _create(
        client, admin, {"username": "gina@example.com", "password": PASSWORD, "role": "customer"}
    )
    assert response.status_code == 409
    carl = make_user(app, world.live_id, "carl", role="customer")
    assert _patch(client, admin, carl, {"username": "gina@example.com"}).status_code == 409
    assert _row(app, carl)["username"] == "carl"
    other_admin = role_token(app, client, world, "administrator", account_id=world.test_id)
    assert (
        _create(
            client,
            other_admin,
            {"username": "gina@example.com", "password": PASSWORD, "role": "customer"},
        ).status_code
        == 201
    )


def test_global_user_cannot_join_where_an_account_user_has_its_name(app, world):
    """A global user whose username an account user of the account has cannot join it."""
    make_user(app, world.live_id, "user3@example.com", role="customer")
    glob = make_user(app, None, "user3@example.com", role="customer")
    with app.app_context():
        with pytest.raises(Conflict):
            users.add_member(
                db.session.get(Account, world.live_id), db.session.get(User, glob), "customer"
            )
        count = db.session.scalar(db.select(db.func.count()).select_from(AccountMembership))
        assert count == 0


def test_two_concurrent_creations_of_one_username_make_one_user(app, world, admin):
    """Two POSTs of the same username at once (separate clients, threads): one 201 and
    one 409, and exactly one user exists."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post() -> None:
        own = app.test_client()
        barrier.wait()
        statuses.append(
            _create(
                own, admin, {"username": "racer", "password": PASSWORD, "role": "customer"}
            ).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409]
    assert _usernames(app, world.live_id).count("racer") == 1


# --- passwords and bad input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short", "too_short"),
        ("x" * 129, "too_long"),
        ("password123", "too_common"),
        ("newuser-name", "too_common"),  # the username
        ("new@example.com", "too_common"),  # the email
        (12345678, "invalid_type"),
    ],
)
def test_password_rules(app, client, world, admin, password, code):
    """8..128 characters, not common, not the username or email: else 422 and no user."""
    response = _create(
        client,
        admin,
        {
            "username": "newuser-name",
            "password": password,
            "role": "customer",
            "email": "new@example.com",
        },
    )
    assert response.status_code == 422
    assert _errors(response)[0][1] == "/data/attributes/password"
    assert response.get_json()["errors"][0]["code"] == code
    assert "newuser-name" not in _usernames(app, world.live_id)


def test_long_passphrase_without_composition_rules_is_fine(client, world, admin):
    """No composition rules: 128 lower-case letters and spaces are accepted."""
    response = _create(
        client,
        admin,
        {"username": "pp", "password": "correct horse " * 9 + "ab", "role": "customer"},
    )
    assert response.status_code == 201


def _doc(**attributes: Any) -> dict[str, Any]:
    """A create document for user x with a good password and role, plus `attributes`."""
    base = {"username": "x", "role": "customer", "password": PASSWORD}
    return {"data": {"type": "User", "attributes": {**base, **attributes}}}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (
            '{"data": {"type": "User", "attributes": {}}}',
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        ("{not json", MEDIA, 400, "malformed_json"),
        (
            {"data": {"type": "Account", "attributes": {"username": "x"}}},
            MEDIA,
            409,
            "type_mismatch",
        ),
        (_doc(isAdmin=True), MEDIA, 422, "unknown_attribute"),
        (_doc(passwordUpdatedAt="2020-01-01"), MEDIA, 422, "unknown_attribute"),
        (_doc(emailVerifiedAt="2020-01-01"), MEDIA, 422, "unknown_attribute"),
        (_doc(username=5), MEDIA, 422, "invalid_type"),
        (_doc(role="emperor"), MEDIA, 422, "invalid_choice"),
        ({"data": {"type": "User", "attributes": {"username": "x"}}}, MEDIA, 422, "required"),
        (_doc(email="nope"), MEDIA, 422, "invalid_email"),
        (_doc(phoneNumber="555"), MEDIA, 422, "invalid_phone_number"),
        (_doc(name="n" * 300), MEDIA, 422, "too_long"),
        (_doc(customData=[1]), MEDIA, 422, "invalid_type"),
        (_doc(customData={"k": "v" * 17000}), MEDIA, 422, "invalid"),
        (_doc(emailVerified="yes"), MEDIA, 422, "invalid_type"),
        (_doc(authMethod="tfa_totp"), MEDIA, 422, "totp_not_enrolled"),
        (
            {"data": {"type": "User", "id": "abc", "attributes": {"username": "x"}}},
            MEDIA,
            403,
            "client_generated_id",
        ),
    ],
)
def test_bad_create_input(app, client, world, admin, body, content_type, status, code):
    """Each bad body gets its status and stable code, and creates nobody."""
    before = _usernames(app, world.live_id)
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/v1/users", data=raw, content_type=content_type, headers=bearer(admin))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["code"] == code
    assert _usernames(app, world.live_id) == before


def test_email_that_grows_when_lower_cased_is_422_not_500(app, client, world, admin, carl):
    """An email whose domain lengthens past 254 characters when lower-cased (U+0130 becomes
    two code points) is invalid_email on create and update, never a database error."""
    grows = "a@" + "\u0130" * 200 + ".com"  # 206 characters as sent, 406 lower-cased
    before = _usernames(app, world.live_id)
    attributes = {"username": "x", "role": "customer", "password": PASSWORD, "email": grows}
    response = _create(client, admin, attributes)
    assert _errors(response) == [("invalid_email", "/data/attributes/email")]
    assert _usernames(app, world.live_id) == before
    row = _row(app, carl)
    response = _patch(client, admin, carl, {"email": grows})
    assert _errors(response) == [("invalid_email", "/data/attributes/email")]
    assert _row(app, carl) == row


# --- list -----------------------------------------------------------------------------


def test_list_pages_filters_and_members(app, client, world, admin):
    """Users by username, 2 a page with links and totalCount; a global member appears with
    its membership role; filter[role], filter[status] and search narrow it; deleted users
    never show."""
    for name, role in (("ann", "customer"), ("ben", "customer"), ("cat", "manager")):
        make_user(app, world.live_id, name, role=role, email=f"{name}@shop.example")
    gone = make_user(app, world.live_id, "gone", role="customer")
    make_user(app, None, "gina@example.com", role="owner", member_of={world.live_id: "manager"})
    assert _send(client, "DELETE", f"/v1/users/{gone}", admin).status_code == 204
    _patch(client, admin, _id_of(app, world, "ben"), {"status": "disabled"})
    page = client.get("/v1/users?page[size]=2", headers=bearer(admin)).get_json()
    names = [u["attributes"]["username"] for u in page["data"]]
    assert names == ["administrator-" + world.live_id[:8], "alice"]
    assert page["meta"]["totalCount"] == 6 and page["meta"]["locale"] == "en"
    assert page["links"]["next"].endswith("page[size]=2&page[number]=2")
    assert page["links"]["last"].endswith("page[number]=3")
    managers = client.get("/v1/users?filter[role]=manager", headers=bearer(admin)).get_json()
    assert {(u["attributes"]["username"], u["attributes"]["role"]) for u in managers["data"]} == {
        ("cat", "manager"),
        ("gina@example.com", "manager"),
    }
    disabled = client.get("/v1/users?filter[status]=disabled", headers=bearer(admin)).get_json()
    assert [u["attributes"]["username"] for u in disabled["data"]] == ["ben"]
    found = client.get(
        "/v1/users?search=SHOP.example&filter[role]=customer", headers=bearer(admin)
    ).get_json()
    assert [u["attributes"]["username"] for u in found["data"]] == ["ann", "ben"]
    assert found["links"]["self"].startswith(
        "/v1/users?filter%5Brole%5D=customer&search=SHOP.example&"
    )


def test_search_treats_percent_and_underscore_literally(app, client, world, admin):
    """'%' and '_' match themselves, not any text: no SQL wildcards."""
    make_user(app, world.live_id, "under_score", role="customer")
    make_user(app, world.live_id, "underxscore", role="customer")
    make_user(app, world.live_id, "plain", role="customer", email="100%@example.com")

    def names(term: str) -> list[str]:
        response = client.get("/v1/users", query_string={"search": term}, headers=bearer(admin))
        assert response.status_code == 200
        return [u["attributes"]["username"] for u in response.get_json()["data"]]

    assert names("r_s") == ["under_score"]
    assert names("%") == ["plain"]
    assert names("%%") == []
    assert names("_") == ["under_score"]
    assert names("\\") == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page[size]=101", "page[size]"),
        ("page[size]=0", "page[size]"),
        ("page[size]=-1", "page[size]"),
        ("page[size]=ten", "page[size]"),
        ("page[number]=0", "page[number]"),
        ("page[number]=1.5", "page[number]"),
        ("filter[status]=deleted", "filter[status]"),
        ("filter[role]=guest", "filter[role]"),
        ("search=" + "a" * 256, "search"),
        ("search=a%00b", "search"),
    ],
)
def test_bad_list_parameters_are_400(client, world, admin, query, parameter):
    """Out-of-range, non-numeric or unknown parameter values: 400 with source.parameter."""
    response = client.get(f"/v1/users?{query}", headers=bearer(admin))
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert (error["code"], error["source"]) == ("invalid_parameter", {"parameter": parameter})


# --- update by an administrator -------------------------------------------------------


def test_admin_updates_a_user_and_the_event_fires(app, client, world, admin, carl, events):
    """PATCH changes the profile, verifies the email, and emits the update event after commit."""
    response = _patch(
        client,
        admin,
        carl,
        {"name": "Carl C", "firstName": "Carl", "emailVerified": True, "customData": {"a": 1}},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    attrs = response.get_json()["data"]["attributes"]
    assert (attrs["name"], attrs["firstName"], attrs["emailVerified"]) == ("Carl C", "Carl", True)
    assert attrs["emailVerifiedAt"]
    assert response.get_json()["meta"] == {"locale": "en"}
    assert events == [("identity.user.update.success", carl, world.live_id, "carl")]
    assert _row(app, carl)["custom_data"] == {"a": 1}


def test_admin_sets_a_password_old_tokens_stop_and_a_mail_goes(
    app, client, world, admin, carl, events
):
    """Setting another user's password: their access and refresh tokens stop at once, the
    new password logs in, and the password-changed email is sent."""
    old = login(client, world, username="carl")
    response = _patch(client, admin, carl, {"password": "a brand new passphrase"})
    assert response.status_code == 200
    assert client.get("/v1/user", headers=bearer(old["access_token"])).status_code == 401
    again = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": old["refresh_token"],
            "client_id": world.public_id,
        },
    )
    assert again.status_code == 400
    login(client, world, username="carl", password="a brand new passphrase")
    mails = [(m.event, m.to) for m in _outbox(app).of("email")]
    assert ("identity.password.update.success", "carl@example.com") in mails
    assert [e[0] for e in events] == [
        "identity.user.update.success",
        "identity.password.update.success",
    ]


@pytest.mark.parametrize("attributes", [{"status": "disabled"}, {"role": "read_only"}])
def test_disabling_or_changing_the_role_stops_old_tokens(
    app, client, world, admin, carl, attributes
):
    """A disabled user's or a re-roled user's old access token is refused at once."""
    old = login(client, world, username="carl")["access_token"]
    assert client.get("/v1/user", headers=bearer(old)).status_code == 200
    assert _patch(client, admin, carl, attributes).status_code == 200
    assert client.get("/v1/user", headers=bearer(old)).status_code == 401


def test_admin_email_change_resets_verification_and_mails_a_link(app, client, world, admin, carl):
    """A new email is unverified and gets a verification link."""
    _patch(client, admin, carl, {"emailVerified": True})
    response = _patch(client, admin, carl, {"email": "new-carl@example.com"})
    attrs = response.get_json()["data"]["attributes"]
    assert (attrs["email"], attrs["emailVerified"], attrs["emailVerifiedAt"]) == (
        "new-carl@example.com",
        False,
        None,
    )
    mails = [(m.event, m.to) for m in _outbox(app).of("email")]
    assert mails == [("identity.email_verification_token.create.success", "new-carl@example.com")]


@pytest.mark.parametrize(
    ("attributes", "status", "code"),
    [
        ({"emailVerifiedAt": "2020-01-01T00:00:00Z"}, 422, "unknown_attribute"),
        ({"passwordUpdatedAt": "2020-01-01T00:00:00Z"}, 422, "unknown_attribute"),
        ({"status": "deleted"}, 422, "invalid_choice"),
        ({"status": "pending"}, 422, "invalid_choice"),
        ({"role": None}, 422, "invalid_type"),
        ({"authMethod": "tfa_sms"}, 422, "required"),
        ({"authMethod": "tfa_email"}, 422, "email_not_verified"),
        ({"email": None, "emailVerified": True}, 422, "validation_failed"),
        ({"password": "password123"}, 422, "too_common"),
    ],
)
def test_bad_admin_updates_change_nothing(
    app, client, world, admin, carl, attributes, status, code
):
    """Read-only, invalid or unproven changes: refused with a code, the user unchanged."""
    before = _row(app, carl)
    response = _patch(client, admin, carl, attributes)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["code"] == code
    assert _row(app, carl) == before


def test_patch_with_another_id_in_the_body_is_409(app, client, world, admin, carl):
    """The body's id must be the URL's: 409 id_mismatch, no change."""
    body = {"data": {"type": "User", "id": world.alice_id, "attributes": {"name": "X"}}}
    assert _send(client, "PATCH", f"/v1/users/{carl}", admin, body).status_code == 409
    assert _row(app, carl)["name"] == "Carl"


def test_global_member_only_its_role_changes(app, client, world, admin):
    """A global member's role here may change (the membership), its profile may not (403)."""
    gina = make_user(
        app,
        None,
        "gina@example.com",
        role="customer",
        name="Gina",
        member_of={world.live_id: "customer"},
    )
    assert _patch(client, admin, gina, {"name": "Renamed"}).status_code == 403
    response = _patch(client, admin, gina, {"role": "manager"})
    assert response.status_code == 200
    assert response.get_json()["data"]["attributes"]["role"] == "manager"
    assert response.get_json()["data"]["relationships"]["account"]["data"] is None
    row = _row(app, gina)
    assert (row["name"], row["role"]) == ("Gina", "customer")  # its own role elsewhere is untouched


# --- delete ---------------------------------------------------------------------------


def test_delete_is_soft_frees_the_username_keeps_history_and_stops_tokens(
    app, client, world, admin, carl, events
):
    """DELETE: 204; GET 404; old tokens 401; login refused; personal data wiped; login
    history kept; the username can be used again; the delete event fires."""
    old = login(client, world, username="carl")["access_token"]
    assert _send(client, "DELETE", f"/v1/users/{carl}", admin).status_code == 204
    assert client.get(f"/v1/users/{carl}", headers=bearer(admin)).status_code == 404
    assert client.get("/v1/user", headers=bearer(old)).status_code == 401
    row = _row(app, carl)
    assert (row["status"], row["email"], row["name"], row["password_hash"]) == (
        "deleted",
        None,
        None,
        None,
    )
    with app.app_context():
        assert (
            db.session.scalar(
                db.select(db.func.count())
                .select_from(LoginRecord)
                .where(LoginRecord.user_id == carl)
            )
            == 1
        )
    assert (
        _create(
            client, admin, {"username": "carl", "password": PASSWORD, "role": "customer"}
        ).status_code
        == 201
    )
    assert events[0] == ("identity.user.delete.success", carl, world.live_id, f"deleted:{carl}")
    assert _send(client, "DELETE", f"/v1/users/{carl}", admin).status_code == 404


def test_a_squatted_tombstone_username_does_not_block_deletion(app, client, world, admin):
    """A customer who signs up again as `deleted-<own id>` cannot make their first user
    undeletable (it was an IntegrityError, 500): the delete still answers 204."""
    guest = guest_token(client, world.live_prt)
    bob = _create(client, guest, {"username": "bob", "password": PASSWORD}).get_json()["data"]
    squat = _create(client, guest, {"username": f"deleted-{bob['id']}", "password": PASSWORD})
    assert squat.status_code == 201
    assert _send(client, "DELETE", f"/v1/users/{bob['id']}", admin).status_code == 204
    assert _row(app, bob["id"])["status"] == "deleted"
    assert f"deleted-{bob['id']}" in _usernames(app, world.live_id)  # the squatter is intact


def test_deleting_a_global_member_removes_only_the_membership(app, client, world, admin):
    """A global member is removed from this account only; its token for the account stops."""
    gina = make_user(
        app, None, "gina@example.com", role="customer", member_of={world.live_id: "customer"}
    )
    token = login(client, world, username="gina@example.com", aid=world.live_id)["access_token"]
    assert _send(client, "DELETE", f"/v1/users/{gina}", admin).status_code == 204
    assert client.get("/v1/user", headers=bearer(token)).status_code == 401
    assert _row(app, gina)["status"] == "active"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AccountMembership)) == 0


# --- the current user -----------------------------------------------------------------


def test_current_user_reads_and_updates_their_profile(app, client, world, carl, events):
    """GET /v1/user shows oneself; PATCH changes name and username and emits
    identity.current_user.update.success."""
    token = login(client, world, username="carl")["access_token"]
    shown = client.get("/v1/user", headers=bearer(token)).get_json()
    assert shown["data"]["id"] == carl and shown["meta"] == {"locale": "en"}
    response = _patch(
        client, token, carl, {"name": "Carl II", "username": " Carl.Two "}, path="/v1/user"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["username"] == "carl.two"
    assert events == [("identity.current_user.update.success", carl, world.live_id, "carl.two")]


@pytest.mark.parametrize(
    "attributes",
    [
        {"role": "administrator"},
        {"emailVerified": True},
        {"status": "active"},
        {"password": "a new long password"},
        {"emailVerifiedAt": "2020-01-01T00:00:00Z"},
        {"passwordUpdatedAt": "2020-01-01T00:00:00Z"},
    ],
)
def test_current_user_cannot_set_read_only_attributes(app, client, world, carl, attributes):
    """A customer cannot raise their role, verify their email, or set status/password or
    timestamps through PATCH /v1/user: 422 unknown_attribute, nothing changes."""
    token = login(client, world, username="carl")["access_token"]
    before = _row(app, carl)
    response = _patch(client, token, carl, attributes, path="/v1/user")
    assert response.status_code == 422
    assert _errors(response) == [
        ("unknown_attribute", f"/data/attributes/{next(iter(attributes))}")
    ]
    assert _row(app, carl) == before


def test_current_user_email_change_is_unverified_and_mailed(app, client, world, carl):
    """A new email needs the current password; it resets emailVerified and a verification
    link goes to the new address."""
    with app.app_context():
        user = db.session.get(User, carl)
        user.email_verified = True
        db.session.commit()
    token = login(client, world, username="carl")["access_token"]
    before = _row(app, carl)
    # The email is where resets go: a bearer token alone may not move it.
    for attempt in ({}, {"currentPassword": "not the password"}):
        refused = _patch(
            client, token, carl, {"email": "carl2@example.com", **attempt}, path="/v1/user"
        )
        assert refused.status_code == 422, refused.get_data(as_text=True)
        assert _errors(refused)[0][1] == "/data/attributes/currentPassword"
        assert _row(app, carl) == before
    response = _patch(
        client,
        token,
        carl,
        {"email": "carl2@example.com", "currentPassword": PASSWORD},
        path="/v1/user",
    )
    assert response.get_json()["data"]["attributes"]["emailVerified"] is False
    assert [(m.event, m.to) for m in _outbox(app).of("email")] == [
        ("identity.email_verification_token.create.success", "carl2@example.com")
    ]


def test_current_user_switches_to_sms_with_a_phone_code(app, client, world, carl):
    """tfa_sms needs phoneVerificationCode: without it 422 and nothing changes; with the
    texted code the phone is verified and the method switched; a new number later needs a
    new code."""
    token = login(client, world, username="carl")["access_token"]
    change = {"authMethod": "tfa_sms", "phoneNumber": "+15550004444"}
    before = _row(app, carl)
    response = _patch(client, token, carl, change, path="/v1/user")
    assert _errors(response) == [("required", "/data/attributes/phoneVerificationCode")]
    assert _row(app, carl) == before
    code = _phone_code(app, world, "+15550004444")
    response = _patch(
        client, token, carl, {**change, "phoneVerificationCode": code}, path="/v1/user"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    row = _row(app, carl)
    assert (row["auth_method"], row["phone_number"], row["phone_verified"]) == (
        "tfa_sms",
        "+15550004444",
        True,
    )
    change = {"phoneNumber": "+15550005555", "currentPassword": PASSWORD}
    response = _patch(client, token, carl, change, path="/v1/user")
    assert _errors(response) == [("required", "/data/attributes/phoneVerificationCode")]
    assert _row(app, carl)["phone_number"] == "+15550004444"


def test_a_bearer_token_alone_cannot_move_a_second_factor(app, client, world, carl):
    """A tfa_sms user's phone, or the method itself, moves only with currentPassword: a
    token holder with a code texted to their own phone gets 422 (required, then
    invalid_password) and nothing changes; with the password the move goes through."""
    code = _phone_code(app, world, "+15550004444")
    token = login(client, world, username="carl")["access_token"]
    first = {"authMethod": "tfa_sms", "phoneNumber": "+15550004444", "phoneVerificationCode": code}
    assert _patch(client, token, carl, first, path="/v1/user").status_code == 200
    with app.app_context():
        db.session.get(User, carl).email_verified = True
        db.session.commit()
    before = _row(app, carl)
    theirs = _phone_code(app, world, "+15550009999")
    swap = {"phoneNumber": "+15550009999", "phoneVerificationCode": theirs}
    for attributes, code in (
        (swap, "required"),
        ({**swap, "currentPassword": "not the password"}, "invalid_password"),
        ({"authMethod": "tfa_email"}, "required"),
    ):
        response = _patch(client, token, carl, attributes, path="/v1/user")
        assert _errors(response) == [(code, "/data/attributes/currentPassword")]
        assert _row(app, carl) == before
    response = _patch(client, token, carl, {**swap, "currentPassword": PASSWORD}, path="/v1/user")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _row(app, carl)["phone_number"] == "+15550009999"


def test_current_user_needs_a_verified_email_for_email_codes(app, client, world, carl):
    """Switching to tfa_email with an unverified email: 422, method unchanged."""
    token = login(client, world, username="carl")["access_token"]
    response = _patch(client, token, carl, {"authMethod": "tfa_email"}, path="/v1/user")
    assert _errors(response) == [("email_not_verified", "/data/attributes/authMethod")]
    assert _row(app, carl)["auth_method"] == "simple"


def test_global_member_sees_its_membership_role(app, client, world):
    """GET /v1/user for a global member logged into an account shows its role there."""
    make_user(app, None, "gina@example.com", role="customer", member_of={world.live_id: "manager"})
    token = login(client, world, username="gina@example.com", aid=world.live_id)["access_token"]
    assert (
        client.get("/v1/user", headers=bearer(token)).get_json()["data"]["attributes"]["role"]
        == "manager"
    )


def test_openapi_describes_every_user_route(app):
    """Every route of api/users.py is in its OPENAPI paths, and the User schema exists."""
    operations = {
        (rule.rule.removeprefix("/v1").replace("<user_id>", "{user_id}"), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint
        in {
            f"api.{n}"
            for n in (
                "create_user",
                "list_users",
                "get_user",
                "update_user",
                "delete_user",
                "current_user",
                "update_current_user",
            )
        }
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {
        (path, method)
        for path, item in users_api.OPENAPI["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == described
    assert "User" in users_api.OPENAPI["schemas"]
