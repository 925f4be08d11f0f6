"""The one place that knows how the services' own (synchronous) code is called.

The commands import this module when they run (not for ``--help``, which stays instant).
Migrations are synchronous (Alembic on psycopg2 or sqlite3), whatever the services serve with.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import auth.db
import auth.settings
import clinic.schemas
import clinic.settings
import tenants.db
import tenants.settings


def migrate_tenants_registry() -> None:
    """The tenants service's database (``TENANTS_DATABASE_URL``) to its latest revision."""
    tenants.db.migrate(tenants.settings.get_settings())


def migrate_auth() -> None:
    """The auth service's database (``AUTH_DATABASE_URL``) to its latest revision."""
    auth.db.migrate(auth.settings.get_settings())


@dataclass(frozen=True, slots=True)
class ClinicTenants:
    """The tenants that have clinic data (schemas or SQLite files), default tenant first,
    and how to bring one of them to the latest revision."""

    names: list[str]
    # Brings one tenant to the latest revision; True if any migration ran.
    migrate: Callable[[str], object]


@contextmanager
def clinic_tenants() -> Iterator[ClinicTenants]:
    """The clinic's tenant databases (``CLINIC_DATABASE_URL``), closed afterwards."""
    schemas = clinic.schemas.tenant_schemas(clinic.settings.get_settings())
    try:
        yield ClinicTenants(names=schemas.tenants(), migrate=schemas.upgrade)
    finally:
        schemas.dispose()
