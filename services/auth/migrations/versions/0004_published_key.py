"""The public signing keys the JWKS lists, each until its tokens have all expired.

The private key leaves the database: it comes from a secret (``JWT_PRIVATE_KEY`` or
``JWT_PRIVATE_KEY_FILE``; ``make run`` keeps a generated one in its data directory). A key the
first release generated into ``signing_key`` is exported or published by auth's first start
of this release, which then empties that table (the next release drops it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "published_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("jwk", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_published_key_expires_at", "published_key", ["expires_at"])


def downgrade() -> None:
    op.drop_table("published_key")
