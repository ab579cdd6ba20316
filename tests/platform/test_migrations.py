"""Migrations: `db upgrade` builds the same schema as the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from authserver.platform.extensions import db


def _diff(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_matches_models(make_app, fresh_database_url):
    """After `upgrade` to head, autogenerate finds nothing between the schema and the models."""
    app = make_app(DATABASE_URL=fresh_database_url)
    with app.app_context():
        upgrade()
    assert _diff(app) == []


def test_downgrade_then_upgrade_again(make_app, fresh_database_url):
    """The migrations run down to nothing and back up again without error."""
    app = make_app(DATABASE_URL=fresh_database_url)
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        tables = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        upgrade()
        assert "users" in sa.inspect(db.engine).get_table_names()
    assert _diff(app) == []


def test_sqlite_upgrade_matches_models(make_app, tmp_path):
    """The embedded default (SQLite) gets the same schema as the models too."""
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path}/embedded.sqlite3")
    with app.app_context():
        upgrade()
    assert _diff(app) == []


def test_cli_db_upgrade_brings_a_new_database_to_head(tmp_path):
    """`authserver db upgrade` on an empty SQLite file records the head revision."""
    env = {
        **os.environ,
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
        "AUTHSERVER_TESTING": "true",
        "AUTHSERVER_DATABASE_URL": f"sqlite:///{tmp_path}/cli.sqlite3",
    }
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "authserver"), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "cli.sqlite3") as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    versions_dir = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "authserver",
        "platform",
        "migrations",
        "versions",
    )
    revisions = [f.split("_", 1)[0] for f in os.listdir(versions_dir) if f.endswith(".py")]
    assert version == max(revisions)
