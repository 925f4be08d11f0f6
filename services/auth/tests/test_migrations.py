"""The schema the auth migrations build is the one ``auth.models`` describes. Production
builds its schema from the migrations alone (no ``create_all``), so a model changed without
its migration, or the reverse, would otherwise only show up there."""

from collections.abc import Callable

import auth.models
from auth.db import create_engine, migrate
from auth.settings import AuthSettings
from common.testing import migration_drift


def test_migrated_schema_matches_the_models(auth_settings: Callable[..., AuthSettings]) -> None:
    settings = auth_settings()
    migrate(settings)
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            assert migration_drift(connection, auth.models) == []
    finally:
        engine.dispose()
