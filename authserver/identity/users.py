"""Users as members of accounts: who may manage whom, the username cross-rules between
account users and global members, creating (an administrator, or a guest signing up a
customer), reading, listing and deleting. Changing a user's profile lives in `profile`.

An account's members are its own users plus the global users who joined it (their role
there comes from the membership). Each use case validates, writes, commits, then emits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, true
from sqlalchemy.exc import IntegrityError

from authserver.identity import audit, rules, twofactor, unique_emails, verification
from authserver.identity.locks import lock_account
from authserver.identity.tokens import revoke_user_tokens
from authserver.platform import captcha
from authserver.platform.database import commit
from authserver.platform.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    Throttled,
    ValidationFailed,
)
from authserver.platform.events import stage
from authserver.platform.extensions import db, passwords, store
from authserver.platform.models import (
    Account,
    AccountMembership,
    AuthMethod,
    RecoveryCode,
    Role,
    User,
    UserStatus,
    utcnow,
)

MANAGERS = (Role.OWNER, Role.ADMINISTRATOR)  # the roles that manage an account's users
GUEST = "guest"
# Pending: invited, chooses a password by email. Deleted users are gone for listings.
CREATE_STATUSES = (UserStatus.ACTIVE, UserStatus.PENDING)
LISTED_STATUSES = (UserStatus.ACTIVE, UserStatus.PENDING, UserStatus.DISABLED)
# The fields of a user an administrator may set, creating or changing one. The front doors
# derive their names from this list, SIGN_UP_FIELDS and profile.SELF_FIELDS, so a new
# field is added here only.
ADMIN_FIELDS = frozenset(
    {
        "username",
        "password",
        "email",
        "email_verified",
        "phone_number",
        "phone_verification_code",  # proves phone_number; spent, not stored
        "name",
        "first_name",
        "last_name",
        "auth_method",
        "role",
        "status",
        "custom_data",
    }
)
SIGN_UP_FIELDS = ADMIN_FIELDS - {"status", "email_verified"}  # a guest signing up a customer
NAME_FIELDS = ("name", "first_name", "last_name")  # free text, checked alike
SEARCH_MAX = 255
SORTABLE = {"created_at": User.created_at, "username": User.username}  # list_members' sort
# Guest sign-ups per client IP an hour: each costs a password hash and may send a
# verification email to any address it names (inbox flooding, mass sign-ups).
SIGN_UPS_PER_IP = (20, 3600)
# Username changes an hour, per client IP and per person asking: each one answers "is this
# name taken?", so without a cap a signed-in member could probe who exists at full speed.
USERNAME_CHANGES = (20, 3600)


@dataclass(frozen=True)
class Actor:
    """Who asks: the token's role, its user (None for guests and client tokens), its account."""

    role: str
    user_id: str | None
    account: Account


@dataclass(frozen=True)
class Member:
    """A user as one account sees it: the role there, and the membership of a global user."""

    user: User
    role: str
    membership: AccountMembership | None = None


def username_taken() -> Conflict:
    return Conflict("Username is already taken.", field="username", code="taken")


def user_conflict(error: IntegrityError) -> Conflict:
    """What a unique index refusing a user row means: an email already in use where the
    account requires unique emails, else a taken username."""
    return unique_emails.email_taken() if unique_emails.is_email_clash(error) else username_taken()


# --- username rules -------------------------------------------------------------------


def throttle_username_change(who: str, ip: str | None) -> None:
    """Count a request to change a username, per `who` (the person or client asking) and per
    `ip`, before anything is checked, as sign-ups are; raises Throttled past the limit."""
    kv = store()
    hits = [kv.hit(f"username-change:{who}", *USERNAME_CHANGES)]
    if ip:
        hits.append(kv.hit(f"username-change-ip:{ip}", *USERNAME_CHANGES))
    if not all(h.allowed for h in hits):
        raise Throttled(max(h.retry_after for h in hits))


