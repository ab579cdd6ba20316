"""database.py: a refused write rolls back and becomes the Conflict asked for, a generic
Conflict, or (conflict=False) the database's own IntegrityError; a slow statement is cut."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from authserver.identity import accounts
from authserver.platform.database import DatabaseUnavailable, commit
from authserver.platform.errors import Conflict
from authserver.platform.extensions import db
from authserver.platform.models import User


def _duplicate_user() -> str:
    """Stage a user whose (account, username) is taken, so the commit is refused."""
    account_id = accounts.create_account("Committed").live.id
    for _ in range(2):
        db.session.add(User(account_id=account_id, username="twin", role="customer"))
    return account_id


def _users(account_id: str) -> int:
    return len(db.session.scalars(db.select(User).where(User.account_id == account_id)).all())


def test_a_refused_commit_is_a_generic_conflict_and_rolls_back(app):
    """By default an IntegrityError becomes a 409 Conflict and nothing stays written."""
    with app.app_context():
        account_id = _duplicate_user()
        with pytest.raises(Conflict) as caught:
            commit()
        assert caught.value.detail == "The change conflicts with existing data."
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert _users(account_id) == 0


def test_a_refused_commit_becomes_the_conflict_given(app):
    """The caller's Conflict (its field and code) is raised as it is."""
    with app.app_context():
        account_id = _duplicate_user()
        taken = Conflict("Taken.", field="username", code="taken")
        with pytest.raises(Conflict) as caught:
            commit(conflict=taken)
        assert caught.value is taken
        assert _users(account_id) == 0


def test_conflict_false_keeps_the_database_error(app):
    """conflict=False re-raises the IntegrityError itself, after the rollback."""
    with app.app_context():
        account_id = _duplicate_user()
        with pytest.raises(IntegrityError):
            commit(conflict=False)
        assert _users(account_id) == 0


def test_a_slow_statement_is_cancelled_by_the_server_and_the_pool_stays_usable(make_app):
    """DATABASE_STATEMENT_TIMEOUT reaches PostgreSQL: a longer statement ends as
    DatabaseUnavailable within about that time, and the next one on the pool works."""
    app = make_app(DATABASE_STATEMENT_TIMEOUT=1)
    if app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("statement timeouts are PostgreSQL's")
    with app.app_context():
        assert db.session.execute(text("SHOW statement_timeout")).scalar() == "1s"
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            db.session.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3
        db.session.rollback()
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def _postgres_only(app) -> None:
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("the connection class and prepared statements are PostgreSQL's")


def test_read_only_requests_keep_prepared_statements(app):
    """A transaction that only read ends with COMMIT, not ROLLBACK, so psycopg keeps its
    prepared statements: a query repeated over requests gets prepared and stays so."""
    _postgres_only(app)

    def read() -> str:
        db.session.scalar(text("SELECT count(*) FROM users WHERE username = 'nobody'"))
        return "read"

    app.add_url_rule("/test-read", view_func=read)
    client = app.test_client()
    for _ in range(8):  # past psycopg's prepare_threshold (5)
        assert client.get("/test-read").status_code == 200
    with app.app_context():
        prepared = db.session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert any("username = 'nobody'" in s for s in prepared), prepared


def test_a_request_that_wrote_without_committing_is_still_rolled_back(app):
    """Writes a view left uncommitted (an error path) are undone at teardown, even though
    read-only transactions now end with COMMIT."""
    _postgres_only(app)
    with app.app_context():
        account_id = accounts.create_account("Rollback").live.id

    def write_then_leave() -> str:
        db.session.execute(
            db.update(User).where(User.account_id == account_id).values(username="changed")
        )
        db.session.add(User(account_id=account_id, username="left", role="customer"))
        db.session.flush()
        db.session.scalar(text("SELECT 1"))  # a read after the write changes nothing
        return "left"

    with app.app_context():
        db.session.add(User(account_id=account_id, username="kept", role="customer"))
        db.session.commit()
    app.add_url_rule("/test-write", view_func=write_then_leave)
    assert app.test_client().get("/test-write").status_code == 200
    with app.app_context():
        names = db.session.scalars(db.select(User.username).where(User.account_id == account_id))
        assert sorted(names) == ["kept"]
