"""The password grant through POST /oauth/token on PostgreSQL + Redis: `aid` account selection,
uniform credential errors and timing, the OTP step over a real SMTP server, an SMS webhook and
TOTP, recovery codes, the throttle, login records, client authentication and the JWT."""

from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import argon2
import pytest
from factories import Cred, make_account, make_client, make_totp_user, make_user
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth_helpers import run_together, settle_totp_step, wrong_totp
from sqlalchemy import select
from verification_helpers import body_of
from werkzeug.test import TestResponse

from authserver.identity import accounts, twofactor
from authserver.identity.login import FAILURES_FROM_IP, FAILURES_PER_IP, FAILURES_PER_USER
from authserver.identity.twofactor import SENDS_PER_HOUR
from authserver.platform.extensions import db, passwords
from authserver.platform.models import Account, LoginRecord, User

TOKEN = "/oauth/token"
PASSWORD = "correct horse battery"
WRONG = "not the password at all"
BAD_CREDENTIALS = {
    "error": "invalid_grant",
    "error_description": "Username and password does not match.",
}
EMAIL = "jane.doe@example.com"
PHONE = "+15551234567"
HOME_IP = "127.0.0.1"
GRANTS = ["password", "refresh_token"]


# ---------------------------------------------------------------- fixtures and helpers


@dataclass(frozen=True)
class World:
    live: str  # account A (live)
    test: str  # A's test twin
    other: str  # account B (live)
    public: Cred  # public client of A
    confidential: Cred  # confidential client of A
    other_public: Cred  # public client of B
    users: dict[str, str]  # label -> user id


@pytest.fixture
def world(app: Flask) -> World:
    """Accounts A (with its test twin) and B, their clients, and users of every kind.

    Not the suite's `world`: two users named alice (one per account) with their own
    passwords, global users who are members, and a disabled and a deleted user."""
    a = make_account(app, "Acme")
    b = make_account(app, "Beta")
    live, test, other = a.live_id, a.test_id, b.live_id
    public = make_client(app, live, "Acme app", public=True, grant_types=GRANTS)
    confidential = make_client(app, live, "Acme web", grant_types=GRANTS)
    other_public = make_client(app, other, "Beta app", public=True, grant_types=GRANTS)
    user_ids = {
        "alice@a": make_user(app, live, "alice", password="alice-in-acme"),
        "alice@b": make_user(app, other, "alice", password="alice-in-beta"),
        "tess@test": make_user(app, test, "tess", password=PASSWORD),
        "gina": make_user(
            app, None, "gina", password=PASSWORD, role="owner", member_of={live: "administrator"}
        ),
        "glen": make_user(app, None, "glen", password=PASSWORD, member_of={other: "customer"}),
        "dora": make_user(
            app, live, "dora", password=PASSWORD, auth_method="tfa_email", email=EMAIL
        ),
        "dave": make_user(app, live, "dave", password=PASSWORD),
    }
    with app.app_context():
        accounts.set_status(db.session.get(User, user_ids["dora"]), "disabled")
        accounts.set_status(db.session.get(User, user_ids["dave"]), "deleted")
    return World(live, test, other, public, confidential, other_public, user_ids)


def login(
    http: FlaskClient,
    cred: Cred,
    username: str,
    password: str = PASSWORD,
    *,
    aid: str | None = None,
    scope: str | None = None,
    ip: str = HOME_IP,
    basic: bool = False,
    user_agent: str = "pytest-app/1.0",
    **extra: str | None,
) -> TestResponse:
    """POST /oauth/token with grant_type=password, form-encoded."""
    form = {"grant_type": "password", "username": username, "password": password}
    headers = {"User-Agent": user_agent}
    if basic:
        pair = f"{cred.client_id}:{cred.secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form["client_id"] = cred.client_id
        if cred.secret:
            form["client_secret"] = cred.secret
    scopes = " ".join(s for s in (scope, f"aid:{aid}" if aid else None) if s)
    if scopes:
        form["scope"] = scopes
    form.update({k: v for k, v in extra.items() if v is not None})
    return http.post(TOKEN, data=form, headers=headers, environ_base={"REMOTE_ADDR": ip})


