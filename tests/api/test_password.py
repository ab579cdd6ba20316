"""Passwords over /v1: reset requests (one answer and one timing whoever the username
names, links on ISSUER only, usernames matched in canonical form: the OWASP Forgot Password
Cheat Sheet), PATCH /v1/password with a reset or activation token or the current password,
revocation of old tokens, throttles, bad input, and the forgotten-password and activation
flows end to end over a real SMTP server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from factories import PASSWORD, World, make_totp_user, make_user
from oauth_helpers import bearer, password_grant, refresh
from verification_helpers import (
    OTHER_ROLES,
    assert_no_content,
    call,
    client_token,
    committed_column,
    document,
    guest_token,
    link_token,
    mails,
    one_error,
    outbox,
    person,
    race,
    record_events,
    user_row,
)

from authserver.identity import accounts, verification
from authserver.platform import background
from authserver.platform.errors import ValidationFailed
from authserver.platform.extensions import db, passwords
from authserver.platform.models import Account, User
from authserver.platform.security import digest

PRET = "/v1/password_reset_tokens"
PASSWORD_PATH = "/v1/password"
RESET_EVENT = "identity.password_reset_token.create.success"
ACTIVATION_EVENT = "identity.activation_token.create.success"
CHANGED_EVENT = "identity.password.update.success"
NEW_PASSWORD = "a-brand-new-passphrase"
OTHER_PASSWORD = "yet-another-passphrase"


def ask_reset(client: Any, token: str, username: Any, **kw: Any) -> Any:
    attributes = {"username": username}
    if "locale" in kw:
        attributes["locale"] = kw.pop("locale")
    return call(client, "POST", PRET, document("PasswordResetToken", **attributes), token, **kw)


def set_password(client: Any, token: str | None, **attributes: Any) -> Any:
    return call(client, "PATCH", PASSWORD_PATH, document("Password", **attributes), token)


def reset_tokens(app: Any, path: str = "/reset-password") -> list[str]:
    return [link_token(m.text, path) for m in mails(app) if path in m.text]


def openid_grant(
    client: Any, world: World, username: str, password: str, otp: str | None = None
) -> Any:
    """A password grant with scope openid (and `otp` when given)."""
    extra = {"otp": otp} if otp else {}
    return password_grant(client, world, username, password, scope="openid", **extra)


def password_is(app: Any, user_id: str, password: str) -> bool:
    with app.app_context():
        return passwords().verify(user_row(app, user_id).password_hash, password)


def carol(app: Any, world: World, **attrs: Any) -> str:
    attrs.setdefault("email", "carol@example.com")
    return make_user(app, world.live_id, "carol", **attrs)


# --- the reset request --------------------------------------------------------------------


def test_reset_request_emails_a_link_to_the_stored_address(app, client, world, store):
    """A guest's request for an existing username: 204 with no body; in the background one
    email goes to the user's stored address with an ISSUER link; Redis keeps a digest of
    the token for 24 h and nothing changes on the user."""
    user_id = carol(app, world)
    before = user_row(app, user_id)
    assert_no_content(ask_reset(client, guest_token(client, world.live_prt), "carol"))
    [mail] = mails(app, RESET_EVENT)
    assert mail.to == "carol@example.com"
    assert f"{app.config['ISSUER']}/reset-password?token=" in mail.text
    token = link_token(mail.text, "/reset-password")
    assert store.get(f"pwreset:{token}") is None
    assert 86_390 <= store.ttl(f"pwreset:{digest(token)}") <= 86_400
    after = user_row(app, user_id)
    assert (after.password_hash, after.token_generation, after.status) == (
        before.password_hash,
        before.token_generation,
        before.status,
    )


def test_reset_request_answers_the_same_for_existing_unknown_pending_and_disabled_users(
    app, client, world
):
    """Status, body and headers are identical whoever the username names, so the answer
    tells nobody which accounts exist (OWASP Forgot Password Cheat Sheet, "Forgot Password
    Request"); only an existing user gets a reset mail and a pending one the invitation
    again."""
    carol(app, world)
    make_user(
        app, world.live_id, "penny", email="penny@example.com", password=None, status="pending"
    )
    disabled = make_user(app, world.live_id, "dora", email="dora@example.com")
    with app.app_context():
        accounts.set_status(db.session.get(User, disabled), "disabled")
    guest = guest_token(client, world.live_prt)
    answers = []
    for username in ("carol", "nobody-here", "penny", "dora"):
        response = ask_reset(client, guest, username)
        headers = sorted((k, v) for k, v in response.headers.items() if k != "X-Request-Id")
        answers.append((response.status_code, response.get_data(), headers))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 204
    assert sorted((m.event, m.to) for m in mails(app)) == [
        (ACTIVATION_EVENT, "penny@example.com"),
        (RESET_EVENT, "carol@example.com"),
    ]


def test_reset_request_does_the_same_work_for_existing_and_unknown_usernames(app, world, mail_app):
    """With mail going over real SMTP, the request itself runs the same SQL for an existing
    username as for an unknown one and looks up no user: the lookup and the email happen in
    the background, so the answer's timing cannot tell who exists (bench/timing.py measures
    the wall clock)."""
    # The guest token's check reads its account from PostgreSQL every time (no Redis copy
    # that the first request fills and the others reuse), so runs compare like for like.
    smtp_app, sink = mail_app(TOKEN_CHECK_CACHE_TTL=0)
    http = smtp_app.test_client()
    guest = guest_token(http, world.live_prt)
    rounds = 4
    for i in range(rounds):  # a user each, so the silent per-user cap never saves the work
        make_user(app, world.live_id, f"user{i}", email=f"user{i}@example.com")
    with smtp_app.app_context():
        engine = db.engine
    here = threading.get_ident()
    statements: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() == here:  # the request's thread, not the background job
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    try:
        seen: dict[str, list[list[str]]] = {"user": [], "nobody": []}
        for i in range(rounds):
            for prefix, runs in seen.items():
                statements.clear()
                response = ask_reset(http, guest, f"{prefix}{i}", ip=f"10.9.{i}.{len(prefix)}")
                assert response.status_code == 204
                runs.append(list(statements))
                assert background.jobs(smtp_app).drain()
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
    assert seen["user"] == seen["nobody"]
    assert not any("users" in statement for run in seen["user"] for statement in run)
    assert len(sink.envelopes) == rounds  # the background did find and mail each user


def test_reset_link_uses_the_configured_issuer_not_the_host_header(app, client, world):
    """A request with Host: evil.example still gets an ISSUER link: the link is never built
    from the request's Host or X-Forwarded-Host (OWASP Forgot Password Cheat Sheet, "URL
    Tokens": Host header injection)."""
    carol(app, world)
    guest = guest_token(client, world.live_prt)
    response = call(
        client,
        "POST",
        PRET,
        document("PasswordResetToken", username="carol"),
        guest,
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert_no_content(response)
    [mail] = mails(app, RESET_EVENT)
    assert "evil.example" not in mail.text
    assert f"{app.config['ISSUER']}/reset-password?token=" in mail.text


@pytest.mark.parametrize("typed", ["CAROL", "  Carol ", "carol"])
def test_reset_request_matches_the_username_in_any_case_and_surrounding_space(
    app, client, world, typed
):
    """Case and surrounding space do not matter, and the mail goes to the stored address
    (the request names no address at all)."""
    carol(app, world)
    assert_no_content(ask_reset(client, guest_token(client, world.live_prt), typed))
    assert [m.to for m in mails(app)] == ["carol@example.com"]


@pytest.mark.parametrize(
    "typed",
    ["m\u0131ke", "M\u0130KE", "\uff4d\uff49\uff4b\uff45", "m\u0131ke@example.org", "mi\u200bke"],
    ids=["dotless-i", "dotted-I", "fullwidth", "dotless-i-email", "zero-width"],
)
def test_reset_request_for_a_unicode_lookalike_username_reaches_nobody(app, client, world, typed):
    """Unicode look-alikes of `mike` and of his email (dotless i, dotted capital I,
    full-width letters, a zero-width space) match nobody: nothing is sent to anyone."""
    make_user(app, world.live_id, "mike", email="mike@example.org")
    assert_no_content(ask_reset(client, guest_token(client, world.live_prt), typed))
    assert mails(app) == []


def test_reset_by_email_goes_to_the_stored_address(app, client, world):
    """The email instead of the username also works (any case), and the mail goes to the
    address as stored, not as typed."""
    make_user(app, world.live_id, "mike", email="Mike@example.org")
    assert_no_content(ask_reset(client, guest_token(client, world.live_prt), "MIKE@EXAMPLE.ORG"))
    assert [m.to for m in mails(app)] == ["Mike@example.org"]


def test_reset_by_the_seed_email_attribute(app, client, world):
    """Seed 001 names the user with an `email` attribute: the link goes to every user
    of the account with that address (any case), as stored."""
    make_user(app, world.live_id, "mike", email="Mike@example.org")
    body = document("PasswordResetToken", email="mike@EXAMPLE.org", locale="fr")
    response = call(client, "POST", PRET, body, guest_token(client, world.live_prt))
    assert_no_content(response)
    assert [m.to for m in mails(app)] == ["Mike@example.org"]


def test_reset_request_stays_inside_the_guests_account(app, client, world):
    """A guest of another account, or of the test twin, cannot reach a live user."""
    carol(app, world)
    for prt in (world.other_prt, world.test_prt):
        assert_no_content(ask_reset(client, guest_token(client, prt), "carol"))
    assert mails(app) == []


def test_global_member_can_reset_through_the_account(app, client, world):
    """A global user who is a member of the account gets the mail through its guest token."""
    make_user(app, None, "gail", email="gail@example.com", member_of={world.live_id: "customer"})
    assert_no_content(ask_reset(client, guest_token(client, world.live_prt), "gail"))
    assert [m.to for m in mails(app, RESET_EVENT)] == ["gail@example.com"]


@pytest.mark.parametrize(
    ("locale", "subject"),
    [("fr", "Réinitialisez votre mot de passe"), ("es", "Restablece tu contraseña")],
)
def test_reset_mail_in_the_requested_locale(app, client, world, locale, subject):
    """`locale` chooses the language of the reset email."""
    carol(app, world)
    response = ask_reset(client, guest_token(client, world.live_prt), "carol", locale=locale)
    assert_no_content(response)
    [mail] = mails(app, RESET_EVENT)
    assert (mail.locale, mail.subject) == (locale, subject)


def test_pending_user_gets_the_invitation_again_in_the_locale(app, client, world):
    """A pending user's reset request re-sends the activation link, in `locale`."""
    make_user(
        app, world.live_id, "penny", email="penny@example.com", password=None, status="pending"
    )
    guest = guest_token(client, world.live_prt)
    assert_no_content(ask_reset(client, guest, "penny", locale="es"))
    [mail] = mails(app)
    assert (mail.event, mail.locale, mail.subject) == (
        ACTIVATION_EVENT,
        "es",
        "Activa tu cuenta",
    )


@pytest.mark.parametrize("role", ["owner", "administrator", "customer"])
def test_reset_request_needs_a_guest_token(app, client, world, role):
    """Only guests (tokens made from the account's publishable token) ask for resets: a
    user's or a client's token is 403, no token 401."""
    carol(app, world)
    caller = person(app, client, world, role)
    one_error(ask_reset(client, caller.access, "carol"), 403, "forbidden")
    one_error(ask_reset(client, client_token(client, world), "carol"), 403, "forbidden")
    assert ask_reset(client, "", "carol").status_code == 401
    assert mails(app) == []


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ({}, "required"),
        ({"username": "carol", "email": "carol@shop.example"}, "conflicting_attributes"),
    ],
)
def test_reset_request_takes_username_or_email_not_both(app, client, world, attributes, code):
    """A reset request names the user by username or (seed 001) by email: neither or both
    is a 422 pointing at the two, and nothing is sent."""
    carol(app, world)
    body = document("PasswordResetToken", **attributes)
    response = call(client, "POST", PRET, body, guest_token(client, world.live_prt))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert {(e["code"], e["source"]["pointer"]) for e in errors} == {
        (code, "/data/attributes/email"),
        (code, "/data/attributes/username"),
    }
    assert mails(app) == []


