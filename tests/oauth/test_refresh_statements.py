"""The refresh grant's cost in the database: a handful of statements in one transaction,
the rotation one conditional UPDATE ... RETURNING and the successor one INSERT."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from factories import World
from flask import Flask
from oauth_helpers import login, refresh

from authserver.platform.extensions import db
from authserver.platform.models import LoginRecord, RefreshToken

MAX_STATEMENTS = 5  # client secret check, UPDATE ... RETURNING, holder SELECT, 2 INSERTs


@contextmanager
def _database_work(app: Flask) -> Iterator[tuple[list[str], Counter[str]]]:
    """The SQL statements, and the BEGIN/COMMIT/ROLLBACK, sent on the app's engine."""
    statements: list[str] = []
    transactions: Counter[str] = Counter()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    def note(kind: str) -> Any:
        def listener(*_args: Any) -> None:
            transactions[kind] += 1

        return listener

    with app.app_context():
        engine = db.engine
    listeners = [
        ("before_cursor_execute", record),
        ("begin", note("begin")),
        ("commit", note("commit")),
        ("rollback", note("rollback")),
    ]
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        yield statements, transactions
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)


def test_a_refresh_is_a_handful_of_statements_in_one_transaction(app, client, world: World):
    """A rotation costs at most MAX_STATEMENTS statements and one transaction (one commit),
    the old token marked used by one conditional UPDATE and no lookup by key repeated."""
    first = login(client, world)
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 200  # warm
    second = login(client, world)
    with _database_work(app) as (statements, transactions):
        response = refresh(client, second["refresh_token"], world.public_id)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(statements) <= MAX_STATEMENTS, "\n".join(statements)
    assert transactions == Counter(begin=1, commit=1), transactions
    updates = [s for s in statements if s.startswith("UPDATE refresh_tokens")]
    assert len(updates) == 1
    assert "rotated_at IS NULL" in updates[0] and "RETURNING" in updates[0]
    assert sum(s.startswith("INSERT INTO refresh_tokens") for s in statements) == 1
    assert sum(s.startswith("INSERT INTO login_records") for s in statements) == 1
    with app.app_context():
        rows = db.session.scalars(sa.select(RefreshToken)).all()
        used = [r for r in rows if r.rotated_at is not None]
        assert len(rows) == 4 and len(used) == 2  # two logins, two rotations
        methods = db.session.scalars(sa.select(LoginRecord.method)).all()
        assert methods.count("refresh") == 2


def test_a_reused_token_still_ends_its_login(app, client, world: World):
    """The claim UPDATE finds nothing for a used token: reuse detection then revokes the
    family, and the successor stops working (unchanged by the shorter path)."""
    app.config["REFRESH_TOKEN_RETRY_GRACE"] = 0
    first = login(client, world)
    rotated = refresh(client, first["refresh_token"], world.public_id).get_json()
    replay = refresh(client, first["refresh_token"], world.public_id)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    successor = refresh(client, rotated["refresh_token"], world.public_id)
    assert successor.status_code == 400
    with app.app_context():
        rows = db.session.scalars(sa.select(RefreshToken)).all()
        assert rows and all(r.revoked_at is not None for r in rows)
