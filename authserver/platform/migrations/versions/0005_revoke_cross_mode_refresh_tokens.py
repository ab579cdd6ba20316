"""revoke refresh tokens that crossed between a live account and its test account

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 16:30:00

Issue 14: before it, a test account's client could log live users in (and a live client
test users), and the refresh tokens it got are still stored. The code now refuses them;
this revokes them too, so that the database says what is dead: every unrevoked refresh
token whose account is not its client's own (a global login's, with no account, is fine
only through a live client). Data only; the downgrade leaves them revoked.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

tokens = sa.table(
    "refresh_tokens",
    sa.column("id", sa.String),
    sa.column("client_id", sa.String),
    sa.column("account_id", sa.String),
    sa.column("revoked_at", sa.DateTime),
)
clients = sa.table("oauth_clients", sa.column("id", sa.String), sa.column("account_id", sa.String))
accounts = sa.table("accounts", sa.column("id", sa.String), sa.column("mode", sa.String))


def upgrade():
    crossed = (
        sa.select(tokens.c.id)
        .select_from(
            tokens.join(clients, clients.c.id == tokens.c.client_id).join(
                accounts, accounts.c.id == clients.c.account_id
            )
        )
        .where(
            tokens.c.revoked_at.is_(None),
            sa.or_(
                sa.and_(tokens.c.account_id.is_(None), accounts.c.mode != "live"),
                sa.and_(
                    tokens.c.account_id.is_not(None), tokens.c.account_id != clients.c.account_id
                ),
            ),
        )
    )
    ids = [row[0] for row in op.get_bind().execute(crossed)]
    now = datetime.now(UTC).replace(tzinfo=None)  # the models store naive UTC
    for start in range(0, len(ids), 500):
        op.get_bind().execute(
            sa.update(tokens)
            .where(tokens.c.id.in_(ids[start : start + 500]))
            .values(revoked_at=now)
        )


def downgrade():
    pass  # a revoked token stays revoked
