"""Every list of every service, one pipeline: parse the query, filter, count, page, link.

DESIGN.md section 5, as DRF does it: ``?page=`` (from 1, or ``last``) and ``?page_size=``
(``common.pagination``); ``?search=`` (each resource says which fields); ``?ordering=name,
-created_at`` on listed fields (unknown ones ignored, as DRF's OrderingFilter does);
``?updated_after=<ISO date-time>`` for incremental sync (a naive value is UTC; a bad one is a
400 on the parameter).

A resource declares how it is listed once (``Listing``); a route takes ``ListQueryDep`` and
returns ``await fetch_page(db, listing, query)``, whose envelope the route's
``response_model`` (``Page[XPublic]``) validates and serialises once. The count and the page
are one statement (the count as a scalar subquery): one round trip per list. Statements are
built once per shape of query (how many search terms, which ordering, which filters) with every
value a bind parameter.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import WithJsonSchema
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    FromClause,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped

from common.db import as_utc
from common.errors import NotFound, ValidationFailed
from common.openapi import raises
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
    try:
        return as_utc(datetime.fromisoformat(text))
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        raise ValueError("out of the range of date-times") from None


def search_terms(search: str) -> list[str]:
    """``?search=`` as DRF's SearchFilter splits it: on spaces and commas (every term must
    match some field). NUL is dropped: stored text never holds it and PostgreSQL refuses it."""
    return search.replace("\x00", "").replace(",", " ").split()[:MAX_SEARCH_TERMS]


# --- the pipeline ---

# ?page=: a number from 1 (9 digits at most, else it is past any end), or the last page.
PAGE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 1}, {"const": LAST_PAGE}]}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list request's page and filters, parsed once."""

    page: PageRequest
    filters: ListFilters


