"""Settings of the tenants service, read from the environment when the app is built."""

from functools import lru_cache
from pathlib import Path
from typing import Any

from common.settings import ServiceSettings, env
from pydantic import Field

DEFAULT_TENANT_DOMAIN = "localhost"


def _default_database_url(data: dict[str, Any]) -> str:
    # Same place ServiceSettings.sqlite_url points to; data_dir is validated before this field.
    data_dir: Path = data["data_dir"]
    return f"sqlite:///{(data_dir / 'tenants.sqlite3').resolve()}"


class TenantsSettings(ServiceSettings):
    database_url: str = Field(
        default_factory=_default_database_url,
        validation_alias=env("TENANTS_DATABASE_URL", "database_url"),
    )
    default_tenant_name: str = Field(
        "Default practice",
        validation_alias=env("DENTIAPRO_DEFAULT_TENANT_NAME", "default_tenant_name"),
    )
    default_tenant_domain: str = DEFAULT_TENANT_DOMAIN


@lru_cache
def get_settings() -> TenantsSettings:
    return TenantsSettings()
