"""Settings of the edge service, read from the environment when the app is built."""

from functools import lru_cache

from common.settings import ServiceSettings, env
from pydantic import Field


class EdgeSettings(ServiceSettings):
    clinic_url: str = Field(
        "http://127.0.0.1:8002", validation_alias=env("CLINIC_URL", "clinic_url")
    )
    # The aggregated /health/ gives each service this long to answer.
    upstream_health_timeout: float = Field(
        2.0, gt=0, validation_alias=env("EDGE_HEALTH_TIMEOUT", "upstream_health_timeout")
    )
    # ... and its answer is reused this long: a flood of unauthenticated /health/ calls must
    # not turn into as many checks of every service and database.
    health_cache_seconds: float = Field(
        1.0, ge=0, validation_alias=env("EDGE_HEALTH_CACHE_SECONDS", "health_cache_seconds")
    )
    # /api/openapi.json: the merged document is rebuilt (in the background) once this old,
    # and each service's /openapi.json/ is given this long to answer.
    openapi_cache_seconds: float = Field(
        60.0, ge=0, validation_alias=env("EDGE_OPENAPI_CACHE_SECONDS", "openapi_cache_seconds")
    )
    openapi_timeout: float = Field(
        5.0, gt=0, validation_alias=env("EDGE_OPENAPI_TIMEOUT", "openapi_timeout")
    )

    @property
    def upstreams(self) -> dict[str, str]:
        """The services behind the gateway, by name: their health makes its /health/, their
        documents its /api/openapi.json."""
        return {"auth": self.auth_url, "clinic": self.clinic_url, "tenants": self.tenants_url}


@lru_cache
def get_settings() -> EdgeSettings:
    return EdgeSettings()
