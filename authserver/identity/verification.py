"""Use cases around mailed tokens and texted codes: email verification, password reset,
activation, password change, phone verification codes.

Mailed tokens (email verification, password reset, activation) are 256-bit random strings
kept in Redis as SHA-256 digests with a TTL; a user has one valid token of each kind (a
new one voids the old), a token works once (GETDEL) and dies when what it vouches for
changed (the email for a verification, the password for a reset). Phone verification
codes are 6 digits kept as HMACs for 30 minutes; several may be valid at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import current_app

from authserver.identity import accounts, rules
from authserver.platform import background, captcha
from authserver.platform.database import commit
from authserver.platform.errors import Throttled, ValidationFailed
from authserver.platform.events import emit, stage
from authserver.platform.extensions import db, passwords, store
from authserver.platform.models import Account, AccountStatus, User, UserStatus, utcnow
from authserver.platform.security import digest, keyed_digest, random_digits, random_token

EMAIL_TOKEN_LIFETIME = 24 * 3600
RESET_TOKEN_LIFETIME = 24 * 3600
ACTIVATION_TOKEN_LIFETIME = 3 * 24 * 3600  # invited people may take a weekend to answer
PHONE_CODE_LIFETIME = 30 * 60
PHONE_CODE_SENDS = (5, 3600)  # per phone number and account: SMS cost and harassment
PHONE_CODE_SENDS_PER_IP = (20, 3600)  # per IP over all numbers (SMS pumping)
PHONE_CODE_FAILURES = (10, PHONE_CODE_LIFETIME)  # wrong codes per phone number and account
EMAIL_VERIFICATION_SENDS = (5, 3600)  # verification emails per user an hour (inbox flooding)
RESET_REQUESTS = (5, 3600)  # emails per user an hour (silently capped: the answer is 204)
RESET_REQUESTS_PER_IP = (30, 3600)
RESET_EMAIL_USERS = 10  # account users may share an email: a link each, to at most this many
PASSWORD_CHANGE_FAILURES = (10, 900)  # wrong current passwords per user


@dataclass(frozen=True)
class TokenKind:
    name: str  # the Redis key part
    lifetime: int
    event: str
    field: str  # what a refused token is called in errors


EMAIL_VERIFICATION = TokenKind(
    "evt", EMAIL_TOKEN_LIFETIME, "identity.email_verification_token.create.success", "token"
)
PASSWORD_RESET = TokenKind(
    "pwreset", RESET_TOKEN_LIFETIME, "identity.password_reset_token.create.success", "reset_token"
)
ACTIVATION = TokenKind(
    "pwreset", ACTIVATION_TOKEN_LIFETIME, "identity.activation_token.create.success", "reset_token"
)  # the same kind as a reset (one way to spend both); one valid per user


# --- mailed tokens ------------------------------------------------------------------------


def _issue(kind: TokenKind, user: User, vouches: str) -> str:
    """A new token of `kind` for `user`; the user's previous one of that kind stops working."""
    token = random_token(32)
    kv = store()
    old = kv.get(f"{kind.name}-user:{user.id}")
    if old:
        kv.delete(f"{kind.name}:{old}")
    key = digest(token)
    kv.put(f"{kind.name}:{key}", json.dumps({"u": user.id, "v": vouches}), kind.lifetime)
    kv.put(f"{kind.name}-user:{user.id}", key, kind.lifetime)
    return token


def _redeem(kind: TokenKind, token: object) -> tuple[User, str]:
    """The user a token was issued to and what it vouched for; the token is used up."""
    invalid = ValidationFailed(
        "This token is invalid, expired or already used.", field=kind.field, code="invalid_token"
    )
    if not isinstance(token, str) or not 20 <= len(token) <= 128:
        raise invalid
    key = digest(token)
    kv = store()
    stored = kv.take(f"{kind.name}:{key}")  # atomic: of two concurrent uses one gets it
    if stored is None:
        raise invalid
    data = json.loads(stored)
    # Only the user's latest token counts. `_issue` voids the previous one, but two issues
    # racing can both read the same "previous" and leave two tokens; this catches that.
    pointer = f"{kind.name}-user:{data['u']}"
    if kv.get(pointer) != key:
        raise invalid
    kv.delete(pointer)
    user = db.session.get(User, data["u"])
    if user is None or user.status in (UserStatus.DELETED, UserStatus.DISABLED):
        raise invalid
    if user.account is not None and user.account.status != AccountStatus.ACTIVE:
        raise invalid
    return user, str(data["v"])


