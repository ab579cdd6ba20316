"""Retention: delete rows nobody needs any more (expired refresh tokens, spent recovery
codes, expired deny-list and spent-code rows, old login history and audit events, devices
unseen for a year), in
small batches that skip rows another transaction holds, so several hosts may run
`authserver prune` at once and no request waits on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, delete, inspect, select

from authserver.identity import devices
from authserver.platform.database import commit
from authserver.platform.extensions import db
from authserver.platform.models import (
    AuditEvent,
    KnownDevice,
    LoginRecord,
    OutboxItem,
    RecoveryCode,
    RefreshToken,
    RevokedToken,
    SpentAuthorizationCode,
    utcnow,
)

BATCH_SIZE = 1000  # rows a transaction: short locks, small WAL bursts
# Settled outbox rows (delivered, failed, expired) stay readable in the delivery log this
# long; pending ones are never pruned (they are still being retried).
DELIVERY_LOG_DAYS = 30


@dataclass(frozen=True)
class Prunable:
    """One kind of row that grows old: its table and which of its rows are old now."""

    name: str
    model: Any
    old: Callable[[datetime, Any], ColumnElement[bool]]  # (now, app config) -> WHERE clause


def _days(config: Any, key: str) -> timedelta:
    return timedelta(days=config[key])


# One line per kind of row. A refresh token is kept until it expires whether rotated or
# revoked: till then PostgreSQL is what says "spent" (a reused rotated token revokes its
# family). Past expiry it is refused as expired anyway, so the row has no more work. A
# used recovery code is refused by `used_at IS NULL`, so its row is never read again. A
# deny-list row and a spent code's row expire when nothing they match can still be used
# (writers also clear expired ones as they go; prune catches a quiet table).
PRUNABLE: tuple[Prunable, ...] = (
    Prunable("refresh_tokens", RefreshToken, lambda now, c: RefreshToken.expires_at < now),
    Prunable("recovery_codes", RecoveryCode, lambda now, c: RecoveryCode.used_at < now),
    Prunable("revoked_tokens", RevokedToken, lambda now, c: RevokedToken.expires_at < now),
    Prunable(
        "spent_authorization_codes",
        SpentAuthorizationCode,
        lambda now, c: SpentAuthorizationCode.expires_at < now,
    ),
    Prunable(
        "login_records",
        LoginRecord,
        lambda now, c: LoginRecord.created_at < now - _days(c, "LOGIN_HISTORY_RETENTION_DAYS"),
    ),
    Prunable(
        "audit_events",
        AuditEvent,
        lambda now, c: AuditEvent.created_at < now - _days(c, "AUDIT_RETENTION_DAYS"),
    ),
    # A device unseen for longer than its device token lives could only come back as new.
    Prunable(
        "known_devices",
        KnownDevice,
        lambda now, c: KnownDevice.last_seen_at < now - timedelta(seconds=devices.LIFETIME),
    ),
    Prunable(
        "outbox",
        OutboxItem,
        lambda now, c: (
            (OutboxItem.status != "pending")
            & (OutboxItem.created_at < now - timedelta(days=DELIVERY_LOG_DAYS))
        ),
    ),
)


def prune(batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Delete the old rows of every kind; {kind name: rows deleted}. Rows locked by a
    concurrent transaction (another prune, a refresh in flight) are skipped, not waited
    for: the other prune deletes them, or the next run does."""
    now = utcnow()
    config = current_app.config
    return {kind.name: _prune_kind(kind, kind.old(now, config), batch_size) for kind in PRUNABLE}


def _prune_kind(kind: Prunable, old: ColumnElement[bool], batch_size: int) -> int:
    key = inspect(kind.model).primary_key[0]  # `id`, or a digest for spent codes
    total = 0
    while True:
        # FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite has one writer and ignores it): two
        # prunes take disjoint batches instead of queueing on each other's rows.
        batch = (
            select(key)
            .where(old)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        deleted = db.session.execute(
            delete(kind.model).where(key.in_(batch)).execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        commit(conflict=False)
        total += deleted
        if deleted < batch_size:
            return total
