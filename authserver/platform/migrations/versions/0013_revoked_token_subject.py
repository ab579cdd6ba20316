"""revoked_tokens.subject: whose revocation gate a deny-list row opened

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:00:00

The bearer check keeps a snapshot of each user's and account's live deny-list rows in
Redis; the column finds them. Rows written before it have no subject: the snapshot reads
those for every subject until they expire (at most one access-token lifetime).
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("revoked_tokens") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=48), nullable=True))
        batch.create_index("ix_revoked_tokens_subject", ["subject"], unique=False)


def downgrade():
    with op.batch_alter_table("revoked_tokens") as batch:
        batch.drop_index("ix_revoked_tokens_subject")
        batch.drop_column("subject")
