"""Second factors: login challenges (email/SMS codes, TOTP), TOTP enrolment and recovery codes.

`start_challenge` and `complete_challenge` are the one OTP policy behind the password
grant and the hosted login page. Emailed/texted codes are 6 CSPRNG digits kept in Redis
as an HMAC for OTP_LIFETIME seconds, at most SENDS_PER_HOUR a user; each code allows
OTP_MAX_ATTEMPTS tries and is consumed atomically. TOTP (RFC 6238) accepts +-1 step and
refuses a step used before, or older than one used (recorded on the user row, not in
Redis). Recovery codes are single use,
stored as digests, consumed by a conditional UPDATE.

TOTP enrolment: `start_totp_setup` keeps a new secret pending in Redis for SETUP_LIFETIME
seconds; `confirm_totp_setup` switches the user to `tfa_totp` with a current code from it
(SETUP_MAX_ATTEMPTS tries, then the setup is void) and returns new recovery codes.
Replacing or removing the factor, and renewing recovery codes, need fresh proof (password
and/or a current code), counted per user before anything is compared.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pyotp
from flask import current_app
from sqlalchemy import or_, update

from authserver.identity.accounts import upgrade_password_hash
from authserver.identity.tokens import Survivor, revoke_user_tokens
from authserver.platform.database import commit
from authserver.platform.errors import EmailNotVerified, InvalidOtp, Throttled, ValidationFailed
from authserver.platform.events import emit, stage
from authserver.platform.extensions import db, passwords, store
from authserver.platform.models import Account, AuthMethod, RecoveryCode, User, new_id, utcnow
from authserver.platform.security import (
    digest,
    keyed_digest,
    mask_address,
    otpauth_uri,
    qr_svg,
    random_digits,
    same,
    totp_step_matching,
)

RECOVERY_CODE_COUNT = 10
SENDS_PER_HOUR = 10  # emailed/texted login codes per user
SENT_METHODS = (AuthMethod.TFA_EMAIL, AuthMethod.TFA_SMS)
SETUP_LIFETIME = 600  # seconds a started TOTP setup waits for its confirming code
SETUP_MAX_ATTEMPTS = 5  # wrong confirming codes before the pending setup is void
PROOF_ATTEMPTS = 5  # password/code proofs per user in PROOF_WINDOW (re-enrol, renew, disable)
PROOF_WINDOW = 15 * 60  # seconds
PASSWORD_MAX = 1024  # longer input is refused before hashing (argon2 cost is per byte)
OTP_MAX = 16  # characters of a typed code (spaces around it allowed)
RECOVERY_CODE_MAX = 64


@dataclass(frozen=True)
class Challenge:
    method: str  # tfa_email, tfa_sms, tfa_totp
    destination: str | None  # masked email or phone; None for TOTP
    sent: bool  # a new code went out with this call
    resend_after: int  # seconds until another code can be sent (0: now)


def _otp_key(user: User) -> str:
    return f"otp:{user.id}"


def _code_hash(code: str) -> str:
    return keyed_digest(current_app.config["SECRET_KEY"], "otp:" + code)


def destination(user: User) -> str | None:
    """Where the code goes, masked for display."""
    if user.auth_method == AuthMethod.TFA_EMAIL and user.email:
        return mask_address(user.email)
    if user.auth_method == AuthMethod.TFA_SMS and user.phone_number:
        return mask_address(user.phone_number)
    return None


def start_challenge(user: User, account: Account | None) -> Challenge:
    """Ask for the user's second factor; sends a new code unless one went out recently.
    Raises EmailNotVerified for emailed codes to an unverified address."""
    method = user.auth_method
    if method not in SENT_METHODS:
        return Challenge(method, None, sent=False, resend_after=0)
    if method == AuthMethod.TFA_EMAIL and not user.email_verified:
        # Anyone may sign up with any address (an account whose default is emailed
        # codes): every login would mail it. The verification link comes first.
        raise EmailNotVerified()
    config = current_app.config
    cooldown = config["OTP_RESEND_COOLDOWN"]
    kv = store()
    if cooldown and not kv.mark_once(f"otp-sent:{user.id}", cooldown):
        return Challenge(method, destination(user), False, kv.ttl(f"otp-sent:{user.id}") or 1)
    # Someone who knows the password must not be able to flood the user's inbox or phone.
    sends = kv.hit(f"otp-sends:{user.id}", SENDS_PER_HOUR, 3600)
    if not sends.allowed:
        return Challenge(method, destination(user), False, sends.retry_after)
    code = random_digits(6)
    kv.put(_otp_key(user), json.dumps({"h": _code_hash(code)}), config["OTP_LIFETIME"])
    kv.delete(f"otp-tries:{user.id}")
    emit("identity.otp.create.success", user=user, account=account, code=code, method=method)
    return Challenge(method, destination(user), True, cooldown)


def prime_challenge(user: User, code: str) -> None:
    """Make `code`, just proven to reach the user's phone, their pending login code.

    At sign-up the phone verification code doubles as the first login's OTP, so the
    person types one code, not two, in their first minutes.
    """
    config = current_app.config
    store().put(_otp_key(user), json.dumps({"h": _code_hash(code)}), config["OTP_LIFETIME"])
    store().delete(f"otp-tries:{user.id}")


def complete_challenge(user: User, otp: str) -> str:
    """Check the code for the user's method; returns the `amr` value. Raises InvalidOtp."""
    if not isinstance(otp, str) or not otp.isascii() or not otp.strip().isdigit():
        raise InvalidOtp()
    otp = otp.strip()
    if user.auth_method == AuthMethod.TFA_TOTP:
        _check_totp(user, otp)
        return "otp"
    if user.auth_method in SENT_METHODS:
        _consume_sent_code(user, otp)
        return "sms" if user.auth_method == AuthMethod.TFA_SMS else "otp"
    raise InvalidOtp()


