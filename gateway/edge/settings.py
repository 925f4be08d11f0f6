"""Settings of the edge service, read from the environment when the app is built."""

from functools import lru_cache

from common.settings import ServiceSettings, env
from pydantic import Field

# DESIGN.md: a deleted tenant's tokens stop working at the gateway within one minute.
MAX_TENANT_STALENESS = 60.0


class EdgeSettings(ServiceSettings):
    clinic_url: str = Field(
        "http://127.0.0.1:8002", validation_alias=env("CLINIC_URL", "clinic_url")
    )
    # How long an answer of the tenants service is reused before asking again.
    tenant_cache_seconds: float = Field(
        30.0,
        ge=0,
        le=MAX_TENANT_STALENESS,
        validation_alias=env("TENANT_CACHE_SECONDS", "tenant_cache_seconds"),
    )
    tenants_timeout: float = Field(
        2.0, gt=0, validation_alias=env("TENANTS_TIMEOUT", "tenants_timeout")
    )
    # The aggregated /health/ gives each service this long to answer.
    upstream_health_timeout: float = Field(
        2.0, gt=0, validation_alias=env("EDGE_HEALTH_TIMEOUT", "upstream_health_timeout")
    )

    @property
    def upstreams(self) -> dict[str, str]:
        """The services whose health the gateway's /health/ reports, by name."""
        return {"auth": self.auth_url, "clinic": self.clinic_url, "tenants": self.tenants_url}


@lru_cache
def get_settings() -> EdgeSettings:
    return EdgeSettings()