@pytest.mark.parametrize(
    ("attributes", "status", "code", "pointer"),
    [
        ({"username": 7}, 422, "invalid_type", "/data/attributes/username"),
        ({"email": 7}, 422, "invalid_type", "/data/attributes/email"),
        ({"email": ""}, 422, "too_short", "/data/attributes/email"),
        ({"username": ""}, 422, "too_short", "/data/attributes/username"),
        ({"username": "x" * 256}, 422, "too_long", "/data/attributes/username"),
        ({"username": "carol", "locale": "de"}, 422, "invalid_choice", "/data/attributes/locale"),
        ({"username": "carol", "phone": "x"}, 422, "unknown_attribute", None),
    ],
)
def test_reset_request_bad_input(app, client, world, attributes, status, code, pointer):
    """Malformed requests are refused the same way for every username and send nothing."""
    carol(app, world)
    body = document("PasswordResetToken", **attributes)
    response = call(client, "POST", PRET, body, guest_token(client, world.live_prt))
    one_error(response, status, code, pointer)
    assert mails(app) == []


def test_reset_requests_are_throttled_per_ip(app, client, world):
    """30 requests an hour from one IP; the 31st is 429 with Retry-After (says nothing
    about any user)."""
    guest = guest_token(client, world.live_prt)
    for i in range(30):
        assert_no_content(ask_reset(client, guest, f"nobody-{i}"))
    response = ask_reset(client, guest, "nobody")
    one_error(response, 429, "throttled")
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600


