"""Global users and the accounts they own or join (seed 000 "Type of User"): people sign
up as global users (when GLOBAL_SIGNUP is on); a global user creates an account pair and
owns it; an account's owner or administrator adds existing
global users by username, changes their role there and removes them; a global user lists
their memberships and leaves one.

A token carries its role and no membership version, so every membership change that must
stop tokens (a new role, a removal, leaving) voids all of the user's tokens through the
generation (`revoke_user_tokens`): checking memberships on every bearer check would cost
a query on the hot path. The user logs in again to the accounts they still belong to.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from authserver.identity import accounts, audit, rules, verification
from authserver.identity.tokens import Survivor, revoke_user_tokens
from authserver.identity.users import (
    NAME_FIELDS,
    SIGN_UPS_PER_IP,
    Actor,
    Member,
    add_member,
    check_may_touch,
    check_name_field,
    create_user,
    global_identity,
    is_self,
    require_manager,
)
from authserver.platform.database import commit
from authserver.platform.errors import Conflict, Forbidden, NotFound, Throttled, ValidationFailed
from authserver.platform.extensions import db, store
from authserver.platform.models import (
    Account,
    AccountMembership,
    AccountStatus,
    Role,
    User,
    UserStatus,
)

# Accounts one global user may create an hour: each is two rows and an audit trail.
ACCOUNT_CREATIONS = (10, 3600)
SIGN_UP_FIELDS = frozenset({"username", "password", "email", "name", "first_name", "last_name"})


def sign_up(fields: dict[str, Any], *, ip: str | None) -> User:
    """Someone signs up as a global user (GLOBAL_SIGNUP on, else NotFound): their username
    is their email; the user is `pending` until the emailed link verifies the address
    (verification.verify_email then activates it), so nobody logs in with an address they
    do not hold. Throttled per IP like a guest's sign-up, before anything is checked."""
    if not current_app.config["GLOBAL_SIGNUP"]:
        raise NotFound("Global sign-up is off.")
    if ip:
        hit = store().hit(f"global-signup-ip:{ip}", *SIGN_UPS_PER_IP)
        if not hit.allowed:
            raise Throttled(hit.retry_after)
    unknown = set(fields) - SIGN_UP_FIELDS
    if unknown:
        raise ValueError(f"unexpected sign-up fields: {sorted(unknown)}")
    username, email = global_identity(fields.get("username"), fields.get("email"))
    if fields.get("password") is None:
        raise ValidationFailed("Password is required.", field="password", code="required")
    user = create_user(
        account=None,
        username=username,
        password=fields["password"],
        role=Role.CUSTOMER,  # its role in a global login; accounts give it theirs
        email=email,
        status=UserStatus.PENDING,
        **{k: check_name_field(k, fields[k]) for k in NAME_FIELDS if k in fields},
    )
    verification.send_email_verification(user)
    return user


def create_owned_account(user: User, name: object) -> accounts.NewAccount:
    """A global user creates a live account and its test twin and owns both."""
    if not user.is_global:
        raise Forbidden(
            "Only a global user creates accounts; an account user belongs to one.",
            code="not_global_user",
        )
    rules.check_name(name, "name")  # a bad name costs no creation allowance
    hit = store().hit(f"account-create:{user.id}", *ACCOUNT_CREATIONS)
    if not hit.allowed:
        raise Throttled(hit.retry_after)
    return accounts.create_account(name, owner=user)


# --- an account's memberships (owner, administrator) -----------------------------------


def list_memberships(
    account: Account, *, page: int = 1, size: int = 25
) -> tuple[list[AccountMembership], int]:
    """One page of the account's global members, oldest membership first, and the total."""
    where = (AccountMembership.account_id == account.id, User.status != UserStatus.DELETED)
    joined = select(AccountMembership).join(User, User.id == AccountMembership.user_id)
    total = db.session.scalar(
        select(func.count(AccountMembership.id))
        .join(User, User.id == AccountMembership.user_id)
        .where(*where)
    )
    rows = db.session.scalars(
        joined.where(*where)
        .order_by(AccountMembership.created_at, AccountMembership.id)
        .limit(size)
        .offset((page - 1) * size)
    ).all()
    return list(rows), int(total or 0)


