"""Use cases for accounts, users and memberships.

Each function validates, writes, commits and then emits its event; on any error nothing
is left half-written (an account is never created without its test account).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from authserver.identity import audit, origins, rules, unique_emails
from authserver.identity.tokens import revoke_user_tokens
from authserver.platform.database import commit
from authserver.platform.errors import DomainError, Forbidden, NotFound, ValidationFailed
from authserver.platform.events import stage
from authserver.platform.extensions import db, passwords
from authserver.platform.models import (
    USER_STATUSES,
    Account,
    AccountMembership,
    AccountStatus,
    AuthMethod,
    LoginRecord,
    RecoveryCode,
    RefreshToken,
    Role,
    User,
    UserStatus,
    utcnow,
)


@dataclass(frozen=True)
class NewAccount:
    live: Account
    test: Account

    def summary(self) -> dict[str, Any]:
        """What a newly made account pair is known by (CLI output, demo data)."""
        return {
            "id": self.live.id,
            "testAccountId": self.test.id,
            "name": self.live.name,
            "publishableTokens": {
                "live": self.live.publishable_token,
                "test": self.test.publishable_token,
            },
        }


def new_publishable_token(mode: str) -> str:
    """`prt-live-<uuid>` / `prt-test-<uuid>`; public by design (apps ship it to get guest
    tokens)."""
    return f"prt-{mode}-{uuid.uuid4()}"


def create_account(
    name: object,
    *,
    default_locale: str = "en",
    default_auth_method: str = AuthMethod.SIMPLE,
    owner: User | None = None,
    **attributes: Any,
) -> NewAccount:
    """Create a live account and its paired test account in one transaction; `owner`, a
    global user, becomes the owner of both (a member with role owner) in it too."""
    name = rules.check_name(name, "name")
    rules.check_choice(default_locale, ("en", "es", "fr"), "default_locale")
    rules.check_auth_method(default_auth_method, "default_auth_method")
    common = {
        "name": name,
        "default_locale": default_locale,
        "default_auth_method": default_auth_method,
        "api_version": CURRENT_API_VERSION,
        **attributes,
    }
    test = Account(mode="test", publishable_token=new_publishable_token("test"), **common)
    live = Account(mode="live", publishable_token=new_publishable_token("live"), **common)
    live.test_account = test
    db.session.add_all([test, live])
    db.session.flush()  # the ids, for the audit row
    audit.record("account.create", "Account", live.id, common, account_id=live.id)
    if owner is not None:
        for account in (live, test):
            membership = AccountMembership(account_id=account.id, user_id=owner.id, role=Role.OWNER)
            db.session.add(membership)
            audit.record("membership.create", "User", owner.id, ["role"], account_id=account.id)
    stage("identity.account.create.success", account=live)
    commit()
    return NewAccount(live, test)


def find_member(account_id: str | None, username: str) -> tuple[User, Account | None, str] | None:
    """The user with this (normalised) username in the account, as (user, account, role):
    its own users first, then global users who are members. `account_id` None: global users.
    """
    if len(username) > rules.NAME_MAX:
        return None
    if account_id is None:
        user = db.session.scalar(
            db.select(User).where(User.account_id.is_(None), User.username == username)
        )
        return (user, None, user.role) if user else None
    account = db.session.get(Account, account_id)
    if account is None:
        return None
    user = db.session.scalar(
        db.select(User).where(User.account_id == account.id, User.username == username)
    )
    if user:
        return user, account, user.role
    row = db.session.execute(
        db.select(User, AccountMembership.role)
        .join(AccountMembership, AccountMembership.user_id == User.id)
        .where(
            User.account_id.is_(None),
            User.username == username,
            AccountMembership.account_id == account.id,
        )
    ).first()
    return (row[0], account, row[1]) if row else None


def find_members_by_email(
    account_id: str, email: str, *, limit: int
) -> list[tuple[User, Account | None, str]]:
    """The account's users (its own, then global members) whose email is `email`
    (compared case-insensitively), as find_member's (user, account, role)."""
    account = db.session.get(Account, account_id)
    wanted = email.strip().lower()
    if account is None or not wanted or len(wanted) > 254:
        return []
    own = db.session.scalars(
        db.select(User)
        .where(User.account_id == account.id, db.func.lower(User.email) == wanted)
        .order_by(User.created_at)
        .limit(limit)
    ).all()
    found: list[tuple[User, Account | None, str]] = [(u, account, u.role) for u in own]
    members = db.session.execute(
        db.select(User, AccountMembership.role)
        .join(AccountMembership, AccountMembership.user_id == User.id)
        .where(
            User.account_id.is_(None),
            AccountMembership.account_id == account.id,
            db.func.lower(User.email) == wanted,
        )
        .limit(limit)
    ).all()
    found += [(user, account, role) for user, role in members]
    return found[:limit]


