"""What every list accepts besides its page (DESIGN.md section 5), parsed the same way everywhere.

``?search=`` (each service says which fields), ``?ordering=name,-created_at`` on listed fields
(unknown ones ignored, as DRF's OrderingFilter does) and ``?updated_after=<ISO date-time>``
for incremental sync (a naive value is UTC; a bad one is a 400 on the parameter).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute, Mapped

from common.db import as_utc
from common.errors import ValidationFailed

INVALID_DATETIME = "Enter a valid date/time."
# More terms than this are ignored: each one is a LIKE over the list, in the count and the page.
MAX_SEARCH_TERMS = 10

Sortable = ColumnElement[Any] | InstrumentedAttribute[Any] | Mapped[Any]


@dataclass(frozen=True, slots=True)
class ListFilters:
    """The parsed parameters (search and ordering still as given: each service applies them)."""

    search: str = ""
    ordering: str = ""
    updated_after: datetime | None = None


# The extended ISO 8601 form DRF accepts: a date, a time to the minute at least, then
# anything fromisoformat reads (seconds, fraction, Z or offset). A bare date or the compact
# 20240301T1030 are refused: a point in time needs its time, written unambiguously.
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?![\d])")


def utc_datetime(text: str) -> datetime:
    """An ISO 8601 date-time as aware UTC (a naive value is UTC); ValueError otherwise."""
    text = text.strip()
    if not ISO_DATETIME.match(text):
        raise ValueError("not an ISO 8601 date-time")
    return as_utc(datetime.fromisoformat(text))


def search_terms(search: str) -> list[str]:
    """``?search=`` as DRF's SearchFilter splits it: on spaces and commas (every term must
    match some field). NUL is dropped: stored text never holds it and PostgreSQL refuses it."""
    return search.replace("\x00", "").replace(",", " ").split()[:MAX_SEARCH_TERMS]


async def list_filters(
    search: Annotated[str, Query(description="Case-insensitive search terms.")] = "",
    ordering: Annotated[str, Query(description="Comma-separated fields, `-` for descending.")] = "",
    updated_after: Annotated[
        str | None, Query(description="Only records updated at or after this ISO date-time.")
    ] = None,
) -> ListFilters:
    """The dependency (no I/O: an ``async def`` runs inline, without a thread hand-off)."""
    since = None
    if updated_after is not None:
        try:
            since = utc_datetime(updated_after)
        except ValueError:
            raise ValidationFailed({"updated_after": INVALID_DATETIME}) from None
    return ListFilters(search=search, ordering=ordering, updated_after=since)


ListFiltersDep = Annotated[ListFilters, Depends(list_filters)]


def order_by(
    ordering: str, columns: Mapping[str, Sortable], tie_breaker: str = "id"
) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``?ordering=``: the fields of ``columns`` in the order given
    (unknown or repeated ones ignored), then ``columns[tie_breaker]`` unless already named, so
    pages never overlap or skip; it takes the last field's direction to keep one index scan."""
    clauses: list[ColumnElement[Any]] = []
    seen: set[str] = set()
    descending = False
    for raw in ordering.split(","):
        term = raw.strip()
        name = term.removeprefix("-")
        column = columns.get(name)
        if column is None or name in seen:
            continue
        seen.add(name)
        descending = term.startswith("-")
        clauses.append(column.desc() if descending else column.asc())
    if tie_breaker not in seen:
        last = columns[tie_breaker]
        clauses.append(last.desc() if descending else last.asc())
    return clauses
