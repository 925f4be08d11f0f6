"""Clinic settings, read from the environment when the app is built (never at import)."""

from functools import lru_cache
from pathlib import Path

from common.db import is_sqlite
from common.settings import ServiceSettings, env
from pydantic import Field
from sqlalchemy.engine import make_url


class ClinicSettings(ServiceSettings):
    port: int = Field(8002, validation_alias=env("CLINIC_PORT", "port"))
    # PostgreSQL: one database, one schema per tenant. SQLite: the URL names a file path
    # ``<dir>/<name>.sqlite3``; each tenant gets its own file ``<dir>/<name>/<schema>.sqlite3``.
    database_url_override: str | None = Field(
        None, validation_alias=env("CLINIC_DATABASE_URL", "database_url")
    )
    # SQLite engines kept open at once (one per tenant file); the least recently used closes.
    max_sqlite_engines: int = Field(
        64, validation_alias=env("CLINIC_MAX_SQLITE_ENGINES", "max_sqlite_engines")
    )

    # Served sixteen at a time, requests wait once, in line, instead of behind every other
    # request at each round trip: p99 at 32 connections 112 -> 45 ms (read mix), at the same
    # CPU per request; 8 or fewer cost 5-25% more CPU (docs/performance.md, "The tail").
    max_active_requests: int = Field(
        16, ge=0, validation_alias=env("MAX_ACTIVE_REQUESTS", "max_active_requests")
    )

    # Read events of the audit trail are written in batches this often (seconds).
    audit_flush_interval: float = Field(
        1.0, gt=0, le=10, validation_alias=env("AUDIT_FLUSH_INTERVAL", "audit_flush_interval")
    )

    @property
    def database_url(self) -> str:
        return self.database_url_override or self.sqlite_url("clinic")

    @property
    def uses_sqlite(self) -> bool:
        return is_sqlite(self.database_url)

    @property
    def sqlite_tenant_dir(self) -> Path:
        """Directory that holds one SQLite file per tenant."""
        database = make_url(self.database_url).database or "clinic.sqlite3"
        path = Path(database)
        return path.parent / path.stem


@lru_cache
def get_settings() -> ClinicSettings:
    return ClinicSettings()
