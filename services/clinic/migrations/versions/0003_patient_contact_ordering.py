"""Indexes for ordering patients by email and by contact number.

DESIGN.md lets every list be ordered on its listed fields; patients (the table that reaches
100,000 rows in a tenant) get ``(field, id)`` indexes for the two that had none, so
``?ordering=email`` is one index scan like ``?ordering=name``. Cabinets (a handful per
practice) and consultations' free text (up to 10,000 characters: too long for a b-tree entry)
are sorted without an index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {"ix_patient_email_id": "email", "ix_patient_contact_number_id": "contact_number"}


def _tenant_schema() -> str | None:
    # Rendered by Alembic outside the connection's schema_translate_map: name the tenant's
    # schema (None on SQLite: a file per tenant).
    schema: str | None = context.config.attributes.get("tenant_schema")
    return schema


def upgrade() -> None:
    for name, column in INDEXES.items():
        op.create_index(name, "patient", [column, "id"], schema=_tenant_schema())


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="patient", schema=_tenant_schema())
