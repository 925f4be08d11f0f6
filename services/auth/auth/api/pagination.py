"""DRF-style page numbers for auth's lists, over the shared ``common.pagination``.

``?page=`` from 1, ``?page_size=`` (default 50, capped at 200); the page is checked before the
query (auth's list runs count and page in one call), so ``?page=last`` is not offered here.
"""

from dataclasses import dataclass
from typing import Annotated, TypeVar

from common.pagination import PageRequest, page_request
from fastapi import Depends

from auth.models import Page

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuthPage:
    request: PageRequest
    number: int

    @property
    def size(self) -> int:
        return self.request.size

    @property
    def offset(self) -> int:
        return self.request.offset(self.number)

    def page(self, count: int, results: list[T]) -> Page[T]:
        """The page, or 404 when it lies past the end (an empty list still has page 1)."""
        number = self.request.number(count)
        following, preceding = self.request.links(number, count)
        return Page(count=count, next=following, previous=preceding, results=results)


async def get_page_request(page: Annotated[PageRequest, Depends(page_request)]) -> AuthPage:
    # 404 for anything but a number from 1 before any query runs.
    return AuthPage(request=page, number=page.requested)


PageDep = Annotated[AuthPage, Depends(get_page_request)]