def check_username_free(username: str, *, account: Account | None, user: User | None) -> None:
    """An account user's username is unique among the account's users and the
    global users who joined it; a global user's among global users and among the account
    users of every account it joined. `user` is the one being renamed (None: a new one).
    """
    other = User.id != user.id if user is not None else true()
    if account is not None:
        lock_account(account)
        own = select(User.id).where(User.account_id == account.id, User.username == username)
        member = (
            select(User.id)
            .join(AccountMembership, AccountMembership.user_id == User.id)
            .where(
                AccountMembership.account_id == account.id,
                User.account_id.is_(None),
                User.username == username,
            )
        )
        clash = db.session.scalar(own.where(other)) or db.session.scalar(member.where(other))
    else:
        clash = db.session.scalar(
            select(User.id).where(User.account_id.is_(None), User.username == username, other)
        )
        if not clash and user is not None:
            joined = select(AccountMembership.account_id).where(
                AccountMembership.user_id == user.id
            )
            clash = db.session.scalar(
                select(User.id).where(User.account_id.in_(joined), User.username == username)
            )
    if clash:
        raise username_taken()


def global_identity(username: object, email: object | None) -> tuple[str, str]:
    """A new global user's username is their email (seed 000 "Type of User"): the checked
    username and the email to store, the same. Raises ValidationFailed otherwise."""
    name = rules.check_username(username)
    try:
        rules.check_email(name)
    except ValidationFailed:
        raise ValidationFailed(
            "A global user's username is their email address.",
            field="username",
            code="username_not_email",
        ) from None
    if email is not None and (not isinstance(email, str) or email.strip().lower() != name):
        raise ValidationFailed(
            "A global user's email is their username.", field="email", code="email_not_username"
        )
    return name, name


# --- creating -------------------------------------------------------------------------


def _new_user(
    *,
    account: Account | None,
    username: object,
    password: object | None,
    role: object,
    email: object | None = None,
    email_verified: bool = False,
    phone_number: object | None = None,
    auth_method: object | None = None,
    status: str = UserStatus.ACTIVE,
    **attributes: Any,
) -> User:
    """Validate, add and flush a new user (no commit); the username is checked and locked."""
    username = rules.check_username(username)
    role = rules.check_role(role)
    email = rules.check_email(email) if email is not None else None
    phone = rules.check_phone(phone_number) if phone_number is not None else None
    method = rules.check_auth_method(
        auth_method
        if auth_method is not None
        else (account.default_auth_method if account else AuthMethod.SIMPLE)
    )
    if method == AuthMethod.TFA_TOTP and not attributes.get("totp_secret"):
        if auth_method is not None:  # nobody but the user can set up their app
            raise ValidationFailed(
                "The user sets up an authenticator app themselves; create them with another "
                "method.",
                field="auth_method",
                code="totp_not_enrolled",
            )
        method = AuthMethod.SIMPLE  # the account's default: they switch once their app is set up
    if method == AuthMethod.TFA_EMAIL and not email:
        raise ValidationFailed("Email is required for email two-step login.", field="email")
    if method == AuthMethod.TFA_SMS and not phone:
        raise ValidationFailed(
            "A phone number is required for SMS two-step login.", field="phone_number"
        )
    if email_verified and not email:
        raise ValidationFailed("There is no email to verify.", field="email_verified")
    if password is None and status != UserStatus.PENDING:
        raise ValidationFailed("Password is required.", field="password", code="required")
    if password is not None:  # before any write: a refused password changes nothing
        rules.check_password(password, username=username, email=email, field="password")
    check_username_free(username, account=account, user=None)
    now = utcnow()
    user = User(
        account=account,
        username=username,
        role=role,
        email=email,
        email_added_at=now if email else None,
        email_verified=bool(email and email_verified),
        email_verified_at=now if email and email_verified else None,
        phone_number=phone,
        auth_method=method,
        status=status,
        **attributes,
    )
    unique_emails.claim(user, account)
    if password is not None:
        user.password_hash = passwords().hash(str(password))
        user.password_updated_at = now
    db.session.add(user)
    _flush()
    return user


