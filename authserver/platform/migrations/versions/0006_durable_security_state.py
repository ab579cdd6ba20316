"""durable security state: revoked access tokens, spent authorization codes, TOTP steps

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 16:30:00

What says "revoked" or "spent" lives in PostgreSQL, so losing Redis brings nothing back:
revoked_tokens (the access-token deny-list), spent_authorization_codes, the last TOTP
step per user, the refresh-retry marker (superseded_at), the login kept through a
second-factor change, and the per-user/per-account "may have revoked tokens" gate.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "revoked_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revoked_tokens")),
    )
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revoked_tokens_key"), ["key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_revoked_tokens_expires_at"), ["expires_at"], unique=False
        )
    op.create_table(
        "spent_authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_spent_authorization_codes")),
    )
    with op.batch_alter_table("spent_authorization_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_spent_authorization_codes_expires_at"), ["expires_at"], unique=False
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kept_family_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("kept_generation", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("token_revocations_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("totp_step_tag", sa.String(length=16), nullable=True))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_revocations_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("superseded_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("token_revocations_until")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_step_tag")
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("token_revocations_until")
        batch_op.drop_column("kept_generation")
        batch_op.drop_column("kept_family_id")
    with op.batch_alter_table("spent_authorization_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spent_authorization_codes_expires_at"))
    op.drop_table("spent_authorization_codes")
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revoked_tokens_expires_at"))
        batch_op.drop_index(batch_op.f("ix_revoked_tokens_key"))
    op.drop_table("revoked_tokens")
