"""Clinic's lists over the shared DRF pagination (``common.pagination``): count, then a page.

``?page=`` counts from 1 (``last`` also works, as in DRF); anything else that is not a page of
the result is a 404 ``{"detail": "Invalid page."}``. ``?page_size=`` defaults to 50 and is
capped at 200; ``next``/``previous`` are absolute URLs as the client sees them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from common.pagination import INVALID_PAGE, Page, PageDep, PageRequest
from pydantic import BaseModel
from sqlalchemy import Row, Select
from sqlmodel import Session

__all__ = ["INVALID_PAGE", "Page", "PageDep", "PageRequest", "PageResult", "paginate"]

Item = TypeVar("Item")
Public = TypeVar("Public", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class PageResult(Generic[Item]):
    count: int
    number: int
    rows: Sequence[Item]


def paginate(
    session: Session, rows: Select[Any], count: Select[int], page: PageRequest
) -> PageResult[Row[Any]]:
    """Run ``count`` (same filters as ``rows``), check the page, fetch that page of ``rows``."""
    total = session.execute(count).scalar_one()
    number = page.number(total)
    found = session.execute(rows.offset(page.offset(number)).limit(page.size))
    return PageResult(count=total, number=number, rows=found.all())


def page_of(page: PageRequest, result: PageResult[Any], public: type[Public]) -> Page[Public]:
    """The envelope, each row validated once into its public model."""
    results = [public.model_validate(row, from_attributes=True) for row in result.rows]
    return page.envelope(result.number, result.count, results)
