"""``dentiapro migrate`` as an operator runs it: the installed command, a real process, real
SQLite files and PostgreSQL databases, with a corrupt tenant between good ones."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from clinic.schemas import head_revision
from common.pytest_plugin import DatabaseUrlFactory
from sqlalchemy import create_engine, text

DENTIAPRO = Path(sys.executable).parent / "dentiapro"
SERVICES = ("auth", "clinic", "tenants")
# In clinic's order (default tenant first, then by name): the corrupt one in the middle.
GOOD, BROKEN, LAST = "alpha", "broken", "zulu"


class Installation:
    """The databases of one DentiaPro installation on a backend, and the command run on them."""

    def __init__(self, backend: str, data_dir: Path, urls: dict[str, str]) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
        self.env.update({"DENTIAPRO_DATA_DIR": str(data_dir), "LOG_LEVEL": "INFO"})
        self.env.update({f"{name.upper()}_DATABASE_URL": url for name, url in urls.items()})
        self.clinic_url = urls.get("clinic")

    def dentiapro(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DENTIAPRO), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    # --- clinic tenants, as an operator's data would hold them ---

    def add_tenant(self, name: str) -> None:
        """A tenant with clinic data not yet migrated (an empty schema or file)."""
        if self.clinic_url is None:
            self._sqlite_file(name).touch()
            return
        self._sql(
            f'CREATE SCHEMA "{name}"',
            f'CREATE TABLE "{name}".alembic_version (version_num varchar(32) PRIMARY KEY)',
        )

    def add_corrupt_tenant(self, name: str) -> None:
        """A tenant whose migration fails: not a database file; a schema whose tables clash."""
        if self.clinic_url is None:
            self._sqlite_file(name).write_bytes(b"this is not an SQLite database " * 64)
            return
        self.add_tenant(name)
        self._sql(f'CREATE TABLE "{name}".cabinet (id integer)')

    def revision(self, name: str) -> str | None:
        """The clinic revision of tenant ``name`` (None: not migrated)."""
        if self.clinic_url is None:
            with sqlite3.connect(self._sqlite_file(name)) as connection:
                found = connection.execute(
                    "SELECT name FROM sqlite_master WHERE name = 'alembic_version'"
                ).fetchone()
                if found is None:
                    return None
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                return None if row is None else str(row[0])
        engine = create_engine(self.clinic_url)
        try:
            with engine.connect() as connection:
                value = connection.execute(
                    text(f'SELECT version_num FROM "{name}".alembic_version')
                ).scalar()
                return None if value is None else str(value)
        finally:
            engine.dispose()

    def _sqlite_file(self, name: str) -> Path:
        directory = self.data_dir / "clinic"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{name}.sqlite3"

    def _sql(self, *statements: str) -> None:
        assert self.clinic_url is not None
        engine = create_engine(self.clinic_url)
        try:
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))
        finally:
            engine.dispose()


@pytest.fixture
def installation(backend: str, database_url: DatabaseUrlFactory, tmp_path: Path) -> Installation:
    urls = {name: database_url(name) for name in SERVICES} if backend == "postgresql" else {}
    return Installation(backend, tmp_path / "data", urls)


def test_help_runs_nothing(installation: Installation) -> None:
    for args in ([], ["--help"], ["migrate", "--help"]):
        done = installation.dentiapro(*args)
        assert done.returncode in {0, 2}, done.stderr  # no command: the help, as a usage error
        assert "Usage: dentiapro" in done.stdout + done.stderr
    assert "--continue-on-error" in installation.dentiapro("migrate", "--help").stdout
    assert not installation.data_dir.exists()  # no SQLite file was even opened
    if installation.backend == "postgresql":
        engine = create_engine(installation.env["AUTH_DATABASE_URL"])
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
            ).scalar_one()
        engine.dispose()
        assert tables == 0


def test_every_database_and_tenant_is_migrated_with_a_line_each(
    installation: Installation,
) -> None:
    done = installation.dentiapro("migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tenants registry ok (")
    assert lines[1].startswith("auth ok (")
    assert "clinic: 1 tenant" in lines
    assert any(line.startswith("[1/1] public ok (") and line.endswith(" s)") for line in lines)
    assert "all 3 steps done" in done.stdout
    # The services' own log lines are shown, naming the tenant.
    assert "tenant" in done.stderr
    assert "(tenant public)" in done.stderr
    assert installation.revision("public") == head_revision()
    installation.add_tenant(GOOD)
    again = installation.dentiapro("migrate")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[1/2] public ok (" in again.stdout
    assert "[2/2] alpha ok (" in again.stdout
    assert installation.revision(GOOD) == head_revision()


def test_a_corrupt_tenant_in_the_middle(installation: Installation) -> None:
    """Named and stopping the run; skipped with --continue-on-error; never touched when
    --tenant names others; an unknown --tenant refused before any clinic migration."""
    installation.add_tenant(GOOD)
    installation.add_corrupt_tenant(BROKEN)
    installation.add_tenant(LAST)

    done = installation.dentiapro("migrate")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "clinic: 4 tenants" in out
    assert "[2/4] alpha ok (" in out
    assert f"[3/4] {BROKEN} FAILED (" in out
    assert "[4/4]" not in out
    assert f"1 failed, 4 done, 1 not tried:\n  {BROKEN}: " in out
    assert f"not tried (run again, or with --continue-on-error): {LAST}" in out
    assert "Background on this error" not in out
    assert installation.revision(GOOD) == head_revision()
    assert installation.revision(LAST) is None  # stopped before it

    unknown = installation.dentiapro("migrate", "--tenant", "nowhere", "--tenant", LAST)
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "no clinic data for nowhere" in unknown.stdout
    assert "[1/" not in unknown.stdout
    assert installation.revision(LAST) is None

    going_on = installation.dentiapro("migrate", "--continue-on-error")
    assert going_on.returncode == 1, going_on.stdout + going_on.stderr
    assert f"[3/4] {BROKEN} FAILED (" in going_on.stdout
    assert f"[4/4] {LAST} ok (" in going_on.stdout
    summary = going_on.stdout.split("1 failed, 5 done:\n", 1)[1].splitlines()
    assert len(summary) == 1
    assert summary[0].startswith(f"  {BROKEN}: ")
    assert installation.revision(LAST) == head_revision()

    chosen = installation.dentiapro("migrate", "--tenant", LAST, "-t", GOOD)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "clinic: 2 tenants" in chosen.stdout
    assert f"[1/2] {GOOD} ok (" in chosen.stdout
    assert f"[2/2] {LAST} ok (" in chosen.stdout
    assert BROKEN not in chosen.stdout
