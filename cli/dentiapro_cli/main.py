"""The ``dentiapro`` command: one entry point for the operator's tasks.

Each subcommand reads the services' own settings from the environment (``AUTH_DATABASE_URL``,
``CLINIC_DATABASE_URL``, ``TENANTS_DATABASE_URL``, or SQLite under ``DENTIAPRO_DATA_DIR``), as
the services do.
"""

import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    name="dentiapro",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


@app.callback()
def main() -> None:
    """DentiaPro's operator command (each command has --help).

    It reads the services' settings from the environment, as the services do.
    """


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
