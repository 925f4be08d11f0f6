"""The ``dentiapro`` command: one entry point for the operator's tasks.

Each subcommand reads the services' own settings from the environment (``AUTH_DATABASE_URL``,
``CLINIC_DATABASE_URL``, ``TENANTS_DATABASE_URL``, or SQLite under ``DENTIAPRO_DATA_DIR``), as
the services do, and works on their databases directly: the services may be up or down.

Exit codes: 0 done; 1 it could not be done (a database unreachable or not migrated, a key that
cannot be rotated from here, a failed migration); 2 bad input (as the API's 400: each field
named by its option), nothing written.
"""

import json
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dentiapro_cli import report

app = typer.Typer(
    name="dentiapro",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help as Markdown: a docstring's wrapped lines make one paragraph on any terminal.
    rich_markup_mode="markdown",
)


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to ``sys.stderr`` as it is when a record comes: while the progress bar shows,
    Rich replaces it, so log lines print above the bar instead of over it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class _LogFormatter(logging.Formatter):
    """Plain lines for a person (the services log JSON); a record's tenant is named."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tenant = getattr(record, "tenant", None)
        return f"{line} (tenant {tenant})" if tenant else line


def configure_logging(verbose: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(_LogFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # Alembic says three lines per tenant schema: only with --verbose.
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)


tenants_app = typer.Typer(
    name="tenants", no_args_is_help=True, help="The tenant registry: list and create tenants."
)
keys_app = typer.Typer(name="keys", no_args_is_help=True, help="auth's token signing key.")
app.add_typer(tenants_app)
app.add_typer(keys_app)


@app.callback()
def main() -> None:
    """DentiaPro's operator command (each command has --help).

    It reads the services' settings from the environment, as the services do, and works on
    their databases directly, whether the services run or not.
    """


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead.")]


@app.command()
def migrate(
    tenant: Annotated[
        list[str] | None,
        typer.Option(
            "--tenant",
            "-t",
            metavar="SCHEMA_NAME",
            help="Migrate only this clinic tenant (repeat for several). The tenants registry "
            "and auth are migrated in any case.",
        ),
    ] = None,
    continue_on_error: Annotated[
        bool,
        typer.Option(
            "--continue-on-error",
            help="Go on with the next step after a failure (default: stop at the first).",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show Alembic's own lines.")
    ] = False,
) -> None:
    """Bring every database to the latest revision.

    The tenants registry, auth, then each clinic tenant, one by one, each on its own line with
    its time. Exits 1 when any step failed, naming each (2 for an unknown --tenant).
    """
    from dentiapro_cli.migrate import Migration, StopMigrating, unknown_tenants
    from dentiapro_cli.services import clinic_tenants

    configure_logging(verbose)
    # soft_wrap: a log (container, CI) keeps each step on one line, however long.
    console = Console(highlight=False, soft_wrap=True)
    run = Migration(console, continue_on_error=continue_on_error)
    try:
        run.services()
        with clinic_tenants() as clinic:
            names = clinic.names
            if tenant:
                if unknown := unknown_tenants(tenant, names):
                    console.print(
                        f"[bold red]no clinic data for {', '.join(unknown)}[/] (a tenant's "
                        "schema is created on its first request); known: " + ", ".join(names)
                    )
                    raise typer.Exit(2)
                names = [name for name in names if name in tenant]
            run.clinic(names, clinic.migrate)
    except StopMigrating:
        pass
    run.summary()
    if not run.outcome.ok:
        raise typer.Exit(1)


# ---- tenants ------------------------------------------------------------------------------

TENANT_OPTIONS = {"schema_name": "--schema-name", "name": "--name", "domain_url": "--domain"}


@tenants_app.command("list")
def list_tenants(
    include_deleted: Annotated[
        bool,
        typer.Option(
            "--all", help="Also the deleted tenants (their schema_name can never be used again)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The tenants in the registry, oldest first: schema_name, name, domain.

    Read from the tenants database (TENANTS_DATABASE_URL, or SQLite under DENTIAPRO_DATA_DIR).
    """
    from dentiapro_cli import services

    with report.reported("cannot list the tenants", TENANT_OPTIONS):
        found = services.list_tenants(include_deleted=include_deleted)
    console = report.stdout()
    if as_json:
        fields = ("id", "schema_name", "name", "domain_url")
        dates = ("created_at", "updated_at", "deleted_at")
        rows = [
            {
                **{field: getattr(tenant, field) for field in fields},
                "status": _status(tenant.is_active),
                **{field: report.iso(getattr(tenant, field)) for field in dates},
            }
            for tenant in found
        ]
        console.print_json(json.dumps(rows), highlight=False)
        return
    if not found:
        console.print("no tenants" if include_deleted else "no live tenants")
        return
    table = Table("id", "schema_name", "name", "domain_url", "created", box=None, pad_edge=False)
    if include_deleted:
        table.add_column("status")
    for tenant in found:
        cells = [
            str(tenant.id),
            tenant.schema_name,
            tenant.name,
            tenant.domain_url,
            f"{tenant.created_at:%Y-%m-%d}",
        ]
        if include_deleted:
            cells.append(_status(tenant.is_active))
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)


