"""Bulk import of an account's users from JSON lines with password hashes made elsewhere.

Every line is checked with the rules of user creation first; only a file without a single
bad line is written, in one transaction, so an import is all or nothing. Imported hashes
(argon2, bcrypt, Django PBKDF2) become argon2id at each user's first right password.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select

from authserver.identity import audit, rules, unique_emails
from authserver.identity.locks import lock_account
from authserver.platform.database import commit
from authserver.platform.errors import Conflict, DomainError, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import (
    Account,
    AccountMembership,
    AuthMethod,
    User,
    UserStatus,
    new_id,
    utcnow,
)
from authserver.platform.security import password_hash_scheme

# The keys a line may have (camelCase, as the API names them) -> the domain field.
KEYS = {
    "username": "username",
    "email": "email",
    "name": "name",
    "role": "role",
    "emailVerified": "email_verified",
    "phone": "phone_number",
    "authMethod": "auth_method",
    "passwordHash": "password_hash",
}
REQUIRED = ("username", "role", "passwordHash")
LINE_MAX = 16 * 1024  # bytes; a user's line is far shorter
LOOKUP_CHUNK = 5000  # usernames per "already taken?" query


@dataclass(frozen=True)
class LineError:
    """Why one line of the file was refused (`field` as the line names it, or None)."""

    line: int
    detail: str
    field: str | None = None


@dataclass
class ImportResult:
    """How many users were written; with any errors, none were."""

    imported: int = 0
    errors: list[LineError] = field(default_factory=list)


def import_users(account: Account, lines: Iterable[bytes]) -> ImportResult:
    """Validate every line, then (only if all are good) insert them all in one commit."""
    result = ImportResult()
    rows: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}  # username -> the line that has it first
    first_email: dict[str, int] = {}  # email key (unique emails required) -> its line
    now = utcnow()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue  # blank lines (a trailing newline, spacing) are not users
        try:
            row = _parse(raw, account, now)
        except DomainError as exc:
            result.errors.append(LineError(number, exc.detail, _key(exc.field)))
            continue
        earlier = first_line.setdefault(row["username"], number)
        if earlier != number:
            result.errors.append(
                LineError(number, f"Username is also on line {earlier}.", "username")
            )
            continue
        key = row["email_key"]
        if key is not None and first_email.setdefault(key, number) != number:
            result.errors.append(
                LineError(number, f"Email is also on line {first_email[key]}.", "email")
            )
            continue
        row["_line"] = number
        rows.append(row)
    try:
        lock_account(account)  # no user creation of this account can slip in meanwhile
        for number in _taken(account, rows):
            result.errors.append(LineError(number, "Username is already taken.", "username"))
        keys = [row["email_key"] for row in rows if row["email_key"] is not None]
        used = set().union(
            *(
                unique_emails.taken(account, keys[i : i + LOOKUP_CHUNK])
                for i in range(0, len(keys), LOOKUP_CHUNK)
            )
        )
        for row in rows:
            if row["email_key"] in used:
                detail = "Another user of this account has this email."
                result.errors.append(LineError(row["_line"], detail, "email"))
        if result.errors:
            db.session.rollback()
            result.errors.sort(key=lambda e: e.line)
            return result
        for row in rows:
            del row["_line"]
        if rows:
            # Core's executemany (multi-row INSERTs): the ORM's bulk path sent one INSERT
            # a row here (about 600 users/s instead of several thousand).
            db.session.execute(insert(User.__table__), rows)
        audit.record("user.import", "Account", account.id, account_id=account.id)
    except BaseException:
        db.session.rollback()
        raise
    commit(conflict=Conflict("A username or email was taken meanwhile; nothing was imported."))
    result.imported = len(rows)
    return result


def _key(domain_field: str | None) -> str | None:
    """The name the file uses for a domain field (`phone_number` is `phone`)."""
    if domain_field is None:
        return None
    return next((k for k, v in KEYS.items() if v == domain_field), domain_field)


def _parse(raw: bytes, account: Account, now: Any) -> dict[str, Any]:
    """One line as the `users` row to insert, checked as user creation checks it."""
    if len(raw) > LINE_MAX:
        raise ValidationFailed(f"The line is longer than {LINE_MAX} bytes.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed("The line is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValidationFailed("The line is not a JSON object.")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ValidationFailed(f"Unknown key {unknown[0]!r}.", field=unknown[0])
    for key in REQUIRED:
        if data.get(key) is None:
            raise ValidationFailed(f"{key} is required.", field=KEYS[key], code="required")
    username = rules.check_username(data["username"])
    role = rules.check_role(data["role"])
    email = rules.check_email(data["email"]) if data.get("email") is not None else None
    phone = rules.check_phone(data["phone"]) if data.get("phone") is not None else None
    name = rules.check_name(data["name"], "name") if data.get("name") is not None else None
    verified = data.get("emailVerified", False)
    if not isinstance(verified, bool):
        raise ValidationFailed("Must be true or false.", field="email_verified")
    if verified and not email:
        raise ValidationFailed("There is no email to verify.", field="email_verified")
    explicit = data.get("authMethod")
    method = rules.check_auth_method(
        explicit if explicit is not None else account.default_auth_method
    )
    # As at creation: nobody but the user can set up their authenticator app, so an
    # explicit tfa_totp is refused and an account default of tfa_totp means simple.
    if method == AuthMethod.TFA_TOTP:
        if explicit is not None:
            raise ValidationFailed(
                "The user sets up an authenticator app themselves; import them with another "
                "method.",
                field="auth_method",
                code="totp_not_enrolled",
            )
        method = AuthMethod.SIMPLE
    if method == AuthMethod.TFA_EMAIL and not email:
        raise ValidationFailed("Email is required for email two-step login.", field="email")
    if method == AuthMethod.TFA_SMS and not phone:
        raise ValidationFailed(
            "A phone number is required for SMS two-step login.", field="phone_number"
        )
    password_hash = data["passwordHash"]
    if not isinstance(password_hash, str) or len(password_hash) > 255:
        raise ValidationFailed("Must be a hash string.", field="password_hash")
    try:
        password_hash_scheme(password_hash)
    except ValueError as exc:
        raise ValidationFailed(f"Password hash: {exc}.", field="password_hash") from None
    return {
        "id": new_id(),
        "account_id": account.id,
        "username": username,
        "email": email,
        "email_key": unique_emails.key_of(email, account),
        "email_added_at": now if email else None,
        "phone_number": phone,
        "name": name,
        "role": role,
        "auth_method": method,
        "status": UserStatus.ACTIVE.value,
        "email_verified": verified,
        "email_verified_at": now if verified else None,
        "phone_verified": False,
        "password_hash": password_hash,
        "password_updated_at": now,
        "custom_data": {},
        "token_generation": 0,
        "created_at": now,
        "updated_at": now,
    }


def _taken(account: Account, rows: list[dict[str, Any]]) -> list[int]:
    """The lines of the rows whose username the account already has: one of its
    users, or a global user who joined it (the same rule as creating one user)."""
    line_of = {row["username"]: row["_line"] for row in rows}
    names = list(line_of)
    clashes: set[str] = set()
    for start in range(0, len(names), LOOKUP_CHUNK):
        chunk = names[start : start + LOOKUP_CHUNK]
        clashes.update(
            db.session.scalars(
                select(User.username).where(User.account_id == account.id, User.username.in_(chunk))
            )
        )
        clashes.update(
            db.session.scalars(
                select(User.username)
                .join(AccountMembership, AccountMembership.user_id == User.id)
                .where(
                    AccountMembership.account_id == account.id,
                    User.account_id.is_(None),
                    User.username.in_(chunk),
                )
            )
        )
    return sorted(line_of[name] for name in clashes)
