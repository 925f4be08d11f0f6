"""Create the tenant table.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("schema_name", sa.String(length=63), nullable=False),
        sa.Column("domain_url", sa.String(length=253), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Deleted tenants keep their schema_name for ever; a domain is free again once deleted.
    op.create_index("ix_tenant_schema_name", "tenant", ["schema_name"], unique=True)
    op.create_index(
        "ix_tenant_domain_url_live",
        "tenant",
        ["domain_url"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tenant_domain_url_live", table_name="tenant")
    op.drop_index("ix_tenant_schema_name", table_name="tenant")
    op.drop_table("tenant")
