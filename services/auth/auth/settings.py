"""Settings of the auth service, read from the environment when an app is built."""

from functools import lru_cache
from pathlib import Path
from typing import Self

from common.settings import ServiceSettings, env
from pydantic import Field, SecretStr, model_validator


class AuthSettings(ServiceSettings):
    database_url: str = Field("", validation_alias=env("AUTH_DATABASE_URL", "database_url"))
    access_token_lifetime: int = Field(
        300, gt=0, validation_alias=env("ACCESS_TOKEN_LIFETIME", "access_token_lifetime")
    )
    refresh_token_lifetime: int = Field(
        86400, gt=0, validation_alias=env("REFRESH_TOKEN_LIFETIME", "refresh_token_lifetime")
    )
    admin_username: str | None = Field(
        None, validation_alias=env("DENTIAPRO_ADMIN_USERNAME", "admin_username")
    )
    admin_password: SecretStr | None = Field(
        None, validation_alias=env("DENTIAPRO_ADMIN_PASSWORD", "admin_password")
    )
    # Seconds an invitation stays usable (DESIGN: 7 days).
    invitation_lifetime: int = Field(
        604800, gt=0, validation_alias=env("INVITATION_LIFETIME", "invitation_lifetime")
    )
    # The signing key is a secret, never in the database (auth.keys): the PEM itself, or a file
    # holding it (a mounted secret; rotated by replacing it). Without either, JWT_GENERATE_KEY
    # (make run) keeps a generated one in <data dir>/jwt-private-key.pem, mode 0600; the images
    # turn it off, so a container without a key refuses to start.
    jwt_private_key: SecretStr | None = Field(
        None, validation_alias=env("JWT_PRIVATE_KEY", "jwt_private_key")
    )
    jwt_private_key_file: Path | None = Field(
        None, validation_alias=env("JWT_PRIVATE_KEY_FILE", "jwt_private_key_file")
    )
    jwt_generate_key: bool = Field(
        True, validation_alias=env("JWT_GENERATE_KEY", "jwt_generate_key")
    )
    # How often auth re-reads its key file (a rotation takes effect within this) and renews the
    # publication of the key it signs with.
    jwt_key_reload_interval: float = Field(
        10.0, gt=0, validation_alias=env("JWT_KEY_RELOAD_INTERVAL", "jwt_key_reload_interval")
    )
    # Failed logins allowed per username and per client address within the window (seconds).
    login_failure_window: int = Field(
        300, gt=0, validation_alias=env("LOGIN_FAILURE_WINDOW", "login_failure_window")
    )
    login_failures_per_username: int = Field(
        10, gt=0, validation_alias=env("LOGIN_FAILURES_PER_USERNAME", "login_failures_per_username")
    )
    login_failures_per_address: int = Field(
        50, gt=0, validation_alias=env("LOGIN_FAILURES_PER_ADDRESS", "login_failures_per_address")
    )
    # Registrations (each an Argon2 hash) allowed per client address within the window (s).
    registration_window: int = Field(
        3600, gt=0, validation_alias=env("REGISTRATION_WINDOW", "registration_window")
    )
    registrations_per_address: int = Field(
        20, gt=0, validation_alias=env("REGISTRATIONS_PER_ADDRESS", "registrations_per_address")
    )
    # How long to wait for the tenants service (asked, uncached, at registration, login and
    # refresh: a deleted tenant's users are refused at once).
    tenants_timeout: float = Field(
        2.0, gt=0, validation_alias=env("TENANTS_TIMEOUT", "tenants_timeout")
    )

    # Argon2id cost: OWASP's recommended 19 MiB, 2 passes, 1 lane (RFC 9106's 64 MiB profile
    # would take a login burst far past auth's 150 MB budget). Raise them at will: stored hashes
    # of another cost are upgraded at the user's next login.
    argon2_time_cost: int = Field(
        2, ge=1, validation_alias=env("ARGON2_TIME_COST", "argon2_time_cost")
    )
    argon2_memory_cost: int = Field(
        19456, ge=8, validation_alias=env("ARGON2_MEMORY_COST", "argon2_memory_cost")
    )
    argon2_parallelism: int = Field(
        1, ge=1, validation_alias=env("ARGON2_PARALLELISM", "argon2_parallelism")
    )
    # Hashes computed at once; more logins wait their turn (memory = this x the memory cost).
    argon2_max_concurrent: int = Field(
        2, ge=1, validation_alias=env("ARGON2_MAX_CONCURRENT", "argon2_max_concurrent")
    )

    @model_validator(mode="after")
    def _default_database_url(self) -> Self:
        if not self.database_url:
            # The settings are frozen; filling a derived default once, at validation, is fine.
            object.__setattr__(self, "database_url", self.sqlite_url("auth"))
        return self


@lru_cache
def get_settings() -> AuthSettings:
    return AuthSettings()
