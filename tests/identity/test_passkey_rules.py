"""The passkey rules behind every front door (identity.passkeys, login.passkey_login):
ceremonies single use and short lived, the relying party's origin and RP ID, user
verification, the signature counter, removed passkeys and deleted users, the account a
passkey signs into, the enrolment proof and limit, and hostile answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import PASSWORD, make_user
from oauth_helpers import b64url
from passkey_helpers import ISSUER, SoftAuthenticator, enrol, user_of
from sqlalchemy import select
from verification_helpers import mails

from authserver.identity import passkeys
from authserver.identity.login import LoginAttempt, passkey_login
from authserver.platform.config import ConfigError
from authserver.platform.errors import InvalidCredentials, InvalidPasskey, ValidationFailed
from authserver.platform.extensions import db, store
from authserver.platform.models import AuditEvent, LoginRecord, Passkey


@pytest.fixture
def pk_app(make_app: Any) -> Any:
    """The app with a named-host issuer, where passkeys work."""
    return make_app(ISSUER=ISSUER)


def _attempt(aid: str | None, answer: str, **extra: Any) -> LoginAttempt:
    return LoginAttempt(
        username="", password="", account_id=aid, ip="10.0.0.1", passkey=answer, **extra
    )


def _passwordless(pk_app: Any, aid: str | None, device: SoftAuthenticator, **sign: Any) -> Any:
    with pk_app.app_context():
        options = passkeys.start_authentication(None, "10.0.0.1")
        return passkey_login(_attempt(aid, device.sign_in(options, **sign)))


def test_enrolment_keeps_the_public_key_and_is_audited_and_emailed(app, world, pk_app):
    """A registered passkey is stored with its credential id, key, counter, transports and
    name; the change is in the audit trail and mailed to the user."""
    user_id = make_user(app, world.live_id, "pat", email="pat@example.com", email_verified=True)
    device = enrol(pk_app, user_id)
    with pk_app.app_context():
        (row,) = db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)).all()
        assert row.name == "Laptop" and row.transports == ["internal"]
        assert row.aaguid == "00000000-0000-0000-0000-000000000000"
        assert row.sign_count == 0 and row.last_used_at is None
        assert row.credential_id == b64url(device.credential_id)
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.target_id == row.id)).one()
        assert (event.action, event.target_type) == ("passkey.create", "Passkey")
    (mail,) = mails(pk_app, "identity.passkey.create.success")
    assert mail.to == "pat@example.com" and '"Laptop"' in mail.text


def test_passwordless_login_is_multi_factor_and_moves_the_counter(app, world, pk_app):
    """A verified passkey logs its user in with amr hwk + mfa; the counter and last use
    move, and the login history says `passkey`."""
    user_id = make_user(app, world.live_id, "pat")
    device = enrol(pk_app, user_id)
    result = _passwordless(pk_app, world.live_id, device)
    assert result.user.id == user_id and result.amr == ["hwk", "mfa"]
    with pk_app.app_context():
        row = db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)).one()
        assert row.sign_count == 1 and row.last_used_at is not None
        record = db.session.scalars(select(LoginRecord).order_by(LoginRecord.id.desc())).first()
        assert (record.method, record.success, record.user_id) == ("passkey", True, user_id)


def test_a_challenge_works_once_and_lives_briefly(app, world, pk_app):
    """The same signed answer cannot be used twice (the challenge was taken), and each
    challenge is kept no longer than CEREMONY_LIFETIME seconds."""
    user_id = make_user(app, world.live_id, "pat")
    device = enrol(pk_app, user_id)
    with pk_app.app_context():
        options = passkeys.start_authentication(None, "10.0.0.1")
        key = passkeys._challenge_key(passkeys.base64url_to_bytes(json.loads(options)["challenge"]))
        assert 0 < (store().ttl(key) or 0) <= passkeys.CEREMONY_LIFETIME
        answer = device.sign_in(options)
        passkey_login(_attempt(world.live_id, answer))
        with pytest.raises(InvalidPasskey):
            passkey_login(_attempt(world.live_id, answer))


def test_an_expired_challenge_is_refused(app, world, pk_app):
    """An answer to a challenge Redis no longer holds (its TTL ran out) is refused."""
    user_id = make_user(app, world.live_id, "pat")
    device = enrol(pk_app, user_id)
    with pk_app.app_context():
        options = passkeys.start_authentication(None, "10.0.0.1")
        challenge = passkeys.base64url_to_bytes(json.loads(options)["challenge"])
        store().delete(passkeys._challenge_key(challenge))  # what the TTL does
        with pytest.raises(InvalidPasskey):
            passkey_login(_attempt(world.live_id, device.sign_in(options)))


@pytest.mark.parametrize(
    "sign",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://localhost:5001"},
        {"rp_id": "evil.example"},
        {"verified": False},
    ],
    ids=["other-origin", "other-port", "other-rp-id", "no-user-verification"],
)
def test_origin_rp_id_and_user_verification_are_checked(app, world, pk_app, sign):
    """An answer made for another origin or RP ID, or without user verification, is
    refused, and the counter does not move."""
    user_id = make_user(app, world.live_id, "pat")
    device = enrol(pk_app, user_id)
    with pytest.raises(InvalidPasskey):
        _passwordless(pk_app, world.live_id, device, **sign)
    with pk_app.app_context():
        assert db.session.scalars(select(Passkey.sign_count)).one() == 0


def test_a_counter_that_goes_back_is_refused_and_recorded(app, world, pk_app):
    """A clone answering with a counter at or below the server's is refused; the login
    history names the user and `passkey_counter_regression`; the stored counter stays."""
    user_id = make_user(app, world.live_id, "pat")
    device = enrol(pk_app, user_id)
    _passwordless(pk_app, world.live_id, device, count=5)
    with pytest.raises(InvalidPasskey):
        _passwordless(pk_app, world.live_id, device, count=5)
    with pk_app.app_context():
        assert db.session.scalars(select(Passkey.sign_count)).one() == 5
        record = db.session.scalars(select(LoginRecord).order_by(LoginRecord.id.desc())).first()
        assert (record.user_id, record.success) == (user_id, False)
        assert record.reason == "passkey_counter_regression"


def test_removed_passkeys_and_inactive_users_are_refused(app, world, pk_app):
    """A removed passkey, and the passkey of a disabled or deleted user, sign nobody in."""
    gone = make_user(app, world.live_id, "gone")
    device = enrol(pk_app, gone)
    with pk_app.app_context():
        passkeys.remove(db.session.scalars(select(Passkey)).one())
    with pytest.raises(InvalidPasskey):
        _passwordless(pk_app, world.live_id, device)
    for status in ("disabled", "deleted"):
        user_id = make_user(app, world.live_id, f"u-{status}")
        device = enrol(pk_app, user_id)
        with pk_app.app_context():
            user_of(user_id).status = status
            db.session.commit()
        with pytest.raises(InvalidPasskey):
            _passwordless(pk_app, world.live_id, device)


def test_a_passkey_signs_into_its_users_account_only(app, world, pk_app):
    """The passkey of a user of one account does not sign into another (`aid`), nor into
    a global login."""
    user_id = make_user(app, world.live_id, "pat")
    device = enrol(pk_app, user_id)
    for aid in (world.other_id, world.test_id, None):
        with pytest.raises(InvalidCredentials):
            _passwordless(pk_app, aid, device)


def test_the_second_step_takes_only_the_users_own_passkey(app, world, pk_app):
    """A second-step challenge made for one user is not answered by another user's
    passkey, and a passwordless challenge cannot serve as a second step."""
    pat = make_user(app, world.live_id, "pat")
    eve = make_user(app, world.live_id, "eve")
    eve_device = enrol(pk_app, eve)
    pat_device = enrol(pk_app, pat)
    with pk_app.app_context():
        options = passkeys.start_authentication(user_of(pat), None)
        with pytest.raises(InvalidPasskey):
            passkeys.verify_authentication(eve_device.sign_in(options), user_of(pat))
        loose = passkeys.start_authentication(None, "10.0.0.1")
        with pytest.raises(InvalidPasskey):
            passkeys.verify_authentication(pat_device.sign_in(loose), user_of(pat))


def test_enrolment_needs_a_fresh_proof_once_and_has_a_limit(app, world, pk_app):
    """No options without the password proof; one proof makes one passkey; a wrong
    password proves nothing; at MAX_PASSKEYS the next is refused."""
    user_id = make_user(app, world.live_id, "pat")
    with pk_app.app_context():
        user = user_of(user_id)
        with pytest.raises(ValidationFailed) as refused:
            passkeys.start_registration(user)
        assert refused.value.code == "proof_required"
        with pytest.raises(ValidationFailed):
            passkeys.prove_for_enrolment(user, password="wrong password")
        assert not passkeys.enrolment_proven(user)
    enrol(pk_app, user_id)
    with pk_app.app_context(), pytest.raises(ValidationFailed):
        passkeys.start_registration(user_of(user_id))  # the proof was spent
    for n in range(passkeys.MAX_PASSKEYS - 1):
        enrol(pk_app, user_id, name=f"key {n}")
    with pk_app.app_context(), pytest.raises(ValidationFailed) as full:
        passkeys.prove_for_enrolment(user_of(user_id), password=PASSWORD)
    assert full.value.code == "too_many_passkeys"


HOSTILE = [
    None,
    "",
    "not json",
    "[]",
    "{}",
    '{"id": 1, "rawId": [], "type": "public-key", "response": null}',
    json.dumps({"id": "AA", "rawId": "AA", "type": "public-key", "response": {}}),
    json.dumps(
        {
            "id": "AA",
            "rawId": "AA",
            "type": "public-key",
            "response": {
                "clientDataJSON": "!!!",
                "authenticatorData": "%%",
                "signature": "",
                "userHandle": None,
            },
        }
    ),
    "x" * (passkeys.RESPONSE_MAX + 1),
    '{"a":' * 5000 + "1" + "}" * 5000,
]


@pytest.mark.parametrize("answer", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_answers_are_refused_cleanly(app, world, pk_app, answer):
    """Malformed, mistyped, oversized or deeply nested answers are InvalidPasskey (a 4xx
    at every front door), never another error, and change nothing."""
    user_id = make_user(app, world.live_id, "pat")
    with pk_app.app_context():
        user = user_of(user_id)
        passkeys.prove_for_enrolment(user, password=PASSWORD)
        passkeys.start_registration(user)
        with pytest.raises(InvalidPasskey):
            passkeys.finish_registration(user, answer, "key")
        with pytest.raises(InvalidPasskey):
            passkey_login(_attempt(world.live_id, answer))
        assert db.session.scalars(select(Passkey)).all() == []


def test_passkeys_turn_two_step_login_on(app, world, pk_app):
    """A simple user with a passkey has a second factor; removing the last one turns it
    off and ends the user's other logins (token generation raised)."""
    user_id = make_user(app, world.live_id, "pat")
    enrol(pk_app, user_id)
    with pk_app.app_context():
        user = user_of(user_id)
        assert passkeys.has_second_factor(user)
        generation = user.token_generation
        assert passkeys.remove_with_proof(
            user, db.session.scalars(select(Passkey)).one().id, password=PASSWORD
        )
        assert not passkeys.has_second_factor(user)
        assert user_of(user_id).token_generation == generation + 1


