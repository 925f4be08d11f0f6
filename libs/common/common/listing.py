"""Every list of every service, one pipeline: parse the query, filter, count, page, link.

DESIGN.md section 5, as DRF does it: ``?page=`` (from 1, or ``last``) and ``?page_size=``
(``common.pagination``); ``?search=`` (each resource says which fields); ``?ordering=name,
-created_at`` on listed fields (unknown ones ignored, as DRF's OrderingFilter does);
``?updated_after=<ISO date-time>`` for incremental sync (a naive value is UTC; a bad one is a
400 on the parameter).

A resource declares how it is listed once (``Listing``); a route takes ``ListQueryDep`` and
returns ``await fetch_page(db, listing, query)``, whose envelope the route's
``response_model`` (``Page[XPublic]``) validates and serialises once. The count and the page
are one statement (the count as a scalar subquery): one round trip per list.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy import ColumnElement, FromClause, Row, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped

from common.db import as_utc
from common.errors import NotFound, ValidationFailed
from common.pagination import (
    DEFAULT_PAGE_SIZE,
    INVALID_PAGE,
    LAST_PAGE,
    PageRequest,
    parse_page_size,
    public_base_url,
)

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


# --- the pipeline ---


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list request's page and filters, parsed once."""

    page: PageRequest
    filters: ListFilters


async def list_query(
    request: Request,
    page: Annotated[str, Query(description="Page number from 1, or `last`.")] = "1",
    page_size: Annotated[
        str | None,
        Query(description=f"Results per page (default {DEFAULT_PAGE_SIZE}, at most 200)."),
    ] = None,
    search: Annotated[str, Query(description="Case-insensitive search terms.")] = "",
    ordering: Annotated[str, Query(description="Comma-separated fields, `-` for descending.")] = "",
    updated_after: Annotated[
        str | None, Query(description="Only records updated at or after this ISO date-time.")
    ] = None,
) -> ListQuery:
    """The dependency of every list route (no I/O)."""
    paging = PageRequest(
        page=page.strip(),
        size=parse_page_size(page_size),
        base_url=f"{public_base_url(request)}{request.url.path}",
        params=tuple((k, v) for k, v in request.query_params.multi_items() if k != "page"),
    )
    if paging.page != LAST_PAGE:
        paging.requested  # noqa: B018 -- 404 for ?page=abc before any query runs
    since = None
    if updated_after is not None:
        try:
            since = utc_datetime(updated_after)
        except ValueError:
            raise ValidationFailed({"updated_after": INVALID_DATETIME}) from None
    return ListQuery(paging, ListFilters(search=search, ordering=ordering, updated_after=since))


ListQueryDep = Annotated[ListQuery, Depends(list_query)]

SearchConditions = Callable[[Sequence[str]], list[ColumnElement[bool]]]


@dataclass(frozen=True, slots=True)
class Listing:
    """How one resource is listed: the table it counts, the columns a page selects, the names
    ``?ordering=`` accepts (with ``tie_breaker`` among them), how search terms match, and the
    column ``?updated_after=`` compares."""

    table: FromClause
    columns: Sequence[Sortable]
    ordering: Mapping[str, Sortable]
    search: SearchConditions
    updated_at: Sortable
    tie_breaker: str = "id"


@dataclass(frozen=True, slots=True)
class PageResult:
    """A page in DRF's envelope; ``results`` are rows for the route's ``response_model``."""

    count: int
    next: str | None
    previous: str | None
    results: Sequence[Any]


def list_conditions(
    listing: Listing, filters: ListFilters, where: Sequence[ColumnElement[bool]] = ()
) -> list[ColumnElement[bool]]:
    """``where`` (the route's own filters) and the list parameters, as SQL conditions."""
    conditions = [*where, *listing.search(search_terms(filters.search))]
    if filters.updated_after is not None:
        conditions.append(listing.updated_at >= filters.updated_after)
    return conditions


async def fetch_page(
    db: AsyncConnection | AsyncSession,
    listing: Listing,
    query: ListQuery,
    where: Sequence[ColumnElement[bool]] = (),
) -> PageResult:
    """One page of ``listing`` matching ``where`` and the query's filters, with its count.

    A numbered page is one statement: the count rides along as a scalar subquery. A page past
    the end (no rows, not the first page) is a 404 ``Invalid page.``; ``?page=last`` needs the
    count first, so it runs two.
    """
    if isinstance(db, AsyncSession):
        # Rows, not ORM objects: run on the session's connection (and its transaction).
        db = await db.connection()
    paging = query.page
    conditions = list_conditions(listing, query.filters, where)
    order = order_by(query.filters.ordering, listing.ordering, listing.tie_breaker)
    counted: Select[Any] = select(func.count()).select_from(listing.table).where(*conditions)
    if paging.page == LAST_PAGE:
        count = (await db.execute(counted)).scalar_one()
        number = paging.number(count)
        page: Select[Any] = select(*listing.columns)
    else:
        number = paging.requested
        count = -1
        page = select(counted.scalar_subquery().label("list_total_count"), *listing.columns)
    page = page.where(*conditions).order_by(*order)
    rows: Sequence[Row[Any]] = (
        await db.execute(page.limit(paging.size).offset(paging.offset(number)))
    ).all()
    if count < 0:
        if rows:
            count = rows[0][0]
        elif number == 1:
            count = 0
        else:
            raise NotFound(INVALID_PAGE)
    following, preceding = paging.links(number, count)
    return PageResult(count=count, next=following, previous=preceding, results=rows)