def get_account(account_id: str) -> Account:
    account = db.session.get(Account, account_id) if isinstance(account_id, str) else None
    if account is None or account.status == AccountStatus.DELETED:
        raise NotFound("No such account.", field="account")
    return account


def regenerate_publishable_token(account: Account) -> Account:
    """Give the account a new publishable refresh token; the old one stops working at once."""
    account.publishable_token = new_publishable_token(account.mode)
    audit.record(
        "account.publishable_token.regenerate", "Account", account.id, account_id=account.id
    )
    commit()
    return account


def apply_password(user: User, new_password: object, *, field: str = "new_password") -> None:
    """Check and set a new password and void every token of the user (the caller commits)."""
    rules.check_password(new_password, username=user.username, email=user.email, field=field)
    user.password_hash = passwords().hash(str(new_password))
    user.password_updated_at = utcnow()
    revoke_user_tokens(user)


def set_password(user: User, new_password: object) -> User:
    """Give the user a new password and void every token issued before now."""
    apply_password(user, new_password)
    stage("identity.password.update.success", user=user, account=user.account)
    commit()
    return user


def upgrade_password_hash(user: User, password: str) -> bool:
    """After `password` was checked right: if the user's hash was made with other argon2
    parameters than the app's, store a new hash of it made with the current ones. Returns
    whether one was written; part of the caller's transaction (the caller commits).

    Not a password change: the token generation and `password_updated_at` stay, so no
    token or browser login ends (reset links do die: they vouch for the stored hash). The
    UPDATE only applies while the row still holds the hash that was checked, so it never
    undoes a password change that committed meanwhile.
    """
    old = user.password_hash
    if old is None or not passwords().needs_rehash(old):
        return False
    new = passwords().hash(password)
    result = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == old)
        .values(password_hash=new)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    set_committed_value(user, "password_hash", new)  # the row has it; nothing left to flush
    return True


def sign_out_everywhere(user: User) -> None:
    """End every login of the user: refresh and access tokens, and (through the token
    generation that browser logins check) every browser signed in to the hosted pages."""
    revoke_user_tokens(user)
    commit()


def set_status(user: User, status: str) -> User:
    """Change a user's status; leaving `active` voids every token of the user."""
    rules.check_choice(status, USER_STATUSES, "status")
    user.status = status
    if status != UserStatus.ACTIVE:
        revoke_user_tokens(user)
    audit.record("user.update", "User", user.id, ["status"], account_id=user.account_id)
    stage("identity.user.update.success", user=user, account=user.account)
    commit()
    return user


# --- account settings ---------------------------------------------------------------

# What update_account may change; the API's writable attributes are derived from it.
ACCOUNT_FIELDS = frozenset(
    {
        "name",
        "company_name",
        "default_auth_method",
        "website_url",
        "support_email",
        "tech_email",
        "api_version",
        "caption",
        "allowed_origins",
        "require_unique_emails",
        "description",
        "custom_data",
    }
)
LOCALIZABLE = ("name", "company_name", "caption", "description", "custom_data")
API_VERSION_RE = re.compile(r"^[0-9]{8}$")
# The /v1 behaviour new accounts are on (seed 000's `apiVersion`: a date). There is one so
# far; an incompatible change of /v1 would come with a later date, the accounts on an
# older one keeping the older behaviour until they move.
CURRENT_API_VERSION = "20261207"
# Settings only the owner and administrators change (they decide who may be a user).
MANAGER_FIELDS = frozenset({"require_unique_emails"})


def localized(account: Account, locale: str | None) -> dict[str, Any]:
    """The localizable fields in `locale`, falling back to the default-locale values."""
    values = {field: getattr(account, field) for field in LOCALIZABLE}
    if locale and locale != account.default_locale:
        values.update((account.translations or {}).get(locale, {}))
    return values


def update_account(
    account: Account,
    changes: dict[str, Any],
    *,
    locale: str | None = None,
    by: User | None = None,
    role: str | None = None,
) -> Account:
    """Change a live account's settings and copy them to its test account, in one commit.

    Localizable fields given with a `locale` other than the account's default are stored
    as translations. A test account cannot be changed directly (it follows its live one).
    MANAGER_FIELDS need the `role` of an owner or administrator (None: the operator).
    Requiring unique emails is refused while users share one (Conflict).
    """
    if account.mode == "test":
        raise ValidationFailed(
            "A test account follows its live account: change the live account instead.",
            code="unprocessable_for_test_account",
        )
    for field in sorted(MANAGER_FIELDS & set(changes)):
        if role is not None and role not in (Role.OWNER, Role.ADMINISTRATOR):
            raise Forbidden(
                "Only the owner or an administrator may change this.",
                field=field,
                code="forbidden_attribute",
            )
    clean = {field: _check_account_field(field, value) for field, value in changes.items()}
    for target in filter(None, (account, account.test_account)):
        for field, value in clean.items():
            if locale and locale != target.default_locale and field in LOCALIZABLE:
                translations = dict(target.translations or {})
                translations[locale] = {**translations.get(locale, {}), field: value}
                target.translations = translations  # a new dict, so the JSON change is seen
            else:
                setattr(target, field, value)
        if "require_unique_emails" in clean:
            try:
                unique_emails.apply_setting(target)
            except DomainError:
                db.session.rollback()
                raise
    audit.record("account.update", "Account", account.id, clean, account_id=account.id)
    stage("identity.account.update.success", account=account, user=by)
    commit()
    return account


