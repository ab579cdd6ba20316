"""The database's unit of work and its faults: one commit helper, and the wiring that
turns an unreachable, frozen or exhausted database into one error (DatabaseUnavailable,
a 503 in every front door) within bounded time."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy.exc
from flask import Flask
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext

from authserver.platform import metrics
from authserver.platform.errors import Conflict, ServiceUnavailable
from authserver.platform.events import AFTER_COMMIT, run_after_commit
from authserver.platform.extensions import db

log = logging.getLogger("authserver.database")


class DatabaseUnavailable(ServiceUnavailable):
    """The database refused, dropped or did not answer in time (or the pool is exhausted)."""

    code = "database_unavailable"
    title = "Database unavailable"


def commit(
    conflict: Conflict | bool | Callable[[sqlalchemy.exc.IntegrityError], Conflict] = True,
) -> None:
    """Commit the session's transaction; on any failure roll it back and re-raise.

    A constraint that refuses the write (an IntegrityError: a value taken meanwhile, a row
    deleted meanwhile) becomes `conflict` if it is a Conflict (or what it returns for the
    error, when it is a function), a generic Conflict (409) for True, and stays the
    database's own error for False. The `on_commit` callbacks run only after this commit
    succeeded, so nothing is announced for work that rolled back.
    """
    session = db.session()
    # With staged events, the change's objects stay loaded for their receivers after the
    # commit (as when events were sent after it), like `events.emit` does.
    expire = session.expire_on_commit
    session.expire_on_commit = expire and not session.info.get(AFTER_COMMIT)
    try:
        session.commit()
    except sqlalchemy.exc.IntegrityError as exc:
        db.session.rollback()
        if conflict is False:
            raise
        if conflict is True:
            conflict = Conflict("The change conflicts with existing data.")
        raise (conflict if isinstance(conflict, Conflict) else conflict(exc)) from None
    except BaseException:
        db.session.rollback()
        raise
    finally:
        session.expire_on_commit = expire
    run_after_commit()


def is_unavailable(exc: BaseException) -> bool:
    """True for an error that means "no database to talk to" rather than a bug or bad data."""
    if isinstance(exc, DatabaseUnavailable | sqlalchemy.exc.TimeoutError):
        return True  # the pool's: every connection is busy (TimeoutError is not a DBAPIError)
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    # psycopg's OperationalError covers refused/dropped connections, our own timeout, the
    # server's statement_timeout, shutdowns and "too many connections"; InterfaceError a
    # connection already closed. SQLite's errors stay what they are (a missing table is
    # an OperationalError there, and a bug).
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


# Statements that only read. Anything else (a write, a CTE that may write, DDL) marks
# the transaction as one that must really be rolled back.
_READ_ONLY = re.compile(r"\s*SELECT\b", re.IGNORECASE)


class ReadTrackingCursor(psycopg.Cursor[Any]):
    """Tells its connection when a statement other than a plain SELECT runs."""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if not (isinstance(query, str) and _READ_ONLY.match(query)):
            self.connection.wrote = True  # type: ignore[attr-defined]
        return super().execute(query, *args, **kwargs)

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        self.connection.wrote = True  # type: ignore[attr-defined]
        super().executemany(query, *args, **kwargs)


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every round trip (query, commit, rollback, ping) gives up
    after `io_timeout` seconds: libpq itself would wait forever on a server that accepted
    the connection and then stopped answering (frozen, or a network path gone silent).

    It also ends a transaction that only read with COMMIT where a ROLLBACK was asked (the
    same outcome for a read-only transaction): psycopg forgets its prepared statements at
    every ROLLBACK (and sends DEALLOCATE ALL), so read-only requests, which the session
    ends with a rollback, would never reach `prepare_threshold` and keep re-planning.
    """

    io_timeout: float | None = None
    wrote = False  # a statement other than a SELECT ran in the current transaction

    def rollback(self) -> None:
        if not self.wrote and self.info.transaction_status == TransactionStatus.INTRANS:
            super().commit()  # an idle-in-transaction read: nothing to undo
        else:
            super().rollback()
        self.wrote = False

    def commit(self) -> None:
        super().commit()
        self.wrote = False

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None or not self.io_timeout:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.io_timeout)
        except psycopg.errors._WaitTimeout:  # psycopg's own "wait timeout expired"
            # Cut off mid-protocol, the connection is unusable: closing it makes SQLAlchemy
            # see a disconnect and drop it from the pool instead of handing it out again.
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {self.io_timeout:g} s"
            ) from None


def init_app(app: Flask) -> None:
    """Bound every wait on the database and translate its faults (after `db.init_app`)."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        # One second beyond the server's statement_timeout, so a live server cancels a slow
        # statement itself (keeping the connection) and only a mute one is cut here.
        io_timeout = app.config["DATABASE_STATEMENT_TIMEOUT"] + 1
        _bound_connections(engine, io_timeout)
        _ping_idle_connections(engine)
    event.listen(engine, "handle_error", _translate_fault)

    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (Flask runs them
    # in reverse). A rollback on a dead connection raises here, after the response was
    # made; escaping, it would replace that response with the WSGI server's bare 500.
    @app.teardown_appcontext
    def remove_session(_exc: BaseException | None) -> None:
        try:
            db.session.remove()
        except Exception as exc:  # the work is lost either way; the answer must get out
            log.warning("database: session cleanup failed: %s", type(exc).__name__)
            db.session.registry.clear()


def _bound_connections(engine: Engine, io_timeout: float) -> None:
    @event.listens_for(engine, "do_connect")
    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        conn = BoundedConnection.connect(*cargs, cursor_factory=ReadTrackingCursor, **cparams)
        conn.io_timeout = io_timeout
        return conn


IDLE_PING_AFTER = 2.0  # seconds a pooled connection may sit unused before it is pinged


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a connection at checkout only if it sat in the pool for IDLE_PING_AFTER
    seconds: what a server restart, an idle timeout or a firewall most likely closed.
    Under load connections are back in use within milliseconds, so the hot path pays no
    round trip; at low traffic one ping costs nothing anyone notices."""

    @event.listens_for(engine, "checkin")
    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < IDLE_PING_AFTER:
            return
        try:
            _ping(dbapi_connection)
        except psycopg.Error as exc:
            # The pool drops this connection and checks out a fresh one (or fails with
            # the connect error, which becomes DatabaseUnavailable as usual).
            raise sqlalchemy.exc.DisconnectionError(type(exc).__name__) from exc


def _ping(connection: psycopg.Connection[Any]) -> None:
    """One round trip, outside any transaction (autocommit: no BEGIN and no ROLLBACK)."""
    connection.autocommit = True
    try:
        connection.execute("SELECT 1")
    finally:
        if not connection.closed:
            connection.autocommit = False


def _translate_fault(context: ExceptionContext) -> None:
    # A failed pre-ping (should an operator turn it on) is SQLAlchemy's cue to reconnect.
    if context.is_pre_ping:
        return
    if context.is_disconnect or is_unavailable(context.original_exception):
        metrics.counted_database_error()
        detail = f"{type(context.original_exception).__name__}: {context.original_exception}"
        # Raised from here, SQLAlchemy has already invalidated a dead connection.
        raise DatabaseUnavailable(detail.strip()[:300]) from context.sqlalchemy_exception
