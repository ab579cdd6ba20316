"""Email verification (EVT + verification) and phone verification codes over /v1: who may
ask for what, single use, one valid token per user, TTLs, races, throttles, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from factories import make_user
from verification_helpers import (
    MEDIA,
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
from authserver.platform.errors import Throttled, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import Account, User
from authserver.platform.security import digest, keyed_digest

EVT = "/v1/email_verification_tokens"
EV = "/v1/email_verifications"
PVC = "/v1/phone_verification_codes"
EVT_EVENT = "identity.email_verification_token.create.success"
EV_EVENT = "identity.email_verification.create.success"
PVC_EVENT = "identity.phone_verification_code.create.success"
USER_POINTER = "/data/relationships/user"


def evt_body(user_id: Any, type_: str = "User") -> dict[str, Any]:
    return {
        "data": {
            "type": "EmailVerificationToken",
            "relationships": {"user": {"data": {"type": type_, "id": user_id}}},
        }
    }


def request_evt(client: Any, token: str, user_id: str) -> Any:
    return call(client, "POST", EVT, evt_body(user_id), token)


def verify(client: Any, token: str, evt: Any) -> Any:
    return call(client, "POST", EV, document("EmailVerification", token=evt), token)


def evt_tokens(app: Any, to: str | None = None) -> list[str]:
    return [
        link_token(m.text, "/verify-email")
        for m in mails(app, EVT_EVENT)
        if to is None or m.to == to
    ]


def is_verified(app: Any, user_id: str) -> bool:
    return bool(user_row(app, user_id).email_verified)


# --- EVT: who may ask -------------------------------------------------------------------------


def test_user_asks_for_their_own_verification_email(app, client, world, store):
    """Any user may have their own EVT sent: 204, one email to their address, linked to
    ISSUER, the token kept only as a digest with a 24 h TTL."""
    me = person(app, client, world, "customer")
    assert_no_content(request_evt(client, me.access, me.id))
    [mail] = mails(app, EVT_EVENT)
    assert mail.to == me.email
    assert f"{app.config['ISSUER']}/verify-email?token=" in mail.text
    token = link_token(mail.text, "/verify-email")
    assert store.get(f"evt:{token}") is None  # never stored in the clear
    assert 86_400 - 5 <= store.ttl(f"evt:{digest(token)}") <= 86_400
    assert not is_verified(app, me.id)


@pytest.mark.parametrize("role", ["owner", "administrator"])
def test_managers_ask_for_users_of_their_account(app, client, world, role):
    """Owners and administrators may have an EVT sent to any user of their account,
    a global member included; the email goes to that user."""
    manager = person(app, client, world, role)
    target = make_user(app, world.live_id, "carol", email="carol@example.com")
    member = make_user(
        app, None, "gail", email="gail@example.com", member_of={world.live_id: "customer"}
    )
    assert_no_content(request_evt(client, manager.access, target))
    assert_no_content(request_evt(client, manager.access, member))
    assert [m.to for m in mails(app, EVT_EVENT)] == ["carol@example.com", "gail@example.com"]


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_ask_only_for_themselves(app, client, world, role):
    """Other roles get 403 for another user, existing or not (the answer does not tell),
    and nothing is sent."""
    caller = person(app, client, world, role)
    target = make_user(app, world.live_id, "carol", email="carol@example.com")
    for user_id in (target, "e407d0dc-58d4-48ff-a70f-c6e022e028f1"):
        one_error(request_evt(client, caller.access, user_id), 403, "forbidden")
    assert mails(app) == []


def test_managers_get_404_outside_their_account(app, client, world):
    """An administrator gets 404 (pointed at the id) for a user of another account, of the
    test twin, a deleted user, or an unknown id; nothing is sent."""
    admin = person(app, client, world, "administrator")
    elsewhere = make_user(app, world.other_id, "oscar", email="o@example.com")
    twin = make_user(app, world.test_id, "tina", email="t@example.com")
    gone = make_user(app, world.live_id, "gone", email="g@example.com")
    with app.app_context():
        accounts.set_status(db.session.get(User, gone), "deleted")
    for user_id in (elsewhere, twin, world.tess_id, gone, "nope", "x" * 300):
        response = request_evt(client, admin.access, user_id)
        one_error(response, 404, "not_found", f"{USER_POINTER}/data/id")
    assert mails(app) == []


def test_guests_clients_and_anonymous_may_not_ask(app, client, world):
    """A guest token and a client token (no user) get 403; no token 401; nothing sent."""
    target = make_user(app, world.live_id, "carol", email="carol@example.com")
    for token in (guest_token(client, world.live_prt), client_token(client, world)):
        one_error(request_evt(client, token, target), 403, "forbidden")
    response = request_evt(client, "", target)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert mails(app) == []


def test_user_without_email_is_422_at_the_relationship(app, client, world):
    """No address to send to: 422 no_email pointing at the user relationship."""
    me = person(app, client, world, "customer", email=None)
    one_error(request_evt(client, me.access, me.id), 422, "no_email", USER_POINTER)
    assert mails(app) == []


def test_disabled_user_gets_no_verification_email(app, client, world):
    """An administrator asking for a disabled user gets 422 inactive_user; nothing is sent."""
    admin = person(app, client, world, "administrator")
    target = make_user(app, world.live_id, "carol", email="carol@example.com")
    with app.app_context():
        accounts.set_status(db.session.get(User, target), "disabled")
    one_error(request_evt(client, admin.access, target), 422, "inactive_user", USER_POINTER)
    assert mails(app) == []


EVT_BAD_INPUT: list[tuple[str, Any, int, str, str | None]] = [
    (
        "no relationship",
        {"data": {"type": "EmailVerificationToken"}},
        422,
        "required",
        USER_POINTER,
    ),
    (
        "null user",
        {"data": {"type": "EmailVerificationToken", "relationships": {"user": {"data": None}}}},
        422,
        "required",
        USER_POINTER,
    ),
    (
        "wrong linkage type",
        evt_body("x", "Account"),
        409,
        "type_mismatch",
        f"{USER_POINTER}/data/type",
    ),
    ("id number", evt_body(7), 400, "invalid_document", f"{USER_POINTER}/data/id"),
    ("wrong type", {"data": {"type": "User"}}, 409, "type_mismatch", "/data/type"),
    (
        "attribute",
        {**evt_body("x"), "data": {**evt_body("x")["data"], "attributes": {"email": "a@b.c"}}},
        422,
        "unknown_attribute",
        "/data/attributes/email",
    ),
    (
        "other relationship",
        {
            "data": {
                **evt_body("x")["data"],
                "relationships": {
                    **evt_body("x")["data"]["relationships"],
                    "account": {"data": None},
                },
            }
        },
        422,
        "unknown_relationship",
        "/data/relationships/account",
    ),
    ("malformed", "{", 400, "malformed_json", None),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [case[1:] for case in EVT_BAD_INPUT],
    ids=[case[0] for case in EVT_BAD_INPUT],
)
def test_evt_bad_input(app, client, world, body, status, code, pointer):
    """Each malformed EVT request gets its status, code and pointer, and sends nothing."""
    me = person(app, client, world, "customer")
    one_error(call(client, "POST", EVT, body, me.access), status, code, pointer)
    assert mails(app) == []


def test_evt_wrong_content_type_is_415(app, client, world):
    """A form-encoded body is 415."""
    me = person(app, client, world, "customer")
    response = call(
        client, "POST", EVT, "user=me", me.access, content_type="application/x-www-form-urlencoded"
    )
    one_error(response, 415, "unsupported_media_type")


def test_evt_sends_are_throttled_per_user(app, client, world):
    """At most 5 verification emails an hour per user: the 6th is 429 with Retry-After."""
    me = person(app, client, world, "customer")
    for _ in range(5):
        assert_no_content(request_evt(client, me.access, me.id))
    response = request_evt(client, me.access, me.id)
    one_error(response, 429, "throttled")
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600
    assert len(mails(app, EVT_EVENT)) == 5


# --- email verification -------------------------------------------------------------------


def test_token_from_the_email_verifies_the_address(app, client, world):
    """POST /v1/email_verifications with the emailed token: 204, emailVerified and
    emailVerifiedAt set (GET /v1/user shows them); the event fires after the commit."""
    me = person(app, client, world, "customer")
    seen = record_events(
        app, EV_EVENT, lambda p: committed_column(app, p["user"].id, "email_verified")
    )
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    assert_no_content(verify(client, me.access, token))
    assert seen == [True]
    attrs = call(client, "GET", "/v1/user", "", me.access).get_json()["data"]["attributes"]
    assert attrs["emailVerified"] is True and attrs["emailVerifiedAt"]


def test_any_token_may_present_a_verification_token(app, client, world):
    """The token itself is the proof: a guest token may present it (the page of an app that
    has no logged-in user); without any bearer token it is 401 and nothing changes."""
    me = person(app, client, world, "customer")
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    assert verify(client, "", token).status_code == 401
    assert not is_verified(app, me.id)
    assert_no_content(verify(client, guest_token(client, world.live_prt), token))
    assert is_verified(app, me.id)


def test_verification_token_works_once(app, client, world):
    """A second use is 422 invalid_token and changes nothing (no second event either)."""
    me = person(app, client, world, "customer")
    seen = record_events(app, EV_EVENT, lambda p: p["user"].id)
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    assert_no_content(verify(client, me.access, token))
    with app.app_context():
        user = db.session.get(User, me.id)
        user.email_verified, user.email_verified_at = False, None
        db.session.commit()
    one_error(verify(client, me.access, token), 422, "invalid_token", "/data/attributes/token")
    assert not is_verified(app, me.id)
    assert seen == [me.id]


def test_newer_verification_token_voids_the_older(app, client, world):
    """One valid EVT per user: after a second request the first token is refused."""
    me = person(app, client, world, "customer")
    assert_no_content(request_evt(client, me.access, me.id))
    assert_no_content(request_evt(client, me.access, me.id))
    first, second = evt_tokens(app)
    one_error(verify(client, me.access, first), 422, "invalid_token")
    assert not is_verified(app, me.id)
    assert_no_content(verify(client, me.access, second))


def test_only_the_users_current_token_verifies(app, client, world, store):
    """Two issues racing can both read the same "previous" token and leave two keys; the
    redemption therefore checks the token is the one the user's pointer names."""
    me = person(app, client, world, "customer")
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    # The racing issuer's own token became current without deleting this one's key.
    store.put(f"evt-user:{me.id}", digest("the-other-racing-token"), 3600)
    assert store.get(f"evt:{digest(token)}") is not None
    one_error(verify(client, me.access, token), 422, "invalid_token")
    assert not is_verified(app, me.id)


