"""deploy/postgres/init-databases.sh against a real PostgreSQL server.

The official image runs the script once, as the superuser, on an empty volume. Here it runs
the same way against the test server, with unique names so parallel runs never collide.
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from common.pytest_plugin import postgres_server_url, require_postgres
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SCRIPT = Path(__file__).resolve().parents[1] / "postgres" / "init-databases.sh"
SERVICES = ("auth", "clinic", "tenants")


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """A unique database (and role) name per service; both dropped afterwards."""
    require_postgres()
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    suffix = uuid.uuid4().hex[:8]
    chosen = {service: f"init_{service}_{suffix}" for service in SERVICES}
    yield chosen
    admin = create_engine(postgres_server_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in chosen.values():
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    admin.dispose()


def run_script(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    server = make_url(postgres_server_url())
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "POSTGRES_USER": server.username or "postgres",
        **({"PGPASSWORD": server.password} if server.password else {}),
        **environment,
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_init_script_creates_one_owned_private_database_per_service(
    names: dict[str, str],
) -> None:
    environment = {f"{s.upper()}_DB_NAME": name for s, name in names.items()}
    # A quote in a password must be quoted, not executed.
    passwords = {"auth": "it's-a-secret", "clinic": "clinic-secret", "tenants": "tenants-secret"}
    environment |= {f"{s.upper()}_DB_PASSWORD": passwords[s] for s in SERVICES}
    result = run_script(environment)
    assert result.returncode == 0, result.stderr

    engine = create_engine(postgres_server_url())
    with engine.connect() as connection:
        for name in names.values():
            role = connection.execute(
                text(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolpassword IS NOT NULL "
                    "FROM pg_authid WHERE rolname = :name"
                ),
                {"name": name},
            ).one()
            assert tuple(role) == (True, False, False, True)
            owner, acl = connection.execute(
                text(
                    "SELECT pg_get_userbyid(datdba), datacl::text[] FROM pg_database "
                    "WHERE datname = :name"
                ),
                {"name": name},
            ).one()
            assert owner == name
            # No entry for PUBLIC (an ACL item starting with "="): other roles cannot connect.
            assert acl is not None
            assert not [item for item in acl if item.startswith("=")], acl
            other = next(n for n in names.values() if n != name)
            assert not connection.execute(
                text("SELECT has_database_privilege(:role, :db, 'CONNECT')"),
                {"role": other, "db": name},
            ).scalar()
    engine.dispose()


def test_init_script_refuses_to_run_without_a_password(names: dict[str, str]) -> None:
    environment = {f"{s.upper()}_DB_NAME": name for s, name in names.items()}
    environment |= {"AUTH_DB_PASSWORD": "a", "CLINIC_DB_PASSWORD": "b"}  # no TENANTS_DB_PASSWORD
    result = run_script(environment)
    assert result.returncode != 0
    assert "TENANTS_DB_PASSWORD is required" in result.stderr
    engine = create_engine(postgres_server_url())
    with engine.connect() as connection:
        created = connection.execute(
            text("SELECT count(*) FROM pg_database WHERE datname = ANY(:names)"),
            {"names": list(names.values())},
        ).scalar()
    engine.dispose()
    assert created == 0, "nothing is created before every password is known"
