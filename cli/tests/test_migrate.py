"""``dentiapro migrate`` as an operator runs it: the installed command, a real process, real
SQLite files and PostgreSQL databases, with a corrupt tenant between good ones."""

import subprocess
from pathlib import Path
from typing import Protocol

from clinic.schemas import head_revision
from sqlalchemy import create_engine, text

# In clinic's order (default tenant first, then by name): the corrupt one in the middle.
GOOD, BROKEN, LAST = "alpha", "broken", "zulu"


class Installation(Protocol):
    """conftest.Installation, as these tests use it."""

    backend: str
    data_dir: Path
    env: dict[str, str]

    def dentiapro(self, *args: str) -> subprocess.CompletedProcess[str]: ...
    def add_tenant(self, name: str) -> None: ...
    def add_corrupt_tenant(self, name: str) -> None: ...
    def revision(self, name: str) -> str | None: ...


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