def test_expired_verification_token_is_refused(app, client, world, store):
    """When its Redis key expires (24 h TTL, deleted here) the token is 422 and nothing changes."""
    me = person(app, client, world, "customer")
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    assert store.ttl(f"evt:{digest(token)}") > 86_390
    store.delete(f"evt:{digest(token)}")  # what Redis does when the TTL runs out
    one_error(verify(client, me.access, token), 422, "invalid_token")
    assert not is_verified(app, me.id)


def test_token_for_a_changed_email_is_refused(app, client, world):
    """A token sent to the old address verifies nothing once the email has changed."""
    me = person(app, client, world, "customer")
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    with app.app_context():
        db.session.get(User, me.id).email = "new@example.com"
        db.session.commit()
    one_error(verify(client, me.access, token), 422, "invalid_token")
    assert not is_verified(app, me.id)


def test_concurrent_verifications_succeed_once(app, client, world):
    """The same token sent twice at once: one 204, one 422, one event."""
    me = person(app, client, world, "customer")
    seen = record_events(app, EV_EVENT, lambda p: p["user"].id)
    assert_no_content(request_evt(client, me.access, me.id))
    [token] = evt_tokens(app)
    statuses = race(lambda: verify(app.test_client(), me.access, token).status_code)
    assert sorted(statuses) == [204, 422]
    assert seen == [me.id]


