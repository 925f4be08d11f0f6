"""Invitations replace "the first registrant becomes the tenant's admin".

``user.founder_of`` (and its unique constraint) goes; ``invitation`` holds what an admin or a
superuser invited: the email, the role and the tenant, a SHA-256 of the token (never the
token), when it expires, and when it was used or revoked.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _drop_founder_of() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("uq_user_founder_of", "user", type_="unique")
        op.drop_column("user", "founder_of")
        return
    # SQLite drops a column by rebuilding the table, and with foreign keys on, dropping the old
    # table deletes every refresh token with it (ON DELETE CASCADE): everyone would be logged
    # out. The refresh tokens are kept aside meanwhile.
    op.execute("CREATE TEMPORARY TABLE refresh_token_kept AS SELECT * FROM refresh_token")
    with op.batch_alter_table("user") as batch:
        batch.drop_constraint("uq_user_founder_of", type_="unique")
        batch.drop_column("founder_of")
    op.execute("DELETE FROM refresh_token")
    op.execute("INSERT INTO refresh_token SELECT * FROM refresh_token_kept")
    op.execute("DROP TABLE refresh_token_kept")


def upgrade() -> None:
    _drop_founder_of()
    op.create_table(
        "invitation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column(
            "created_by",
            sa.Integer(),
            sa.ForeignKey("user.id", ondelete="SET NULL", name="fk_invitation_created_by"),
            nullable=True,
        ),
        sa.Column(
            "used_by",
            sa.Integer(),
            sa.ForeignKey("user.id", ondelete="SET NULL", name="fk_invitation_used_by"),
            nullable=True,
        ),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_invitation_token_hash"),
    )
    op.create_index("ix_invitation_tenant", "invitation", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_invitation_tenant", table_name="invitation")
    op.drop_table("invitation")
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("founder_of", sa.String(63), nullable=True))
        batch.create_unique_constraint("uq_user_founder_of", ["founder_of"])
