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