def _check_account_field(field: str, value: Any) -> Any:
    if field not in ACCOUNT_FIELDS:
        raise ValidationFailed("Unknown attribute.", field=field, code="unknown_attribute")
    if field == "name":
        return rules.check_name(value, field)
    if value is None:
        if field in (
            "default_auth_method",
            "custom_data",
            "allowed_origins",
            "require_unique_emails",
        ):
            raise ValidationFailed("Must not be null.", field=field, code="required")
        return None
    if field in ("company_name", "caption"):
        return rules.check_name(value, field)
    if field == "description":
        return rules.check_name(value, field, max_len=10_000)
    if field == "default_auth_method":
        return rules.check_auth_method(value, field)
    if field in ("support_email", "tech_email"):
        return rules.check_email(value, field)
    if field == "website_url":
        return rules.check_web_url(value, field)
    if field == "api_version":
        if not isinstance(value, str) or not API_VERSION_RE.match(value):
            raise ValidationFailed("Must be a date like 20180331.", field=field, code="invalid")
        return value
    if field == "allowed_origins":
        return origins.check_origins(value)
    if field == "require_unique_emails":
        if not isinstance(value, bool):
            raise ValidationFailed("Must be true or false.", field=field, code="invalid_type")
        return value
    return rules.check_custom_data(value, field)


def delete_account(account: Account, *, by: User | None = None) -> None:
    """Put a live account and its test account in `deleted`, and end every login of both.

    Access tokens stop at once because the bearer guard checks the account's status;
    refresh tokens are revoked here.
    """
    if account.mode == "test":
        raise ValidationFailed(
            "A test account goes with its live account: delete the live account instead.",
            code="unprocessable_for_test_account",
        )
    pair = [a for a in (account, account.test_account) if a is not None]
    now = utcnow()
    for target in pair:
        target.status = AccountStatus.DELETED
    db.session.execute(
        db.update(RefreshToken)
        .where(RefreshToken.account_id.in_([a.id for a in pair]), RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    audit.record("account.delete", "Account", account.id, ["status"], account_id=account.id)
    stage("identity.account.delete.success", account=account)
    commit()


def login_history(
    *,
    user_id: str | None = None,
    account_id: str | None = None,
    page: int = 1,
    size: int = 25,
    oldest_first: bool = False,
) -> tuple[list[LoginRecord], int]:
    """Login records of one user or one account, newest first unless `oldest_first`:
    (one page, total count)."""
    if (user_id is None) == (account_id is None):
        raise ValueError("give exactly one of user_id or account_id")
    where = LoginRecord.user_id == user_id if user_id else LoginRecord.account_id == account_id
    total = db.session.scalar(db.select(db.func.count()).select_from(LoginRecord).where(where))
    rows = db.session.scalars(
        db.select(LoginRecord)
        .where(where)
        .order_by(
            *(
                (LoginRecord.created_at, LoginRecord.id)
                if oldest_first
                else (LoginRecord.created_at.desc(), LoginRecord.id.desc())
            )
        )
        .limit(size)
        .offset((page - 1) * size)
    ).all()
    return list(rows), int(total or 0)


def reset_test_account(account: Account, *, by: User | None = None) -> int:
    """Wipe a test account's users (and with them their tokens, codes and history), all
    but `by`, the user asking, who keeps working.

    Only test accounts: a live account answers ValidationFailed. Returns how many users
    were removed. Redis codes of removed users are left to expire: nothing can use them.
    """
    if account.mode != "test":
        raise ValidationFailed(
            "Only a test account can be reset.", code="unprocessable_for_live_account"
        )
    keep = by.id if by is not None else ""
    user_ids = list(
        db.session.scalars(db.select(User.id).where(User.account_id == account.id, User.id != keep))
    )
    if user_ids:
        # Children first, so the wipe works whether or not the database cascades deletes.
        for model in (RefreshToken, LoginRecord):
            db.session.execute(db.delete(model).where(model.user_id.in_(user_ids)))
        db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id.in_(user_ids)))
        db.session.execute(db.delete(User).where(User.id.in_(user_ids)))
    db.session.execute(
        db.delete(AccountMembership).where(AccountMembership.account_id == account.id)
    )
    audit.record("account.reset", "Account", account.id, account_id=account.id)
    stage("identity.account_reset.create.success", account=account, user=by)
    commit()
    return len(user_ids)