def _flush() -> None:
    """Flush now so a taken username is a Conflict before anything else is spent. Where the
    account's row lock cannot serialise creations (SQLite), a concurrent one that won the
    race surfaces here as the unique index refusing the row: the same Conflict."""
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise user_conflict(exc) from None
    except Exception:
        db.session.rollback()
        raise


def create_user(
    *,
    account: Account | None,
    username: object,
    password: object | None,
    role: object,
    **fields: Any,
) -> User:
    """Create an account user (or a global user when `account` is None), trusted: the
    operator's CLI, the demo data and tests. The API goes through `register_user`."""
    try:
        user = _new_user(account=account, username=username, password=password, role=role, **fields)
    except DomainError:
        db.session.rollback()
        raise
    # The options given: unset ones arrive as None or False from the CLI.
    given = [k for k, v in {**fields, "password": password}.items() if v not in (None, False)]
    given += ["username", "role"]
    audit.record("user.create", "User", user.id, given, account_id=account and account.id)
    stage("identity.user.create.success", user=user, account=account)
    commit(conflict=user_conflict)
    return user


def add_member(account: Account, user: User, role: object) -> AccountMembership:
    """Make a global user a member of `account` with `role` (refused when an account
    user of that account has the same username)."""
    if not user.is_global:
        raise ValidationFailed("Only global users can join accounts.", field="user")
    role = rules.check_role(role)
    lock_account(account)
    clash = db.session.scalar(
        select(User.id).where(User.account_id == account.id, User.username == user.username)
    )
    if clash:
        db.session.rollback()
        raise Conflict("An account user already has this username.", field="username", code="taken")
    membership = AccountMembership(account_id=account.id, user_id=user.id, role=role)
    db.session.add(membership)
    audit.record("membership.create", "User", user.id, ["role"], account_id=account.id)
    commit(conflict=Conflict("Already a member.", field="user", code="taken"))
    return membership


def register_user(
    actor: Actor,
    fields: dict[str, Any],
    *,
    ip: str | None = None,
    captcha_token: str | None = None,
) -> Member:
    """An administrator creates a user of its account, or a guest signs up a customer.
    Sends the activation email (a pending user; using it verifies the address) or else the
    verification email (an active user with an unverified email), and makes a spent phone
    code the first login's OTP.

    `fields` holds ADMIN_FIELDS (SIGN_UP_FIELDS for a guest) as given; the
    `phone_verification_code` proves the phone. A guest's sign-ups are throttled per `ip`
    (Throttled), before anything is checked, and need a solved CAPTCHA's token when a
    verifier is configured (CaptchaRequired, CaptchaFailed, CaptchaUnavailable).
    """
    if actor.role == GUEST and ip:
        hit = store().hit(f"signup-ip:{ip}", *SIGN_UPS_PER_IP)
        if not hit.allowed:
            raise Throttled(hit.retry_after)
    if actor.role == GUEST and captcha.enabled():
        captcha.verify(captcha_token, ip)
    fields = dict(fields)
    given = list(fields)  # _register takes them apart
    code = fields.pop("phone_verification_code", None)
    try:
        member = _register(actor, fields, code)
    except DomainError:
        db.session.rollback()
        raise
    user = member.user
    if actor.role != GUEST:  # signing oneself up is no administrative change
        audit.record("user.create", "User", user.id, given, account_id=actor.account.id)
    stage("identity.user.create.success", user=user, account=actor.account)
    commit(conflict=user_conflict)
    if user.status == UserStatus.PENDING:  # the activation link verifies the address too
        verification.send_activation(user)
    elif user.email and not user.email_verified and user.status == UserStatus.ACTIVE:
        verification.send_email_verification(user)
    if code is not None and user.auth_method == AuthMethod.TFA_SMS:
        twofactor.prime_challenge(user, str(code).strip())
    return member


