"""Cabinets, patients, consultations, with the indexes every list, filter and search uses.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# pg_advisory_xact_lock key that serialises CREATE EXTENSION across tenants being provisioned
# at the same time (IF NOT EXISTS alone races on the catalog's unique index).
EXTENSION_LOCK = 0x636C696E6963  # "clinic"

# One trigram index per resource over every searchable field joined by spaces (nullable ones
# coalesced): a search term never contains a space, so matching the joined text is the same as
# matching any one field, and a single GIN scan serves it. (Superseded by 0002, which stores
# that text in a generated search_text column and indexes the column.)
SEARCH_DOCUMENTS = {
    "cabinet": "name || ' ' || address",
    "patient": "name || ' ' || COALESCE(email, '') || ' ' || contact_number",
    "consultation": "diagnosis || ' ' || treatment",
}


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _trigram_opclass() -> str:
    """``<schema>.gin_trgm_ops`` wherever pg_trgm lives, so tenant schemas resolve it."""
    bind = op.get_bind()
    bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": EXTENSION_LOCK})
    find = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
    # A query sees what another process committed while we waited for the lock; IF NOT
    # EXISTS alone may consult a stale per-backend cache.
    schema = bind.exec_driver_sql(find).scalar()
    if schema is None:
        bind.exec_driver_sql("CREATE EXTENSION pg_trgm WITH SCHEMA public")
        schema = bind.exec_driver_sql(find).scalar_one()
    return f"{schema}.gin_trgm_ops"


def upgrade() -> None:
    op.create_table(
        "cabinet",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("contact_number", sa.String(40), nullable=False),
        *_timestamps(),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("birthdate", sa.Date(), nullable=False),
        sa.Column("contact_number", sa.String(40), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        *_timestamps(),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "consultation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "patient_id",
            sa.Integer(),
            sa.ForeignKey("patient.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column(
            "cabinet_id",
            sa.Integer(),
            sa.ForeignKey("cabinet.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("diagnosis", sa.String(10_000), nullable=False),
        sa.Column("treatment", sa.String(10_000), nullable=False),
        *_timestamps(),
        sqlite_autoincrement=True,
    )
    # (column, id): ordering by a column with id as the tiebreaker reads the index in order.
    for table in ("cabinet", "patient", "consultation"):
        for column in ("created_at", "updated_at"):
            op.create_index(f"ix_{table}_{column}_id", table, [column, "id"])
    op.create_index("ix_cabinet_name_id", "cabinet", ["name", "id"])
    op.create_index("ix_patient_name_id", "patient", ["name", "id"])
    op.create_index("ix_patient_birthdate_id", "patient", ["birthdate", "id"])
    op.create_index("ix_consultation_date_id", "consultation", ["date", "id"])
    # Also serve the foreign keys: the delete check counts a patient's consultations.
    op.create_index("ix_consultation_patient_id_date", "consultation", ["patient_id", "date"])
    op.create_index("ix_consultation_cabinet_id_date", "consultation", ["cabinet_id", "date"])

    if op.get_bind().dialect.name == "postgresql":
        opclass = _trigram_opclass()
        # ILIKE '%term%' searches use these; a B-tree cannot serve a leading wildcard.
        for table, document in SEARCH_DOCUMENTS.items():
            op.create_index(
                f"ix_{table}_search_trgm",
                table,
                [sa.text(f"({document}) {opclass}")],
                postgresql_using="gin",
            )


def downgrade() -> None:
    op.drop_table("consultation")
    op.drop_table("patient")
    op.drop_table("cabinet")
