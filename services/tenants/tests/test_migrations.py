"""The schema the tenants migrations build is the one ``tenants.models`` describes. Production
builds its schema from the migrations alone (no ``create_all``), so a model changed without
its migration, or the reverse, would otherwise only show up there."""

from collections.abc import Callable

import tenants.models
from common.db import create_db_engine
from common.pytest_plugin import DatabaseUrlFactory
from common.testing import migration_drift
from tenants.db import migrate
from tenants.settings import TenantsSettings


def test_migrated_schema_matches_the_models(
    database_url: DatabaseUrlFactory, make_settings: Callable[..., TenantsSettings]
) -> None:
    settings = make_settings(database_url=database_url("tenants"))
    migrate(settings)
    engine = create_db_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            assert migration_drift(connection, tenants.models) == []
    finally:
        engine.dispose()
