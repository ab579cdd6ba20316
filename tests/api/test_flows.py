"""End-to-end flows across the /v1 resources, only through HTTP: an invitation accepted,
a guest's sign-up with SMS two-step login, and second factors that a bearer token alone
cannot switch off.
"""

from __future__ import annotations

from typing import Any

import pyotp
import pytest
from factories import PASSWORD, World, make_user
from oauth_helpers import login, password_grant
from verification_helpers import (
    call,
    document,
    guest_token,
    link_token,
    mails,
    one_error,
    outbox,
    user_row,
)

from authserver.platform.extensions import db
from authserver.platform.models import Account, RecoveryCode

NEW_PASSWORD = "a-brand-new-passphrase"


def _owner(client: Any, world: World) -> str:
    return str(login(client, world)["access_token"])


def _create(client: Any, token: str, **attributes: Any) -> Any:
    """POST /v1/users with these attributes and a token (an administrator's or a guest's)."""
    return call(client, "POST", "/v1/users", document("User", **attributes), token)


def test_invited_user_activates_from_the_one_email_and_logs_in(app, client, world):
    """An administrator invites a pending user: one email (the activation link) goes out;
    setting a password with it makes the user active with a verified email, and they log in."""
    owner = _owner(client, world)
    created = _create(
        client, owner, username="ivy", role="manager", status="pending", email="ivy@example.com"
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["data"]["id"]
    sent = mails(app)
    assert [m.event for m in sent] == ["identity.activation_token.create.success"]
    assert sent[0].to == "ivy@example.com"
    assert password_grant(client, world, "ivy", NEW_PASSWORD).status_code == 400

    token = link_token(sent[0].text, "/activate")
    guest = guest_token(client, world.live_prt)
    done = call(
        client,
        "PATCH",
        "/v1/password",
        document("Password", resetToken=token, value=NEW_PASSWORD),
        guest,
    )
    assert done.status_code == 204, done.get_data(as_text=True)
    row = user_row(app, user_id)
    assert (row.status, row.email_verified) == ("active", True)
    assert row.email_verified_at is not None
    assert password_grant(client, world, "ivy", NEW_PASSWORD).status_code == 200
    again = call(
        client,
        "PATCH",
        "/v1/password",
        document("Password", resetToken=token, value="x" * 20),
        guest,
    )
    one_error(again, 422, "invalid_token", "/data/attributes/resetToken")


def test_reset_link_dies_when_the_email_changes(app, client, world):
    """A reset link mailed to the former address stops working once the email is changed."""
    owner = _owner(client, world)
    created = _create(
        client,
        owner,
        username="rhea",
        role="customer",
        password=PASSWORD,
        email="rhea@example.com",
        emailVerified=True,
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["data"]["id"]
    guest = guest_token(client, world.live_prt)
    asked = call(
        client,
        "POST",
        "/v1/password_reset_tokens",
        document("PasswordResetToken", username="rhea"),
        guest,
    )
    assert asked.status_code == 204
    [mail] = mails(app, "identity.password_reset_token.create.success")
    token = link_token(mail.text, "/reset-password")
    moved = call(
        client,
        "PATCH",
        f"/v1/users/{user_id}",
        {"data": {"type": "User", "id": user_id, "attributes": {"email": "new@example.com"}}},
        owner,
    )
    assert moved.status_code == 200, moved.get_data(as_text=True)
    hash_before = user_row(app, user_id).password_hash
    used = call(
        client,
        "PATCH",
        "/v1/password",
        document("Password", resetToken=token, value=NEW_PASSWORD),
        guest,
    )
    one_error(used, 422, "invalid_token", "/data/attributes/resetToken")
    assert user_row(app, user_id).password_hash == hash_before


def test_sign_up_with_sms_two_step_login_over_http(app, client, world):
    """A guest texts a code to a phone, signs up a tfa_sms customer with it, and
    the same code answers the first login's one-time password; a second use fails."""
    guest = guest_token(client, world.live_prt)
    phone = "+15551230000"
    sent = call(
        client,
        "POST",
        "/v1/phone_verification_codes",
        document("PhoneVerificationCode", phoneNumber=phone),
        guest,
    )
    assert sent.status_code == 204, sent.get_data(as_text=True)
    [sms] = [m for m in outbox(app).of("sms") if m.to == phone]
    code = next(word for word in sms.text.replace(".", " ").split() if word.isdigit())
    created = _create(
        client,
        guest,
        username="Sam",
        password=PASSWORD,
        phoneNumber=phone,
        phoneVerificationCode=code,
        authMethod="tfa_sms",
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    attrs = created.get_json()["data"]["attributes"]
    assert (attrs["username"], attrs["role"], attrs["authMethod"]) == ("sam", "customer", "tfa_sms")
    assert user_row(app, created.get_json()["data"]["id"]).phone_verified

    first = password_grant(client, world, "sam", PASSWORD, otp=code)
    assert first.status_code == 200, first.get_data(as_text=True)
    replay = password_grant(client, world, "sam", PASSWORD, otp=code)
    assert replay.status_code == 400
    assert replay.get_json()["error"] in ("invalid_otp", "otp_required")


@pytest.mark.parametrize("start,target", [("tfa_sms", "simple"), ("tfa_email", "simple")])
def test_a_bearer_token_alone_cannot_switch_two_step_login_off(app, client, world, start, target):
    """PATCH /v1/user refuses leaving two-step login (422 tfa_disablement_required) and the
    user's method stays; only an administrator or /v1/tfa_disablements may do that."""
    owner = _owner(client, world)
    created = _create(
        client,
        owner,
        username="tara",
        role="customer",
        password=PASSWORD,
        email="tara@example.com",
        emailVerified=True,
        phoneNumber="+15551239999",
        authMethod="simple",
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["data"]["id"]
    me = login(client, world, username="tara")["access_token"]
    if start == "tfa_sms":
        call(
            client,
            "POST",
            "/v1/phone_verification_codes",
            document("PhoneVerificationCode", phoneNumber="+15551239999"),
            me,
        )
        [sms] = outbox(app).of("sms")
        code = next(word for word in sms.text.replace(".", " ").split() if word.isdigit())
        switch = {"authMethod": "tfa_sms", "phoneVerificationCode": code}
    else:
        switch = {"authMethod": "tfa_email"}
    body = {"data": {"type": "User", "id": user_id, "attributes": switch}}
    assert call(client, "PATCH", "/v1/user", body, me).status_code == 200
    assert user_row(app, user_id).auth_method == start

    body = {"data": {"type": "User", "id": user_id, "attributes": {"authMethod": target}}}
    refused = call(client, "PATCH", "/v1/user", body, me)
    error = one_error(refused, 422, "tfa_disablement_required", "/data/attributes/authMethod")
    assert error["detail"] == (
        "Switching two-step login off needs your password and a code: use "
        "POST /v1/tfa_disablements (or ask an administrator)."
    )
    assert user_row(app, user_id).auth_method == start
    allowed = call(client, "PATCH", f"/v1/users/{user_id}", body, owner)
    assert allowed.status_code == 200, allowed.get_data(as_text=True)
    assert user_row(app, user_id).auth_method == target


def test_admin_moving_a_user_off_totp_forgets_the_app(app, client, world):
    """An administrator switching a TOTP user to email codes drops the secret and the
    recovery codes, so going back to TOTP needs a new, confirmed setup."""
    owner = _owner(client, world)
    created = _create(
        client,
        owner,
        username="tim",
        role="customer",
        password=PASSWORD,
        email="tim@example.com",
        emailVerified=True,
    )
    user_id = created.get_json()["data"]["id"]
    me = login(client, world, username="tim")["access_token"]
    setup = call(client, "POST", "/v1/totp_setups", document("TotpSetup", password=PASSWORD), me)
    code = pyotp.TOTP(setup.get_json()["data"]["attributes"]["secret"]).now()
    confirmed = call(
        client, "POST", "/v1/totp_confirmations", document("TotpConfirmation", code=code), me
    )
    assert confirmed.status_code == 201, confirmed.get_data(as_text=True)
    assert user_row(app, user_id).totp_secret

    def switch(method: str) -> Any:
        body = {"data": {"type": "User", "id": user_id, "attributes": {"authMethod": method}}}
        return call(client, "PATCH", f"/v1/users/{user_id}", body, owner)

    assert switch("tfa_email").status_code == 200
    row = user_row(app, user_id)
    assert (row.auth_method, row.totp_secret) == ("tfa_email", None)
    with app.app_context():
        left = db.session.scalar(
            db.select(db.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id)
        )
    assert left == 0
    one_error(switch("tfa_totp"), 422, "totp_not_enrolled", "/data/attributes/authMethod")
    assert user_row(app, user_id).auth_method == "tfa_email"


def test_global_member_verifies_a_phone_with_a_code_sent_in_the_account(app, client, world):
    """A global user acting in an account spends a phone code asked for in that account."""
    gus_id = make_user(app, None, "gus@example.com", member_of={world.live_id: "customer"})
    token = login(client, world, username="gus@example.com")["access_token"]
    phone = "+15551237777"
    sent = call(
        client,
        "POST",
        "/v1/phone_verification_codes",
        document("PhoneVerificationCode", phoneNumber=phone),
        token,
    )
    assert sent.status_code == 204
    [sms] = outbox(app).of("sms")
    code = next(word for word in sms.text.replace(".", " ").split() if word.isdigit())
    body = {
        "data": {
            "type": "User",
            "id": gus_id,
            "attributes": {
                "authMethod": "tfa_sms",
                "phoneNumber": phone,
                "phoneVerificationCode": code,
            },
        }
    }
    response = call(client, "PATCH", "/v1/user", body, token)
    assert response.status_code == 200, response.get_data(as_text=True)
    row = user_row(app, gus_id)
    assert (row.auth_method, row.phone_number, row.phone_verified) == ("tfa_sms", phone, True)


def test_email_code_user_switches_two_step_login_off_with_a_sent_code(app, client, world, store):
    """A tfa_email user turns two-step login off with the password and a code a login
    attempt emailed; a wrong code changes nothing."""
    owner = _owner(client, world)
    created = _create(
        client,
        owner,
        username="eve",
        role="customer",
        password=PASSWORD,
        email="eve@example.com",
        emailVerified=True,
        authMethod="tfa_email",
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["data"]["id"]
    asked = password_grant(client, world, "eve", PASSWORD)
    assert asked.get_json()["error"] == "otp_required"
    [mail] = mails(app, "identity.otp.create.success")
    code = next(word for word in mail.text.split() if word.isdigit() and len(word) == 6)
    token = password_grant(client, world, "eve", PASSWORD, otp=code).get_json()["access_token"]
    store.delete(f"otp-sent:{user_id}")  # skip the 30 s resend cooldown
    password_grant(client, world, "eve", PASSWORD)  # another code for the disablement
    code = next(
        word
        for word in mails(app, "identity.otp.create.success")[-1].text.split()
        if word.isdigit() and len(word) == 6
    )
    wrong = "000000" if code != "000000" else "111111"
    refused = call(
        client,
        "POST",
        "/v1/tfa_disablements",
        document("TfaDisablement", password=PASSWORD, otp=wrong),
        token,
    )
    one_error(refused, 422, "invalid_otp", "/data/attributes/otp")
    assert user_row(app, user_id).auth_method == "tfa_email"
    done = call(
        client,
        "POST",
        "/v1/tfa_disablements",
        document("TfaDisablement", password=PASSWORD, otp=code),
        token,
    )
    assert done.status_code == 204, done.get_data(as_text=True)
    assert user_row(app, user_id).auth_method == "simple"


def test_account_default_totp_gives_new_users_simple_until_they_set_up_an_app(app, client, world):
    """Where the account's default is tfa_totp, a sign-up gets `simple` (nobody else can set
    up their app), so they can sign in and then enrol; asking for tfa_totp outright is 422."""
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        account.default_auth_method = "tfa_totp"
        db.session.commit()
    guest = guest_token(client, world.live_prt)
    created = _create(client, guest, username="nia", password=PASSWORD)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["data"]["attributes"]["authMethod"] == "simple"
    assert login(client, world, username="nia")["access_token"]
    refused = _create(client, guest, username="nico", password=PASSWORD, authMethod="tfa_totp")
    assert refused.status_code == 422