def _consume_sent_code(user: User, otp: str) -> None:
    kv = store()
    key = _otp_key(user)
    stored = kv.get(key)
    if stored is None:
        raise InvalidOtp()
    # Count the try before comparing, so parallel guesses cannot all be checked.
    tries = kv.incr(f"otp-tries:{user.id}", current_app.config["OTP_LIFETIME"])
    if tries > current_app.config["OTP_MAX_ATTEMPTS"]:
        kv.delete(key)  # void: a new code must be requested
        raise InvalidOtp()
    if not same(json.loads(stored)["h"], _code_hash(otp)):
        if tries == current_app.config["OTP_MAX_ATTEMPTS"]:
            kv.delete(key)
        raise InvalidOtp()
    # Of concurrent right answers only the one that takes the stored value wins.
    if kv.take(key) != stored:
        raise InvalidOtp()
    # The code is spent: the next login needs a new one at once, not after the cooldown
    # (which is there against flooding, and a used code floods nobody).
    kv.delete(f"otp-sent:{user.id}")


def new_totp_secret() -> str:
    """160 random bits, base32 (RFC 4226 recommends 160)."""
    return pyotp.random_base32(32)


def _check_totp(user: User, otp: str) -> None:
    if not user.totp_secret or len(otp) != 6:
        raise InvalidOtp()
    matched = totp_step_matching(user.totp_secret, otp, utcnow().timestamp())
    if matched is None or not _spend_totp_step(user, user.totp_secret, matched):
        raise InvalidOtp()


def _spend_totp_step(user: User, secret: str, step: int) -> bool:
    """Mark `step` of `secret` used; False when it, or a later step, was used before.

    A step may be used once: a watched or replayed code is refused, and an older code
    cannot follow a newer one (the last-used-step rule, RFC 6238 5.2). The mark is the
    user row's `totp_last_step`, committed here by a conditional UPDATE (its row lock
    makes concurrent uses of one code wait and then fail), so it survives losing Redis.
    It is per secret: the code that confirmed a new secret cannot log in, while a code of
    the old secret spent just before (to prove re-enrolment) does not block the new one.
    """
    tag = keyed_digest(current_app.config["SECRET_KEY"], "totp-secret:" + secret)[:16]
    result = db.session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(
                User.totp_step_tag.is_(None),
                User.totp_step_tag != tag,
                User.totp_last_step.is_(None),
                User.totp_last_step < step,
            ),
        )
        .values(totp_last_step=step, totp_step_tag=tag)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    commit(conflict=False)
    return True