def _register(actor: Actor, fields: dict[str, Any], code: object) -> Member:
    if actor.role == GUEST:
        for name in sorted(ADMIN_FIELDS - SIGN_UP_FIELDS):
            if name in fields:
                raise ValidationFailed(
                    "A guest may not set this.", field=name, code="unknown_attribute"
                )
        role = fields.pop("role", None) or Role.CUSTOMER
        if role != Role.CUSTOMER:
            raise Forbidden("Signing up makes a customer.", field="role", code="forbidden_role")
    else:
        require_manager(actor)
        if fields.get("role") is None:
            raise ValidationFailed("Role is required.", field="role", code="required")
        role = fields.pop("role")
        if role == Role.OWNER and actor.role != Role.OWNER:
            raise Forbidden("Only the owner may make an owner.", field="role", code="owner_only")
    status = fields.pop("status", None) or UserStatus.ACTIVE
    rules.check_choice(status, CREATE_STATUSES, "status")
    if status == UserStatus.PENDING:
        if fields.get("password") is not None:
            raise ValidationFailed(
                "An invited user chooses their password: leave it out.",
                field="password",
                code="not_allowed",
            )
        if not fields.get("email"):
            raise ValidationFailed(
                "An invited user needs an email for the activation link.",
                field="email",
                code="required",
            )
    explicit = fields.get("auth_method")
    method = explicit if explicit is not None else actor.account.default_auth_method
    if method == AuthMethod.TFA_SMS and code is None:
        raise ValidationFailed(
            "SMS two-step login needs a verified phone: send phoneVerificationCode.",
            field="phone_verification_code",
            code="required",
        )
    # The account's default applies without proof (no code is mailed until the address
    # is verified, see twofactor.start_challenge); choosing email two-step login needs an
    # address known to work.
    if explicit == AuthMethod.TFA_EMAIL and not fields.get("email_verified"):
        raise ValidationFailed(
            "Email two-step login needs a verified email.",
            field="auth_method",
            code="email_not_verified",
        )
    if explicit == AuthMethod.TFA_TOTP:
        raise ValidationFailed(
            "Authenticator-app login is set up by the user after signing up.",
            field="auth_method",
            code="totp_not_enrolled",
        )
    user = _new_user(
        account=actor.account,
        role=role,
        status=status,
        username=fields.pop("username", None),
        password=fields.pop("password", None),
        email=fields.pop("email", None),
        email_verified=bool(fields.pop("email_verified", False)),
        phone_number=fields.pop("phone_number", None),
        auth_method=fields.pop("auth_method", None),
        **_profile(fields),
    )
    if code is not None:
        verification.verify_phone_for(user, code)  # spent last: nothing else can fail now
    return Member(user, user.role)


def _profile(fields: dict[str, Any]) -> dict[str, Any]:
    """Names and custom data, checked; anything else left is a programming error."""
    out: dict[str, Any] = {}
    for name in NAME_FIELDS:
        if name in fields:
            out[name] = check_name_field(name, fields.pop(name))
    if "custom_data" in fields:
        out["custom_data"] = rules.check_custom_data(fields.pop("custom_data"))
    if fields:
        raise ValueError(f"unexpected user fields: {sorted(fields)}")
    return out


def check_name_field(name: str, value: object) -> str | None:
    """One of NAME_FIELDS, checked; None clears it."""
    return None if value is None else rules.check_name(value, name)


# --- reading --------------------------------------------------------------------------


def role_in(user: User, account: Account | None) -> str | None:
    """The user's role in `account`: its own, or its membership's for a global user;
    None when a global user is not a member of `account`."""
    if account is None or user.account_id == account.id:
        return user.role
    return db.session.scalar(
        select(AccountMembership.role).where(
            AccountMembership.account_id == account.id, AccountMembership.user_id == user.id
        )
    )


def get_member(account: Account, user_id: object) -> Member:
    """The account's user (own or joined) with this id; NotFound for anyone else,
    including users of other accounts, of the test twin, and deleted users."""
    missing = NotFound("No such user.")
    try:
        uuid.UUID(str(user_id))
    except ValueError:
        raise missing from None
    user = db.session.get(User, str(user_id))
    if user is None or user.status == UserStatus.DELETED:
        raise missing
    if user.account_id == account.id:
        return Member(user, user.role)
    if user.account_id is None:
        membership = db.session.scalar(
            select(AccountMembership).where(
                AccountMembership.account_id == account.id, AccountMembership.user_id == user.id
            )
        )
        if membership is not None:
            return Member(user, membership.role, membership)
    raise missing