@pytest.mark.parametrize(
    ("attributes", "status", "code"),
    [
        ({"token": "not-a-token-we-issued-at-all"}, 422, "invalid_token"),
        ({"token": "short"}, 422, "invalid_token"),
        ({"token": 12345}, 422, "invalid_type"),
        ({"token": None}, 422, "invalid_type"),
        ({"token": "x" * 1025}, 422, "too_long"),
        ({}, 422, "required"),
        ({"token": "x" * 40, "userId": "x"}, 422, "unknown_attribute"),
    ],
)
def test_verification_bad_input(app, client, world, attributes, status, code):
    """Wrong, mistyped, oversized or missing tokens: 422 with a pointer, never a 500."""
    me = person(app, client, world, "customer")
    response = call(client, "POST", EV, document("EmailVerification", **attributes), me.access)
    error = one_error(response, status, code)
    assert error["source"]["pointer"].startswith("/data/attributes/")
    assert not is_verified(app, me.id)


# --- phone verification codes --------------------------------------------------------------

PHONE = "+15551234567"


def send_code(client: Any, token: str, phone: Any = PHONE, **kw: Any) -> Any:
    return call(
        client, "POST", PVC, document("PhoneVerificationCode", phoneNumber=phone), token, **kw
    )


def texted_codes(app: Any) -> list[str]:
    return [m.text.split("code is ")[1][:6] for m in outbox(app).of("sms")]