def claims_of(http: FlaskClient, access_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of an access token verified with the published JWKS."""
    keyset = KeySet.import_key_set(http.get("/oauth/jwks").json)
    decoded = jwt.decode(access_token, keyset, algorithms=["ES256"])
    return dict(decoded.header), dict(decoded.claims)


def records(app: Flask) -> list[LoginRecord]:
    with app.app_context():
        rows = db.session.scalars(select(LoginRecord).order_by(LoginRecord.id)).all()
        db.session.expunge_all()
        return list(rows)


def assert_tokens(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.json
    body = response.json
    assert body is not None
    assert body["token_type"] == "Bearer"
    assert body["access_token"].count(".") == 2
    assert len(body["refresh_token"]) >= 32
    assert body["expires_in"] == 900
    return body


def assert_invalid_otp(response: TestResponse) -> None:
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_otp"


def emailed_codes(sink: Any) -> list[str]:
    """The login codes in the messages the SMTP server received, oldest first."""
    codes = []
    for message in sink.messages():
        found = re.search(r"^ {4}(\d{6})$", body_of(message), re.MULTILINE)
        assert found, body_of(message)
        codes.append(found.group(1))
    return codes


def other_code(code: str) -> str:
    """A six-digit code that is not `code`."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


# ---------------------------------------------------------------- aid: account selection


def test_account_user_logs_in_with_aid(client, world):
    """An account user logs in with aid:<account>; the token is for that account and user."""
    body = assert_tokens(login(client, world.public, "alice", "alice-in-acme", aid=world.live))
    _, claims = claims_of(client, body["access_token"])
    assert claims["sub"] == world.users["alice@a"]
    assert (claims["aid"], claims["mode"], claims["role"]) == (world.live, "live", "customer")


def test_account_user_is_refused_without_aid(client, world):
    """Without aid only global users may log in: an account user gets invalid_grant."""
    response = login(client, world.public, "alice", "alice-in-acme")
    assert response.status_code == 400
    assert response.json == BAD_CREDENTIALS


def test_same_username_in_two_accounts_logs_into_the_right_one(client, world):
    """`alice` of A and `alice` of B are different users; aid decides which one logs in."""
    at_a = assert_tokens(login(client, world.public, "alice", "alice-in-acme", aid=world.live))
    at_b = assert_tokens(
        login(client, world.other_public, "alice", "alice-in-beta", aid=world.other)
    )
    claims_a = claims_of(client, at_a["access_token"])[1]
    claims_b = claims_of(client, at_b["access_token"])[1]
    assert (claims_a["aid"], claims_a["sub"]) == (world.live, world.users["alice@a"])
    assert (claims_b["aid"], claims_b["sub"]) == (world.other, world.users["alice@b"])
    wrong_account = login(client, world.other_public, "alice", "alice-in-acme", aid=world.other)
    assert wrong_account.status_code == 400
    assert wrong_account.json == BAD_CREDENTIALS


def test_global_member_logs_in_to_the_account_with_its_membership_role(client, world):
    """A global user who is a member of A logs in with aid:A and gets the membership role."""
    body = assert_tokens(login(client, world.public, "gina", aid=world.live))
    _, claims = claims_of(client, body["access_token"])
    assert claims["sub"] == world.users["gina"]
    assert (claims["aid"], claims["role"]) == (world.live, "administrator")


def test_global_user_logs_in_without_aid(client, world):
    """Without aid a global user logs in as itself: no account, its own role."""
    body = assert_tokens(login(client, world.public, "gina"))
    _, claims = claims_of(client, body["access_token"])
    assert claims["sub"] == world.users["gina"]
    assert (claims["aid"], claims["mode"], claims["role"]) == (None, "live", "owner")


def test_global_non_member_is_refused_in_an_account(client, world):
    """A global user who is a member of B but not of A gets invalid_grant with aid:A."""
    response = login(client, world.public, "glen", aid=world.live)
    assert response.status_code == 400
    assert response.json == BAD_CREDENTIALS
    assert_tokens(login(client, world.public, "glen"))


def test_live_client_may_not_ask_for_its_test_twin(app, client, world):
    """A's live client cannot log a user of A's test account in (issue 14); A's test
    account's client can, and its token says test."""
    refused = login(client, world.public, "tess", aid=world.test)
    assert refused.status_code == 400 and refused.json == BAD_CREDENTIALS
    test_app = make_client(app, world.test, "Acme test app", public=True, grant_types=GRANTS)
    body = assert_tokens(login(client, test_app, "tess", aid=world.test))
    _, claims = claims_of(client, body["access_token"])
    assert (claims["sub"], claims["aid"]) == (world.users["tess@test"], world.test)
    assert claims["mode"] == "test"


def test_aid_of_a_foreign_or_unknown_account_is_like_a_wrong_password(app, client, world):
    """aid of another client's account, or of no account: the same answer as a bad password."""
    foreign = login(client, world.public, "alice", "alice-in-beta", aid=world.other)
    unknown = login(client, world.public, "alice", "alice-in-beta", aid=str(uuid.uuid4()))
    for response in (foreign, unknown):
        assert response.status_code == 400
        assert response.json == BAD_CREDENTIALS
        assert response.headers["Cache-Control"] == "no-store"
    # The right password of a real user of that other account does not log in through
    # this client, and nothing of that user is recorded as a success.
    assert not any(r.success for r in records(app))


@pytest.mark.parametrize(
    "scope",
    [
        "aid:not-a-uuid",
        "aid:",
        "aid:{live}x",
        "aid:{live} aid:{test}",
        "aid:{{{live}}}",
        "aid:{live_nodash}",
    ],
)
def test_malformed_aid_is_invalid_scope(client, world, scope):
    """A malformed aid (not one lower-case UUID) gets invalid_scope."""
    value = scope.format(live=world.live, test=world.test, live_nodash=world.live.replace("-", ""))
    response = login(client, world.public, "alice", "alice-in-acme", scope=value)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"] == "invalid_scope"


# ---------------------------------------------------------------- uniform credential errors


@pytest.mark.parametrize(
    ("username", "password", "in_account"),
    [
        ("gina", WRONG, False),  # wrong password
        ("nobody", PASSWORD, False),  # unknown user
        ("nobody", PASSWORD, True),  # unknown user in an account
        ("alice", "alice-in-beta", True),  # wrong password of an account user
        ("dora", PASSWORD, True),  # disabled (a tfa_email user: no OTP step either)
        ("dave", PASSWORD, True),  # deleted
    ],
)
def test_credential_failures_look_the_same(app, client, world, username, password, in_account):
    """Wrong password, unknown, disabled or deleted user: the same 400 invalid_grant body."""
    response = login(
        client, world.public, username, password, aid=world.live if in_account else None
    )
    assert response.status_code == 400
    assert response.json == BAD_CREDENTIALS
    assert response.headers["Cache-Control"] == "no-store"
    assert "X-OTP" not in response.headers
    assert list(app.extensions["authserver.outbox"]) == []  # no code went to dora


def test_deleted_account_refuses_login_like_a_wrong_password(app, client, world):
    """A user of a deleted account (A's test twin) gets the same invalid_grant, and the
    deleted account's own client is no client any more."""
    test_app = make_client(app, world.test, "Acme test app", public=True, grant_types=GRANTS)
    with app.app_context():
        account = db.session.get(Account, world.test)
        assert account is not None
        account.status = "deleted"
        db.session.commit()
    response = login(client, world.public, "tess", aid=world.test)
    assert response.status_code == 400
    assert response.json == BAD_CREDENTIALS
    [record] = records(app)
    # Not A's live client's account to serve (issue 14), so not even looked up.
    assert (record.success, record.reason) == (False, "bad_credentials")
    assert login(client, test_app, "tess", aid=world.test).status_code == 401


class WatchedHasher:
    """The app's own argon2 hasher, recording the parameters of each hash it verifies."""

    def __init__(self, hasher: argon2.PasswordHasher, calls: list[argon2.Parameters]):
        self.hasher, self.calls = hasher, calls

    def verify(self, password_hash: str, password: str) -> bool:
        self.calls.append(argon2.extract_parameters(password_hash))
        return self.hasher.verify(password_hash, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hasher, name)


@pytest.fixture
def argon2_calls(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[argon2.Parameters]:
    """The parameters of every hash the app's argon2 verifies, in order (the verifies still
    run: this only watches them)."""
    calls: list[argon2.Parameters] = []
    with app.app_context():
        hasher = passwords()
    monkeypatch.setattr(hasher, "_hasher", WatchedHasher(hasher._hasher, calls))
    return calls


def test_unknown_user_costs_the_same_verify_as_a_wrong_password(app, client, world, argon2_calls):
    """An unknown user, a global one or an account's, costs exactly one argon2 verify with
    the same parameters as a known user's wrong password, so timing cannot tell them apart
    (bench/timing.py measures the wall clock)."""
    with app.app_context():
        configured = argon2.extract_parameters(passwords().hash("x"))
    attempts = [("glen", None), ("nobody", None), ("alice", world.live), ("nobody", world.live)]
    for i, (username, aid) in enumerate(attempts):
        response = login(client, world.public, username, WRONG, aid=aid, ip=f"10.0.0.{i + 1}")
        assert response.json == BAD_CREDENTIALS
        assert argon2_calls == [configured], username
        argon2_calls.clear()


def test_throttled_attempt_costs_no_password_check(app, client, world, argon2_calls):
    """Attempts are counted before the password check: a 429 costs no argon2 verify."""
    for _ in range(FAILURES_PER_IP):
        assert login(client, world.public, "glen", WRONG, ip="10.0.1.1").status_code == 400
    assert len(argon2_calls) == FAILURES_PER_IP
    for _ in range(6):
        assert_throttled(login(client, world.public, "glen", WRONG, ip="10.0.1.1"))
    assert len(argon2_calls) == FAILURES_PER_IP


# ---------------------------------------------------------------- OTP by email (real SMTP)


def test_email_otp_dance_over_smtp(app, world, mail_app):
    """tfa_email: otp_required, masked address, X-OTP; the emailed code gives tokens once."""
    http_app, sink = mail_app()
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)

    response = login(http, world.public, "erin", aid=world.live)
    assert response.status_code == 400
    assert response.json == {
        "error": "otp_required",
        "error_description": "A one-time password is required.",
        "otp_method": "tfa_email",
        "otp_destination": "j***@example.com",
        "otp_resend_after": 30,
    }
    assert response.headers["X-OTP"] == "required; method=tfa_email"
    exposed = [h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")]
    assert "X-OTP" in exposed
    assert response.headers["Cache-Control"] == "no-store"
    assert [e.rcpt_tos for e in sink.envelopes] == [[EMAIL]]
    [code] = emailed_codes(sink)

    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=code))
    assert_invalid_otp(login(http, world.public, "erin", aid=world.live, otp=code))
    assert len(sink.envelopes) == 1
    success = [r for r in records(app) if r.success]
    assert [r.method for r in success] == ["password+otp"]


