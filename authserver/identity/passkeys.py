"""Passkeys (WebAuthn, through py_webauthn): enrolment, the checks behind a passkey login
(passwordless or as the second step) and the user's list (rename, remove).

The relying party is the issuer: RP ID `WEBAUTHN_RP_ID` (default: the issuer's host), the
one expected origin the issuer's. Every ceremony's challenge lives in Redis under its
digest for CEREMONY_LIFETIME seconds and is taken (GETDEL) by the answer that names it,
so it works once, for the purpose and user it was made for. User verification is always
required, so one passkey is a multi-factor login on its own. A signature counter that does
not move forward (a cloned authenticator) is refused and told apart (`reason`), so the
login history records it. At most MAX_PASSKEYS a user.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, or_, select, update
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authserver.identity import audit, twofactor, users
from authserver.identity.tokens import Survivor, revoke_user_tokens
from authserver.platform.database import commit
from authserver.platform.errors import (
    Conflict,
    Forbidden,
    InvalidPasskey,
    NotFound,
    Throttled,
    ValidationFailed,
)
from authserver.platform.events import stage
from authserver.platform.extensions import db, store
from authserver.platform.models import (
    Account,
    AuthMethod,
    Passkey,
    Role,
    User,
    UserStatus,
    utcnow,
)
from authserver.platform.security import digest

MAX_PASSKEYS = 10  # a user's passkeys (phones, laptops, security keys, a spare)
CEREMONY_LIFETIME = 300  # seconds a challenge waits for the authenticator (browsers: 5 min)
PROOF_LIFETIME = 300  # seconds a fresh proof allows starting an enrolment
RESPONSE_MAX = 16 * 1024  # characters of a browser's answer (a few hundred bytes usually)
NAME_MAX = 64
OPTIONS_PER_IP = 60  # sign-in ceremonies started from one IP per OPTIONS_WINDOW
OPTIONS_WINDOW = 60  # seconds
NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")
REGISTER, PASSWORDLESS, SECOND_STEP = "register", "login", "second"


def rp_id() -> str:
    """The relying-party id: the setting, else the issuer's host."""
    configured: str = current_app.config["WEBAUTHN_RP_ID"]
    return configured or (urlsplit(current_app.config["ISSUER"]).hostname or "")


def expected_origin() -> str:
    parts = urlsplit(current_app.config["ISSUER"])
    return f"{parts.scheme}://{parts.netloc}"


def available() -> bool:
    """Whether browsers can use passkeys here: they refuse WebAuthn on an IP-address
    origin (such as http://127.0.0.1:5000), so the pages then offer none."""
    try:
        ipaddress.ip_address(rp_id().strip("[]"))
    except ValueError:
        return True
    return False


# --- the user's passkeys ------------------------------------------------------------------


def list_passkeys(user_id: str) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    rows = db.session.scalars(
        select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at, Passkey.id)
    )
    return list(rows)


def count(user: User) -> int:
    total = db.session.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
    )
    return int(total or 0)


def has_second_factor(user: User) -> bool:
    """Two-step login is on: a code method, or at least one passkey (see README, Passkeys)."""
    return user.auth_method != AuthMethod.SIMPLE or count(user) > 0


def get_passkey(user_id: str, passkey_id: str) -> Passkey:
    """One passkey of the user. Raises NotFound (also for another user's)."""
    found = db.session.get(Passkey, passkey_id) if len(passkey_id) <= 36 else None
    if found is None or found.user_id != user_id:
        raise NotFound("No such passkey.")
    return found


def check_name(value: object) -> str:
    """A name people give a passkey: 1-64 characters, no control characters."""
    if not isinstance(value, str):
        raise ValidationFailed("Must be a string.", field="name", code="invalid_type")
    name = value.strip()
    if not name:
        raise ValidationFailed("A name is required.", field="name", code="required")
    if len(name) > NAME_MAX or not NAME_RE.match(name):
        raise ValidationFailed(
            f"At most {NAME_MAX} characters, no control characters.",
            field="name",
            code="invalid_name",
        )
    return name