def pvc_key(app: Any, account_id: str, code: str, phone: str = PHONE) -> str:
    mac = keyed_digest(app.config["SECRET_KEY"], f"pvc:{phone}:{code}")
    return f"pvc:{account_id}:{mac}"


def use_code(app: Any, account_id: str, code: str, phone: str = PHONE) -> str:
    with app.app_context():
        account = db.session.get(Account, account_id)
        return verification.use_phone_code(phone, code, account=account)


def test_code_is_texted_to_the_sms_gateway(app, world, make_app, webhook):
    """A guest's PVC request: 204, the SMS gateway gets the number and a 6-digit code; Redis
    keeps only an HMAC of it, for 30 minutes."""
    sms_app = make_app(SMS_URL=webhook.url)
    store = sms_app.extensions["authserver.store"]  # (memory:// is per app)
    http = sms_app.test_client()
    assert_no_content(send_code(http, guest_token(http, world.live_prt)))
    [sent] = webhook.requests
    assert sent["json"]["to"] == PHONE
    code = sent["json"]["body"].split("code is ")[1][:6]
    assert code.isdigit() and len(code) == 6
    assert store.get(f"pvc:{world.live_id}:{code}") is None
    assert 1795 <= store.ttl(pvc_key(app, world.live_id, code)) <= 1800


def test_every_role_may_ask_for_a_code_but_not_anonymous(app, client, world):
    """Users of any role, guests and clients may ask (roles: all); no token is 401."""
    tokens = [
        person(app, client, world, "customer").access,
        person(app, client, world, "owner").access,
        guest_token(client, world.live_prt),
        client_token(client, world),
    ]
    for i, token in enumerate(tokens):
        assert_no_content(send_code(client, token, f"+1555000000{i}"))
    assert send_code(client, "", "+15550000009").status_code == 401
    assert [m.to for m in outbox(app).of("sms")] == [f"+1555000000{i}" for i in range(4)]


def test_older_codes_stay_valid_and_each_works_once(app, client, world):
    """A new code does not void the older one; each is spent by its first use."""
    guest = guest_token(client, world.live_prt)
    assert_no_content(send_code(client, guest))
    assert_no_content(send_code(client, guest))
    first, second = texted_codes(app)
    assert use_code(app, world.live_id, first) == first
    assert use_code(app, world.live_id, second) == second
    for code in (first, second):
        with pytest.raises(ValidationFailed) as caught:
            use_code(app, world.live_id, code)
        assert caught.value.code == "invalid_phone_verification_code"


def test_codes_are_bound_to_number_and_account(app, client, world):
    """A code is refused for another number and in another account (or the test twin)."""
    assert_no_content(send_code(client, guest_token(client, world.live_prt)))
    [code] = texted_codes(app)
    for account_id, phone in ((world.live_id, "+15557654321"), (world.test_id, PHONE)):
        with pytest.raises(ValidationFailed):
            use_code(app, account_id, code, phone)
    assert use_code(app, world.live_id, code) == code