def test_otp_step_is_only_revealed_after_the_right_password(app, world, mail_app):
    """A wrong password (with or without otp) gets invalid_grant, no X-OTP, and sends nothing."""
    http_app, sink = mail_app()
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    for otp in (None, "123456"):
        response = login(http, world.public, "erin", WRONG, aid=world.live, otp=otp)
        assert response.status_code == 400
        assert response.json == BAD_CREDENTIALS
        assert "X-OTP" not in response.headers
    assert sink.envelopes == []


def test_expired_email_code_is_refused(app, world, mail_app):
    """The code lives OTP_LIFETIME (300 s) in Redis; once its key expires it is invalid_otp."""
    http_app, sink = mail_app()
    store = http_app.extensions["authserver.store"]  # memory:// is per app
    http = http_app.test_client()
    user_id = make_user(
        app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL
    )
    assert login(http, world.public, "erin", aid=world.live).json["error"] == "otp_required"
    [code] = emailed_codes(sink)
    ttl = store.ttl(f"otp:{user_id}")
    assert ttl is not None
    assert 290 <= ttl <= 300
    store.delete(f"otp:{user_id}")  # what Redis does when the TTL runs out
    assert_invalid_otp(login(http, world.public, "erin", aid=world.live, otp=code))


def test_email_code_is_void_after_five_wrong_tries(app, world, mail_app):
    """After 5 wrong codes the right one fails too; a newly requested code works."""
    http_app, sink = mail_app(OTP_RESEND_COOLDOWN=0)
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    assert login(http, world.public, "erin", aid=world.live).json["error"] == "otp_required"
    [code] = emailed_codes(sink)
    # Each try from its own IP: the per-IP login throttle (5) would otherwise stop the 5th.
    for i in range(5):
        wrong = login(
            http, world.public, "erin", aid=world.live, otp=other_code(code), ip=f"10.2.0.{i}"
        )
        assert_invalid_otp(wrong)
    assert_invalid_otp(login(http, world.public, "erin", aid=world.live, otp=code, ip="10.2.1.1"))

    again = login(http, world.public, "erin", aid=world.live, ip="10.2.1.2")
    assert again.json["error"] == "otp_required"
    assert len(sink.envelopes) == 2
    new_code = emailed_codes(sink)[1]
    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=new_code, ip="10.2.1.3"))


