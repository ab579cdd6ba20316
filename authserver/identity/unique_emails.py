"""An account's `require_unique_emails`: while it is on, no two of the account's users
(deleted ones aside) have the same email, compared case-insensitively. Seed 000 makes
this an account setting because usernames, not emails, identify account users.

`users.email_key` holds the lower-cased email of such users and NULL otherwise, under a
unique index per account: the checks here give the clear error, the index refuses the
loser of a race the row lock cannot serialise (SQLite).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from authserver.identity.locks import lock_account
from authserver.platform.errors import Conflict
from authserver.platform.extensions import db
from authserver.platform.models import Account, User, UserStatus

CONSTRAINT = "uq_users_account_email_key"


def email_taken() -> Conflict:
    return Conflict(
        "Another user of this account has this email.", field="email", code="email_taken"
    )


def is_email_clash(error: IntegrityError) -> bool:
    """Whether the database refused a row for this rule (rather than a username)."""
    return CONSTRAINT in str(error.orig) or "email_key" in str(error.orig)


def key_of(email: str | None, account: Account | None) -> str | None:
    """The `email_key` a user of `account` with `email` carries."""
    if account is None or not account.require_unique_emails or not email:
        return None
    return email.lower()


def claim(user: User, account: Account | None) -> None:
    """Give a new or changed user of `account` its email key: Conflict when another user
    of the account holds it. Locks the account row first (PostgreSQL), as usernames do."""
    key = key_of(user.email if user.status != UserStatus.DELETED else None, account)
    if key is not None and account is not None and key != user.email_key:
        lock_account(account)
        others = select(User.id).where(User.account_id == account.id, User.email_key == key)
        if user.id is not None:
            others = others.where(User.id != user.id)
        with db.session.no_autoflush:
            if db.session.scalar(others.limit(1)) is not None:
                raise email_taken()
    user.email_key = key


def taken(account: Account, keys: Iterable[str]) -> set[str]:
    """Those of `keys` that users of the account hold already (for a bulk import)."""
    wanted = sorted(set(keys))
    if not wanted or not account.require_unique_emails:
        return set()
    rows = db.session.scalars(
        select(User.email_key).where(User.account_id == account.id, User.email_key.in_(wanted))
    )
    return {key for key in rows if key is not None}


def apply_setting(account: Account) -> None:
    """After `require_unique_emails` changed: fill or clear the keys of every user of the
    account (no commit). Turning it on is refused (Conflict) while two users share an
    email: the administrator changes them first."""
    lock_account(account)
    mine = (User.account_id == account.id, User.email.is_not(None))
    live = User.status != UserStatus.DELETED
    if not account.require_unique_emails:
        db.session.execute(update(User).where(*mine).values(email_key=None))
        return
    shared = db.session.scalar(
        select(func.lower(User.email))
        .where(*mine, live)
        .group_by(func.lower(User.email))
        .having(func.count() > 1)
        .limit(1)
    )
    if shared is not None:
        raise Conflict(
            "Some users of this account share an email: change them before requiring "
            "unique emails.",
            field="require_unique_emails",
            code="emails_not_unique",
        )
    # updated_at stays: the users' profiles did not change.
    db.session.execute(
        update(User)
        .where(*mine, live)
        .values(email_key=func.lower(User.email), updated_at=User.updated_at)
    )