def get_membership(account: Account, membership_id: object) -> AccountMembership:
    """The account's membership with this id; NotFound for any other (another account's,
    the test twin's, a malformed id)."""
    missing = NotFound("No such membership.")
    try:
        uuid.UUID(str(membership_id))
    except ValueError:
        raise missing from None
    membership = db.session.get(AccountMembership, str(membership_id))
    if membership is None or membership.account_id != account.id:
        raise missing
    return membership


def add_membership(actor: Actor, username: object, role: object) -> AccountMembership:
    """Add an existing, active global user, named by username (their email), with `role`.

    Only an owner makes an owner. NotFound when no active global user has the username;
    Conflict when already a member or an account user here has the same username.
    """
    require_manager(actor)
    name = rules.check_username(username)
    role = rules.check_role(role)
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only the owner may make an owner.", field="role", code="owner_only")
    user = db.session.scalar(
        select(User).where(
            User.account_id.is_(None), User.username == name, User.status == UserStatus.ACTIVE
        )
    )
    if user is None:
        raise NotFound("No global user has this username.", field="username")
    return add_member(actor.account, user, role)


def change_role(actor: Actor, membership_id: object, role: object) -> AccountMembership:
    """Give a member another role here; the user's tokens stop (they carry the old role)."""
    require_manager(actor)
    membership = get_membership(actor.account, membership_id)
    _check_may_manage(actor, membership)
    role = rules.check_role(role)
    if role == membership.role:
        return membership
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only the owner may make an owner.", field="role", code="owner_only")
    membership.role = role
    revoke_user_tokens(membership.user)
    audit.record(
        "membership.update", "User", membership.user_id, ["role"], account_id=actor.account.id
    )
    commit()
    return membership


def remove_membership(actor: Actor, membership_id: object) -> None:
    """Remove a global user from the account; every token of the user stops."""
    require_manager(actor)
    membership = get_membership(actor.account, membership_id)
    _check_may_manage(actor, membership)
    _delete(membership)
    revoke_user_tokens(membership.user)
    commit()


def _check_may_manage(actor: Actor, membership: AccountMembership) -> None:
    member = Member(membership.user, membership.role, membership)
    check_may_touch(actor, member)
    if is_self(actor, member):
        raise Forbidden(
            "Not for yourself here: leave with DELETE /v1/user/memberships/{id}.",
            code="self_not_allowed",
        )


def _delete(membership: AccountMembership) -> None:
    db.session.delete(membership)
    audit.record("membership.delete", "User", membership.user_id, account_id=membership.account_id)


# --- a global user's own memberships ---------------------------------------------------


def my_memberships(user: User) -> list[AccountMembership]:
    """The memberships of a global user in accounts that still exist, oldest first."""
    return list(
        db.session.scalars(
            select(AccountMembership)
            .join(Account, Account.id == AccountMembership.account_id)
            .where(AccountMembership.user_id == user.id, Account.status == AccountStatus.ACTIVE)
            .order_by(AccountMembership.created_at, AccountMembership.id)
        )
    )


def leave(user: User, membership_id: object, *, keep: Survivor | None = None) -> None:
    """A global user leaves an account. The last owner cannot (Conflict): an account
    always has someone to manage it. Every token of the user stops but the login `keep`
    (the front door passes the request's own login only when it is a global login, which
    speaks for no account)."""
    missing = NotFound("No such membership.")
    try:
        uuid.UUID(str(membership_id))
    except ValueError:
        raise missing from None
    membership = db.session.get(AccountMembership, str(membership_id))
    if membership is None or membership.user_id != user.id:
        raise missing
    if membership.role == Role.OWNER and _owners(membership.account_id) <= 1:
        raise Conflict(
            "You are this account's only owner: make someone else owner first.",
            code="last_owner",
        )
    _delete(membership)
    revoke_user_tokens(user, keep)
    commit()


def _owners(account_id: str) -> int:
    """How many owners the account has: its own users and its global members."""
    own = db.session.scalar(
        select(func.count(User.id)).where(
            User.account_id == account_id,
            User.role == Role.OWNER,
            User.status == UserStatus.ACTIVE,
        )
    )
    members = db.session.scalar(
        select(func.count(AccountMembership.id))
        .join(User, User.id == AccountMembership.user_id)
        .where(
            AccountMembership.account_id == account_id,
            AccountMembership.role == Role.OWNER,
            User.status == UserStatus.ACTIVE,
        )
    )
    return int(own or 0) + int(members or 0)
