"""The outbox table's life cycle: add rows in the caller's transaction, claim due rows for
one worker, settle each try (delivered, retried later with backoff and jitter, given up).

Claims: on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED`, so workers on several hosts
take disjoint rows without waiting; on SQLite (one writer at a time) a plain UPDATE of
due, unclaimed rows. Either way a claim lasts OUTBOX_CLAIM_TIMEOUT: a killed worker's
rows are due again after it, and a worker only settles rows it still holds.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from authserver.platform.extensions import db
from authserver.platform.models import OutboxItem, utcnow

PENDING, DELIVERED, FAILED, EXPIRED = "pending", "delivered", "failed", "expired"
STATUSES = (PENDING, DELIVERED, FAILED, EXPIRED)
KINDS = ("webhook", "email", "sms")
JITTER = 0.1  # +-10% on every delay, so endpoints that failed together do not retry together
# Login codes are useless after OTP_LIFETIME: retried fast, then dropped at expiry.
URGENT_DELAYS = (2, 5, 10, 20, 30, 60, 60, 60, 60, 60)
ERROR_MAX = 255


def new_message_id() -> str:
    """A webhook-id: unique, stable across the retries of one delivery."""
    return "msg_" + secrets.token_urlsafe(18)


def new_claim() -> str:
    return secrets.token_hex(16)


def add(
    kind: str,
    event: str,
    body: str,
    *,
    account_id: str | None = None,
    endpoint_id: str | None = None,
    sender: int = 0,
    expires_at: datetime | None = None,
    claim: str | None = None,
    claim_seconds: int = 0,
) -> OutboxItem:
    """Add a row to the open transaction. With `claim` it is born claimed: the writer
    delivers it right after its commit, and a worker only if that try fails or dies."""
    now = utcnow()
    item = OutboxItem(
        kind=kind,
        event=event,
        body=body,
        account_id=account_id,
        endpoint_id=endpoint_id,
        sender=sender,
        message_id=new_message_id(),
        status=PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        expires_at=expires_at,
        claim=claim,
        claimed_until=now + timedelta(seconds=claim_seconds) if claim else None,
    )
    db.session.add(item)
    return item


def _due(now: datetime) -> list[Any]:
    return [
        OutboxItem.status == PENDING,
        OutboxItem.next_attempt_at <= now,
        or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now),
    ]


def claim_due(limit: int, seconds: int) -> tuple[str, list[OutboxItem]]:
    """Claim up to `limit` due rows for `seconds` and commit: (the claim, the rows)."""
    token, now = new_claim(), utcnow()
    until = now + timedelta(seconds=seconds)
    query = select(OutboxItem.id).where(*_due(now)).order_by(OutboxItem.next_attempt_at)
    if db.session.get_bind().dialect.name == "postgresql":
        ids = list(db.session.scalars(query.limit(limit).with_for_update(skip_locked=True)))
    else:
        ids = list(db.session.scalars(query.limit(limit)))
    if ids:
        # The conditions again: on SQLite another worker may have claimed a row between
        # the SELECT and this UPDATE (PostgreSQL's row locks already exclude that).
        db.session.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(ids), *_due(now))
            .values(claim=token, claimed_until=until)
        )
    db.session.commit()
    if not ids:
        return token, []
    rows = db.session.scalars(select(OutboxItem).where(OutboxItem.claim == token)).all()
    return token, sorted(rows, key=lambda r: r.next_attempt_at)


@dataclass(frozen=True)
class Outcome:
    """One try: delivered or not, the HTTP status if there was one, a short reason."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retry: bool = True  # False: trying again cannot help (the row is given up)


def next_delay(attempts: int, delays: Sequence[int]) -> float | None:
    """Seconds until try number `attempts + 1`, jittered; None once the schedule is spent."""
    if attempts > len(delays):
        return None
    base = delays[attempts - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - jitter, not a secret


def settle(item: OutboxItem, claim: str, outcome: Outcome, delays: Sequence[int]) -> str | None:
    """Record a try on a row this worker still holds and commit; the row's new status, or
    None if the claim was lost (another worker retook it: its try counts, not ours)."""
    now = utcnow()
    values: dict[str, Any] = {
        "attempts": OutboxItem.attempts + 1,
        "last_attempt_at": now,
        "last_status": outcome.status,
        "last_error": (outcome.error or "")[:ERROR_MAX] or None,
        "claim": None,
        "claimed_until": None,
    }
    attempts = item.attempts + 1
    delay = next_delay(attempts, URGENT_DELAYS if item.expires_at else delays)
    if outcome.ok:
        status = DELIVERED
        values["delivered_at"] = now
    elif item.expires_at is not None and item.expires_at <= now:
        status = EXPIRED
    elif not outcome.retry or delay is None:
        status = FAILED
    else:
        status = PENDING
        values["next_attempt_at"] = now + timedelta(seconds=delay)
        if item.expires_at is not None and values["next_attempt_at"] >= item.expires_at:
            status = EXPIRED  # the code dies before the next try could bring it
    values["status"] = status
    if status != PENDING and item.kind != "webhook":
        values["body"] = ""  # a settled email or SMS keeps no code or link at rest
    done = db.session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item.id, OutboxItem.claim == claim)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return status if done.rowcount else None  # type: ignore[attr-defined]


def release(ids: list[str], claim: str) -> None:
    """Hand back rows claimed but not tried (a worker stopping): due again at once."""
    if ids:
        db.session.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(ids), OutboxItem.claim == claim)
            .values(claim=None, claimed_until=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()


def retry_now(item: OutboxItem) -> None:
    """Make a row due again now, whatever its state (the API's retry; caller commits)."""
    item.status = PENDING
    item.next_attempt_at = utcnow()
    item.claim = None
    item.claimed_until = None


def depth() -> dict[str, int]:
    """Pending rows by kind (the metrics' queue depth)."""
    rows = db.session.execute(
        select(OutboxItem.kind, db.func.count())
        .where(OutboxItem.status == PENDING)
        .group_by(OutboxItem.kind)
    ).all()
    return {kind: int(count) for kind, count in rows}
