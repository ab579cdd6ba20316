"""Second-factor set-up as the seeds show it: POST /v1/email_verification_codes mails a
6-digit code; PATCH /v1/user with authMethod tfa_email and emailVerificationCode switches
and verifies in one step (single use, bound to the user and address, expiring, throttled);
an owner or administrator sets up another user's SMS two-step login with a phoneNumber
alone, the user is mailed and the change audited.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from factories import PASSWORD, World, make_user
from oauth_helpers import bearer, login
from verification_helpers import outbox, role_token

from authserver.identity import email_codes
from authserver.platform.extensions import db, store
from authserver.platform.models import AuditEvent, User

MEDIA = "application/vnd.api+json"
PATH = "/v1/email_verification_codes"


def _send_code(client: Any, token: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None and not isinstance(body, str) else body
    return client.post(PATH, data=data, content_type=MEDIA, headers=bearer(token))


def _patch(client: Any, token: str, user_id: str, attributes: dict[str, Any], path: str) -> Any:
    body = {"data": {"type": "User", "id": user_id, "attributes": attributes}}
    return client.patch(path, data=json.dumps(body), content_type=MEDIA, headers=bearer(token))


def _row(app: Any, user_id: str) -> dict[str, Any]:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return {c.name: getattr(user, c.name) for c in User.__table__.columns}


def _codes(app: Any, to: str) -> list[str]:
    """The codes mailed to `to` by this feature, oldest first."""
    mails = outbox(app).of("email")
    found = [m for m in mails if m.to == to and m.event == email_codes.EVENT]
    return [re.search(r"\b(\d{6})\b", m.text).group(1) for m in found]  # type: ignore[union-attr]


@pytest.fixture
def carl(app: Any, world: World) -> str:
    """A simple customer of the live account whose email is not verified."""
    return make_user(app, world.live_id, "carl", role="customer", email="carl@example.com")


@pytest.fixture
def carl_token(client: Any, world: World, carl: str) -> str:
    return str(login(client, world, username="carl")["access_token"])


def test_switch_to_email_two_step_in_one_step(app, client, world, carl, carl_token):
    """The mailed code with authMethod tfa_email verifies the address and switches; the
    code works once."""
    assert _send_code(client, carl_token).status_code == 204
    [code] = _codes(app, "carl@example.com")
    change = {"authMethod": "tfa_email", "emailVerificationCode": code}
    response = _patch(client, carl_token, carl, change, "/v1/user")
    assert response.status_code == 200, response.get_data(as_text=True)
    row = _row(app, carl)
    assert row["auth_method"] == "tfa_email" and row["email_verified"] is True
    assert row["email_verified_at"] is not None
    again = _patch(client, carl_token, carl, {"emailVerificationCode": code}, "/v1/user")
    assert again.status_code == 422
    assert again.get_json()["errors"][0]["code"] == "invalid_email_verification_code"


def test_without_a_code_tfa_email_still_needs_a_verified_email(app, client, carl, carl_token):
    """The current self-service rule holds: tfa_email on an unverified address is 422."""
    response = _patch(client, carl_token, carl, {"authMethod": "tfa_email"}, "/v1/user")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == "email_not_verified"
    assert _row(app, carl)["auth_method"] == "simple"


@pytest.mark.parametrize(
    "code", ["000000", "12345", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16", " "]
)
def test_a_wrong_code_changes_nothing(app, client, carl, carl_token, code):
    """A wrong, short, non-digit or non-ASCII code is 422 and nothing changes."""
    assert _send_code(client, carl_token).status_code == 204
    before = _row(app, carl)
    change = {"authMethod": "tfa_email", "emailVerificationCode": code}
    response = _patch(client, carl_token, carl, change, "/v1/user")
    assert response.status_code == 422, response.get_data(as_text=True)
    assert _row(app, carl) == before


@pytest.mark.parametrize("value", [123456, None, ["123456"], "1" * 17])
def test_malformed_code_is_refused_on_the_wire(app, client, carl, carl_token, value):
    """A code that is not a short string is a 4xx before anything is checked."""
    before = _row(app, carl)
    response = _patch(client, carl_token, carl, {"emailVerificationCode": value}, "/v1/user")
    assert 400 <= response.status_code < 500 and response.status_code != 404
    assert _row(app, carl) == before


def test_a_refused_change_leaves_the_code_usable(app, client, carl, carl_token):
    """A change refused for another reason does not spend the code."""
    assert _send_code(client, carl_token).status_code == 204
    [code] = _codes(app, "carl@example.com")
    bad = {"authMethod": "tfa_email", "emailVerificationCode": code, "name": "   "}
    assert _patch(client, carl_token, carl, bad, "/v1/user").status_code == 422
    good = {"authMethod": "tfa_email", "emailVerificationCode": code}
    assert _patch(client, carl_token, carl, good, "/v1/user").status_code == 200


def test_a_code_is_bound_to_its_user_and_address(app, client, world, carl, carl_token):
    """Another user cannot spend carl's code; after carl's address changes, the code
    mailed to the old one verifies nothing; a code with a new email is refused."""
    assert _send_code(client, carl_token).status_code == 204
    [code] = _codes(app, "carl@example.com")
    dora = make_user(app, world.live_id, "dora", role="customer", email="carl@example.com")
    dora_token = login(client, world, username="dora")["access_token"]
    response = _patch(client, dora_token, dora, {"emailVerificationCode": code}, "/v1/user")
    assert response.status_code == 422 and _row(app, dora)["email_verified"] is False
    moved = {"email": "carl2@example.com", "currentPassword": PASSWORD}
    assert _patch(client, carl_token, carl, moved, "/v1/user").status_code == 200
    response = _patch(client, carl_token, carl, {"emailVerificationCode": code}, "/v1/user")
    assert response.status_code == 422 and _row(app, carl)["email_verified"] is False
    both = {
        "email": "carl3@example.com",
        "currentPassword": PASSWORD,
        "emailVerificationCode": code,
    }
    response = _patch(client, carl_token, carl, both, "/v1/user")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == "email_changed"
    assert _row(app, carl)["email"] == "carl2@example.com"


def test_code_expires(app, client, carl, carl_token):
    """The stored code lives EMAIL_CODE_LIFETIME (30 minutes) and no longer."""
    assert _send_code(client, carl_token).status_code == 204
    [code] = _codes(app, "carl@example.com")
    with app.test_request_context():
        user = db.session.get(User, carl)
        ttl = store().ttl(email_codes._key(user, "carl@example.com", code))
    assert 0 < ttl <= email_codes.EMAIL_CODE_LIFETIME


def test_sends_are_throttled(app, client, carl, carl_token):
    """The sixth code in an hour is 429 with Retry-After, and no mail goes out."""
    for _ in range(5):
        assert _send_code(client, carl_token).status_code == 204
    response = _send_code(client, carl_token)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert len(_codes(app, "carl@example.com")) == 5


def test_wrong_codes_are_throttled(app, client, carl, carl_token):
    """After 10 wrong codes even the right one is 429."""
    assert _send_code(client, carl_token).status_code == 204
    [code] = _codes(app, "carl@example.com")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(10):
        r = _patch(client, carl_token, carl, {"emailVerificationCode": wrong}, "/v1/user")
        assert r.status_code == 422
    response = _patch(client, carl_token, carl, {"emailVerificationCode": code}, "/v1/user")
    assert response.status_code == 429
    assert _row(app, carl)["email_verified"] is False


def test_no_email_no_code(app, client, world):
    """A user without an email gets 422 no_email; a body of another type is refused."""
    make_user(app, world.live_id, "nemo", role="customer")
    token = login(client, world, username="nemo")["access_token"]
    response = _send_code(client, token)
    assert response.status_code == 422 and response.get_json()["errors"][0]["code"] == "no_email"
    wrong = _send_code(client, token, {"data": {"type": "User"}})
    assert wrong.status_code == 409


def test_guest_and_client_tokens_have_no_user(app, client, world):
    """Guests are refused by role (403)."""
    from verification_helpers import guest_token

    response = _send_code(client, guest_token(client, world.live_prt))
    assert response.status_code == 403


# --- an administrator sets up SMS two-step login -------------------------------------------


def test_administrator_sets_tfa_sms_with_a_phone_alone(app, client, world, carl, carl_token):
    """No code needed for another user: the method and phone are set, the user is mailed,
    the change is audited and the user's tokens end."""
    admin = role_token(app, client, world, "administrator")
    change = {"authMethod": "tfa_sms", "phoneNumber": "+15550001234"}
    response = _patch(client, admin, carl, change, f"/v1/users/{carl}")
    assert response.status_code == 200, response.get_data(as_text=True)
    row = _row(app, carl)
    assert (row["auth_method"], row["phone_number"]) == ("tfa_sms", "+15550001234")
    mails = [m.event for m in outbox(app).of("email") if m.to == ("carl@example.com")]
    assert "identity.tfa.update.success" in mails
    with app.app_context():
        events = db.session.scalars(
            db.select(AuditEvent).where(
                AuditEvent.target_id == carl, AuditEvent.action == ("user.update")
            )
        ).all()
    assert [sorted(e.changed) for e in events] == [["auth_method", "phone_number"]]
    assert client.get("/v1/user", headers=bearer(carl_token)).status_code == 401