def test_four_wrong_tries_leave_the_code_usable(app, world, mail_app):
    """OTP_MAX_ATTEMPTS is 5: after 4 wrong codes the right one still gives tokens."""
    http_app, sink = mail_app()
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    login(http, world.public, "erin", aid=world.live)
    [code] = emailed_codes(sink)
    for i in range(4):
        wrong = login(
            http, world.public, "erin", aid=world.live, otp=other_code(code), ip=f"10.3.0.{i}"
        )
        assert_invalid_otp(wrong)
    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=code, ip="10.3.1.1"))


def test_asking_again_within_the_cooldown_sends_nothing(app, world, mail_app):
    """A second request within 30 s sends no message, says when to retry, and the code stands."""
    http_app, sink = mail_app()
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    first = login(http, world.public, "erin", aid=world.live)
    second = login(http, world.public, "erin", aid=world.live)
    assert first.json["otp_resend_after"] == 30
    assert second.json["error"] == "otp_required"
    assert 1 <= second.json["otp_resend_after"] <= 30
    assert second.headers["X-OTP"] == "required; method=tfa_email"
    assert len(sink.envelopes) == 1
    [code] = emailed_codes(sink)
    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=code))


def test_a_spent_code_lifts_the_cooldown_for_the_next_login(app, world, mail_app):
    """Signing in again right after a login used its code sends a new code at once (the
    cooldown would otherwise leave the person with no valid code for 30 s)."""
    http_app, sink = mail_app()
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    login(http, world.public, "erin", aid=world.live)
    [code] = emailed_codes(sink)
    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=code))
    again = login(http, world.public, "erin", aid=world.live)
    assert again.json["otp_resend_after"] == 30
    _, new = emailed_codes(sink)
    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=new))


