"""Migrations: `db upgrade` builds the same schema as the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from factories import make_account, make_client, make_user
from flask_migrate import downgrade, upgrade

from authserver.identity import tokens
from authserver.platform.extensions import db
from authserver.platform.models import Account, OAuthClient, RefreshToken, User


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


def test_0005_revokes_refresh_tokens_that_crossed_live_and_test(make_app, fresh_database_url):
    """Issue 14's data migration revokes the stored refresh tokens of a login into the
    paired live/test account (or a global login through a test client), and only those."""
    app = make_app(DATABASE_URL=fresh_database_url)
    with app.app_context():
        upgrade()
    pair = make_account(app, "Acme")
    grants = ["password", "refresh_token"]
    live_client = make_client(app, pair.live_id, "Live app", public=True, grant_types=grants)
    test_client = make_client(app, pair.test_id, "Test app", public=True, grant_types=grants)
    alice = make_user(app, pair.live_id, "alice")
    tess = make_user(app, pair.test_id, "tess")
    gina = make_user(app, None, "gina", member_of={pair.live_id: "customer"})
    logins = {  # label: (client, user, account of the login), kept?
        "live": (live_client, alice, pair.live_id, True),
        "global": (live_client, gina, None, True),
        "test": (test_client, tess, pair.test_id, True),
        "live via test": (test_client, alice, pair.live_id, False),
        "global via test": (test_client, gina, None, False),
        "test via live": (live_client, tess, pair.test_id, False),
    }
    families = {}
    with app.app_context():
        for label, (cred, user_id, account_id, _) in logins.items():
            pk = db.session.scalar(
                sa.select(OAuthClient.id).where(OAuthClient.client_id == cred.client_id)
            )
            account = db.session.get(Account, account_id) if account_id else None
            user = db.session.get(User, user_id)
            principal = tokens.user_principal(user, account, "customer", ["pwd"])
            tokens.save_refresh_token(tokens.new_refresh_token_value(), pk, principal, "")
            families[label] = principal.family_id
        downgrade(revision=_down_revision_of("0005"))  # back to before it, data kept
        upgrade()
        for label, (*_, kept) in logins.items():
            token = db.session.scalar(
                sa.select(RefreshToken).where(RefreshToken.family_id == families[label])
            )
            assert (token.revoked_at is None) == kept, label


def _down_revision_of(revision: str) -> str:
    """The revision a migration follows (read from its file: the chain may be re-linked)."""
    versions = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "authserver",
        "platform",
        "migrations",
        "versions",
    )
    [name] = [f for f in os.listdir(versions) if f.startswith(f"{revision}_")]
    with open(os.path.join(versions, name), encoding="utf-8") as source:
        found = re.search(r'^down_revision = "([^"]+)"', source.read(), re.MULTILINE)
    assert found, name
    return found.group(1)