def test_self_service_tfa_sms_still_needs_a_code(app, client, carl, carl_token):
    """The user switching themselves to tfa_sms still proves the phone (422 without)."""
    change = {"authMethod": "tfa_sms", "phoneNumber": "+15550001234"}
    response = _patch(client, carl_token, carl, change, "/v1/user")
    assert response.status_code == 422
    assert _row(app, carl)["auth_method"] == "simple"


def test_a_manager_role_cannot_set_tfa_sms_for_others(app, client, world, carl):
    """Below owner and administrator, PATCH /v1/users/{id} is 403 and nothing changes."""
    manager = role_token(app, client, world, "manager")
    change = {"authMethod": "tfa_sms", "phoneNumber": "+15550001234"}
    response = _patch(client, manager, carl, change, f"/v1/users/{carl}")
    assert response.status_code == 403
    assert _row(app, carl)["auth_method"] == "simple"


def test_an_administrator_does_not_vouch_for_their_own_phone(app, client, world):
    """On oneself through /v1/users/{id}, tfa_sms on an unproven phone still needs a code."""
    me = make_user(app, world.live_id, "adele", role="administrator", phone_number="+15550007777")
    token = login(client, world, username="adele")["access_token"]
    response = _patch(client, token, me, {"authMethod": "tfa_sms"}, f"/v1/users/{me}")
    assert response.status_code == 422, response.get_data(as_text=True)
    assert _row(app, me)["auth_method"] == "simple"
