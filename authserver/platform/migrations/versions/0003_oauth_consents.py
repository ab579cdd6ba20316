"""remembered consents and the skip_consent client setting

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:00:00

A user's consent to a client (per scope set) is remembered in oauth_consents; a client
may skip the consent page only when skip_consent is set explicitly (default false).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skip_consent", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "oauth_consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.id"],
            name=op.f("fk_oauth_consents_client_id_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_consents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_consents")),
        sa.UniqueConstraint("user_id", "client_id", name="uq_oauth_consents_user_client"),
    )
    with op.batch_alter_table("oauth_consents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_consents_client_id"), ["client_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("oauth_consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_consents_client_id"))
    op.drop_table("oauth_consents")
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("skip_consent")
