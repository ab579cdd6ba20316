"""known devices: the devices each user signed in from (new sign-in email)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:00:00

A login from a device not in `known_devices` sends "New sign-in to your account"; the
mail's "this wasn't me" link is single use through `alarm_hash`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "known_devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_ip", sa.String(length=45), nullable=True),
        sa.Column("notified_at", sa.DateTime(), nullable=True),
        sa.Column("reported_at", sa.DateTime(), nullable=True),
        sa.Column("alarm_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_known_devices_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_devices")),
        sa.UniqueConstraint("alarm_hash", name=op.f("uq_known_devices_alarm_hash")),
        sa.UniqueConstraint("user_id", "device_hash", name="uq_known_devices_user_device"),
    )
    with op.batch_alter_table("known_devices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_known_devices_last_seen_at"), ["last_seen_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("known_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_known_devices_last_seen_at"))
    op.drop_table("known_devices")
