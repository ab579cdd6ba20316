"""Changing a user's profile: an administrator's changes to a member, a user's own
changes, and the rules they share (names, email and phone changes, and the two-step
login checks: a new method needs its channel, a bearer token alone never moves or drops
a second factor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.identity import (
    accounts,
    audit,
    email_codes,
    rules,
    support,
    twofactor,
    unique_emails,
    verification,
)
from authserver.identity.tokens import Survivor, revoke_user_tokens
from authserver.identity.users import (
    ADMIN_FIELDS,
    NAME_FIELDS,
    Actor,
    Member,
    check_may_touch,
    check_name_field,
    check_username_free,
    get_member,
    is_self,
    require_manager,
    role_in,
    throttle_username_change,
    user_conflict,
)
from authserver.platform.database import commit
from authserver.platform.errors import DomainError, Forbidden, ValidationFailed
from authserver.platform.events import stage
from authserver.platform.extensions import db
from authserver.platform.models import Account, AuthMethod, Role, User, UserStatus, utcnow

UPDATE_STATUSES = (UserStatus.ACTIVE, UserStatus.DISABLED)  # deleted only through users.delete_user
# What users may change of themselves: not their role or status, not whether their email
# is verified, and a new password only by proving the old one (verification.change_password).
# current_password is the proof that moving the email or a second factor needs.
# allow_support_login is the user's own choice only: no administrator sets it for them.
# email_verification_code (a mailed code, email_codes) verifies the current address in the
# same request, e.g. to switch to email two-step login in one step as seed 003 does.
SELF_FIELDS = (ADMIN_FIELDS - {"role", "status", "email_verified", "password"}) | {
    "current_password",
    "allow_support_login",
    "email_verification_code",
}


@dataclass
class _Applied:
    email_changed: bool = False
    tfa_changed: bool = False  # another method, or another phone for SMS codes
    password_changed: bool = False
    code: str | None = None


def update_user(
    actor: Actor, user_id: object, changes: dict[str, Any], *, ip: str | None = None
) -> Member:
    """An administrator changes an account member.

    Nobody changes their own role or status, or does here for themselves what
    update_current_user refuses; only an owner touches an owner or makes one.
    A global member is the person's own across accounts: here only its role in this
    account (the membership) may change. A new role, a new password or leaving `active`
    voids every token of the user at once. A new username is throttled per caller and `ip`.
    """
    require_manager(actor)
    member = get_member(actor.account, user_id)
    check_may_touch(actor, member)
    user = member.user
    if _renames(user, changes):
        throttle_username_change(actor.user_id or f"account:{actor.account.id}", ip)
    unknown = set(changes) - ADMIN_FIELDS
    if unknown:
        raise ValueError(f"unexpected user fields: {sorted(unknown)}")
    if is_self(actor, member):
        _check_self_changes(user, changes)
    try:
        role_changed = _apply_role(actor, member, changes)
        if member.membership is not None and set(changes) - {"role"}:
            raise Forbidden(
                "A global user manages their own profile; only their role here may change.",
                code="global_user",
            )
        if "status" in changes and changes["status"] != user.status:
            if is_self(actor, member):
                raise Forbidden("You may not change your own status.", code="self_status")
            user.status = rules.check_choice(changes["status"], UPDATE_STATUSES, "status")
            if user.status != UserStatus.ACTIVE:
                revoke_user_tokens(user)
        # An owner or administrator vouches for another user's phone (seed 000: they set
        # up SMS two-step login with a phoneNumber alone); the user is mailed of it.
        applied = _apply_profile(
            user,
            member,
            changes,
            by_admin=True,
            account=actor.account,
            vouched_phone=not is_self(actor, member),
        )
        if role_changed or applied.tfa_changed:
            # A token carries its role: old ones must stop. A new second factor ends the
            # logins made without it.
            revoke_user_tokens(user)
    except DomainError:
        db.session.rollback()
        raise
    audit.record("user.update", "User", user.id, changes, account_id=actor.account.id)
    _stage_update(user, actor.account, applied, "identity.user.update.success")
    commit(conflict=user_conflict)
    _after_update(user, applied)
    return Member(
        user, member.membership.role if member.membership else user.role, member.membership
    )


def _check_self_changes(user: User, changes: dict[str, Any]) -> None:
    """A manager editing themselves here keeps the rules of update_current_user: otherwise
    a bearer token alone could set the password without the current one, vouch for a new
    email, or switch the second factor off. The front doors say where to go instead."""
    for name in ("password", "email_verified"):
        if name in changes:
            raise Forbidden(
                "Not for yourself here: a password changes with the current one, an email is "
                "verified by its emailed link.",
                field=name,
                code="self_not_allowed",
            )
    _check_no_downgrade(user, changes.get("auth_method"))
    for name in ("email", "phone_number"):
        if name in changes and changes[name] != getattr(user, name):
            raise Forbidden(
                "Not for yourself here: change your own email or phone through your own "
                "profile (it asks for your password).",
                field=name,
                code="self_not_allowed",
            )
    if _moves_second_factor(user, changes):
        raise Forbidden(
            "Not for yourself here: change your own two-step login through your own profile "
            "(it asks for your password).",
            field="auth_method",
            code="self_not_allowed",
        )


def _apply_role(actor: Actor, member: Member, changes: dict[str, Any]) -> bool:
    if "role" not in changes:
        return False
    role = rules.check_role(changes["role"])
    if role == member.role:
        return False
    if is_self(actor, member):
        raise Forbidden("You may not change your own role.", field="role", code="self_role")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only the owner may make an owner.", field="role", code="owner_only")
    if member.membership is not None:
        member.membership.role = role
    else:
        member.user.role = role
    return True


def update_current_user(
    user: User,
    account: Account | None,
    changes: dict[str, Any],
    *,
    ip: str | None = None,
    keep: Survivor | None = None,
) -> Member:
    """A user changes their own profile: SELF_FIELDS only (role, status and whether the
    email is verified are for administrators; the password has its own use cases).
    A new username is throttled per user and `ip` (its answer says whether a name is taken).
    A second-factor change ends every other login of the user; `keep` goes on."""
    not_allowed = sorted(set(changes) - SELF_FIELDS)
    if not_allowed:
        raise ValidationFailed(
            "You may not change this yourself.", field=not_allowed[0], code="unknown_attribute"
        )
    if _renames(user, changes):
        throttle_username_change(user.id, ip)
    changes = dict(changes)
    current_password = changes.pop("current_password", None)
    email_code = changes.pop("email_verification_code", None)
    _check_no_downgrade(user, changes.get("auth_method"))
    if email_code is not None and (_moves_email(user, changes) or not user.email):
        raise ValidationFailed(
            "The code verifies your current email address: change the address first, "
            "then ask for a code.",
            field="email_verification_code",
            code="email_changed" if user.email else "no_email",
        )
    if _moves_second_factor(user, changes) or _moves_email(user, changes):
        twofactor.prove_password(user, current_password, field="current_password")
    member = Member(user, role_in(user, account) or user.role)
    try:
        verified_before = user.email_verified
        if email_code is not None:
            # Taken as proven for the checks below; the code is spent after all of them,
            # so a change refused for another reason leaves it usable.
            user.email_verified = True
        applied = _apply_profile(user, member, changes, by_admin=False, account=account)
        if email_code is not None:
            user.email_verified = verified_before
            email_codes.verify(user, email_code)
        if applied.tfa_changed:
            revoke_user_tokens(user, keep)
    except DomainError:
        db.session.rollback()
        raise
    _stage_update(user, account, applied, "identity.current_user.update.success")
    commit(conflict=user_conflict)
    if user.allow_support_login is False and "allow_support_login" in changes:
        # Every time it is set off, not only when it changes: a retry after a failure
        # here (database down) still ends the support logins.
        support.end_all(user)
    _after_update(user, applied)
    return member


def _renames(user: User, changes: dict[str, Any]) -> bool:
    """Whether the change asks for another username (counted before it is even checked)."""
    return "username" in changes and changes["username"] != user.username


def _moves_second_factor(user: User, changes: dict[str, Any]) -> bool:
    """Whether the change points a user's second factor somewhere else: another method,
    or another phone for SMS codes. A bearer token alone must not do that (it would hand
    the factor to whoever holds the token), so it needs the current password too."""
    if user.auth_method == AuthMethod.SIMPLE:
        return False
    method = changes.get("auth_method")
    if method is not None and method != user.auth_method:
        return True
    return user.auth_method == AuthMethod.TFA_SMS and changes.get(
        "phone_number", user.phone_number
    ) != (user.phone_number)


def _moves_email(user: User, changes: dict[str, Any]) -> bool:
    """Whether the change gives the user another email: password resets go there, so a
    bearer token alone changing it would be an account takeover (it needs the password)."""
    if "email" not in changes:
        return False
    new = changes["email"]
    if isinstance(new, str):
        try:
            new = rules.check_email(new)
        except ValidationFailed:
            return False  # refused later, as a bad email
    return bool(new != user.email)


def _check_no_downgrade(user: User, method: object) -> None:
    """A bearer token alone must not switch a second factor off: leaving two-step login,
    or leaving TOTP, needs the password and a code (twofactor.disable_tfa) or an
    administrator. Moving between email and SMS codes keeps a second factor (and needs
    the new channel's proof)."""
    if method is None or method == user.auth_method or user.auth_method == AuthMethod.SIMPLE:
        return
    if method == AuthMethod.SIMPLE or user.auth_method == AuthMethod.TFA_TOTP:
        raise ValidationFailed(
            "Switching two-step login off needs your password and a code (or an administrator).",
            field="auth_method",
            code="tfa_disablement_required",
        )


def _apply_profile(
    user: User,
    member: Member,
    changes: dict[str, Any],
    *,
    by_admin: bool,
    account: Account | None,
    vouched_phone: bool = False,
) -> _Applied:
    """Apply profile changes to `user` (no commit); the phone code is spent last.
    `vouched_phone`: an administrator sets another user's SMS phone without a code."""
    applied = _Applied()
    with db.session.no_autoflush:
        if "username" in changes:
            username = rules.check_username(changes["username"])
            if username != user.username:
                account = None if user.is_global else user.account
                check_username_free(username, account=account, user=user)
                user.username = username
        for name in NAME_FIELDS:
            if name in changes:
                setattr(user, name, check_name_field(name, changes[name]))
        if "custom_data" in changes:
            user.custom_data = rules.check_custom_data(changes["custom_data"])
        if not by_admin and "allow_support_login" in changes:
            user.allow_support_login = _flag(changes["allow_support_login"], "allow_support_login")
        old_method, old_phone, old_email = user.auth_method, user.phone_number, user.email
        if "email" in changes:
            email = rules.check_email(changes["email"]) if changes["email"] is not None else None
            if email != user.email:
                user.email = email
                user.email_added_at = utcnow() if email else None
                user.email_verified, user.email_verified_at = False, None
                applied.email_changed = True
                unique_emails.claim(user, user.account)
        if by_admin and "email_verified" in changes:
            _set_email_verified(user, changes["email_verified"])
        if "phone_number" in changes:
            phone = changes["phone_number"]
            phone = rules.check_phone(phone) if phone is not None else None
            if phone != user.phone_number:
                user.phone_number = phone
                user.phone_verified, user.phone_verified_at = False, None
        if "auth_method" in changes:
            user.auth_method = rules.check_auth_method(changes["auth_method"])
        code = changes.get("phone_verification_code")
        _check_second_factor(
            user, (old_method, old_phone, old_email), code is not None or vouched_phone
        )
        if old_method == AuthMethod.TFA_TOTP and user.auth_method != AuthMethod.TFA_TOTP:
            twofactor.drop_totp(user)  # back to TOTP later means a new, confirmed setup
        applied.tfa_changed = user.auth_method != old_method or (
            user.auth_method == AuthMethod.TFA_SMS and user.phone_number != old_phone
        )
        if by_admin and changes.get("password") is not None:
            accounts.apply_password(user, changes["password"], field="password")
            applied.password_changed = True
        if code is not None:
            applied.code = verification.verify_phone_for(user, code, account=account)
    return applied


def _flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed("Must be true or false.", field=field, code="invalid_type")
    return value


def _set_email_verified(user: User, value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationFailed(
            "Must be true or false.", field="email_verified", code="invalid_type"
        )
    if value and not user.email:
        raise ValidationFailed("There is no email to verify.", field="email_verified")
    if value != user.email_verified:
        user.email_verified = value
        user.email_verified_at = utcnow() if value else None


def _check_second_factor(
    user: User, before: tuple[str, str | None, str | None], has_code: bool
) -> None:
    """A two-step method needs its channel: a phone proven by a code for SMS (when switching
    to it or changing the number), a verified email for email (when switching to it or
    changing the address), an enrolled app for TOTP. Checked only for what this change
    touches, so an unrelated edit never fails on an older state."""
    old_method, old_phone, old_email = before
    method = user.auth_method
    switched = method != old_method
    if method == AuthMethod.TFA_SMS and (switched or user.phone_number != old_phone):
        if not user.phone_number:
            raise ValidationFailed(
                "A phone number is required for SMS two-step login.",
                field="phone_number",
                code="required",
            )
        if not (has_code or (user.phone_verified and user.phone_number == old_phone)):
            raise ValidationFailed(
                "Prove the phone number with phoneVerificationCode.",
                field="phone_verification_code",
                code="required",
            )
    if method == AuthMethod.TFA_EMAIL and (switched or user.email != old_email):
        if not user.email:
            raise ValidationFailed(
                "Email is required for email two-step login.", field="email", code="required"
            )
        if not user.email_verified:
            raise ValidationFailed(
                "Email two-step login needs a verified email.",
                field="auth_method" if switched else "email",
                code="email_not_verified",
            )
    if method == AuthMethod.TFA_TOTP and switched and not user.totp_secret:
        raise ValidationFailed(
            "Set up an authenticator app first.", field="auth_method", code="totp_not_enrolled"
        )


def _stage_update(user: User, account: Account | None, applied: _Applied, event: str) -> None:
    """The update's events, in its transaction."""
    stage(event, user=user, account=account)
    if applied.tfa_changed:  # the person hears of it, whoever made the change
        stage("identity.tfa.update.success", user=user, account=user.account)
    if applied.password_changed:
        stage("identity.password.update.success", user=user, account=user.account)


def _after_update(user: User, applied: _Applied) -> None:
    """After the commit: a changed, unverified address gets its verification link."""
    if applied.email_changed and user.email and not user.email_verified:
        verification.send_email_verification(user)