def test_config_refuses_an_rp_id_that_is_not_the_issuers(make_app):
    """WEBAUTHN_RP_ID must be the issuer's host or a parent domain of it."""
    make_app(ISSUER="https://login.example.com", WEBAUTHN_RP_ID="example.com")
    with pytest.raises(ConfigError):
        make_app(ISSUER="https://login.example.com", WEBAUTHN_RP_ID="evil.com")
    with pytest.raises(ConfigError):
        make_app(ISSUER="https://login.example.com", WEBAUTHN_RP_ID="ample.com")


def test_removal_and_renaming_are_emailed_in_the_users_language(app, world, pk_app):
    """Renaming and removing a passkey each mail the user, in their language, naming it."""
    user_id = make_user(
        app, world.live_id, "pat", email="pat@example.com", email_verified=True, locale="es"
    )
    enrol(pk_app, user_id)
    with pk_app.app_context():
        passkeys.rename(db.session.scalars(select(Passkey)).one(), "Portátil")
        passkeys.remove(db.session.scalars(select(Passkey)).one())
    (renamed,) = mails(pk_app, "identity.passkey.update.success")
    (removed,) = mails(pk_app, "identity.passkey.delete.success")
    assert renamed.subject == "Se cambió el nombre de una llave de acceso de tu cuenta"
    assert '"Portátil"' in renamed.text and '"Portátil"' in removed.text
    assert removed.locale == "es" and removed.to == "pat@example.com"


def test_a_first_passkey_ends_the_users_password_only_logins(app, world, pk_app):
    """The first passkey turns two-step login on and ends every other login (token
    generation raised); a second one changes no login."""
    user_id = make_user(app, world.live_id, "pat")
    with pk_app.app_context():
        before = user_of(user_id).token_generation
    enrol(pk_app, user_id)
    enrol(pk_app, user_id, name="Spare")
    with pk_app.app_context():
        assert user_of(user_id).token_generation == before + 1
