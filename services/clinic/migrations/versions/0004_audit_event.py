"""The audit trail: who accessed which clinical records (DESIGN.md section 6b).

Append-only for real: triggers refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) of
``audit_event``, whoever asks; only dropping the trigger (an operator's explicit act, visible in
the schema) would allow it. "Who saw patient 42" is ``resource_ids @> '{42}'``: a GIN index on
PostgreSQL; newest first reads ``(at, id)``; by user, ``(user_id, at, id)``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSAL = "audit_event is append-only"


def _tenant_schema() -> str | None:
    # Rendered by Alembic outside the connection's schema_translate_map: name the tenant's
    # schema (None on SQLite: a file per tenant).
    schema: str | None = context.config.attributes.get("tenant_schema")
    return schema


def _qualified(name: str, schema: str | None) -> str:
    return f'"{schema}".{name}' if schema else name


def upgrade() -> None:
    postgresql_ = op.get_bind().dialect.name == "postgresql"
    schema = _tenant_schema()
    ids = postgresql.ARRAY(sa.Integer) if postgresql_ else sa.JSON()
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger() if postgresql_ else sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=True),
        sa.Column("resource_ids", ids, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        schema=schema,
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_event_at_id", "audit_event", ["at", "id"], schema=schema)
    op.create_index(
        "ix_audit_event_user_id_at_id", "audit_event", ["user_id", "at", "id"], schema=schema
    )
    if postgresql_:
        op.create_index(
            "ix_audit_event_resource_ids",
            "audit_event",
            ["resource_ids"],
            schema=schema,
            postgresql_using="gin",
        )
        function = _qualified("audit_event_append_only", schema)
        op.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        table = _qualified("audit_event", schema)
        op.execute(
            f"CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        op.execute(
            f"CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_no_{event.lower()} BEFORE {event} ON audit_event "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            )


def downgrade() -> None:
    schema = _tenant_schema()
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("audit_event", schema=schema)  # its triggers go with it
        op.execute(f"DROP FUNCTION {_qualified('audit_event_append_only', schema)}()")
    else:
        op.drop_table("audit_event")
