"""Second factors: login challenges (email/SMS codes, TOTP) and recovery codes.

`start_challenge` and `complete_challenge` are the one OTP policy behind the password
grant and the hosted login page. Emailed/texted codes are 6 CSPRNG digits kept in Redis
as an HMAC for OTP_LIFETIME seconds, at most SENDS_PER_HOUR a user; each code allows
OTP_MAX_ATTEMPTS tries and is consumed atomically. TOTP (RFC 6238) accepts +-1 step and
refuses a step used before, or older than one used. Recovery codes are single use,
stored as digests, consumed by a conditional UPDATE.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import pyotp
from flask import current_app
from sqlalchemy import update

from .errors import InvalidOtp
from .events import emit
from .extensions import db, store
from .models import Account, RecoveryCode, User, utcnow
from .security import digest, keyed_digest, mask_address, random_digits, same

TOTP_STEP = 30
RECOVERY_CODE_COUNT = 10
SENDS_PER_HOUR = 10  # emailed/texted login codes per user
SENT_METHODS = ("tfa_email", "tfa_sms")


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
    if user.auth_method == "tfa_email" and user.email:
        return mask_address(user.email)
    if user.auth_method == "tfa_sms" and user.phone_number:
        return mask_address(user.phone_number)
    return None


def start_challenge(user: User, account: Account | None) -> Challenge:
    """Ask for the user's second factor; sends a new code unless one went out recently."""
    method = user.auth_method
    if method not in SENT_METHODS:
        return Challenge(method, None, sent=False, resend_after=0)
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

    Seed 003: at sign-up the phone verification code doubles as the first login's OTP.
    """
    config = current_app.config
    store().put(_otp_key(user), json.dumps({"h": _code_hash(code)}), config["OTP_LIFETIME"])
    store().delete(f"otp-tries:{user.id}")


def complete_challenge(user: User, otp: str) -> str:
    """Check the code for the user's method; returns the `amr` value. Raises InvalidOtp."""
    if not isinstance(otp, str) or not otp.isascii() or not otp.strip().isdigit():
        raise InvalidOtp()
    otp = otp.strip()
    if user.auth_method == "tfa_totp":
        _check_totp(user, otp)
        return "otp"
    if user.auth_method in SENT_METHODS:
        _consume_sent_code(user, otp)
        return "sms" if user.auth_method == "tfa_sms" else "otp"
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


def new_totp_secret() -> str:
    """160 random bits, base32 (RFC 4226 recommends 160)."""
    return pyotp.random_base32(32)


def _check_totp(user: User, otp: str) -> None:
    if not user.totp_secret or len(otp) != 6:
        raise InvalidOtp()
    totp = pyotp.TOTP(user.totp_secret, interval=TOTP_STEP)
    now = utcnow().timestamp()
    current = int(now // TOTP_STEP)
    matched = None
    for step in (current - 1, current, current + 1):
        # Check every candidate: the time taken does not depend on which one matched.
        if same(totp.at(step * TOTP_STEP), otp):
            matched = step
    if matched is None:
        raise InvalidOtp()
    # A step may be used once: a watched or replayed code is refused. Using step N also
    # spends N-1 and N-2 (all older steps the +-1 window can still reach), so an older
    # code cannot follow a newer one (the last-used-step rule).
    kv = store()
    if not kv.mark_once(f"totp-used:{user.id}:{matched}", TOTP_STEP * 4):
        raise InvalidOtp()
    for older in (matched - 1, matched - 2):
        kv.put(f"totp-used:{user.id}:{older}", "1", TOTP_STEP * 4)


def regenerate_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with fresh ones; returns them (shown once)."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(c)) for c in codes)
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    emit("identity.tfa.update.success", user=user, account=user.account)
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
    db.session.commit()
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
