"""``dentiapro invite``: an invitation for onboarding without a superuser token, checked
against the tenants registry, and usable at a real auth server."""

import json
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import httpx

PASSWORD = "molar-crown-42-lyon"


class Installation(Protocol):
    """conftest.Installation, as these tests use it."""

    backend: str
    data_dir: Path

    def dentiapro(self, *args: str) -> subprocess.CompletedProcess[str]: ...
    def migrate_registry(self) -> None: ...
    def migrate_auth(self) -> None: ...
    def delete_tenant(self, schema_name: str) -> None: ...
    def count(self, service: str, table: str) -> int: ...


class Services(Protocol):
    """conftest.Services: clients on the real auth and tenants services."""

    auth: httpx.Client
    tenants: httpx.Client


RunServices = Callable[..., AbstractContextManager[Services]]


def register(auth: httpx.Client, username: str, email: str, token: str) -> httpx.Response:
    body = {"username": username, "password": PASSWORD, "email": email, "invitation": token}
    return auth.post("/api/auth/register/", json=body)


def refused(installation: Installation, *args: str) -> list[str]:
    """The lines of an ``invite`` refused as bad input (exit 2, nothing on stdout)."""
    done = installation.dentiapro("invite", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "no invitation was created:"
    return lines[1:]


def test_a_printed_invitation_registers_the_practice_admin_at_auth(
    installation: Installation, services: RunServices
) -> None:
    """Onboarding without a superuser token: the tenant and its first admin's invitation from
    the command, the registration at a real auth server that asks the real registry."""
    with services() as running:
        created = installation.dentiapro(
            "tenants", "create", "--schema-name", "lyon", "--name", "Lyon", "--domain", "lyon.test"
        )
        assert created.returncode == 0, created.stderr

        done = installation.dentiapro(
            "invite", "--tenant", "lyon", "--email", "Martin@Example.com", "--role", "admin"
        )

        assert done.returncode == 0, done.stdout + done.stderr
        summary, token, how = done.stdout.splitlines()
        assert summary.startswith(
            "invitation 1: Martin@example.com, admin of lyon, usable once until "
        )
        assert summary.endswith(" UTC. Its token (shown only now):")
        assert '"email": "Martin@example.com"' in how
        response = register(running.auth, "dr.martin", "martin@example.com", token)
        assert response.status_code == 201, response.text
        user = response.json()
        assert (user["tenant"], user["role"], user["is_active"]) == ("lyon", "admin", True)
        login = {"username": "dr.martin", "password": PASSWORD}
        assert running.auth.post("/api/auth/login/", json=login).status_code == 200
        # Single use, as any invitation.
        again = register(running.auth, "dr.martin2", "martin@example.com", token)
        assert again.status_code == 400
        assert "invitation" in again.json()

        # --json: the API's answer to POST /api/auth/invitations/, for scripts.
        scripted = installation.dentiapro(
            "invite", "-t", "lyon", "--email", "leroy@example.com", "--role", "staff", "--json"
        )
        assert scripted.returncode == 0, scripted.stderr
        invitation = json.loads(scripted.stdout)
        assert set(invitation) == {
            "id",
            "email",
            "role",
            "tenant",
            "token",
            "expires_at",
            "created_at",
            "updated_at",
        }
        assert (invitation["tenant"], invitation["role"]) == ("lyon", "staff")
        staff = register(running.auth, "dr.leroy", "leroy@example.com", invitation["token"])
        assert staff.status_code == 201, staff.text
        assert staff.json()["role"] == "staff"


def test_bad_input_and_unknown_or_deleted_tenants_are_refused_and_nothing_is_written(
    installation: Installation,
) -> None:
    installation.migrate_registry()
    done = installation.dentiapro(
        "tenants", "create", "--schema-name", "gone", "--name", "Gone", "--domain", "gone.test"
    )
    assert done.returncode == 0, done.stderr
    installation.delete_tenant("gone")

    # Before auth's database exists: said so, and nothing is created by looking.
    not_migrated = installation.dentiapro(
        "invite", "--tenant", "public", "--email", "a@example.com", "--role", "admin"
    )
    assert not_migrated.returncode == 1, not_migrated.stdout + not_migrated.stderr
    assert "error: the auth database (" in not_migrated.stderr
    assert "is not migrated: run `dentiapro migrate`" in not_migrated.stderr
    if installation.backend == "sqlite":
        assert not (installation.data_dir / "auth.sqlite3").exists()
    installation.migrate_auth()

    assert refused(installation, "--tenant", "x", "--email", "no-at", "--role", "boss") == [
        "  --email: Enter a valid email address.",
        '  --role: "boss" is not a valid choice.',
    ]
    assert refused(
        installation, "--tenant", " ", "--email", "a@example.com", "--role", "staff"
    ) == ["  --tenant: This field may not be blank."]
    assert refused(
        installation, "--tenant", "nowhere", "--email", "a@example.com", "--role", "admin"
    ) == [
        '  --tenant: Unknown tenant "nowhere": `dentiapro tenants list` shows the tenants, '
        "`dentiapro tenants create` adds one."
    ]
    deleted = refused(
        installation, "--tenant", "gone", "--email", "a@example.com", "--role", "admin"
    )
    assert len(deleted) == 1
    assert deleted[0].startswith('  --tenant: Tenant "gone" was deleted on ')
    assert deleted[0].endswith(" UTC: nobody can join it.")
    assert installation.count("auth", "invitation") == 0

    # The default tenant always exists: the registry creates its row when it first starts,
    # which it has not done here.
    default = installation.dentiapro(
        "invite", "--tenant", "public", "--email", "a@example.com", "--role", "admin"
    )
    assert default.returncode == 0, default.stdout + default.stderr
    assert installation.count("auth", "invitation") == 1
