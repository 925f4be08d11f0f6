"""DRF-style page numbers: ``?page=`` from 1, ``?page_size=`` (default 50, capped at 200)."""

import math
from dataclasses import dataclass
from typing import Annotated, TypeVar

from common.errors import NotFound
from fastapi import Depends, Request
from starlette.datastructures import URL

from auth.models import Page

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
INVALID_PAGE = "Invalid page."

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    number: int
    size: int
    request: Request

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def page(self, count: int, results: list[T]) -> Page[T]:
        """The page, or 404 when it lies past the end (an empty list still has page 1)."""
        last = max(1, math.ceil(count / self.size))
        if self.number > last:
            raise NotFound(INVALID_PAGE)
        url = client_url(self.request)
        next_url = (
            str(url.include_query_params(page=self.number + 1)) if self.number < last else None
        )
        previous_url = None
        if self.number == 2:
            previous_url = str(url.remove_query_params("page"))
        elif self.number > 2:
            previous_url = str(url.include_query_params(page=self.number - 1))
        return Page(count=count, next=next_url, previous=previous_url, results=results)


def client_url(request: Request) -> URL:
    """The request URL as the client sees it through the gateway (its scheme and host)."""
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    return request.url.replace(
        scheme=proto if proto in ("http", "https") else request.url.scheme,
        netloc=host or request.headers.get("host") or request.url.netloc,
    )


def get_page_request(request: Request) -> PageRequest:
    raw_page = request.query_params.get("page", "1")
    # Nine digits are far past any real last page and keep the SQL offset in range.
    if not raw_page.isdecimal() or len(raw_page) > 9 or int(raw_page) < 1:
        raise NotFound(INVALID_PAGE)
    size = DEFAULT_PAGE_SIZE
    raw_size = request.query_params.get("page_size", "")
    if (
        raw_size.isdecimal() and len(raw_size) <= 9 and int(raw_size) > 0
    ):  # like DRF, a bad page_size means the default
        size = min(int(raw_size), MAX_PAGE_SIZE)
    return PageRequest(number=int(raw_page), size=size, request=request)


PageDep = Annotated[PageRequest, Depends(get_page_request)]