def test_reset_mails_per_user_are_capped_silently(app, client, world):
    """At most 5 reset mails a user an hour: the 6th request still answers 204 (the same as
    for anyone) but sends nothing, so nobody can flood a user's inbox."""
    carol(app, world)
    guest = guest_token(client, world.live_prt)
    for _ in range(6):
        assert_no_content(ask_reset(client, guest, "carol"))
    assert len(mails(app)) == 5


# --- PATCH /v1/password with a reset token --------------------------------------------------


def requested_reset(app: Any, client: Any, world: World, username: str = "carol") -> str:
    """Ask for a reset as a guest; the token from the email."""
    assert_no_content(ask_reset(client, guest_token(client, world.live_prt), username))
    [token] = [link_token(m.text, "/reset-password") for m in mails(app, RESET_EVENT)][-1:]
    return token


def test_reset_sets_the_password_revokes_tokens_and_emails(app, client, world):
    """After a reset the new password works, the old one does not, the old access and
    refresh tokens are refused, the user is emailed, the event fires after the commit, and
    the answer logs nobody in (OWASP Forgot Password Cheat Sheet, "Reset the Password")."""
    me = person(app, client, world, "customer", username="carol")
    seen = record_events(
        app, CHANGED_EVENT, lambda p: committed_column(app, p["user"].id, "password_hash")
    )
    token = requested_reset(app, client, world)
    response = set_password(
        client, guest_token(client, world.live_prt), resetToken=token, value=NEW_PASSWORD
    )
    assert_no_content(response)
    assert password_is(app, me.id, NEW_PASSWORD) and not password_is(app, me.id, PASSWORD)
    assert seen == [user_row(app, me.id).password_hash]
    assert client.get("/v1/user", headers=bearer(me.access)).status_code == 401
    assert refresh(client, me.refresh, world.public_id).get_json()["error"] == "invalid_grant"
    assert openid_grant(client, world, "carol", PASSWORD).status_code == 400
    assert openid_grant(client, world, "carol", NEW_PASSWORD).status_code == 200
    [changed] = mails(app, CHANGED_EVENT)
    assert changed.to == me.email