def _status(is_active: bool) -> str:
    return "live" if is_active else "deleted"


@tenants_app.command("create")
def create_tenant(
    schema_name: Annotated[
        str,
        typer.Option(
            "--schema-name",
            help="Its clinic schema (and the token's tenant claim): a lower-case letter, then "
            "lower-case letters, digits, underscores. Fixed for ever.",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="The practice's name, for people.")],
    domain: Annotated[
        str,
        typer.Option(
            "--domain",
            help="The hostname its frontend is served on (no scheme, port or path): "
            "registrations on it join this tenant.",
        ),
    ],
) -> None:
    """Register a practice, by the rules of POST /api/tenants/.

    Bad or taken values are named per option (exit 2) and nothing is written. Then invite its
    first admin with `dentiapro invite`.
    """
    from dentiapro_cli import services

    with report.reported("the tenant was not created", TENANT_OPTIONS):
        tenant = services.create_tenant(schema_name=schema_name, name=name, domain_url=domain)
    console = report.stdout()
    console.print(
        f"tenant [bold]{escape(tenant.schema_name)}[/] created (id {tenant.id}): "
        f"{escape(tenant.name)}, at {escape(tenant.domain_url)}"
    )
    console.print(
        "Invite its first admin: dentiapro invite --tenant "
        f"{escape(tenant.schema_name)} --email <their email> --role admin"
    )


# ---- invitations --------------------------------------------------------------------------

INVITE_OPTIONS = {"email": "--email", "role": "--role", "tenant": "--tenant"}


@app.command()
def invite(
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", metavar="SCHEMA_NAME", help="The practice to join.")
    ],
    email: Annotated[
        str, typer.Option("--email", help="The invited person's email: they register with it.")
    ],
    role: Annotated[str, typer.Option("--role", help="admin or staff.")],
    as_json: JsonOption = False,
) -> None:
    """Invite someone into a practice (no superuser token needed): prints the invitation.

    Its token is shown only here, works once, and stays valid INVITATION_LIFETIME seconds
    (7 days by default). The tenant must be live in the registry. Registering with the token
    (POST /api/auth/register/ with "invitation") creates the user active, with this role.
    """
    from dentiapro_cli import services

    with report.reported("no invitation was created", INVITE_OPTIONS):
        data = services.invitation_request(email=email, role=role, tenant=tenant)
        services.require_live_tenant(data)
        created = services.invite(data)
    console = report.stdout()
    if as_json:
        console.print_json(created.model_dump_json(), highlight=False)
        return
    console.print(
        f"invitation {created.id}: {escape(created.email)}, {created.role.value} of "
        f"[bold]{escape(created.tenant)}[/], usable once until "
        f"{report.when(created.expires_at)}. Its token (shown only now):"
    )
    console.print(escape(created.token))
    console.print(
        f"They register with it and this email: POST /api/auth/register/ with username, "
        f'password, "email": "{escape(created.email)}" and "invitation": the token.'
    )


# ---- the signing key ----------------------------------------------------------------------


@keys_app.command("rotate")
def rotate_key() -> None:
    """Replace auth's signing key with a new one; nobody is logged out.

    The new public key is published first, then the key file (JWT_PRIVATE_KEY_FILE, or
    jwt-private-key.pem in DENTIAPRO_DATA_DIR) is replaced; each auth process signs with it
    within JWT_KEY_RELOAD_INTERVAL + JWKS_REFETCH_INTERVAL seconds. The previous key stays in the JWKS until the last
    token it signed has expired. A key from JWT_PRIVATE_KEY, or a read-only file (a mounted
    secret), is rotated by replacing the secret instead: exit 1, saying so.
    """
    from auth.keys import KeyRotationError

    from dentiapro_cli import services

    with report.reported("the signing key was not rotated", {}):
        try:
            rotated = services.rotate_signing_key()
        except KeyRotationError as exc:
            report.fail(f"the signing key was not rotated: {exc}")
    settings = services.auth_settings()
    console = report.stdout()
    console.print(
        f"signing key rotated: [bold]{rotated.kid}[/] replaces {rotated.previous_kid} "
        f"in {escape(str(rotated.key_file))}"
    )
    reload, refetch = settings.jwt_key_reload_interval, settings.jwks_refetch_interval
    console.print(
        f"Running auth processes sign with the new key within {reload + refetch:g} s "
        "(JWT_KEY_RELOAD_INTERVAL to see it, then JWKS_REFETCH_INTERVAL so that every verifier "
        "can fetch it first); auth started later signs with it from the start. Nobody is "
        "logged out: tokens signed with the previous key keep verifying, and it stays in the "
        f"JWKS until the last of them has expired (at most {settings.refresh_token_lifetime} s, "
        "REFRESH_TOKEN_LIFETIME)."
    )
