"""Email verification codes (seed 003): a 6-digit code mailed to the current user's
address, typed back with `PATCH /v1/user` to verify the address, and with it switch to
email two-step login in one step. A code is bound to the user and to the address it was
sent to, stored only as a keyed digest, works once, expires after EMAIL_CODE_LIFETIME,
and sends and wrong tries are capped per user.
"""

from __future__ import annotations

from flask import current_app

from authserver.platform.errors import Throttled, ValidationFailed
from authserver.platform.events import emit
from authserver.platform.extensions import store
from authserver.platform.models import User, UserStatus, utcnow
from authserver.platform.security import keyed_digest, random_digits

EMAIL_CODE_LIFETIME = 30 * 60  # seconds, as the seeds' phone codes
EMAIL_CODE_SENDS = (5, 3600)  # codes mailed per user an hour (inbox flooding)
EMAIL_CODE_FAILURES = (10, EMAIL_CODE_LIFETIME)  # wrong codes per user; then 429
EVENT = "identity.email_verification_code.create.success"


def _key(user: User, email: str, code: str) -> str:
    mac = keyed_digest(current_app.config["SECRET_KEY"], f"evc:{user.id}:{email}:{code}")
    return f"evc:{mac}"


def send(user: User) -> None:
    """Mail a new 6-digit code to the user's current address (earlier codes stay valid
    until they expire, as phone codes do). Raises ValidationFailed without an address,
    Throttled past EMAIL_CODE_SENDS."""
    if not user.email:
        raise ValidationFailed("You have no email address.", field="email", code="no_email")
    if user.status != UserStatus.ACTIVE:
        raise ValidationFailed("The user is not active.", field="user", code="inactive_user")
    hit = store().hit(f"evc-sends:{user.id}", *EMAIL_CODE_SENDS)
    if not hit.allowed:
        raise Throttled(hit.retry_after)
    code = random_digits(6)
    store().put(_key(user, user.email, code), "1", EMAIL_CODE_LIFETIME)
    emit(EVENT, user=user, account=user.account, code=code)


def verify(user: User, code: object, *, field: str = "email_verification_code") -> None:
    """Spend a code mailed to the user's current address and mark it verified (the caller
    commits). Counted before it is compared, so parallel guesses cannot all be checked;
    a right code costs no try. Raises ValidationFailed or Throttled."""
    invalid = ValidationFailed(
        "The email verification code is wrong or expired.",
        field=field,
        code="invalid_email_verification_code",
    )
    if not isinstance(code, str) or not code.isascii() or not code.strip().isdigit():
        raise invalid
    if not user.email:
        raise invalid
    kv = store()
    limit, window = EMAIL_CODE_FAILURES
    tries = kv.hit(f"evc-tries:{user.id}", limit, window)
    if not tries.allowed:
        raise Throttled(tries.retry_after)
    if kv.take(_key(user, user.email, code.strip())) is None:
        raise invalid
    kv.incr(f"evc-tries:{user.id}", window, amount=-1)
    if not user.email_verified:
        user.email_verified, user.email_verified_at = True, utcnow()