# --- TOTP enrolment -------------------------------------------------------------------


@dataclass(frozen=True)
class TotpSetup:
    """A started enrolment: what the authenticator app needs, shown to the user once."""

    id: str
    secret: str  # base32, for typing in by hand
    otpauth_uri: str
    qr_code_svg: str
    expires_at: datetime


def _setup_key(user: User) -> str:
    return f"totp-setup:{user.id}"


def _setup_tries_key(user: User) -> str:
    return f"totp-setup-tries:{user.id}"


def _issuer(user: User) -> str:
    """What the authenticator app lists the entry under: the account, else this server."""
    if user.account is not None and user.account.name:
        return user.account.name
    return urlsplit(current_app.config["ISSUER"]).hostname or "authserver"


def start_totp_setup(
    user: User,
    *,
    password: object,
    otp: object | None = None,
    recovery_code: object | None = None,
) -> TotpSetup:
    """Make a new TOTP secret and keep it pending until `confirm_totp_setup`.

    Needs the password (a bearer token alone must not bind a stranger's authenticator and
    lock the owner out); a user who already has TOTP also gives a current `otp` or a
    `recovery_code`, since the new secret will replace the old one. A new setup replaces
    a pending one. Nothing about the user changes here but, once, a password hash renewed
    to the current argon2 settings.
    """
    if _check_proof(
        user,
        password=password,
        otp=otp,
        recovery_code=recovery_code,
        need_password=True,
        second_factor=user.auth_method == AuthMethod.TFA_TOTP,
    ):
        commit(conflict=False)  # this use case writes nothing else to the database
    secret = new_totp_secret()
    setup_id = new_id()
    expires_at = utcnow() + timedelta(seconds=SETUP_LIFETIME)
    kv = store()
    kv.put(_setup_key(user), json.dumps({"id": setup_id, "secret": secret}), SETUP_LIFETIME)
    kv.delete(_setup_tries_key(user))  # each setup gets its own SETUP_MAX_ATTEMPTS
    uri = otpauth_uri(secret, user.username, _issuer(user))
    return TotpSetup(setup_id, secret, uri, qr_svg(uri), expires_at)


def pending_totp_setup(user: User) -> TotpSetup | None:
    """The setup `start_totp_setup` left waiting, to show again (the QR page); None when
    there is none (never started, expired, confirmed or voided by wrong codes)."""
    kv = store()
    stored = kv.get(_setup_key(user))
    if stored is None:
        return None
    data = json.loads(stored)
    secret = str(data["secret"])
    expires_at = utcnow() + timedelta(seconds=max(kv.ttl(_setup_key(user)) or 0, 0))
    uri = otpauth_uri(secret, user.username, _issuer(user))
    return TotpSetup(str(data["id"]), secret, uri, qr_svg(uri), expires_at)


def confirm_totp_setup(user: User, code: object, *, keep: Survivor | None = None) -> list[str]:
    """Switch the user to TOTP with a current code of the pending secret.

    Returns the new recovery codes (shown once; the old set dies). A wrong code changes
    nothing; after SETUP_MAX_ATTEMPTS tries the setup is void. Of concurrent right
    answers only the one that takes the pending setup wins, and the confirming code's
    step is spent, so it cannot also log in. Every other login of the user ends (a new
    factor must not leave a session opened without it, or by a stolen old one); the one
    in `keep` goes on.
    """
    otp = _otp_format(code, "code")
    kv = store()
    stored = kv.get(_setup_key(user))
    if stored is None:
        raise _no_pending_setup()
    # Count the try before comparing, so parallel guesses cannot all be checked.
    tries = kv.incr(_setup_tries_key(user), SETUP_LIFETIME)
    if tries > SETUP_MAX_ATTEMPTS:
        kv.delete(_setup_key(user))
        raise _no_pending_setup()
    secret = str(json.loads(stored)["secret"])
    step = totp_step_matching(secret, otp, utcnow().timestamp())
    if step is None:
        if tries >= SETUP_MAX_ATTEMPTS:
            kv.delete(_setup_key(user))
        raise _wrong_code("code")
    if kv.take(_setup_key(user)) != stored or not _spend_totp_step(user, secret, step):
        raise _wrong_code("code")
    user.totp_secret = secret
    user.auth_method = AuthMethod.TFA_TOTP
    codes = _replace_recovery_codes(user)
    revoke_user_tokens(user, keep)
    stage(
        "identity.tfa.enable.success", user=user, account=user.account, method=AuthMethod.TFA_TOTP
    )
    commit(conflict=False)
    kv.delete(_setup_tries_key(user))
    return codes


