"""How the commands show results, refusals and errors, and the exit code each gets.

Results go to stdout (tables as wide as they need in a pipe or a log); refusals and errors to
stderr: bad input (``ValidationFailed``) under the option it is about, exit 2; what cannot be
done (``Unavailable``), exit 1.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def stdout() -> Console:
    # soft_wrap: a log or a pipe keeps each line whole, however long; tables get the room
    # they need there (80 columns would wrap or cut a domain name).
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 1000
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """It could not be done: why, and exit 1."""
    stderr().print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def refuse(what: str, errors: Mapping[str, Sequence[str]], options: Mapping[str, str]) -> NoReturn:
    """Bad input: each message under the option it is about (the API's field), and exit 2."""
    console = stderr()
    console.print(f"[bold red]{escape(what)}:[/]")
    for field, messages in errors.items():
        for message in messages:
            console.print(f"  {escape(options.get(field, field))}: {escape(message)}")
    raise typer.Exit(2)


@contextmanager
def reported(what: str, options: Mapping[str, str]) -> Iterator[None]:
    """Turn the services' errors into what the operator reads, and the exit code; ``what``
    heads a refusal, ``options`` name the API's fields as the command's options."""
    from common.errors import ValidationFailed

    from dentiapro_cli.services import Unavailable

    try:
        yield
    except ValidationFailed as exc:
        refuse(what, exc.errors, options)
    except Unavailable as exc:
        fail(str(exc))


def when(moment: datetime | None) -> str:
    """A moment for people: ``2026-12-11 21:27 UTC``."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def iso(moment: datetime | None) -> str | None:
    """A moment as the API writes it: ``2026-12-11T21:27:04.189367Z``."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
