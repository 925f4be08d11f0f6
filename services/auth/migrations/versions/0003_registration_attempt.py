"""Registrations per client address, for their throttle.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registration_attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_registration_attempt_address_attempted_at",
        "registration_attempt",
        ["address", "attempted_at"],
    )
    op.create_index(
        "ix_registration_attempt_attempted_at", "registration_attempt", ["attempted_at"]
    )


def downgrade() -> None:
    op.drop_table("registration_attempt")