def disable_tfa(
    user: User,
    *,
    password: object,
    otp: object | None = None,
    recovery_code: object | None = None,
    keep: Survivor | None = None,
) -> None:
    """Turn two-step login off: needs the password and a current `otp` (the app's code,
    or for email/SMS users a code a login attempt sent) or a `recovery_code`.

    The secret and every recovery code go, the auth method becomes `simple`, and a pending
    setup is dropped; the old codes stop working at once (logins read the user row).
    Every other login of the user ends; the one in `keep` goes on.
    """
    if user.auth_method == AuthMethod.SIMPLE:
        raise ValidationFailed("Two-step login is not on for this user.", code="tfa_not_enabled")
    if user.auth_method == AuthMethod.TFA_TOTP:
        _require_totp(user)
    _check_proof(
        user,
        password=password,
        otp=otp,
        recovery_code=recovery_code,
        need_password=True,
        second_factor=True,
    )
    method = user.auth_method
    user.auth_method = AuthMethod.SIMPLE
    drop_totp(user)
    revoke_user_tokens(user, keep)
    stage("identity.tfa.disable.success", user=user, account=user.account, method=method)
    commit(conflict=False)


def drop_totp(user: User) -> None:
    """Forget the user's authenticator app: the secret, every recovery code and any
    pending setup (the caller commits)."""
    user.totp_secret = None
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    store().delete(_setup_key(user), _setup_tries_key(user))


def renew_recovery_codes(user: User, *, otp: object) -> list[str]:
    """New recovery codes for a TOTP user who gives a current code; the old set dies."""
    _require_totp(user)
    _check_proof(
        user, password=None, otp=otp, recovery_code=None, need_password=False, second_factor=True
    )
    return regenerate_recovery_codes(user)


def _require_totp(user: User) -> None:
    if user.auth_method != AuthMethod.TFA_TOTP or not user.totp_secret:
        raise ValidationFailed(
            "Two-step login with an authenticator app is not on for this user.",
            code="totp_not_enabled",
        )


def _check_proof(
    user: User,
    *,
    password: object | None,
    otp: object | None,
    recovery_code: object | None,
    need_password: bool,
    second_factor: bool,
    proof_field: str = "password",
) -> bool:
    """Fresh authentication before the second factor changes: the password (when
    `need_password`) and a current code or recovery code (when `second_factor`).
    Raises ValidationFailed naming the field, or Throttled. Returns whether a right
    password's hash was renewed to the current argon2 settings (the caller commits)."""
    if need_password and password is None:
        raise ValidationFailed("The password is required.", field=proof_field, code="required")
    if otp is not None and recovery_code is not None:
        raise ValidationFailed(
            "Give otp or recoveryCode, not both.", field="recovery_code", code="conflicting"
        )
    if second_factor and otp is None and recovery_code is None:
        raise ValidationFailed(
            "A current code from the authenticator app (otp) or a recovery code is required.",
            field="otp",
            code="required",
        )
    typed_otp = _otp_format(otp, "otp") if second_factor and otp is not None else None
    typed_recovery = _text(recovery_code, "recovery_code", RECOVERY_CODE_MAX)
    typed_password = _text(password, proof_field, PASSWORD_MAX) if need_password else None
    # Counted before anything is compared, so parallel guesses share one budget.
    kv = store()
    hit = kv.hit(f"tfa-proof:{user.id}", PROOF_ATTEMPTS, PROOF_WINDOW)
    if not hit.allowed:
        raise Throttled(hit.retry_after, "Too many wrong passwords or codes; try again later.")
    renewed = False
    if typed_password is not None:
        if not passwords().verify(user.password_hash, typed_password):
            raise ValidationFailed(
                "The password is wrong.", field=proof_field, code="invalid_password"
            )
        renewed = upgrade_password_hash(user, typed_password)
    try:
        if typed_otp is not None:
            complete_challenge(user, typed_otp)  # the app's code, or a sent one
        elif second_factor and typed_recovery is not None:
            use_recovery_code(user, typed_recovery)
    except InvalidOtp:
        raise _wrong_code("otp" if typed_otp is not None else "recovery_code") from None
    kv.delete(f"tfa-proof:{user.id}")
    return renewed