@raises(400, 404)
async def list_query(
    request: Request,
    page: Annotated[
        str | None,
        Query(description="Page number from 1, or `last`; past the end or not a number: 404."),
        WithJsonSchema(PAGE_SCHEMA),
    ] = None,
    page_size: Annotated[
        str | None,
        Query(description=f"Results per page (default {DEFAULT_PAGE_SIZE}, at most 200)."),
        WithJsonSchema({"type": "integer", "minimum": 1}),
    ] = None,
    search: Annotated[str, Query(description="Case-insensitive search terms.")] = "",
    ordering: Annotated[
        str,
        Query(
            description="Comma-separated fields, `-` for descending; unknown fields are "
            "ignored (as DRF's OrderingFilter does)."
        ),
    ] = "",
    updated_after: Annotated[
        str | None,
        Query(description="Only records updated at or after this ISO date-time."),
        WithJsonSchema({"type": "string", "format": "date-time"}),
    ] = None,
) -> ListQuery:
    """The dependency of every list route (no I/O)."""
    paging = PageRequest(
        page="1" if page is None else page.strip(),
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


@dataclass(frozen=True, slots=True)
class SearchField:
    """A field ``?search=`` looks in, compared case-insensitively with ``LIKE %term%``.

    ``expression`` is the field as the database lower-cases it (``func.lower(column)``, or a
    column already stored lower-cased); the pattern is lower-cased by the database too, so both
    sides fold alike. ``prepare`` turns a term into the form the field stores text in (auth's
    usernames are NFKC case-folded, for instance).
    """

    expression: ColumnElement[str] | InstrumentedAttribute[str]
    prepare: Callable[[str], str] = str


# A route's own filter (``?patient=``), given the bind parameter that will carry its value.
Filter = Callable[[BindParameter[Any]], ColumnElement[bool]]

# (shape of the list query) -> (count statement, page statement); see Listing.statements.
Shape = tuple[int, tuple[tuple[str, bool], ...], bool, tuple[str, ...], bool]
MAX_CACHED_SHAPES = 256


@dataclass(frozen=True)
class Listing:
    """How one resource is listed, declared once: the table it counts, the columns a page
    selects, the names ``?ordering=`` accepts (``tie_breaker`` among them), the fields
    ``?search=`` looks in, the column ``?updated_after=`` compares, the route's own named
    filters, and conditions every list of it applies (``where``)."""

    table: FromClause
    columns: Sequence[Sortable]
    ordering: Mapping[str, Sortable]
    search: Sequence[SearchField]
    updated_at: Sortable
    filters: Mapping[str, Filter] = field(default_factory=dict)
    where: Sequence[ColumnElement[bool]] = ()
    tie_breaker: str = "id"
    # The order of a list that asks for none (e.g. "-at": newest first).
    default_ordering: str = ""
    # Statements built once per query shape, values bound at execution: building a list
    # statement and its cache key cost more than running it (docs/performance.md).
    _statements: dict[Shape, tuple[Select[Any], Select[Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def ordered(self, ordering: str) -> tuple[tuple[str, bool], ...]:
        """``?ordering=`` as (name, descending) pairs: known fields in the order given (unknown
        or repeated ones ignored, as in DRF), then the tie-breaker unless already named, so
        pages never overlap or skip; it takes the last field's direction to keep one index
        scan."""
        pairs: list[tuple[str, bool]] = []
        descending = False
        for raw in (ordering or self.default_ordering).split(","):
            term = raw.strip()
            name = term.removeprefix("-")
            if name in self.ordering and all(name != seen for seen, _ in pairs):
                descending = term.startswith("-")
                pairs.append((name, descending))
        if all(name != self.tie_breaker for name, _ in pairs):
            pairs.append((self.tie_breaker, descending))
        return tuple(pairs)

    def statements(self, shape: Shape) -> tuple[Select[Any], Select[Any]]:
        """The count and page statements of ``shape``, with bind parameters for every value."""
        cached = self._statements.get(shape)
        if cached is not None:
            return cached
        terms, order, since, filters, last = shape
        conditions = [*self.where]
        for name in filters:
            conditions.append(self.filters[name](bindparam(name)))
        for term in range(terms):
            conditions.append(
                or_(
                    *(
                        search.expression.like(
                            func.lower(bindparam(f"term_{term}_{index}", type_=String)),
                            escape="\\",
                        )
                        for index, search in enumerate(self.search)
                    )
                )
            )
        if since:
            conditions.append(self.updated_at >= bindparam("updated_after"))
        counted: Select[Any] = select(func.count()).select_from(self.table).where(*conditions)
        columns = [*self.columns]
        if not last:  # the count rides along: one statement, one round trip
            columns.insert(0, counted.scalar_subquery().label("list_total_count"))
        clauses = [
            self.ordering[name].desc() if descending else self.ordering[name].asc()
            for name, descending in order
        ]
        page = (
            select(*columns)
            .where(*conditions)
            .order_by(*clauses)
            .limit(bindparam("page_limit", type_=Integer))
            # 64-bit: page 10,000,000 of 200 is past a 32-bit offset (a 500 on PostgreSQL).
            .offset(bindparam("page_offset", type_=BigInteger))
        )
        if len(self._statements) >= MAX_CACHED_SHAPES:
            self._statements.pop(next(iter(self._statements)))
        self._statements[shape] = counted, page
        return counted, page


@dataclass(frozen=True, slots=True)
class PageResult:
    """A page in DRF's envelope; ``results`` are rows for the route's ``response_model``."""

    count: int
    next: str | None
    previous: str | None
    results: Sequence[Any]


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def fetch_page(
    db: AsyncConnection | AsyncSession,
    listing: Listing,
    query: ListQuery,
    filters: Mapping[str, Any] | None = None,
) -> PageResult:
    """One page of ``listing`` matching the query and the route's ``filters`` (values of the
    listing's named filters), with its count.

    A numbered page is one statement: the count rides along as a scalar subquery. A page past
    the end (no rows, not the first page) is a 404 ``Invalid page.``; ``?page=last`` needs the
    count first, so it runs two.
    """
    if isinstance(db, AsyncSession):
        # Rows, not ORM objects: run on the session's connection (and its transaction).
        db = await db.connection()
    filters = filters or {}
    paging, wanted = query.page, query.filters
    terms = search_terms(wanted.search)
    last = paging.page == LAST_PAGE
    shape: Shape = (
        len(terms),
        listing.ordered(wanted.ordering),
        wanted.updated_after is not None,
        tuple(sorted(filters)),
        last,
    )
    counted, page = listing.statements(shape)
    params: dict[str, Any] = dict(filters)
    for term_index, term in enumerate(terms):
        for field_index, search in enumerate(listing.search):
            params[f"term_{term_index}_{field_index}"] = _like(search.prepare(term))
    if wanted.updated_after is not None:
        params["updated_after"] = wanted.updated_after
    if last:
        count = (await db.execute(counted, params)).scalar_one()
        number = paging.number(count)
    else:
        number, count = paging.requested, -1
    params["page_limit"] = paging.size
    params["page_offset"] = paging.offset(number)
    rows: Sequence[Row[Any]] = (await db.execute(page, params)).all()
    if count < 0:
        if rows:
            count = rows[0][0]
        elif number == 1:
            count = 0
        else:
            raise NotFound(INVALID_PAGE)
    following, preceding = paging.links(number, count)
    return PageResult(count=count, next=following, previous=preceding, results=rows)
