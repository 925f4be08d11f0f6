"""DRF-compatible page-number pagination: ``{count, next, previous, results}``.

``?page=`` counts from 1 (``last`` also works, as in DRF); anything else that is not a page of
the result is a 404 ``{"detail": "Invalid page."}``. ``?page_size=`` defaults to 50 and is
capped at 200; an unusable value falls back to the default, as DRF does. ``next``/``previous``
are absolute URLs as the client sees them through the gateway (``X-Forwarded-*``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import urlencode

from common.errors import NotFound
from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import Select
from sqlmodel import Session

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
LAST_PAGE = "last"
INVALID_PAGE = "Invalid page."

T = TypeVar("T")
Row = TypeVar("Row")


class Paginated(BaseModel, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: str
    size: int

    def number(self, pages: int) -> int:
        """The 1-based page number, given how many pages the result has."""
        if self.page == LAST_PAGE:
            return pages
        if not self.page.isdigit() or not 1 <= int(self.page) <= pages:
            raise NotFound(INVALID_PAGE)
        return int(self.page)


@dataclass(frozen=True, slots=True)
class PageResult(Generic[Row]):
    count: int
    number: int
    pages: int
    rows: Sequence[Row]


def page_request(
    page: Annotated[str, Query(description="Page number from 1, or `last`.")] = "1",
    page_size: Annotated[
        str | None, Query(description=f"Results per page (default {DEFAULT_PAGE_SIZE}).")
    ] = None,
) -> PageRequest:
    size = DEFAULT_PAGE_SIZE
    if page_size is not None and page_size.isdigit() and int(page_size) > 0:
        size = min(int(page_size), MAX_PAGE_SIZE)
    return PageRequest(page=page.strip(), size=size)


PageDep = Annotated[PageRequest, Depends(page_request)]


def paginate(
    session: Session, rows: Select[Row], count: Select[int], page: PageRequest
) -> PageResult[Row]:
    """Run ``count`` (same filters as ``rows``), check the page, fetch that page of ``rows``."""
    total = session.execute(count).scalar_one()
    # An empty result still has one (empty) first page, as in DRF.
    pages = max(1, ceil(total / page.size))
    number = page.number(pages)
    found = session.execute(rows.offset((number - 1) * page.size).limit(page.size)).scalars()
    return PageResult(count=total, number=number, pages=pages, rows=list(found))


def public_base_url(request: Request) -> str:
    """Scheme and host the client used, through the gateway (Traefik sets X-Forwarded-*)."""
    headers = request.headers
    proto = _first(headers.get("x-forwarded-proto")) or request.url.scheme
    host = _first(headers.get("x-forwarded-host")) or headers.get("host") or request.url.netloc
    port = _first(headers.get("x-forwarded-port"))
    if port and not _has_port(host) and port != {"http": "80", "https": "443"}.get(proto):
        host = f"{host}:{port}"
    return f"{proto}://{host}"


def _first(value: str | None) -> str:
    # Proxies chain values as "a, b": the first is what the client sent to the first proxy.
    return (value or "").split(",")[0].strip()


def _has_port(host: str) -> bool:
    # "[::1]:8000" and "example.com:8000" have one; "[::1]" does not.
    return host.rsplit("]", 1)[-1].count(":") == 1


def page_links(request: Request, number: int, pages: int) -> tuple[str | None, str | None]:
    base = f"{public_base_url(request)}{request.url.path}"
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]

    def link(page: int | None) -> str:
        query = params + ([("page", str(page))] if page is not None else [])
        encoded = urlencode(query)
        return f"{base}?{encoded}" if encoded else base

    following = link(number + 1) if number < pages else None
    # DRF drops ?page= from the link to the first page.
    preceding = None if number <= 1 else link(None if number == 2 else number - 1)
    return following, preceding


def page_response(
    request: Request, result: PageResult[Any], public: type[BaseModel]
) -> dict[str, Any]:
    following, preceding = page_links(request, result.number, result.pages)
    return {
        "count": result.count,
        "next": following,
        "previous": preceding,
        "results": [public.model_validate(row, from_attributes=True) for row in result.rows],
    }
