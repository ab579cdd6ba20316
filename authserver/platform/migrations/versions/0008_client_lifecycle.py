"""client lifecycle: a client's tokens issued up to a moment are void

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 17:10:00

`oauth_clients.tokens_valid_after` is set when a client is disabled or deleted: access
and refresh tokens issued until then are refused, also after the client is enabled again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokens_valid_after", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("tokens_valid_after")