def test_reset_token_works_once(app, client, world):
    """A second use is 422 invalid_token at resetToken and leaves the password alone."""
    user_id = carol(app, world)
    token = requested_reset(app, client, world)
    guest = guest_token(client, world.live_prt)
    assert_no_content(set_password(client, guest, resetToken=token, value=NEW_PASSWORD))
    response = set_password(client, guest, resetToken=token, value=OTHER_PASSWORD)
    one_error(response, 422, "invalid_token", "/data/attributes/resetToken")
    assert password_is(app, user_id, NEW_PASSWORD)


def test_newer_reset_token_voids_the_older(app, client, world):
    """One valid reset token per user: the first link fails after a second request."""
    user_id = carol(app, world)
    first = requested_reset(app, client, world)
    second = requested_reset(app, client, world)
    guest = guest_token(client, world.live_prt)
    one_error(
        set_password(client, guest, resetToken=first, value=NEW_PASSWORD), 422, "invalid_token"
    )
    assert password_is(app, user_id, PASSWORD)
    assert_no_content(set_password(client, guest, resetToken=second, value=NEW_PASSWORD))


def test_expired_reset_token_is_refused(app, client, world, store):
    """When the token's Redis key expires (deleted here) it is 422 and nothing changes."""
    user_id = carol(app, world)
    token = requested_reset(app, client, world)
    store.delete(f"pwreset:{digest(token)}")
    guest = guest_token(client, world.live_prt)
    one_error(
        set_password(client, guest, resetToken=token, value=NEW_PASSWORD), 422, "invalid_token"
    )
    assert password_is(app, user_id, PASSWORD)


