"""signing keys in the database

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 17:15:00

Every instance reads the same keys (private JWKs encrypted with a key derived from
AUTHSERVER_KEY_ENCRYPTION_SECRET or SECRET_KEY) instead of a file in its instance folder.
An existing file is moved in with `authserver keys import`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=10), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("activates_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )


def downgrade():
    op.drop_table("signing_keys")
