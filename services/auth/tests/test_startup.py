"""Start-up: migrations, the platform superuser, settings from the environment, health."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from auth.db import create_engine, migrate
from auth.models import Role, User
from auth.settings import AuthSettings
from common.pytest_plugin import drop_postgres_database
from common.testing import free_port
from sqlalchemy import inspect, text
from sqlmodel import Session, select

StartAuth = Callable[..., httpx.Client]
MakeUser = Callable[..., User]
Login = Callable[..., dict[str, str]]


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/login/", json={"username": username, "password": password})


def _me(client: httpx.Client, access: str) -> dict[str, object]:
    response = client.get("/api/auth/me/", headers={"Authorization": f"Bearer {access}"})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_superuser_is_created_at_start_up(
    client: httpx.Client, login: Login, superuser: tuple[str, str]
) -> None:
    me = _me(client, login(client, *superuser)["access"])

    assert me["username"] == superuser[0]
    assert me["is_superuser"] is True
    assert me["is_active"] is True
    assert me["role"] == "admin"
    assert me["tenant"] == "public"


def test_restart_with_a_new_password_updates_the_superuser(
    start_auth: StartAuth, superuser: tuple[str, str], login: Login, db: Session
) -> None:
    start_auth()
    username, old_password = superuser

    client = start_auth(admin_password="a-brand-new-password-7")

    assert _login(client, username, old_password).status_code == 401
    login(client, username, "a-brand-new-password-7")
    assert len(db.exec(select(User).where(User.username == username)).all()) == 1


def test_an_existing_account_named_as_admin_is_never_promoted_start_up_fails(
    auth_settings: Callable[..., AuthSettings],
    auth_database_url: str,
    make_user: MakeUser,
    db: Session,
    tmp_path: Path,
) -> None:
    """Whoever registered the name first would get a superuser at its next refresh."""
    boss = make_user("boss", tenant="clinic_z", role=Role.STAFF, is_active=True)
    environment = {
        **os.environ,
        "AUTH_DATABASE_URL": auth_database_url,
        "DENTIAPRO_DATA_DIR": str(tmp_path),
        "DENTIAPRO_ADMIN_USERNAME": "BOSS",
        "DENTIAPRO_ADMIN_PASSWORD": "boss-password-42",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "1024",
    }
    command = [sys.executable, "-m", "uvicorn", "auth.main:create_app", "--factory"]

    started = subprocess.run(
        [*command, "--port", str(free_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert started.returncode != 0
    assert (
        'DENTIAPRO_ADMIN_USERNAME "boss" names an existing account that is not a superuser'
        in started.stderr
    ), started.stderr
    db.expire_all()
    unchanged = db.get(User, boss.id)
    assert unchanged is not None
    assert (unchanged.is_superuser, unchanged.tenant, unchanged.role) == (
        False,
        "clinic_z",
        "staff",
    )


def test_no_superuser_without_both_variables(
    start_auth: StartAuth, db: Session, superuser: tuple[str, str]
) -> None:
    start_auth(admin_username=superuser[0], admin_password=None)

    assert db.exec(select(User)).all() == []


def test_migrate_creates_the_tables_and_is_idempotent(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    settings = auth_settings()

    migrate(settings)
    migrate(settings)

    engine = create_engine(settings)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "user", "invitation", "refresh_token", "published_key", "login_failure",
        "registration_attempt", "alembic_version",
    } <= tables  # fmt: skip


def test_a_database_migrated_by_a_newer_release_is_used_as_it_is(
    auth_settings: Callable[..., AuthSettings],
    start_auth: StartAuth,
    superuser: tuple[str, str],
) -> None:
    """A rollback: a later release migrated the database to a revision this one does not
    know. Migrations are expand-then-contract, so this release starts and serves on it
    instead of failing its start-up (Alembic cannot locate the revision)."""
    settings = auth_settings()
    migrate(settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))

    client = start_auth()

    assert client.get("/health/").status_code == 200
    assert _login(client, *superuser).status_code == 200
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert version == "f00dfeedbeef"


def test_health_reports_the_database(client: httpx.Client) -> None:
    health = client.get("/health/")
    live = client.get("/health/live")

    assert health.status_code == 200
    assert health.json()["status"] == "pass"
    assert health.json()["service"] == "auth"
    assert health.json()["checks"]["database"]["status"] == "pass"
    assert live.status_code == 200


def test_metrics_carry_the_auth_counters(
    client: httpx.Client, login: Login, superuser: tuple[str, str]
) -> None:
    login(client, *superuser)

    text = client.get("/metrics/").text

    assert 'auth_logins_total{result="success"}' in text
    assert 'auth_tokens_issued_total{token_type="refresh"}' in text


def test_settings_come_from_the_documented_environment_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.pem"
    environment = {
        "DENTIAPRO_DATA_DIR": str(tmp_path),
        "ACCESS_TOKEN_LIFETIME": "120",
        "REFRESH_TOKEN_LIFETIME": "3600",
        "DENTIAPRO_ADMIN_USERNAME": "ops",
        "DENTIAPRO_ADMIN_PASSWORD": "ops-secret-password",
        "JWT_PRIVATE_KEY_FILE": str(key_file),
        "TENANTS_URL": "http://tenants.internal:8003",
        "DENTIAPRO_DEFAULT_TENANT": "main",
        "LOGIN_FAILURES_PER_USERNAME": "5",
        "JWT_GENERATE_KEY": "false",
        "JWT_KEY_RELOAD_INTERVAL": "30",
        "INVITATION_LIFETIME": "3600",
        "REGISTRATIONS_PER_ADDRESS": "7",
        "REGISTRATION_WINDOW": "600",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUTH_DATABASE_URL", raising=False)

    settings = AuthSettings()

    assert settings.database_url == f"sqlite:///{(tmp_path / 'auth.sqlite3').resolve()}"
    assert settings.access_token_lifetime == 120
    assert settings.refresh_token_lifetime == 3600
    assert settings.admin_username == "ops"
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "ops-secret-password"
    assert "ops-secret-password" not in repr(settings)
    assert settings.jwt_private_key_file == key_file
    assert settings.tenants_url == "http://tenants.internal:8003"
    assert settings.default_tenant == "main"
    assert settings.login_failures_per_username == 5
    assert settings.login_failure_window == 300
    assert settings.login_failures_per_address == 50
    assert settings.jwt_generate_key is False
    assert settings.jwt_key_reload_interval == 30
    assert settings.invitation_lifetime == 3600
    assert (settings.registrations_per_address, settings.registration_window) == (7, 600)

    monkeypatch.setenv("AUTH_DATABASE_URL", "postgresql+psycopg2://db/auth")
    assert AuthSettings().database_url == "postgresql+psycopg2://db/auth"


def test_a_lost_database_is_a_503_never_a_500(
    backend: str, client: httpx.Client, auth_database_url: str, password: str
) -> None:
    if backend != "postgresql":
        pytest.skip("an open SQLite file cannot be taken away from its connections")
    drop_postgres_database(auth_database_url)

    login = client.post("/api/auth/login/", json={"username": "anyone", "password": password})
    health = client.get("/health/")

    assert login.status_code == 503
    assert login.json() == {"detail": "Database unavailable, try again shortly."}
    assert health.status_code == 503
    assert health.json()["checks"]["database"]["status"] == "fail"
