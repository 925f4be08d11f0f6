"""Alembic environment of the clinic's per-tenant tables.

Run in code only (``clinic.db``): ``config.attributes["connection"]`` is a connection whose
``schema_translate_map`` already points the schema-less tables at one tenant's schema, and
``config.attributes["tenant_schema"]`` names that schema (None on SQLite, where each tenant
is its own file) so that ``alembic_version`` lives inside the tenant's schema.
"""

import clinic.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from sqlmodel import SQLModel

config = context.config
connection = config.attributes["connection"]
tenant_schema = config.attributes.get("tenant_schema")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    version_table_schema=tenant_schema,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