def test_expired_code_is_refused(app, client, world, store):
    """Once the code's key expires (deleted here, as Redis would) the code is refused."""
    assert_no_content(send_code(client, guest_token(client, world.live_prt)))
    [code] = texted_codes(app)
    store.delete(pvc_key(app, world.live_id, code))
    with pytest.raises(ValidationFailed):
        use_code(app, world.live_id, code)


def test_wrong_codes_are_throttled_per_number(app, client, world, store):
    """After 10 wrong codes for a number even the right one is refused with Throttled
    (429 + Retry-After over HTTP) until the window ends; the code itself is not spent."""
    assert_no_content(send_code(client, guest_token(client, world.live_prt)))
    [code] = texted_codes(app)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(10):
        with pytest.raises(ValidationFailed):
            use_code(app, world.live_id, wrong)
    with pytest.raises(Throttled) as caught:
        use_code(app, world.live_id, code)
    assert 1790 <= caught.value.retry_after <= 1800
    assert store.get(pvc_key(app, world.live_id, code)) == "1"


def test_sends_are_throttled_per_number(app, client, world):
    """At most 5 codes an hour to one number in one account: the 6th is 429 + Retry-After
    and nothing more is texted."""
    guest = guest_token(client, world.live_prt)
    for i in range(5):
        assert_no_content(send_code(client, guest, ip=f"203.0.113.{i}"))
    response = send_code(client, guest, ip="203.0.113.99")
    one_error(response, 429, "throttled")
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600
    assert len(outbox(app).of("sms")) == 5


def test_sends_are_throttled_per_ip(app, client, world):
    """At most 20 codes an hour from one IP over all numbers (SMS pumping)."""
    guest = guest_token(client, world.live_prt)
    for i in range(20):
        assert_no_content(send_code(client, guest, f"+155500001{i:02d}"))
    response = send_code(client, guest, "+15550000199")
    one_error(response, 429, "throttled")
    assert int(response.headers["Retry-After"]) > 0
    assert len(outbox(app).of("sms")) == 20


@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [
        (
            document("PhoneVerificationCode", phoneNumber="555-1234"),
            422,
            "invalid_phone_number",
            "/data/attributes/phoneNumber",
        ),
        (
            document("PhoneVerificationCode", phoneNumber=15551234567),
            422,
            "invalid_type",
            "/data/attributes/phoneNumber",
        ),
        (
            document("PhoneVerificationCode", phoneNumber="+1" + "5" * 40),
            422,
            "too_long",
            "/data/attributes/phoneNumber",
        ),
        (document("PhoneVerificationCode"), 422, "required", "/data/attributes/phoneNumber"),
        (
            document("PhoneVerificationCode", phoneNumber=PHONE, userId="x"),
            422,
            "unknown_attribute",
            "/data/attributes/userId",
        ),
        (document("PhoneVerification", phoneNumber=PHONE), 409, "type_mismatch", "/data/type"),
        ("[]", 400, "invalid_document", ""),
    ],
)
def test_phone_code_bad_input(app, client, world, body, status, code, pointer):
    """Bad numbers and documents: their status, code and pointer; nothing is texted."""
    response = call(client, "POST", PVC, body, guest_token(client, world.live_prt))
    one_error(response, status, code, pointer)
    assert outbox(app).of("sms") == []


def test_phone_code_event_payload(app, client, world):
    """identity.phone_verification_code.create.success carries the number, code and account."""
    seen = record_events(app, PVC_EVENT, lambda p: (p["phone_number"], p["account"].id))
    assert_no_content(send_code(client, guest_token(client, world.live_prt)))
    assert seen == [(PHONE, world.live_id)]


def test_media_type_of_errors(app, client, world):
    """Errors of these endpoints are JSON:API documents."""
    response = send_code(client, guest_token(client, world.live_prt), "nope")
    assert response.mimetype == MEDIA