def rename(passkey: Passkey, name: object) -> Passkey:
    passkey.name = check_name(name)
    user = db.session.get(User, passkey.user_id)
    audit.record("passkey.update", "Passkey", passkey.id, ["name"], account_id=_account_id(user))
    stage("identity.passkey.update.success", user=user, account=_account(user), passkey=passkey)
    commit(conflict=False)
    return passkey


def remove(passkey: Passkey, *, keep: Survivor | None = None, refuse_last: bool = False) -> None:
    """Delete a passkey; it is refused from this moment on.

    Removing the user's last second factor (no code method, no other passkey) is turning
    two-step login off: as `twofactor.disable_tfa` does, every other login of the user
    ends (the one in `keep` goes on). With `refuse_last` (the user's own bearer token,
    which proves no password) that is refused: the hosted page asks for the password.
    """
    user = db.session.get(User, passkey.user_id)
    last = user is not None and user.auth_method == AuthMethod.SIMPLE and count(user) == 1
    if last and refuse_last:
        raise ValidationFailed(
            "This is your last second factor: remove it on the security page, which asks "
            "for your password.",
            code="last_second_factor",
        )
    db.session.delete(passkey)
    audit.record("passkey.delete", "Passkey", passkey.id, account_id=_account_id(user))
    if last and user is not None:
        revoke_user_tokens(user, keep)
    stage("identity.passkey.delete.success", user=user, account=_account(user), passkey=passkey)
    commit(conflict=False)


def remove_with_proof(
    user: User,
    passkey_id: str,
    *,
    password: object,
    otp: object | None = None,
    recovery_code: object | None = None,
) -> bool:
    """The hosted page's removal: the password (and a current code for a user with a code
    method), like turning two-step login off. Returns whether two-step login is now off
    (every other login ended). Raises NotFound, ValidationFailed or Throttled."""
    passkey = get_passkey(user.id, passkey_id)
    twofactor.prove_identity(user, password=password, otp=otp, recovery_code=recovery_code)
    last = user.auth_method == AuthMethod.SIMPLE and count(user) == 1
    remove(passkey)
    return last


def _account_id(user: User | None) -> str | None:
    return user.account_id if user is not None else None


def _account(user: User | None) -> object:
    return user.account if user is not None else None


# --- who may see and change whose passkeys (the API) ------------------------------------


MANAGERS = (Role.OWNER, Role.ADMINISTRATOR)


def _may_manage(account: Account, role: str, user: User) -> bool:
    """An owner or administrator manages the passkeys of the account's own users (the
    way back for someone who lost theirs); not a global user's, which serve other
    accounts too, and only an owner an owner's."""
    if role not in MANAGERS or user.account_id != account.id:
        return False
    return user.role != Role.OWNER or role == Role.OWNER


def user_to_list(account: Account | None, role: str, me: str | None, user_id: str | None) -> str:
    """Whose passkeys a caller lists: their own (`user_id` None or theirs), or a user the
    caller manages. Raises NotFound or Forbidden."""
    if user_id is None or user_id == me:
        if me is None:
            raise NotFound("This token has no user.")
        return me
    if account is None or role not in MANAGERS:
        raise Forbidden("Only an owner or administrator lists another user's passkeys.")
    user = users.get_member(account, user_id).user
    if not _may_manage(account, role, user):
        raise Forbidden("You may not manage this user's passkeys.")
    return user.id


def passkey_to_change(
    account: Account | None, role: str, me: str | None, passkey_id: str
) -> tuple[Passkey, bool]:
    """The passkey a caller renames or removes, and whether it is their own. Another
    user's only for one who manages that user (else NotFound, telling nothing)."""
    passkey = db.session.get(Passkey, passkey_id) if len(passkey_id) <= 36 else None
    if passkey is None:
        raise NotFound("No such passkey.")
    if passkey.user_id == me:
        return passkey, True
    user = db.session.get(User, passkey.user_id)
    if account is None or user is None or not _may_manage(account, role, user):
        raise NotFound("No such passkey.")
    return passkey, False


# --- enrolment ------------------------------------------------------------------------


def _proof_key(user: User) -> str:
    return f"passkey-proof:{user.id}"