def test_reset_token_dies_when_the_password_changes(app, client, world):
    """A reset link mailed before a password change does not work after it."""
    me = person(app, client, world, "customer", username="carol")
    token = requested_reset(app, client, world)
    response = set_password(client, me.access, currentPassword=PASSWORD, value=NEW_PASSWORD)
    assert_no_content(response)
    guest = guest_token(client, world.live_prt)
    response = set_password(client, guest, resetToken=token, value=OTHER_PASSWORD)
    one_error(response, 422, "invalid_token")
    assert password_is(app, me.id, NEW_PASSWORD)


def test_reset_token_dies_with_the_account(app, client, world):
    """Once the user's account is deleted, a reset link mailed before sets nothing."""
    user_id = carol(app, world)
    token = requested_reset(app, client, world)
    with app.app_context():
        accounts.delete_account(db.session.get(Account, world.live_id))
    guest = guest_token(client, world.other_prt)
    response = set_password(client, guest, resetToken=token, value=NEW_PASSWORD)
    one_error(response, 422, "invalid_token")
    assert password_is(app, user_id, PASSWORD)


def test_concurrent_resets_succeed_once(app, client, world):
    """The same token in two requests at once: one 204, one 422; the winner's password holds."""
    user_id = carol(app, world)
    token = requested_reset(app, client, world)
    guest = guest_token(client, world.live_prt)
    values = iter([NEW_PASSWORD, OTHER_PASSWORD])

    def attempt() -> tuple[int, str]:
        value = next(values)
        response = set_password(app.test_client(), guest, resetToken=token, value=value)
        return response.status_code, value

    results = race(attempt)
    assert sorted(status for status, _ in results) == [204, 422]
    [winner] = [value for status, value in results if status == 204]
    assert password_is(app, user_id, winner)
    assert len(mails(app, CHANGED_EVENT)) == 1


def test_refused_new_password_keeps_the_link(app, client, world):
    """A too-short or common password, or a wrong confirmation, is 422 at its attribute
    and does not spend the token."""
    user_id = carol(app, world)
    token = requested_reset(app, client, world)
    guest = guest_token(client, world.live_prt)
    for attributes, code, pointer in (
        ({"value": "short"}, "too_short", "value"),
        ({"value": "password123"}, "too_common", "value"),
        (
            {"value": NEW_PASSWORD, "valueConfirmation": "typo"},
            "confirmation_mismatch",
            "valueConfirmation",
        ),
    ):
        response = set_password(client, guest, resetToken=token, **attributes)
        one_error(response, 422, code, f"/data/attributes/{pointer}")
    assert password_is(app, user_id, PASSWORD)
    response = set_password(
        client, guest, resetToken=token, value=NEW_PASSWORD, valueConfirmation=NEW_PASSWORD
    )
    assert_no_content(response)


def test_reset_with_any_token_but_not_without(app, client, world):
    """A reset token may be presented with any bearer token (a client's, another user's);
    without one it is 401 and the token stays usable."""
    user_id = carol(app, world)
    token = requested_reset(app, client, world)
    assert set_password(client, None, resetToken=token, value=NEW_PASSWORD).status_code == 401
    assert password_is(app, user_id, PASSWORD)
    assert_no_content(
        set_password(client, client_token(client, world), resetToken=token, value=NEW_PASSWORD)
    )
    assert password_is(app, user_id, NEW_PASSWORD)


def test_reset_keeps_the_totp_second_factor_and_logs_nobody_in(app, client, world):
    """A reset changes the password only: it answers with no token, and a TOTP user who
    reset their password still needs the TOTP code to log in."""
    user_id, totp = make_totp_user(app, world.live_id, "carol", email="carol@example.com")
    token = requested_reset(app, client, world)
    response = set_password(
        client, guest_token(client, world.live_prt), resetToken=token, value=NEW_PASSWORD
    )
    assert_no_content(response)
    after = user_row(app, user_id)
    assert (after.auth_method, after.totp_secret) == ("tfa_totp", totp.secret)
    response = openid_grant(client, world, "carol", NEW_PASSWORD)
    assert response.status_code == 400 and response.get_json()["error"] == "otp_required"
    assert openid_grant(client, world, "carol", NEW_PASSWORD, totp.now()).status_code == 200


