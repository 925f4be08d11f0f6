"""DRF-compatible page-number pagination: ``{count, next, previous, results}``.

``?page=`` counts from 1 (``last`` also works, as in DRF); anything else that is not a page of
the result is a 404 ``{"detail": "Invalid page."}``. ``?page_size=`` defaults to 50 and is
capped at 200; anything but a whole number from 1 is a 400 on it (DESIGN.md: a parameter that
should be a number and is not one), not DRF's silent fallback to the default. ``next``/``previous``
are absolute URLs as the client sees them through the gateway (``X-Forwarded-*``).

``common.listing.list_query`` parses ``?page=`` and ``?page_size=`` into a ``PageRequest``.
"""

from dataclasses import dataclass
from math import ceil
from typing import Generic, TypeVar
from urllib.parse import urlencode

from fastapi import Request
from pydantic import BaseModel

from common.errors import NotFound, ValidationFailed

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
LAST_PAGE = "last"
INVALID_PAGE = "Invalid page."
# Nine digits are far past any real last page and keep an SQL offset in range.
MAX_DIGITS = 9

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """The page envelope every list answers with."""

    count: int
    next: str | None
    previous: str | None
    results: list[T]


@dataclass(frozen=True, slots=True)
class PageRequest:
    """``?page=`` as given (stripped; ``"1"`` when absent), the page size, where links point."""

    page: str = "1"
    size: int = DEFAULT_PAGE_SIZE
    # scheme://host/path as the client sees it, and the query without ``page``.
    base_url: str = ""
    params: tuple[tuple[str, str], ...] = ()

    @property
    def requested(self) -> int:
        """The page number asked for, before the count is known; 404 unless a number from 1.

        ``last`` needs the count: use ``number(count)`` for it.
        """
        page = self.page
        if not (page.isascii() and page.isdecimal()) or len(page) > MAX_DIGITS or int(page) < 1:
            raise NotFound(INVALID_PAGE)
        return int(self.page)

    def pages(self, count: int) -> int:
        # An empty result still has one (empty) first page, as in DRF.
        return max(1, ceil(count / self.size))

    def number(self, count: int) -> int:
        """The 1-based page number given the result's size; 404 when it is not a page of it."""
        pages = self.pages(count)
        if self.page == LAST_PAGE:
            return pages
        number = self.requested
        if number > pages:
            raise NotFound(INVALID_PAGE)
        return number

    def offset(self, number: int) -> int:
        return (number - 1) * self.size

    def link(self, page: int | None) -> str:
        query = urlencode(self.params + ((("page", str(page)),) if page is not None else ()))
        return f"{self.base_url}?{query}" if query else self.base_url

    def links(self, number: int, count: int) -> tuple[str | None, str | None]:
        """Absolute ``next`` and ``previous`` of page ``number``."""
        following = self.link(number + 1) if number < self.pages(count) else None
        # DRF drops ?page= from the link to the first page.
        preceding = None if number <= 1 else self.link(None if number == 2 else number - 1)
        return following, preceding

    def envelope(self, number: int, count: int, results: list[T]) -> Page[T]:
        following, preceding = self.links(number, count)
        # Built, not validated: the results are already validated public models.
        page: Page[T] = Page.model_construct(
            count=count, next=following, previous=preceding, results=results
        )
        return page


def public_base_url(request: Request) -> str:
    """Scheme and host the client used, through the gateway (Traefik sets X-Forwarded-*)."""
    headers = request.headers
    proto = _first(headers.get("x-forwarded-proto")).lower()
    if proto not in ("http", "https"):
        proto = request.url.scheme
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


INVALID_INTEGER = "A valid integer is required."
BELOW_ONE = "Ensure this value is greater than or equal to 1."


def parse_page_size(raw: str | None) -> int:
    """``?page_size=``: the default when absent, at most ``MAX_PAGE_SIZE``; 400 unless a whole
    number (ASCII digits: ``"³".isdecimal()`` is false, ``"٣"`` is true) from 1."""
    if raw is None:
        return DEFAULT_PAGE_SIZE
    text = raw.strip()
    if not (text.isascii() and text.isdecimal()):
        raise ValidationFailed({"page_size": INVALID_INTEGER})
    # A long run of digits is a large number: capped, and never handed to int() whole.
    size = int(text) if len(text) <= MAX_DIGITS else MAX_PAGE_SIZE
    if size < 1:
        raise ValidationFailed({"page_size": BELOW_ONE})
    return min(size, MAX_PAGE_SIZE)