def prove_for_enrolment(
    user: User, *, password: object, otp: object | None = None, recovery_code: object | None = None
) -> None:
    """Fresh proof before a passkey is added (the password, and a current code for a
    user with a code method); it allows one enrolment within PROOF_LIFETIME seconds."""
    if count(user) >= MAX_PASSKEYS:
        raise _too_many()
    twofactor.prove_identity(user, password=password, otp=otp, recovery_code=recovery_code)
    store().put(_proof_key(user), "1", PROOF_LIFETIME)


def enrolment_proven(user: User) -> bool:
    return store().get(_proof_key(user)) is not None


def start_registration(user: User) -> str:
    """The options for navigator.credentials.create(), as JSON. Needs a fresh proof."""
    if not enrolment_proven(user):
        raise ValidationFailed("Confirm it is you first.", code="proof_required")
    if count(user) >= MAX_PASSKEYS:
        raise _too_many()
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=_rp_name(user),
        user_name=user.username,
        user_id=user.id.encode(),
        user_display_name=user.name or user.username,
        timeout=CEREMONY_LIFETIME * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        # An authenticator that holds one of the user's passkeys already refuses to make
        # a second one for the same person.
        exclude_credentials=[_descriptor(p) for p in list_passkeys(user.id)],
    )
    _keep_challenge(options.challenge, REGISTER, user.id)
    return options_to_json(options)


def finish_registration(user: User, response: object, name: object) -> Passkey:
    """Check the authenticator's answer to `start_registration` and keep the passkey.
    The user's first second factor ends every other login of theirs (the caller keeps
    its own, see browser_login.keep_login). Raises InvalidPasskey, ValidationFailed
    (name, proof, too many) or Conflict."""
    label = check_name(name)
    credential = _parse(response, parse_registration_credential_json)
    assert isinstance(credential, RegistrationCredential)
    expected = _take_challenge(credential.response.client_data_json, REGISTER, user.id)
    if store().take(_proof_key(user)) is None:  # one proof, one passkey
        raise ValidationFailed("Confirm it is you first.", code="proof_required")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp_id(),
            expected_origin=expected_origin(),
            require_user_verification=True,
        )
    except Exception as exc:  # the library's own and parsing errors alike: a bad answer
        raise InvalidPasskey(str(exc)[:200]) from None
    if count(user) >= MAX_PASSKEYS:
        raise _too_many()
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise Conflict("This passkey is registered already.")
    transports = [t.value for t in (credential.response.transports or [])][:8]
    passkey = Passkey(
        user_id=user.id,
        credential_id=credential_id,
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=verified.aaguid or None,
        name=label,
    )
    first_factor = not has_second_factor(user)
    db.session.add(passkey)
    db.session.flush()
    audit.record("passkey.create", "Passkey", passkey.id, ["name"], account_id=user.account_id)
    if first_factor:
        # Two-step login turns on: as with a first authenticator app, no login opened
        # with the password alone (perhaps a stolen one) goes on; the page keeps its own.
        revoke_user_tokens(user)
    stage("identity.passkey.create.success", user=user, account=user.account, passkey=passkey)
    commit()
    return passkey


def _rp_name(user: User) -> str:
    if user.account is not None and user.account.name:
        return user.account.name
    return rp_id() or "authserver"


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for value in passkey.transports or []:
        try:
            transports.append(AuthenticatorTransport(value))
        except ValueError:
            continue  # a transport this library version does not know: leave it out
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id), transports=transports or None
    )


def _too_many() -> ValidationFailed:
    return ValidationFailed(
        f"At most {MAX_PASSKEYS} passkeys; remove one first.", code="too_many_passkeys"
    )


# --- sign-in ----------------------------------------------------------------------------