def send_email_verification(user: User) -> None:
    """Email the user a link that verifies their current address (one valid link a user).

    At most EMAIL_VERIFICATION_SENDS an hour per user (429): whoever may ask for one must
    not be able to flood the user's inbox.
    """
    if not user.email:
        raise ValidationFailed("The user has no email address.", field="user", code="no_email")
    if user.status not in (UserStatus.ACTIVE, UserStatus.PENDING):
        raise ValidationFailed("The user is not active.", field="user", code="inactive_user")
    hit = store().hit(f"evt-sends:{user.id}", *EMAIL_VERIFICATION_SENDS)
    if not hit.allowed:
        raise Throttled(hit.retry_after)
    token = _issue(EMAIL_VERIFICATION, user, user.email)
    emit(EMAIL_VERIFICATION.event, user=user, account=user.account, token=token)


def verify_email(token: object) -> User:
    """Mark the email the token was sent to as verified (if it is still the user's)."""
    user, email = _redeem(EMAIL_VERIFICATION, token)
    if user.email != email:  # the address changed since: this token vouches for nothing
        raise ValidationFailed(
            "This token is invalid, expired or already used.", field="token", code="invalid_token"
        )
    user.email_verified = True
    user.email_verified_at = utcnow()
    if user.is_global and user.status == UserStatus.PENDING and user.password_hash:
        user.status = UserStatus.ACTIVE  # a global sign-up: the proven address lets it in
    stage("identity.email_verification.create.success", user=user, account=user.account)
    commit()
    return user


def send_activation(user: User, *, locale: str | None = None) -> None:
    """Email an invited (pending) user the link that lets them choose a password.

    Only for pending users: for anyone else the link would be a password reset that
    nobody asked for (and that skips the reset's throttle).
    """
    if user.status != UserStatus.PENDING:
        raise ValidationFailed("Only a pending user can be activated.", code="not_pending")
    token = _issue(ACTIVATION, user, _password_stamp(user))
    emit(ACTIVATION.event, user=user, account=user.account, token=token, locale=locale)


def _password_stamp(user: User) -> str:
    """Changes whenever the password or the email does: a reset or activation link dies
    with a password change, and one mailed to a former address dies with the address."""
    return digest(f"{user.token_generation}:{user.password_hash or '-'}:{user.email or '-'}")


def request_password_reset(
    account: Account,
    username: object,
    *,
    locale: str | None = None,
    ip: str | None = None,
    captcha_token: str | None = None,
    widget: bool = False,
) -> None:
    """Email a reset link to the account's user with this username, if there is one, or
    else (given an email) to each of the account's users with that email.

    The caller always gets the same answer: the lookup and the email happen in the
    background, so neither the answer nor its timing says whether the user exists.
    Throttled per IP (429, which says nothing about users); per user the cap is silent.
    With a CAPTCHA verifier configured, a solved CAPTCHA's token is needed (checked after
    the IP throttle, so a flood does not reach the verifier).
    """
    if ip:
        limit, window = RESET_REQUESTS_PER_IP
        hit = store().hit(f"reset-ip:{ip}", limit, window)
        if not hit.allowed:
            raise Throttled(hit.retry_after)
    if captcha.enabled():
        captcha.verify(captcha_token, ip, widget=widget)
    if not isinstance(username, str) or len(username) > rules.NAME_MAX:
        return
    background.submit(_send_reset, account.id, username.strip().lower(), locale)


def _send_reset(account_id: str, identifier: str, locale: str | None) -> None:
    found = accounts.find_member(account_id, identifier)
    if found is not None:
        targets = [found]
    elif "@" in identifier:  # not a username: the users of the account with this email
        targets = accounts.find_members_by_email(account_id, identifier, limit=RESET_EMAIL_USERS)
    else:
        return  # nothing to anyone (no "someone tried" mail: it would let anyone spam)
    for user, account, _role in targets:
        _send_reset_to(user, account, locale)


