"""Base settings shared by every service, read from the environment when an app is built."""

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.address import parse_networks


def env(*names: str) -> AliasChoices:
    """Accept a field by its environment name(s) or by its Python name (handy in tests)."""
    return AliasChoices(*names)


class ServiceSettings(BaseSettings):
    """Settings every service understands; each service subclasses it with its own."""

    model_config = SettingsConfigDict(extra="ignore", validate_by_name=True, frozen=True)

    data_dir: Path = Field(Path("./var"), validation_alias=env("DENTIAPRO_DATA_DIR", "data_dir"))
    auth_url: str = Field("http://127.0.0.1:8001", validation_alias=env("AUTH_URL", "auth_url"))
    tenants_url: str = Field(
        "http://127.0.0.1:8003", validation_alias=env("TENANTS_URL", "tenants_url")
    )
    default_tenant: str = Field(
        "public", validation_alias=env("DENTIAPRO_DEFAULT_TENANT", "default_tenant")
    )
    jwt_issuer: str = Field("dentiapro-auth", validation_alias=env("JWT_ISSUER", "jwt_issuer"))
    # Unknown key ids (a rotated signing key) trigger a JWKS fetch at most this often.
    jwks_refetch_interval: float = Field(
        1.0, gt=0, validation_alias=env("JWKS_REFETCH_INTERVAL", "jwks_refetch_interval")
    )
    log_level: str = Field("INFO", validation_alias=env("LOG_LEVEL", "log_level"))
    # Requests without a database answer within this many seconds at /health/.
    health_timeout: float = Field(1.5, validation_alias=env("HEALTH_TIMEOUT", "health_timeout"))
    db_pool_size: int = Field(10, validation_alias=env("DB_POOL_SIZE", "db_pool_size"))
    # Connections beyond the pool are opened for a burst and closed when returned: under load
    # the pool churns (a new PostgreSQL backend per burst, measured in make bench). On the
    # event loop a request waits for a pooled connection instead, at no cost.
    db_max_overflow: int = Field(0, validation_alias=env("DB_MAX_OVERFLOW", "db_max_overflow"))
    # Requests under /api/ served at once; the rest wait their turn, first come first served
    # (common.middleware). 0: no limit. See docs/performance.md, "The tail".
    max_active_requests: int = Field(
        0, ge=0, validation_alias=env("MAX_ACTIVE_REQUESTS", "max_active_requests")
    )
    # The gateway's own hop (and a TLS proxy in front of it): X-Forwarded-For is believed from
    # these only (common.address). Loopback is where Traefik runs under `make run`.
    trusted_proxies: str = Field(
        "127.0.0.0/8,::1", validation_alias=env("TRUSTED_PROXIES", "trusted_proxies")
    )

    # Presented as X-Internal-Token on every call to another service's /internal/ paths (the
    # tenants registry requires it). From the variable, or the file the _FILE variable names
    # (a mounted secret); unset under `make run` unless the launcher sets one.
    internal_token: SecretStr | None = Field(
        None, validation_alias=env("DENTIAPRO_INTERNAL_TOKEN", "internal_token")
    )
    internal_token_file: Path | None = Field(
        None, validation_alias=env("DENTIAPRO_INTERNAL_TOKEN_FILE", "internal_token_file")
    )

    @model_validator(mode="after")
    def _internal_token_from_file(self) -> Self:
        if self.internal_token is None and self.internal_token_file is not None:
            token = self.internal_token_file.read_text(encoding="utf-8").strip()
            # Frozen settings; filling a value derived from another once, here, is fine.
            object.__setattr__(self, "internal_token", SecretStr(token) if token else None)
        return self

    @property
    def internal_headers(self) -> dict[str, str]:
        """The headers of a call to another service's /internal/ paths."""
        if self.internal_token is None:
            return {}
        return {"X-Internal-Token": self.internal_token.get_secret_value()}

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a typo fails start-up, not every request
        return value

    def sqlite_url(self, name: str) -> str:
        """Default SQLite URL of a service database under the data dir."""
        return f"sqlite:///{(self.data_dir / f'{name}.sqlite3').resolve()}"

    @property
    def jwks_url(self) -> str:
        return f"{self.auth_url.rstrip('/')}/api/auth/jwks/"