def start_authentication(user: User | None, ip: str | None = None) -> str:
    """The options for navigator.credentials.get(), as JSON: for `user`'s passkeys (the
    second step), or for any discoverable passkey (passwordless, `user` None; at most
    OPTIONS_PER_IP a minute from one IP, since anyone may ask)."""
    if user is None:
        hit = store().hit(f"passkey-options-ip:{ip}", OPTIONS_PER_IP, OPTIONS_WINDOW)
        if not hit.allowed:
            raise Throttled(hit.retry_after)
    options = generate_authentication_options(
        rp_id=rp_id(),
        timeout=CEREMONY_LIFETIME * 1000,
        allow_credentials=[_descriptor(p) for p in list_passkeys(user.id)] if user else [],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    _keep_challenge(options.challenge, SECOND_STEP if user else PASSWORDLESS, user and user.id)
    return options_to_json(options)


@dataclass(frozen=True)
class UsedPasskey:
    passkey_id: str
    user_id: str


def verify_authentication(response: object, user: User | None) -> UsedPasskey:
    """Check an answer to `start_authentication` (for `user`, or passwordless) and move
    the passkey's counter and last use. Raises InvalidPasskey; a counter regression has
    reason `passkey_counter_regression` and names the user."""
    credential = _parse(response, parse_authentication_credential_json)
    assert isinstance(credential, AuthenticationCredential)
    purpose = SECOND_STEP if user is not None else PASSWORDLESS
    expected = _take_challenge(
        credential.response.client_data_json, purpose, user.id if user else None
    )
    passkey = db.session.scalar(select(Passkey).where(Passkey.credential_id == credential.id))
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise InvalidPasskey("This passkey is not registered (or was removed).")
    handle = credential.response.user_handle
    if handle is not None and handle != passkey.user_id.encode():
        raise InvalidPasskey("The passkey's user does not match.")
    owner = db.session.get(User, passkey.user_id)
    if owner is None or owner.status != UserStatus.ACTIVE:
        raise InvalidPasskey("This passkey's user cannot sign in.")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp_id(),
            expected_origin=expected_origin(),
            credential_public_key=base64url_to_bytes(passkey.public_key),
            # The counter is compared below, after the signature: only a validly signed
            # answer with an old counter is a clone worth recording.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except Exception as exc:  # the library's own and parsing errors alike: a bad answer
        raise InvalidPasskey(str(exc)[:200]) from None
    new = verified.new_sign_count
    # Authenticators that keep no counter send 0 every time (synced passkeys do): that is
    # allowed while the stored one is 0 too. Otherwise it must grow; the conditional
    # UPDATE makes two answers with the same counter race to one winner.
    moved = db.session.execute(
        update(Passkey)
        .where(
            Passkey.id == passkey.id,
            or_(Passkey.sign_count < new, (Passkey.sign_count == 0) & (new == 0)),
        )
        .values(sign_count=new, last_used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        current_app.logger.warning(
            "passkey counter regression: a cloned authenticator?",
            extra={"fields": {"passkey_id": passkey.id, "user_id": passkey.user_id}},
        )
        error = InvalidPasskey(
            "The passkey's signature counter went back.", reason="passkey_counter_regression"
        )
        error.user_id = passkey.user_id
        raise error
    commit(conflict=False)
    return UsedPasskey(passkey.id, passkey.user_id)


# --- challenges ---------------------------------------------------------------------------


def _challenge_key(challenge: bytes) -> str:
    return f"passkey-challenge:{digest(bytes_to_base64url(challenge))}"


def _keep_challenge(challenge: bytes, purpose: str, user_id: str | None) -> None:
    data = json.dumps({"p": purpose, "u": user_id})
    store().put(_challenge_key(challenge), data, CEREMONY_LIFETIME)


def _take_challenge(client_data_json: bytes, purpose: str, user_id: str | None) -> bytes:
    """The challenge the answer signed, taken from Redis (once) if it was made for this
    purpose and user. Raises InvalidPasskey otherwise (unknown, expired, used)."""
    try:
        challenge = parse_client_data_json(client_data_json).challenge
    except Exception:  # malformed clientDataJSON: the library raises several kinds
        raise InvalidPasskey("The answer's client data is malformed.") from None
    stored = store().take(_challenge_key(challenge))
    if stored is None:
        raise InvalidPasskey("The challenge is unknown, expired or used.")
    data = json.loads(stored)
    if data.get("p") != purpose or data.get("u") != user_id:
        raise InvalidPasskey("The challenge was made for something else.")
    return challenge


def _parse(response: object, parser: object) -> object:
    if not isinstance(response, str) or not response or len(response) > RESPONSE_MAX:
        raise InvalidPasskey("The passkey answer is missing or too long.")
    try:
        return parser(response)  # type: ignore[operator]
    except Exception:  # malformed JSON, base64url or structure: the library raises many kinds
        raise InvalidPasskey("The passkey answer is malformed.") from None