def test_reset_keeps_sms_two_step_login(app, client, world):
    """A reset changes the password only: an SMS two-step user still gets an SMS code
    after it, and needs it."""
    user_id = carol(app, world, auth_method="tfa_sms", phone_number="+15551230000")
    token = requested_reset(app, client, world)
    response = set_password(
        client, guest_token(client, world.live_prt), resetToken=token, value=NEW_PASSWORD
    )
    assert_no_content(response)
    assert user_row(app, user_id).auth_method == "tfa_sms"
    response = openid_grant(client, world, "carol", NEW_PASSWORD)
    assert response.get_json()["error"] == "otp_required"
    [sms] = outbox(app).of("sms")
    assert sms.to == "+15551230000"


# --- PATCH /v1/password: both, neither, bad input ----------------------------------------


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ({"value": NEW_PASSWORD}, "required"),
        (
            {"value": NEW_PASSWORD, "resetToken": "x" * 43, "currentPassword": PASSWORD},
            "conflicting_attributes",
        ),
    ],
    ids=["neither", "both"],
)
def test_reset_token_xor_current_password(app, client, world, attributes, code):
    """Exactly one of resetToken and currentPassword: otherwise 422 pointing at both."""
    me = person(app, client, world, "customer")
    response = set_password(client, me.access, **attributes)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert [(e["code"], e["source"]["pointer"]) for e in errors] == [
        (code, "/data/attributes/currentPassword"),
        (code, "/data/attributes/resetToken"),
    ]
    assert password_is(app, me.id, PASSWORD)


@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [
        (document("Password", currentPassword=PASSWORD), 422, "required", "/data/attributes/value"),
        (
            document("Password", currentPassword=PASSWORD, value=7),
            422,
            "invalid_type",
            "/data/attributes/value",
        ),
        (
            document("Password", currentPassword=None, value=NEW_PASSWORD),
            422,
            "invalid_type",
            "/data/attributes/currentPassword",
        ),
        (
            document("Password", currentPassword=PASSWORD, value="x" * 1025),
            422,
            "too_long",
            "/data/attributes/value",
        ),
        (
            document("Password", currentPassword=PASSWORD, value="x" * 129),
            422,
            "too_long",
            "/data/attributes/value",
        ),
        (
            document("Password", currentPassword=PASSWORD, value=NEW_PASSWORD, password="x"),
            422,
            "unknown_attribute",
            "/data/attributes/password",
        ),
        (
            document("User", currentPassword=PASSWORD, value=NEW_PASSWORD),
            409,
            "type_mismatch",
            "/data/type",
        ),
        (
            {"data": {"type": "Password", "id": "me", "attributes": {}}},
            403,
            "client_generated_id",
            "/data/id",
        ),
        ("{", 400, "malformed_json", None),
    ],
)
def test_password_bad_input(app, client, world, body, status, code, pointer):
    """Each malformed PATCH gets its status, code and pointer; the password stays."""
    me = person(app, client, world, "customer")
    one_error(call(client, "PATCH", PASSWORD_PATH, body, me.access), status, code, pointer)
    assert password_is(app, me.id, PASSWORD)


def test_password_wrong_content_type_is_415(app, client, world):
    """A form-encoded PATCH is 415 and changes nothing."""
    me = person(app, client, world, "customer")
    response = call(client, "PATCH", PASSWORD_PATH, "value=x", me.access, content_type="text/plain")
    one_error(response, 415, "unsupported_media_type")
    assert password_is(app, me.id, PASSWORD)


# --- PATCH /v1/password with the current password -----------------------------------------


