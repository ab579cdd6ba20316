"""indexes for `authserver prune`

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 16:30:00

Prune finds old rows by refresh_tokens.expires_at, recovery_codes.used_at and
login_records.created_at; without these indexes each batch scanned the whole table.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = (
    ("refresh_tokens", "expires_at"),
    ("recovery_codes", "used_at"),
    ("login_records", "created_at"),
)


def upgrade():
    for table, column in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def downgrade():
    for table, column in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