def _send_reset_to(user: User, account: Account | None, locale: str | None) -> None:
    if (
        user.status not in (UserStatus.ACTIVE, UserStatus.PENDING)
        or account is None
        or account.status != AccountStatus.ACTIVE
    ):
        return
    if user.status == UserStatus.PENDING:  # never activated: the invitation again, not a reset
        if _reset_allowed(user):
            send_activation(user, locale=locale)
        return
    send_password_reset(user, account, locale=locale)


def _reset_allowed(user: User) -> bool:
    limit, window = RESET_REQUESTS
    return store().hit(f"reset-user:{user.id}", limit, window).allowed


def send_password_reset(
    user: User, account: Account | None = None, *, locale: str | None = None
) -> bool:
    """Mail an active user a reset link (its page names `account`, by default the user's
    own); False when the user's hourly cap (RESET_REQUESTS) was reached and nothing went."""
    if not _reset_allowed(user):
        return False
    token = _issue(PASSWORD_RESET, user, _password_stamp(user))
    emit(
        PASSWORD_RESET.event,
        user=user,
        account=account or user.account,
        token=token,
        locale=locale,
    )
    return True


def reset_password(token: object, new_password: object, confirmation: object = None) -> User:
    """Set a new password with a reset or activation token.

    Does not log the user in and leaves two-step login as it was; an invited user becomes
    active. Every token the user had stops working (set_password). The link reached the
    user's current address (the stamp holds it), so that address counts as verified.
    """
    _check_confirmation(new_password, confirmation)
    # Validate the password before spending the token, so a refused password keeps the link.
    user_id = _peek(PASSWORD_RESET, token)
    if user_id is not None:
        user = db.session.get(User, user_id)
        if user is not None:
            rules.check_password(
                new_password, username=user.username, email=user.email, field="new_password"
            )
    user, stamp = _redeem(PASSWORD_RESET, token)
    if stamp != _password_stamp(user):
        raise ValidationFailed(
            "This token is invalid, expired or already used.",
            field="reset_token",
            code="invalid_token",
        )
    activating = user.status == UserStatus.PENDING
    if activating:
        user.status = UserStatus.ACTIVE
    newly_verified = bool(user.email) and not user.email_verified
    if newly_verified:
        user.email_verified = True
        user.email_verified_at = utcnow()
    if activating:
        # The first password of an invited user: no "your password was changed, if it
        # wasn't you..." alarm, there was no password (nor anyone using it) before.
        accounts.apply_password(user, new_password)
        commit()
    else:
        accounts.set_password(user, new_password)
    if newly_verified:
        emit("identity.email_verification.create.success", user=user, account=user.account)
    return user


def reset_link_works(token: object) -> bool:
    """Whether a reset or activation token would be taken now (it is not spent): live,
    the user's latest, its user still there and its password unchanged since."""
    found = _would_redeem(PASSWORD_RESET, token)
    return found is not None and found[1] == _password_stamp(found[0])


def verification_link_works(token: object) -> bool:
    """Whether an email verification token would be taken now: live, the user's latest,
    and still the user's address."""
    found = _would_redeem(EMAIL_VERIFICATION, token)
    return found is not None and found[1] == found[0].email


def _would_redeem(kind: TokenKind, token: object) -> tuple[User, str] | None:
    # A read-only preview of _redeem's checks, so a page can say at once that a spent or
    # dead link is dead; the POST still decides (through _redeem, atomically).
    if not isinstance(token, str) or not 20 <= len(token) <= 128:
        return None
    key = digest(token)
    kv = store()
    stored = kv.get(f"{kind.name}:{key}")
    if stored is None:
        return None
    data = json.loads(stored)
    if kv.get(f"{kind.name}-user:{data['u']}") != key:
        return None
    user = db.session.get(User, data["u"])
    if user is None or user.status in (UserStatus.DELETED, UserStatus.DISABLED):
        return None
    if user.account is not None and user.account.status != AccountStatus.ACTIVE:
        return None
    return user, str(data["v"])


def _peek(kind: TokenKind, token: object) -> str | None:
    if not isinstance(token, str) or not 20 <= len(token) <= 128:
        return None
    stored = store().get(f"{kind.name}:{digest(token)}")
    return str(json.loads(stored)["u"]) if stored else None