def test_change_revokes_old_tokens_and_emails(app, client, world):
    """The user changes their own password (proving the current one); every earlier token
    stops (this one too), the event fires after the commit and the user is told by email."""
    me = person(app, client, world, "customer", username="carol")
    seen = record_events(
        app, CHANGED_EVENT, lambda p: committed_column(app, p["user"].id, "password_hash")
    )
    response = set_password(
        client,
        me.access,
        currentPassword=PASSWORD,
        value=NEW_PASSWORD,
        valueConfirmation=NEW_PASSWORD,
    )
    assert_no_content(response)
    assert password_is(app, me.id, NEW_PASSWORD)
    assert seen == [user_row(app, me.id).password_hash]
    assert client.get("/v1/user", headers=bearer(me.access)).status_code == 401
    assert refresh(client, me.refresh, world.public_id).get_json()["error"] == "invalid_grant"
    assert openid_grant(client, world, "carol", NEW_PASSWORD).status_code == 200
    assert [m.to for m in mails(app, CHANGED_EVENT)] == [me.email]


@pytest.mark.parametrize("role", ["owner", "administrator", *OTHER_ROLES])
def test_every_role_changes_its_own_password(app, client, world, role):
    """Changing one's own password is open to every user role."""
    me = person(app, client, world, role)
    assert_no_content(set_password(client, me.access, currentPassword=PASSWORD, value=NEW_PASSWORD))
    assert password_is(app, me.id, NEW_PASSWORD)


def test_wrong_current_password_changes_nothing(app, client, world):
    """A wrong current password is 422 at currentPassword; no tokens are revoked, no mail."""
    me = person(app, client, world, "customer")
    response = set_password(
        client, me.access, currentPassword="not-my-password", value=NEW_PASSWORD
    )
    one_error(response, 422, "invalid_password", "/data/attributes/currentPassword")
    assert password_is(app, me.id, PASSWORD)
    assert client.get("/v1/user", headers=bearer(me.access)).status_code == 200
    assert mails(app) == []


def test_confirmation_must_match(app, client, world):
    """valueConfirmation, when given, must equal value (422 at valueConfirmation)."""
    me = person(app, client, world, "customer")
    response = set_password(
        client, me.access, currentPassword=PASSWORD, value=NEW_PASSWORD, valueConfirmation="x"
    )
    one_error(response, 422, "confirmation_mismatch", "/data/attributes/valueConfirmation")
    assert password_is(app, me.id, PASSWORD)


def test_wrong_current_passwords_are_throttled(app, client, world):
    """After 10 wrong current passwords even the right one gets 429 with Retry-After."""
    me = person(app, client, world, "customer")
    for _ in range(10):
        response = set_password(
            client, me.access, currentPassword="wrong-guess", value=NEW_PASSWORD
        )
        assert response.status_code == 422
    response = set_password(client, me.access, currentPassword=PASSWORD, value=NEW_PASSWORD)
    one_error(response, 429, "throttled")
    assert 0 < int(response.headers["Retry-After"]) <= 900
    assert password_is(app, me.id, PASSWORD)


def test_guests_and_clients_have_no_own_password(app, client, world):
    """currentPassword with a guest or client token is 403; no token 401."""
    for token in (guest_token(client, world.live_prt), client_token(client, world)):
        response = set_password(client, token, currentPassword=PASSWORD, value=NEW_PASSWORD)
        one_error(response, 403, "forbidden")
    assert (
        set_password(client, None, currentPassword=PASSWORD, value=NEW_PASSWORD).status_code == 401
    )


# --- activation of an invited (pending) user -------------------------------------------------


def pending_user(app: Any, world: World, **kw: Any) -> str:
    """An invited user (no password, status pending) who has been sent the activation email."""
    user_id = make_user(
        app, world.live_id, "penny", password=None, email="penny@example.com", status="pending"
    )
    with app.app_context():
        verification.send_activation(db.session.get(User, user_id), **kw)
    return user_id


def test_activation_sets_the_password_and_activates(app, client, world, store):
    """The emailed activation token sets the first password: the user becomes active and
    can log in (which they could not before); the link lives 3 days."""
    user_id = pending_user(app, world)
    [token] = reset_tokens(app, "/activate")
    assert 3 * 86_400 - 10 <= store.ttl(f"pwreset:{digest(token)}") <= 3 * 86_400
    assert openid_grant(client, world, "penny", NEW_PASSWORD).status_code == 400
    guest = guest_token(client, world.live_prt)
    assert_no_content(set_password(client, guest, resetToken=token, value=NEW_PASSWORD))
    assert user_row(app, user_id).status == "active"
    assert openid_grant(client, world, "penny", NEW_PASSWORD).status_code == 200
    one_error(
        set_password(client, guest, resetToken=token, value=OTHER_PASSWORD), 422, "invalid_token"
    )


