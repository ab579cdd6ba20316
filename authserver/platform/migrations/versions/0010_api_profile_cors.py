"""profile times, support-login choice, unique emails and CORS origins per account

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 19:00:00

`users.last_login_at` is filled from the login history and `users.email_added_at` from
the creation time of users who already have an email (the best that is known of them);
accounts without an `api_version` get the current one, 20261207.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allowed_origins", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "require_unique_emails", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_key", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("email_added_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "allow_support_login", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.create_unique_constraint(
            "uq_users_account_email_key", ["account_id", "email_key"]
        )
    op.execute("UPDATE accounts SET api_version = '20261207' WHERE api_version IS NULL")
    op.execute("UPDATE users SET email_added_at = created_at WHERE email IS NOT NULL")
    op.execute(
        "UPDATE users SET last_login_at = (SELECT max(l.created_at) FROM login_records l "
        "WHERE l.user_id = users.id AND l.success AND l.method <> 'refresh')"
    )


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_account_email_key", type_="unique")
        batch_op.drop_column("allow_support_login")
        batch_op.drop_column("last_login_at")
        batch_op.drop_column("email_added_at")
        batch_op.drop_column("email_key")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("require_unique_emails")
        batch_op.drop_column("allowed_origins")
