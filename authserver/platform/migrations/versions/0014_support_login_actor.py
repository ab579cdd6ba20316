"""support login: login_records.actor_id

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 19:00:00

`login_records.actor_id` names the support specialist who logged in as the user, on the
user's login history. (`users.allow_support_login`, the user's own choice, came with 0010.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("login_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor_id", sa.String(length=36), nullable=True))


def downgrade():
    with op.batch_alter_table("login_records", schema=None) as batch_op:
        batch_op.drop_column("actor_id")