def change_password(
    user: User, current_password: object, new_password: object, confirmation: object = None
) -> User:
    """The user changes their own password, proving the current one."""
    _check_confirmation(new_password, confirmation)
    limit, window = PASSWORD_CHANGE_FAILURES
    failures = f"password-change-fail:{user.id}"
    kv = store()
    hit = kv.hit(failures, limit, window)  # counted before checking, like a login
    if not hit.allowed:
        raise Throttled(hit.retry_after)
    if not isinstance(current_password, str) or not passwords().verify(
        user.password_hash, current_password[:1024]
    ):
        raise ValidationFailed(
            "The current password is not right.", field="current_password", code="invalid_password"
        )
    kv.delete(failures)
    # No hash upgrade for the right current password: the new one is hashed with the
    # current argon2 settings anyway.
    return accounts.set_password(user, new_password)


def _check_confirmation(new_password: object, confirmation: object) -> None:
    if confirmation is not None and confirmation != new_password:
        raise ValidationFailed(
            "The confirmation does not match the new password.",
            field="confirmation",
            code="confirmation_mismatch",
        )


# --- phone verification codes -------------------------------------------------------------


def _phone_key(account: Account | None, phone: str, code: str) -> str:
    mac = keyed_digest(current_app.config["SECRET_KEY"], f"pvc:{phone}:{code}")
    return f"pvc:{account.id if account else 'global'}:{mac}"


def send_phone_code(
    phone_number: object,
    *,
    account: Account | None,
    locale: str | None = None,
    ip: str | None = None,
) -> None:
    """Text a 6-digit code to `phone_number` (valid 30 min; earlier codes stay valid)."""
    phone = rules.check_phone(phone_number)
    kv = store()
    scope = account.id if account else "global"
    limits = [(f"pvc-sends:{scope}:{phone}", *PHONE_CODE_SENDS)]
    if ip:
        limits.append((f"pvc-sends-ip:{ip}", *PHONE_CODE_SENDS_PER_IP))
    for key, limit, window in limits:
        hit = kv.hit(key, limit, window)
        if not hit.allowed:
            raise Throttled(hit.retry_after)
    code = random_digits(6)
    kv.put(_phone_key(account, phone, code), "1", PHONE_CODE_LIFETIME)
    emit(
        "identity.phone_verification_code.create.success",
        phone_number=phone,
        code=code,
        locale=locale,
        account=account,
    )


def use_phone_code(
    phone: str, code: object, *, account: Account | None, field: str = "phone_verification_code"
) -> str:
    """Spend a phone verification code for `phone`; returns the code.

    Raises ValidationFailed for a wrong or spent code, Throttled (429) once PHONE_CODE_FAILURES
    tries were made for the number: a limit someone can act on, not a 422 that looks like a typo.
    """
    invalid = ValidationFailed(
        "The phone verification code is wrong or expired.",
        field=field,
        code="invalid_phone_verification_code",
    )
    if not isinstance(code, str) or not code.isascii() or not code.strip().isdigit():
        raise invalid
    code = code.strip()
    kv = store()
    scope = account.id if account else "global"
    limit, window = PHONE_CODE_FAILURES
    # Count before comparing, so parallel guesses cannot all be checked.
    tries = kv.hit(f"pvc-tries:{scope}:{phone}", limit, window)
    if not tries.allowed:
        raise Throttled(tries.retry_after)
    if kv.take(_phone_key(account, phone, code)) is None:
        raise invalid
    kv.incr(f"pvc-tries:{scope}:{phone}", window, amount=-1)  # a right code costs no try
    return code


def verify_phone_for(user: User, code: object, *, account: Account | None = None) -> str:
    """Spend a code for the user's phone and mark the phone verified (the caller commits).

    `account` is the account the code was asked for (the token's); by default the user's
    own, which differs for a global member acting in an account.

    Returns the code: at sign-up it may also answer the first two-step login (see
    `twofactor.prime_challenge`).
    """
    if not user.phone_number:
        raise ValidationFailed("A phone number is required.", field="phone_number", code="required")
    used = use_phone_code(user.phone_number, code, account=account or user.account)
    user.phone_verified = True
    user.phone_verified_at = utcnow()
    return used