def test_after_the_cooldown_a_new_code_replaces_the_old(app, world, mail_app):
    """After OTP_RESEND_COOLDOWN a new code is sent; the old one no longer works, the new does."""
    http_app, sink = mail_app(OTP_RESEND_COOLDOWN=1)
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    assert login(http, world.public, "erin", aid=world.live).json["otp_resend_after"] == 1
    time.sleep(1.2)
    assert login(http, world.public, "erin", aid=world.live).json["error"] == "otp_required"
    old, new = emailed_codes(sink)
    if old != new:  # one chance in a million that both draws are equal
        assert_invalid_otp(login(http, world.public, "erin", aid=world.live, otp=old))
    assert_tokens(login(http, world.public, "erin", aid=world.live, otp=new))


def test_codes_sent_per_hour_are_capped(app, make_app, world):
    """Even without a cooldown, at most SENDS_PER_HOUR codes a user go out in an hour."""
    http_app = make_app(OTP_RESEND_COOLDOWN=0)
    http = http_app.test_client()
    make_user(app, world.live, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    answers = [login(http, world.public, "erin", aid=world.live) for _ in range(SENDS_PER_HOUR + 2)]
    assert {a.json["error"] for a in answers} == {"otp_required"}
    assert len(http_app.extensions["authserver.outbox"]) == SENDS_PER_HOUR
    assert answers[-1].json["otp_resend_after"] > 30  # told to wait for the hour to pass


# ---------------------------------------------------------------- OTP by SMS (webhook)


def test_sms_otp_dance_over_a_webhook(app, make_app, world, webhook):
    """tfa_sms: otp_required with a masked number; the texted code gives tokens once."""
    http = make_app(SMS_URL=webhook.url).test_client()
    make_user(app, world.live, "sam", password=PASSWORD, auth_method="tfa_sms", phone_number=PHONE)

    response = login(http, world.public, "sam", aid=world.live)
    assert response.status_code == 400
    assert response.json["error"] == "otp_required"
    assert response.json["otp_method"] == "tfa_sms"
    assert response.json["otp_destination"] == "+1***67"
    assert response.headers["X-OTP"] == "required; method=tfa_sms"
    assert PHONE not in response.get_data(as_text=True)
    [sent] = webhook.requests
    assert sent["json"]["to"] == PHONE
    found = re.search(r"\b(\d{6})\b", sent["json"]["body"])
    assert found

    assert_tokens(login(http, world.public, "sam", aid=world.live, otp=found.group(1)))
    assert_invalid_otp(login(http, world.public, "sam", aid=world.live, otp=found.group(1)))
    assert len(webhook.requests) == 1
    assert [r.method for r in records(app) if r.success] == ["password+sms"]


# ---------------------------------------------------------------- TOTP


def test_totp_otp_required_sends_nothing(app, client, world):
    """tfa_totp: otp_required names the method, has no destination, and sends no message."""
    make_totp_user(app, world.live, "tom", password=PASSWORD)
    response = login(client, world.public, "tom", aid=world.live)
    assert response.status_code == 400
    assert response.json == {
        "error": "otp_required",
        "error_description": "A one-time password is required.",
        "otp_method": "tfa_totp",
    }
    assert response.headers["X-OTP"] == "required; method=tfa_totp"
    assert list(app.extensions["authserver.outbox"]) == []


def test_totp_code_works_once(app, client, world):
    """The current TOTP code gives tokens; replaying the same step is invalid_otp."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    settle_totp_step()
    code = totp.now()
    assert_tokens(login(client, world.public, "tom", aid=world.live, otp=code))
    assert_invalid_otp(login(client, world.public, "tom", aid=world.live, otp=code))
    assert [r.method for r in records(app) if r.success] == ["password+otp"]


def test_totp_accepts_the_previous_step_but_not_two_steps_ago(app, client, world):
    """A code of the previous 30 s step is accepted (+-1 step); one from two steps ago is not."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    settle_totp_step()
    now = time.time()
    two_ago, previous = totp.at(now - 60), totp.at(now - 30)
    if two_ago not in (previous, totp.at(now), totp.at(now + 30)):
        assert_invalid_otp(login(client, world.public, "tom", aid=world.live, otp=two_ago))
    assert_tokens(login(client, world.public, "tom", aid=world.live, otp=previous))


def test_totp_older_step_is_refused_after_a_newer_one(app, client, world):
    """After the current step's code is used, the previous step's code is refused too."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    settle_totp_step()
    now = time.time()
    current, previous = totp.at(now), totp.at(now - 30)
    assert_tokens(login(client, world.public, "tom", aid=world.live, otp=current))
    if previous != current:  # 1 in a million the two steps share a code
        assert_invalid_otp(login(client, world.public, "tom", aid=world.live, otp=previous))


def test_totp_step_before_a_used_later_step_is_refused(app, client, world):
    """After the code of step T+1 is used, the code of step T-1 (still in the window) fails."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    settle_totp_step()
    now = time.time()
    later, earlier = totp.at(now + 30), totp.at(now - 30)
    assert_tokens(login(client, world.public, "tom", aid=world.live, otp=later))
    if earlier != later:
        assert_invalid_otp(login(client, world.public, "tom", aid=world.live, otp=earlier))


def test_wrong_totp_code_is_invalid_otp(app, client, world):
    """A TOTP code that matches no step of the window gets invalid_otp."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    assert_invalid_otp(login(client, world.public, "tom", aid=world.live, otp=wrong_totp(totp)))


# ---------------------------------------------------------------- recovery codes


def test_recovery_code_works_once(app, client, world):
    """A recovery code instead of otp gives tokens once; the same code again is invalid_otp."""
    user_id, _ = make_totp_user(app, world.live, "tom", password=PASSWORD)
    with app.app_context():
        codes = twofactor.regenerate_recovery_codes(db.session.get(User, user_id))
    assert_tokens(login(client, world.public, "tom", aid=world.live, recovery_code=codes[0]))
    assert_invalid_otp(login(client, world.public, "tom", aid=world.live, recovery_code=codes[0]))
    assert_tokens(login(client, world.public, "tom", aid=world.live, recovery_code=codes[1]))
    assert [r.method for r in records(app) if r.success] == [
        "password+recovery_code",
        "password+recovery_code",
    ]


def test_recovery_code_used_concurrently_succeeds_once(app, world):
    """20 concurrent logins with one recovery code (each from its own IP): exactly one 200."""
    user_id, _ = make_totp_user(app, world.live, "tom", password=PASSWORD)
    with app.app_context():
        [code, *_] = twofactor.regenerate_recovery_codes(db.session.get(User, user_id))

    def attempt(i: int) -> TestResponse:
        http = app.test_client()
        return login(
            http, world.public, "tom", aid=world.live, recovery_code=code, ip=f"10.4.0.{i}"
        )

    responses = run_together(20, attempt)
    assert sorted(r.status_code for r in responses) == [200] + [400] * 19
    assert {r.json["error"] for r in responses if r.status_code == 400} == {"invalid_otp"}


# ---------------------------------------------------------------- throttle


def assert_throttled(response: TestResponse) -> None:
    assert response.status_code == 429
    assert response.json is not None
    assert response.json["error"] == "too_many_attempts"
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert response.headers["Cache-Control"] == "no-store"
    assert "access_token" not in response.json


def test_attempt_past_the_limit_is_throttled_even_with_the_right_password(client, world):
    """FAILURES_PER_IP wrong passwords, then the right one: 429 too_many_attempts."""
    for _ in range(FAILURES_PER_IP):
        assert login(client, world.public, "gina", WRONG).json == BAD_CREDENTIALS
    assert_throttled(login(client, world.public, "gina"))


def test_unknown_username_is_throttled_the_same_way(client, world):
    """An unknown username gets the same invalid_grant answers and then the same 429."""
    answers = {}
    for username in ("gina", "ghost"):
        for _ in range(FAILURES_PER_IP):
            assert login(client, world.public, username, WRONG).json == BAD_CREDENTIALS
        answers[username] = login(client, world.public, username, WRONG)
        assert_throttled(answers[username])
    assert answers["gina"].json == answers["ghost"].json


def test_otp_failures_count_towards_the_throttle(app, client, world):
    """Wrong codes use up the attempts (otp_required does not): the right code then gets 429."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    for _ in range(3):  # asking for the second factor costs nothing
        assert login(client, world.public, "tom", aid=world.live).json["error"] == "otp_required"
    for _ in range(FAILURES_PER_IP):
        assert_invalid_otp(login(client, world.public, "tom", aid=world.live, otp=wrong_totp(totp)))
    assert_throttled(login(client, world.public, "tom", aid=world.live, otp=totp.now()))


def test_another_ip_is_not_blocked_by_the_per_ip_limit(client, world):
    """After FAILURES_PER_IP failures from one IP, that IP gets 429 while another logs in."""
    for _ in range(FAILURES_PER_IP):
        login(client, world.public, "gina", WRONG, ip="198.51.100.1")
    assert_throttled(login(client, world.public, "gina", ip="198.51.100.1"))
    assert_tokens(login(client, world.public, "gina", ip="198.51.100.2"))


def test_one_ip_spraying_many_usernames_is_throttled(client, world):
    """FAILURES_FROM_IP wrong passwords over as many usernames from one IP: then 429."""
    for i in range(FAILURES_FROM_IP):
        assert login(client, world.public, f"spray{i}", WRONG, ip="192.0.2.9").status_code == 400
    assert_throttled(login(client, world.public, "gina", ip="192.0.2.9"))
    assert_tokens(login(client, world.public, "gina", ip="192.0.2.10"))


def test_success_clears_the_counters(client, world):
    """Failures up to the limit + success, twice over: never throttled (success resets)."""
    for _ in range(2):
        for _ in range(FAILURES_PER_IP - 1):
            assert login(client, world.public, "gina", WRONG).status_code == 400
        assert_tokens(login(client, world.public, "gina"))


def test_failures_from_many_ips_lock_the_username(client, world):
    """FAILURES_PER_USER failures from as many IPs: the next attempt from a new IP gets 429."""
    for i in range(FAILURES_PER_USER):
        assert login(client, world.public, "gina", WRONG, ip=f"10.5.0.{i}").status_code == 400
    assert_throttled(login(client, world.public, "gina", ip="10.5.1.1"))


def test_concurrent_guesses_do_not_slip_past_the_throttle(app, world):
    """30 concurrent wrong passwords from one IP: exactly FAILURES_PER_IP reach the check."""

    def attempt(i: int) -> TestResponse:
        return login(app.test_client(), world.public, "gina", WRONG)

    responses = run_together(30, attempt)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [400] * FAILURES_PER_IP + [429] * (30 - FAILURES_PER_IP)
    checked = [r for r in records(app) if r.reason == "bad_credentials"]
    assert len(checked) == FAILURES_PER_IP


# ---------------------------------------------------------------- login records


def test_success_writes_a_login_record(app, client, world):
    """A login writes one record: user, account, client, IP, user agent, method, success."""
    assert_tokens(
        login(
            client,
            world.public,
            "gina",
            aid=world.live,
            ip="203.0.113.7",
            user_agent="AcmeShop-iOS/2.1",
        )
    )
    [record] = records(app)
    assert record.success is True
    assert record.reason is None
    assert record.method == "password"
    assert record.ip == "203.0.113.7"
    assert record.user_agent == "AcmeShop-iOS/2.1"
    assert record.user_id == world.users["gina"]
    assert record.account_id == world.live
    assert record.client_id == world.public.client_id


def test_failures_write_login_records_with_a_reason(app, client, world):
    """Wrong password, unknown user, disabled user, wrong otp and wrong recovery code each
    write a failed record naming the method tried."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    login(client, world.public, "gina", WRONG, ip="203.0.113.1")
    login(client, world.public, "nobody", WRONG, ip="203.0.113.2")
    login(client, world.public, "dora", aid=world.live, ip="203.0.113.3")
    login(client, world.public, "tom", aid=world.live, otp=wrong_totp(totp), ip="203.0.113.4")
    login(client, world.public, "tom", aid=world.live, recovery_code="nope-nope", ip="203.0.113.5")
    got = [(r.ip, r.user_id, r.method, r.success, r.reason) for r in records(app)]
    assert got == [
        ("203.0.113.1", world.users["gina"], "password", False, "bad_credentials"),
        ("203.0.113.2", None, "password", False, "bad_credentials"),
        ("203.0.113.3", world.users["dora"], "password", False, "user_disabled"),
        ("203.0.113.4", got[3][1], "otp", False, "bad_otp"),
        ("203.0.113.5", got[3][1], "recovery_code", False, "bad_recovery_code"),
    ]
    assert got[3][1] is not None


def test_no_secret_in_login_records_or_logs(app, client, world, log_stream):
    """No password, OTP or recovery code ends up in a login record column or the log."""
    user_id, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    with app.app_context():
        recovery = twofactor.regenerate_recovery_codes(db.session.get(User, user_id))
    bad_otp = wrong_totp(totp)
    secret_wrong = "Wr0ng-Secret-Pa55word"
    settle_totp_step()
    good_otp = totp.now()
    login(client, world.public, "gina", secret_wrong)
    login(client, world.public, "tom", aid=world.live, otp=bad_otp)
    assert_tokens(login(client, world.public, "tom", aid=world.live, otp=good_otp))
    login(client, world.public, "tom", secret_wrong, aid=world.live, otp=good_otp)
    assert_tokens(login(client, world.public, "tom", aid=world.live, recovery_code=recovery[0]))
    rows = records(app)
    assert len(rows) == 5
    secrets = [PASSWORD, secret_wrong, bad_otp, good_otp, recovery[0], recovery[0].replace("-", "")]
    columns = [c.name for c in LoginRecord.__table__.columns]
    for row in rows:
        for column in columns:
            value = str(getattr(row, column))
            assert not any(s in value for s in secrets), (column, value)
    log = log_stream.getvalue()
    assert "login failed" in log
    assert not any(s in log for s in secrets)


# ---------------------------------------------------------------- client authentication


def test_public_client_uses_the_password_grant(client, world):
    """A public client sending only client_id (auth method none) gets tokens."""
    body = assert_tokens(login(client, world.public, "gina"))
    assert claims_of(client, body["access_token"])[1]["client_id"] == world.public.client_id


@pytest.mark.parametrize("basic", [True, False], ids=["client_secret_basic", "client_secret_post"])
def test_confidential_client_uses_the_password_grant(client, world, basic):
    """A confidential client authenticating with its secret (basic or post) gets tokens."""
    body = assert_tokens(login(client, world.confidential, "gina", basic=basic))
    claims = claims_of(client, body["access_token"])[1]
    assert claims["client_id"] == world.confidential.client_id


@pytest.mark.parametrize("secret", [None, "not-the-secret"], ids=["no_secret", "wrong_secret"])
def test_confidential_client_without_its_secret_is_401(client, world, secret):
    """A confidential client without (or with a wrong) secret: 401 invalid_client + challenge."""
    cred = Cred(world.confidential.client_id, secret)
    response = login(client, cred, "gina")
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------- the access token


def test_access_token_is_an_es256_at_jwt_verifiable_with_the_jwks(app, client, world):
    """The access token is an ES256 at+jwt signed by a JWKS key, with every required claim."""
    started = int(time.time())
    body = assert_tokens(
        login(client, world.public, "gina", aid=world.live, scope="openid profile")
    )
    header, claims = claims_of(client, body["access_token"])
    kids = [k["kid"] for k in client.get("/oauth/jwks").json["keys"]]
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"] in kids
    issuer = app.config["ISSUER"]
    assert claims["iss"] == issuer
    assert claims["aud"] == f"{issuer}/v1"
    assert claims["sub"] == world.users["gina"]
    assert started - 1 <= claims["iat"] <= time.time() + 1
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    assert claims["client_id"] == world.public.client_id
    assert claims["scope"] == "openid profile"
    assert (claims["aid"], claims["mode"], claims["role"]) == (world.live, "live", "administrator")
    second = assert_tokens(login(client, world.public, "gina", aid=world.live))
    assert claims_of(client, second["access_token"])[1]["jti"] != claims["jti"]


# ---------------------------------------------------------------- Cache-Control


def test_every_token_response_is_no_store(app, client, world):
    """Success and every error of the password grant carry Cache-Control: no-store."""
    _, totp = make_totp_user(app, world.live, "tom", password=PASSWORD)
    responses = {
        "tokens": login(client, world.public, "glen"),
        "invalid_grant": login(client, world.public, "glen", WRONG),
        "otp_required": login(client, world.public, "tom", aid=world.live),
        "invalid_otp": login(client, world.public, "tom", aid=world.live, otp=wrong_totp(totp)),
        "invalid_scope": login(client, world.public, "glen", scope="admin"),
        "invalid_request": login(client, world.public, "glen", ""),
        "invalid_client": login(client, Cred(world.confidential.client_id), "glen"),
    }
    for _ in range(FAILURES_PER_IP):
        login(client, world.public, "gina", WRONG)
    responses["too_many_attempts"] = login(client, world.public, "gina")
    for expected, response in responses.items():
        if expected != "tokens":
            assert response.json is not None
            assert response.json["error"] == expected
        assert response.headers["Cache-Control"] == "no-store", expected