def list_members(
    account: Account,
    *,
    status: str | None = None,
    role: str | None = None,
    search: str | None = None,
    page: int = 1,
    size: int = 25,
    sort: Sequence[tuple[str, bool]] = (),
) -> tuple[list[Member], int]:
    """One page of the account's users, ordered by `sort` ((field, descending) pairs of
    SORTABLE; default username), and the total count.

    `search` matches part of the username or email, case-insensitively and literally
    (`%` and `_` are plain characters here, not wildcards).
    """
    joined = AccountMembership.account_id == account.id
    effective_role = func.coalesce(AccountMembership.role, User.role)
    where = [
        or_(User.account_id == account.id, AccountMembership.id.is_not(None)),
        User.status != UserStatus.DELETED,
    ]
    if status is not None:
        where.append(User.status == rules.check_choice(status, LISTED_STATUSES, "status"))
    if role is not None:
        where.append(effective_role == rules.check_role(role))
    if search:
        term = search.strip().lower()
        where.append(
            or_(
                User.username.contains(term, autoescape=True),
                func.lower(User.email).contains(term, autoescape=True),
            )
        )
    on = (AccountMembership.user_id == User.id) & joined
    total = db.session.scalar(
        select(func.count(User.id)).select_from(User).outerjoin(AccountMembership, on).where(*where)
    )
    rows = db.session.execute(
        select(User, AccountMembership)
        .outerjoin(AccountMembership, on)
        .where(*where)
        .order_by(*_order(sort), User.id)
        .limit(size)
        .offset((page - 1) * size)
    ).all()
    members = [Member(u, m.role if m else u.role, m) for u, m in rows]
    return members, int(total or 0)


def _order(sort: Sequence[tuple[str, bool]]) -> list[Any]:
    """ORDER BY terms for `sort`; unknown names are a programming error (KeyError)."""
    if not sort:
        return [User.username]
    return [SORTABLE[name].desc() if desc else SORTABLE[name].asc() for name, desc in sort]


# --- who may manage whom --------------------------------------------------------------


def require_manager(actor: Actor) -> None:
    if actor.role not in MANAGERS:
        raise Forbidden("Your role may not manage users.")


def check_may_touch(actor: Actor, member: Member) -> None:
    """Nobody but an owner changes or removes an owner."""
    if member.role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only the owner may change the owner.", code="owner_protected")


def is_self(actor: Actor, member: Member) -> bool:
    return actor.user_id is not None and actor.user_id == member.user.id


# --- deleting -------------------------------------------------------------------------


def delete_user(actor: Actor, user_id: object) -> None:
    """Remove a member from the account; every token of it stops.

    An account user is soft-deleted: the row stays (login history keeps pointing at it)
    with status `deleted`, its personal data and secrets wiped and its username freed.
    A global member only loses its membership of this account.
    """
    require_manager(actor)
    member = get_member(actor.account, user_id)
    check_may_touch(actor, member)
    if is_self(actor, member):
        raise Forbidden("You may not delete yourself.", code="self_delete")
    user = member.user
    if member.membership is not None:
        db.session.delete(member.membership)
    else:
        _erase(user)
    revoke_user_tokens(user)
    audit.record("user.delete", "User", user.id, account_id=actor.account.id)
    stage("identity.user.delete.success", user=user, account=actor.account)
    commit()


def _erase(user: User) -> None:
    user.status = UserStatus.DELETED
    # Frees the name; ids, not names, identify people. The ":" is outside the username
    # alphabet, so no live user can already hold the tombstone and block the delete.
    user.username = f"deleted:{user.id}"
    for name in ("email", "email_key", "email_added_at", "phone_number", "name"):
        setattr(user, name, None)
    user.first_name = user.last_name = None
    user.email_verified, user.email_verified_at = False, None
    user.phone_verified, user.phone_verified_at = False, None
    user.password_hash = None
    user.totp_secret = None
    user.custom_data = {}
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
