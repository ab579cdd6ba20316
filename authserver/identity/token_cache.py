"""What a bearer check reads, answered from one Redis round trip; PostgreSQL stays the truth.

A check needs three rows (the token's user, account and client) and, while a revocation
gate is open, the subject's live deny-list rows. `standing()` returns them as small
snapshots (dicts), from Redis when a valid copy is there, else from PostgreSQL (and then
stores the copy). Why a stale copy can never make a revoked token pass:

- Each subject (user, account, client) has an *epoch* key in Redis holding a random
  value, and there is one global epoch. A snapshot is stored tagged with the epochs read
  BEFORE its rows were read from PostgreSQL, and a check uses it only while both tags
  still equal the current epochs (one MGET reads epochs and snapshots together).
- Every committed change that alters what a check answers replaces the subject's epoch
  with a NEW RANDOM value after the commit (an `after_commit` hook; the marks are made by
  the revocation functions in tokens.py, and by hooks that see any ORM change of a
  watched column). The fill race: a reader that read the old row before the commit tagged
  its copy with the old epoch, which never comes back, so its copy is never used.
- A missing epoch (evicted, FLUSHALL, a restarted or failed-over empty Redis) is created
  with SET NX as a new random value before PostgreSQL is read: no old snapshot carries it.
- A bulk UPDATE/DELETE on a watched table that names no subject replaces the global epoch:
  every snapshot is void. Snapshots are also refused while this session has uncommitted
  changes to their subject (they may still roll back).
- Redis unreachable: the check reads PostgreSQL, as it always did, and this process
  skips Redis for STORE_PAUSE seconds. An invalidation that fails is kept and retried
  (with the global epoch) before this process uses Redis again.

Worst case: an instance commits a revocation while it cannot reach Redis but another
instance can (a partition, or a Redis frozen and thawed with its data), or a Sentinel
failover loses the new epoch (asynchronous replication) and brings back the old epoch
with its copy: other instances may accept the revoked token from that copy for at most
TOKEN_CHECK_CACHE_TTL seconds. TOKEN_CHECK_CACHE_TTL=0 turns the cache off (every check
reads PostgreSQL).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, inspect, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from authserver.platform.extensions import db, store
from authserver.platform.models import (
    Account,
    AccountStatus,
    OAuthClient,
    RevokedToken,
    User,
    UserStatus,
    utcnow,
)
from authserver.platform.store import StoreUnavailable

EXTENSION = "authserver.token_cache"
GLOBAL = "tc:e"  # the global epoch's key name
EPOCH_TTL = 24 * 3600  # an expired epoch is recreated at random: it only costs a refill
STORE_PAUSE = 5.0  # seconds a process reads PostgreSQL only after Redis failed it
MAX_ROWS = 64  # deny-list rows kept in one snapshot; more: the check asks PostgreSQL
MARKS = "token_cache.marks"  # session.info: epoch names to replace after the commit

# The columns a check reads; a change to any of them must replace the subject's epoch.
WATCHED: dict[type, tuple[str, ...]] = {
    User: (
        "status",
        "token_generation",
        "kept_family_id",
        "kept_generation",
        "token_revocations_until",
        "username",
    ),
    Account: ("status", "token_revocations_until"),
    OAuthClient: ("client_id", "status", "tokens_valid_after", "client_secret_hash"),
}
WATCHED_TABLES = {"users", "accounts", "oauth_clients", "revoked_tokens"}

Snapshot = dict[str, Any]
Subject = tuple[str, str]  # ("u" | "a" | "c", id); a client by its client_id


def user_subject(user_id: str) -> Subject:
    return ("u", user_id)


def account_subject(account_id: str) -> Subject:
    return ("a", account_id)


def client_subject(client_id: str) -> Subject:
    return ("c", client_id)


def deny_subject(user_id: str | None, account_id: str | None) -> str | None:
    """The `revoked_tokens.subject` of a row opening this user's (else account's) gate."""
    if user_id is not None:
        return f"user:{user_id}"
    return f"account:{account_id}" if account_id is not None else None


def _epoch_name(subject: Subject) -> str:
    return f"tc:e:{subject[0]}:{subject[1]}"


def _snapshot_name(subject: Subject) -> str:
    return f"tc:s:{subject[0]}:{subject[1]}"


def _random() -> str:
    return secrets.token_hex(12)  # 96 bits: an old tag never equals a new epoch


# --- marking changes ---------------------------------------------------------------------


def changed(session: Session, *subjects: Subject) -> None:
    """Record that this transaction changes what checks of `subjects` answer: their epochs
    are replaced once it commits. Every write path of tokens.py calls it."""
    session.info.setdefault(MARKS, set()).update(_epoch_name(s) for s in subjects)


def changed_everything(session: Session) -> None:
    """A change whose subjects are unknown: every snapshot is void after the commit."""
    session.info.setdefault(MARKS, set()).add(GLOBAL)


@event.listens_for(Session, "before_flush")
def _mark_flushed_changes(session: Session, flush: UOWTransaction, instances: Any) -> None:
    """ORM changes of a watched column (user.status = ..., client.tokens_valid_after = ...)
    mark their subject, whoever makes them."""
    for obj in session.dirty:
        columns = WATCHED.get(type(obj))
        if columns and any(inspect(obj).attrs[c].history.has_changes() for c in columns):
            changed(session, *_subjects_of(obj))
    for obj in session.deleted:
        if type(obj) in WATCHED:
            changed(session, *_subjects_of(obj))
    for obj in session.new:
        if isinstance(obj, RevokedToken):
            if obj.subject is None:
                changed_everything(session)  # read for every subject's tokens
            else:
                kind, _, target = obj.subject.partition(":")
                changed(session, ("u" if kind == "user" else "a", target))


def _subjects_of(obj: Any) -> list[Subject]:
    if isinstance(obj, User):
        return [user_subject(obj.id)]
    if isinstance(obj, Account):
        return [account_subject(obj.id)]
    # A client found by its client_id: the old one too if that changed.
    history = inspect(obj).attrs["client_id"].history
    return [client_subject(c) for c in {obj.client_id, *history.deleted} if c]


@event.listens_for(Session, "do_orm_execute")
def _mark_bulk_changes(state: ORMExecuteState) -> None:
    """A bulk UPDATE/DELETE on a watched table (or INSERT of deny-list rows) names no
    object: unless its caller marked its subjects (execution option `token_cache_marked`),
    every snapshot goes. Raw SQL (`text()`) is not seen: its caller must call changed()."""
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    if state.execution_options.get("token_cache_marked"):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) not in WATCHED_TABLES:
        return
    if state.is_delete and table.name == "revoked_tokens":  # type: ignore[union-attr]
        return  # fewer deny-list rows only make the copies stricter than the truth
    if state.is_insert and table.name != "revoked_tokens":  # type: ignore[union-attr]
        return  # a new user, account or client revokes nothing (e.g. a user import)
    if state.is_update:
        values = getattr(state.statement, "_values", None)
        touched = {getattr(k, "key", k) for k in values} if values else None
        watched = {c for cols in WATCHED.values() for c in cols}
        if touched is not None and not touched & watched:
            return  # e.g. a password hash upgrade or a TOTP step: nothing a check reads
    changed_everything(state.session)


@event.listens_for(Session, "after_commit")
def _invalidate_committed(session: Session) -> None:
    marks = session.info.pop(MARKS, None)
    if marks and has_app_context():
        cache = current_app.extensions.get(EXTENSION)
        if cache is not None:
            cache.invalidate(marks)


# --- the cache ---------------------------------------------------------------------------


@dataclass
class TokenCache:
    """One per app: its TTL, and what this process owes Redis after a failure."""

    ttl: int
    enabled: bool
    paused_until: float = 0.0
    pending: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invalidate(self, names: set[str]) -> None:
        """Replace the epochs with new random values; on failure keep them (and the
        global epoch) for the next contact, and keep this process off Redis till then."""
        if not self.enabled:
            return
        try:
            store().put_many({n: _random() for n in names}, EPOCH_TTL)
        except StoreUnavailable:
            with self.lock:
                self.pending.update(names | {GLOBAL})
                self.paused_until = time.monotonic() + STORE_PAUSE

    def usable(self) -> bool:
        """Redis may be used now: not paused, and any owed invalidation delivered."""
        if not self.enabled or time.monotonic() < self.paused_until:
            return False
        if self.pending:
            with self.lock:
                owed, self.pending = self.pending, set()
            try:
                store().put_many({n: _random() for n in owed}, EPOCH_TTL)
            except StoreUnavailable:
                self.failed(owed)
                return False
        return True

    def failed(self, owed: set[str] | None = None) -> None:
        with self.lock:
            self.pending.update(owed or ())
            self.paused_until = time.monotonic() + STORE_PAUSE


def init_app(app: Flask, dialect: str) -> None:
    """The app's cache: on only with PostgreSQL, whose READ COMMITTED statements see every
    commit made before them (a SQLite transaction keeps its first snapshot)."""
    ttl = int(app.config["TOKEN_CHECK_CACHE_TTL"])
    enabled = ttl > 0 and dialect == "postgresql"
    app.extensions[EXTENSION] = TokenCache(ttl=ttl, enabled=enabled)


def standing(subjects: list[Subject]) -> dict[Subject, Snapshot]:
    """The snapshot of each subject: from Redis in one round trip when valid copies are
    there, else read from PostgreSQL (and stored, tagged with the epochs read before)."""
    cache: TokenCache | None = current_app.extensions.get(EXTENSION)
    if cache is None or not cache.usable():
        return {s: _load(s) for s in subjects}
    epochs = [GLOBAL] + [_epoch_name(s) for s in subjects]
    try:
        values = store().get_many(*epochs, *(_snapshot_name(s) for s in subjects))
        if None in values[: len(epochs)]:
            # Missing epochs: new random ones, unless another request just made them.
            made = {name: _random() for name in epochs}
            values[: len(epochs)] = store().get_or_create(made, EPOCH_TTL)
    except StoreUnavailable:
        cache.failed()
        return {s: _load(s) for s in subjects}
    found: dict[Subject, Snapshot] = {}
    tags: dict[Subject, str] = {}
    for i, s in enumerate(subjects):
        tag = f"{values[0]}.{values[1 + i]}"
        copy = _parse(values[len(epochs) + i])
        if copy is not None and copy.get("t") == tag:
            found[s] = copy
        else:
            tags[s] = tag
    if tags:
        fresh = {s: _load(s) for s in tags}  # after the epochs were read: the fill race
        marks = db.session.info.get(MARKS, set())
        writes = {
            _snapshot_name(s): json.dumps({**snap, "t": tags[s]}, separators=(",", ":"))
            for s, snap in fresh.items()
            if GLOBAL not in marks and _epoch_name(s) not in marks  # uncommitted: no copy
        }
        try:
            store().put_many(writes, cache.ttl)
        except StoreUnavailable:
            cache.failed()
        found.update(fresh)
    return found


def _parse(value: str | None) -> Snapshot | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


# --- reading the truth ---------------------------------------------------------------------


def _load(subject: Subject) -> Snapshot:
    kind, target = subject
    if kind == "u":
        # The entity, read afresh (populate_existing), so the request's own later use of
        # the user (GET /v1/user) finds it in the session instead of reading it again.
        user = db.session.scalars(
            select(User).where(User.id == target).execution_options(populate_existing=True)
        ).first()
        if user is None or user.status != UserStatus.ACTIVE:
            return {"ok": 0}
        return {
            "ok": 1,
            "un": user.username,
            "g": user.token_generation or 0,
            "kf": user.kept_family_id,
            "kg": user.kept_generation,
            **_gate(user.token_revocations_until, f"user:{target}"),
        }
    if kind == "a":
        row = db.session.execute(
            select(Account.status, Account.token_revocations_until).where(Account.id == target)
        ).first()
        if row is None or row.status != AccountStatus.ACTIVE:
            return {"ok": 0}
        return {"ok": 1, **_gate(row.token_revocations_until, f"account:{target}")}
    client = db.session.execute(
        select(
            OAuthClient.status, OAuthClient.tokens_valid_after, OAuthClient.client_secret_hash
        ).where(OAuthClient.client_id == target)
    ).first()
    if client is None or client.status != "active":
        return {"ok": 0}
    # The secret's SHA-256 digest (of 256 random bits), for client authentication: what
    # the database holds, no more.
    return {"ok": 1, "tva": _ts(client.tokens_valid_after), "sh": client.client_secret_hash}


def client_secret_digest(client_id: str) -> str | None:
    """The active client's current secret digest (None: disabled, deleted or public), as
    the bearer check reads it: one Redis round trip, or PostgreSQL."""
    snapshot = standing([client_subject(client_id)])[client_subject(client_id)]
    return snapshot.get("sh") if snapshot["ok"] else None


def _gate(until: datetime | None, subject: str) -> Snapshot:
    """The gate, and while it is open the subject's live deny-list rows (and rows without
    a subject, written before the column existed): [key, revoked_at, expires_at] each, or
    None when there are too many to carry (the check then asks PostgreSQL)."""
    now = utcnow()
    if until is None or until <= now:
        return {"gate": _ts(until), "rv": []}
    rows = db.session.execute(
        select(RevokedToken.key, RevokedToken.revoked_at, RevokedToken.expires_at)
        .where(
            or_(RevokedToken.subject == subject, RevokedToken.subject.is_(None)),
            RevokedToken.expires_at > now,
        )
        .limit(MAX_ROWS + 1)
    ).all()
    rv = (
        None
        if len(rows) > MAX_ROWS
        else [[r.key, _ts(r.revoked_at), _ts(r.expires_at)] for r in rows]
    )
    return {"gate": _ts(until), "rv": rv}


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None
