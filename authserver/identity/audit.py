"""The audit log: `record` adds one row per administrative change to the caller's open
transaction (so a change that rolls back leaves none), `events` reads them newest first.
Who acts comes from the front door (`acting`); rows name changed fields, never values.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from authserver.platform.extensions import db
from authserver.platform.models import AuditEvent

ACTOR_TYPES = ("user", "client", "cli", "system")
# Fields whose *name* would still say too much or that are proofs, not data: left out.
NOT_RECORDED = frozenset({"phone_verification_code", "email_verification_code", "current_password"})
# Every action `record` is called with (the README lists them; the API filter checks them).
ACTIONS = (
    "account.create",
    "account.update",
    "account.delete",
    "account.reset",
    "account.publishable_token.regenerate",
    "user.create",
    "user.update",
    "user.delete",
    "user.import",
    "membership.create",
    "membership.update",
    "membership.delete",
    "client.create",
    "client.update",
    "client.secret.rotate",
    "client.delete",
    "key.rotate",
    "key.retire",
    "key.revoke",
    "key.import",
    "passkey.create",
    "passkey.update",
    "passkey.delete",
    "webhook_endpoint.create",
    "webhook_endpoint.update",
    "webhook_endpoint.secret.rotate",
    "webhook_endpoint.delete",
)


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a token's user, a client token's client, the operator at the
    command line (their login name), or `system` (code with no front door, e.g. tests)."""

    type: str
    id: str | None
    ip: str | None = None


SYSTEM = Actor("system", None)
_actor: ContextVar[Actor] = ContextVar("audit_actor", default=SYSTEM)


@contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Run the block on behalf of `actor`: the front door says who is asking once, around
    the call, as it passes the IP or locale; use cases do not grow an extra argument."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def cli_actor() -> Actor:
    """The operator running `authserver`: their login name (nothing better is known)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry or variables, e.g. an odd container
        name = "unknown"
    return Actor("cli", name[:255])


def current_actor() -> Actor:
    return _actor.get()


def record(
    action: str,
    target_type: str,
    target_id: str,
    changed: Iterable[str] = (),
    *,
    account_id: str | None = None,
    actor: Actor | None = None,
) -> None:
    """Add an audit row for `action` on (target_type, target_id) to the open transaction;
    the use case's commit writes it with the change, its rollback drops both."""
    who = actor or _actor.get()
    names = sorted({str(name) for name in changed} - NOT_RECORDED)
    db.session.add(
        AuditEvent(
            account_id=account_id,
            action=action,
            actor_type=who.type,
            actor_id=who.id,
            ip=who.ip,
            target_type=target_type,
            target_id=str(target_id),
            changed=names,
        )
    )


def events(
    *,
    account_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    page: int = 1,
    size: int = 25,
    oldest_first: bool = False,
    everything: bool = False,
) -> tuple[list[AuditEvent], int]:
    """One account's audit rows (`account_id` None: those of no account, e.g. global
    users; `everything`: all, for the operator), newest first: (one page, total count)."""
    where = []
    if not everything:
        where.append(
            AuditEvent.account_id.is_(None)
            if account_id is None
            else AuditEvent.account_id == account_id
        )
    if target_type is not None:
        where.append(AuditEvent.target_type == target_type)
    if target_id is not None:
        where.append(AuditEvent.target_id == target_id)
    if action is not None:
        where.append(AuditEvent.action == action)
    total = db.session.scalar(db.select(db.func.count()).select_from(AuditEvent).where(*where))
    rows = db.session.scalars(
        db.select(AuditEvent)
        .where(*where)
        .order_by(
            *(
                (AuditEvent.created_at, AuditEvent.id)
                if oldest_first
                else (AuditEvent.created_at.desc(), AuditEvent.id.desc())
            )
        )
        .limit(size)
        .offset((page - 1) * size)
    ).all()
    return list(rows), int(total or 0)
