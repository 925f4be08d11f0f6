"""``dentiapro migrate``: every database to the latest revision, one step at a time.

Steps: the tenants registry, auth, then each clinic tenant (its schema, or its SQLite file).
Each step is timed and reported on its own line; a failed step is named, and either stops the
run (the default) or is skipped (``--continue-on-error``); the summary names every failure.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from dentiapro_cli import services


class StopMigrating(Exception):
    """A step failed and the run stops there (no ``--continue-on-error``)."""


@dataclass
class Outcome:
    """What a run did: each step's name by result."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # step -> the error, in one line
    skipped: list[str] = field(default_factory=list)  # not tried after a stop

    @property
    def ok(self) -> bool:
        return not self.failed


class Migration:
    def __init__(self, console: Console, *, continue_on_error: bool) -> None:
        self.console = console
        self.continue_on_error = continue_on_error
        self.outcome = Outcome()

    def step(self, label: str, name: str, run: Callable[[], object]) -> None:
        """Run one step and report it; raise StopMigrating when it fails and runs stop."""
        started = time.perf_counter()
        try:
            run()
        except Exception as exc:
            elapsed = time.perf_counter() - started
            error = services.one_line(exc)
            self.outcome.failed[name] = error
            self.console.print(
                f"{escape(label)} [bold red]FAILED[/] ({elapsed:.2f} s): {escape(error)}"
            )
            if not self.continue_on_error:
                raise StopMigrating(name) from exc
            return
        elapsed = time.perf_counter() - started
        self.outcome.done.append(name)
        self.console.print(f"{escape(label)} [green]ok[/] ({elapsed:.2f} s)")

    def services(self) -> None:
        self.step("tenants registry", "tenants registry", services.migrate_tenants_registry)
        self.step("auth", "auth", services.migrate_auth)

    def clinic(self, names: list[str], migrate: Callable[[str], object]) -> None:
        total = len(names)
        self.console.print(f"clinic: {total} tenant{'s' if total != 1 else ''}")
        columns = (
            TextColumn("clinic tenants"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
        )
        # On a terminal the bar stays at the bottom while each tenant's line prints above it;
        # in a log (a container, CI) only the lines are written.
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("", total=total)
            for number, tenant in enumerate(names, start=1):
                progress.update(task, description=tenant)
                try:
                    self.step(f"[{number}/{total}] {tenant}", tenant, partial(migrate, tenant))
                except StopMigrating:
                    self.outcome.skipped = names[number:]
                    raise
                progress.advance(task)

    def summary(self) -> None:
        failed = self.outcome.failed
        if not failed:
            self.console.print(f"[green]all {len(self.outcome.done)} steps done[/]")
            return
        self.console.print(
            f"[bold red]{len(failed)} failed[/], {len(self.outcome.done)} done"
            + (f", {len(self.outcome.skipped)} not tried" if self.outcome.skipped else "")
            + ":"
        )
        for name, error in failed.items():
            self.console.print(f"  {escape(name)}: {escape(error)}")
        if self.outcome.skipped:
            self.console.print(
                "  not tried (run again, or with --continue-on-error): "
                + escape(", ".join(self.outcome.skipped))
            )


def unknown_tenants(requested: Iterable[str], known: list[str]) -> list[str]:
    return [name for name in requested if name not in known]