def test_activation_sends_no_password_changed_alarm(app, client, world):
    """Choosing the first password with the activation token sends no "your password was
    changed, if it wasn't you..." mail (there was no password before); a reset still does."""
    user_id = pending_user(app, world)
    [token] = reset_tokens(app, "/activate")
    guest = guest_token(client, world.live_prt)
    assert_no_content(set_password(client, guest, resetToken=token, value=NEW_PASSWORD))
    background.jobs(app).drain()
    assert user_row(app, user_id).status == "active"
    assert mails(app, CHANGED_EVENT) == []
    assert_no_content(ask_reset(client, guest, "penny"))
    background.jobs(app).drain()
    [reset] = reset_tokens(app)
    assert_no_content(set_password(client, guest, resetToken=reset, value=OTHER_PASSWORD))
    assert [m.to for m in mails(app, CHANGED_EVENT)] == ["penny@example.com"]


def test_activation_mail_in_the_given_locale(app, world):
    """send_activation(locale=...) writes the invitation in that language."""
    pending_user(app, world, locale="fr")
    [mail] = mails(app, ACTIVATION_EVENT)
    assert (mail.to, mail.locale) == ("penny@example.com", "fr")


def test_activation_is_only_for_pending_users(app, world):
    """An active user cannot be sent an activation link (it would be an unasked-for reset)."""
    user_id = carol(app, world)
    with app.app_context(), pytest.raises(ValidationFailed):
        verification.send_activation(db.session.get(User, user_id))
    assert mails(app) == []


# --- end to end over SMTP ---------------------------------------------------------------------


def mail_link(sink: Any, path: str) -> str:
    """The token of the `path` link in the newest email the SMTP server received."""
    message = sink.messages()[-1]
    text = message.get_body(("plain",)).get_content()
    return link_token(text, path)


def test_forgotten_password_end_to_end_over_smtp(app, world, mail_app):
    """End to end: a guest asks for a reset, the mail arrives at a real SMTP server, the
    link's token sets a new password, and /oauth/token logs in with it (not the old one)."""
    carol(app, world)
    smtp_app, sink = mail_app()
    http = smtp_app.test_client()
    guest = guest_token(http, world.live_prt)
    assert_no_content(ask_reset(http, guest, "Carol"))
    assert background.jobs(smtp_app).drain()
    assert [e.rcpt_tos for e in sink.envelopes] == [["carol@example.com"]]
    token = mail_link(sink, "/reset-password")
    assert_no_content(set_password(http, guest, resetToken=token, value=NEW_PASSWORD))
    assert openid_grant(http, world, "carol", PASSWORD).get_json()["error"] == "invalid_grant"
    body = openid_grant(http, world, "carol", NEW_PASSWORD).get_json()
    assert body["access_token"] and body["refresh_token"]
    assert sink.messages()[-1]["Subject"] == "Your password was changed"


def test_activation_end_to_end_over_smtp(app, world, mail_app):
    """End to end: an invited (pending) user activates from the emailed link and logs in."""
    smtp_app, sink = mail_app()
    pending_user(smtp_app, world)
    token = mail_link(sink, "/activate")
    http = smtp_app.test_client()
    guest = guest_token(http, world.live_prt)
    assert_no_content(set_password(http, guest, resetToken=token, value=NEW_PASSWORD))
    assert openid_grant(http, world, "penny", NEW_PASSWORD).status_code == 200


def test_change_end_to_end_over_smtp(app, world, mail_app):
    """End to end: a password change revokes the old tokens and the SMTP server gets the
    "password changed" mail."""
    smtp_app, sink = mail_app()
    http = smtp_app.test_client()
    me = person(app, http, world, "customer", username="carol")
    assert_no_content(set_password(http, me.access, currentPassword=PASSWORD, value=NEW_PASSWORD))
    assert http.get("/v1/user", headers=bearer(me.access)).status_code == 401
    assert refresh(http, me.refresh, world.public_id).get_json()["error"] == "invalid_grant"
    assert [e.rcpt_tos for e in sink.envelopes] == [[me.email]]
