"""global users and support login: users.allow_support_login, login_records.actor_id

Revision ID: 0010m
Revises: 0009
Create Date: 2026-12-07 19:00:00

`users.allow_support_login` is the user's own choice (default off) to let a support
specialist of their account log in as them; `login_records.actor_id` names that
specialist on the user's login history.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010m"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "allow_support_login", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("login_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor_id", sa.String(length=36), nullable=True))


def downgrade():
    with op.batch_alter_table("login_records", schema=None) as batch_op:
        batch_op.drop_column("actor_id")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("allow_support_login")
