"""``dentiapro tenants list|create``: the registry read and written with the tenants service's
own rules, on SQLite (under DENTIAPRO_DATA_DIR) and PostgreSQL (TENANTS_DATABASE_URL)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from common.testing import free_port

DENTIAPRO = Path(sys.executable).parent / "dentiapro"


class Installation(Protocol):
    """conftest.Installation, as these tests use it."""

    backend: str
    data_dir: Path
    env: dict[str, str]

    def dentiapro(self, *args: str) -> subprocess.CompletedProcess[str]: ...
    def migrate_registry(self) -> None: ...
    def delete_tenant(self, schema_name: str) -> None: ...
    def count(self, service: str, table: str) -> int: ...


def create(installation: Installation, schema_name: str, name: str, domain: str) -> str:
    done = installation.dentiapro(
        "tenants", "create", "--schema-name", schema_name, "--name", name, "--domain", domain
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused(installation: Installation, *args: str) -> list[str]:
    """The lines of a ``tenants create`` refused as bad input (exit 2, nothing on stdout)."""
    done = installation.dentiapro("tenants", "create", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_created_tenants_are_listed_and_deleted_ones_only_with_all(
    installation: Installation,
) -> None:
    installation.migrate_registry()
    empty = installation.dentiapro("tenants", "list")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "no live tenants\n"

    out = create(installation, "lyon", "  Cabinet Dentaire Lyon ", "Lyon.Dentiapro.Example")
    assert out.splitlines() == [
        "tenant lyon created (id 1): Cabinet Dentaire Lyon, at lyon.dentiapro.example",
        "Invite its first admin: dentiapro invite --tenant lyon --email <their email> --role admin",
    ]
    create(installation, "nice", "Cabinet de Nice", "nice.dentiapro.example")
    installation.delete_tenant("nice")

    listed = installation.dentiapro("tenants", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "schema_name", "name", "domain_url", "created"]
    assert len(rows) == 1
    assert rows[0].split()[:6] == [
        "1",
        "lyon",
        "Cabinet",
        "Dentaire",
        "Lyon",
        "lyon.dentiapro.example",
    ]

    everything = installation.dentiapro("tenants", "list", "--all")
    assert everything.returncode == 0, everything.stderr
    header, *rows = everything.stdout.splitlines()
    assert header.split()[-1] == "status"
    assert [(row.split()[1], row.split()[-1]) for row in rows] == [
        ("lyon", "live"),
        ("nice", "deleted"),
    ]

    as_json = installation.dentiapro("tenants", "list", "--all", "--json")
    assert as_json.returncode == 0, as_json.stderr
    lyon, nice = json.loads(as_json.stdout)
    assert {k: lyon[k] for k in ("id", "schema_name", "name", "domain_url", "status")} == {
        "id": 1,
        "schema_name": "lyon",
        "name": "Cabinet Dentaire Lyon",
        "domain_url": "lyon.dentiapro.example",
        "status": "live",
    }
    assert lyon["created_at"].endswith("Z")
    assert lyon["deleted_at"] is None
    assert nice["status"] == "deleted"
    assert nice["deleted_at"].endswith("Z")
    assert json.loads(installation.dentiapro("tenants", "list", "--json").stdout) == [lyon]


def test_create_refuses_what_the_api_refuses_per_option_and_writes_nothing(
    installation: Installation,
) -> None:
    installation.migrate_registry()
    create(installation, "lyon", "Cabinet Dentaire Lyon", "lyon.dentiapro.example")
    create(installation, "gone", "Closed practice", "gone.dentiapro.example")
    installation.delete_tenant("gone")

    shapes = refused(
        installation, "--schema-name", "Lyon-2", "--name", " ", "--domain", "https://x/"
    )
    assert shapes[0] == "the tenant was not created:"
    assert sorted(shapes[1:]) == [
        "  --domain: Enter a valid hostname (such as clinic.example.com): no scheme, port, path "
        "or spaces.",
        "  --name: This field may not be blank.",
        "  --schema-name: Enter a valid schema name: a lower-case letter followed by up to 62 "
        "lower-case letters, digits or underscores.",
    ]
    for reserved in ("public", "auth"):
        assert refused(
            installation, "--schema-name", reserved, "--name", "X", "--domain", "x.example"
        )[1:] == ["  --schema-name: This schema name is reserved."]
    assert refused(
        installation, "--schema-name", "pg_lyon", "--name", "X", "--domain", "x.example"
    )[1:] == ["  --schema-name: Schema names starting with pg_ are reserved."]
    # A deleted tenant's schema_name is never reused; a live tenant's domain is taken.
    assert refused(
        installation, "--schema-name", "gone", "--name", "X", "--domain", "LYON.dentiapro.example"
    )[1:] == [
        "  --schema-name: tenant with this schema name already exists.",
        "  --domain: tenant with this domain url already exists.",
    ]
    # A deleted tenant's domain is free again, as through the API.
    create(installation, "lyon_2", "Cabinet Lyon 2", "gone.dentiapro.example")

    missing = installation.dentiapro("tenants", "create", "--schema-name", "x", "--name", "X")
    assert missing.returncode == 2
    assert "Missing option '--domain'" in missing.stderr
    assert installation.count("tenants", "tenant") == 3


def test_a_registry_not_migrated_is_named_and_left_as_it_was(installation: Installation) -> None:
    for args in (["list"], ["create", "--schema-name", "x", "--name", "X", "--domain", "x.test"]):
        done = installation.dentiapro("tenants", *args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "error: the tenants registry (" in done.stderr
        assert "is not migrated: run `dentiapro migrate`" in done.stderr
    if installation.backend == "sqlite":
        assert not (installation.data_dir / "tenants.sqlite3").exists()  # none created by looking


def test_an_unreachable_registry_is_named_with_its_url_but_not_its_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg2://tenants:s3cret@127.0.0.1:{free_port()}/tenants"
    done = subprocess.run(
        [str(DENTIAPRO), "tenants", "list"],
        env={"TENANTS_DATABASE_URL": url, "DENTIAPRO_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "error: cannot reach the tenants registry (postgresql+psycopg2://tenants:***@"
        in done.stderr
    )
    assert "s3cret" not in done.stderr