def prove_identity(
    user: User, *, password: object, otp: object | None, recovery_code: object | None
) -> None:
    """Fresh proof before a passkey is added or removed: the password, and for a user with
    a code method a current code or recovery code (as for turning two-step login off)."""
    if _check_proof(
        user,
        password=password,
        otp=otp,
        recovery_code=recovery_code,
        need_password=True,
        second_factor=user.auth_method != AuthMethod.SIMPLE,
    ):
        commit(conflict=False)


def prove_password(user: User, password: object | None, *, field: str) -> None:
    """Fresh proof before a sent-code factor moves (another method, another phone): the
    password, counted in the same per-user budget as the other proofs. A renewed password
    hash (see `_check_proof`) is committed with the caller's change."""
    _check_proof(
        user,
        password=password,
        otp=None,
        recovery_code=None,
        need_password=True,
        second_factor=False,
        proof_field=field,
    )


def _text(value: object | None, field: str, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("Must be a string.", field=field, code="invalid_type")
    if len(value) > max_len:
        raise ValidationFailed(f"At most {max_len} characters.", field=field, code="too_long")
    return value


def _otp_format(value: object, field: str) -> str:
    """A typed code: 6 ASCII digits, spaces around allowed; anything else is refused as is."""
    text = _text(value, field, OTP_MAX)
    if text is None:
        raise ValidationFailed("A code is required.", field=field, code="required")
    text = text.strip()
    if len(text) != 6 or not text.isascii() or not text.isdigit():
        raise ValidationFailed("A code is 6 digits.", field=field, code="invalid_format")
    return text


def _wrong_code(field: str) -> ValidationFailed:
    if field == "recovery_code":
        return ValidationFailed(
            "The recovery code is wrong or used.", field=field, code="invalid_recovery_code"
        )
    return ValidationFailed("The code is wrong or expired.", field=field, code="invalid_otp")


def _no_pending_setup() -> ValidationFailed:
    return ValidationFailed(
        "No TOTP setup is pending (it expired, was used, or had too many wrong codes): "
        "start a new one.",
        field="code",
        code="no_pending_setup",
    )


# --- recovery codes -------------------------------------------------------------------


def regenerate_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with fresh ones; returns them (shown once).

    No proof is checked here: callers acting for the user use `renew_recovery_codes`.
    """
    codes = _replace_recovery_codes(user)
    stage(
        "identity.recovery_codes.create.success", user=user, account=user.account, count=len(codes)
    )
    commit(conflict=False)
    return codes


def _replace_recovery_codes(user: User) -> list[str]:
    """A new set in the session (the old set deleted); the caller commits."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(c)) for c in codes)
    return codes


def use_recovery_code(user: User, code: str) -> None:
    """Consume one recovery code (once, even under concurrent use). Raises InvalidOtp."""
    if not isinstance(code, str) or len(code) > 64:
        raise InvalidOtp()
    result = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    commit(conflict=False)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidOtp()


def _recovery_code() -> str:
    # 80 bits (NIST asks >= 64) as xxxx-xxxx-xxxx-xxxx in an unambiguous alphabet.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _recovery_hash(code: str) -> str:
    normalised = "".join(code.lower().split()).replace("-", "")
    return digest("recovery:" + normalised)
