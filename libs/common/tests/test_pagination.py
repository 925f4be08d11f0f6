"""``?page=`` checks: a page that is not a number (nor ``last``) is refused before the list runs."""

from collections.abc import Callable, Iterator

import httpx
import pytest
from common.listing import ListQueryDep
from common.pagination import Page
from common.testing import serve
from fastapi import APIRouter, FastAPI

COUNT = 120


@pytest.fixture
def counted(make_app: Callable[..., FastAPI]) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A list route that records each time its body (where the COUNT would run) is reached."""
    reached: list[str] = []
    router = APIRouter()

    @router.get("/api/things/")
    def things(query: ListQueryDep) -> Page[int]:
        page = query.page
        reached.append(page.page)
        number = page.number(COUNT)
        first = page.offset(number)
        return page.envelope(number, COUNT, list(range(first, min(first + page.size, COUNT))))

    app = make_app(routers=[router])
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client, reached


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5", "", "99999999999999999999"])
def test_a_page_that_is_not_a_number_is_a_404_before_the_list_runs(
    counted: tuple[httpx.Client, list[str]], page: str
) -> None:
    client, reached = counted
    reached.clear()

    response = client.get("/api/things/", params={"page": page})

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}
    assert reached == []


def test_a_page_past_the_end_needs_the_count_and_is_a_404(
    counted: tuple[httpx.Client, list[str]],
) -> None:
    client, reached = counted
    reached.clear()

    response = client.get("/api/things/", params={"page": "4"})

    assert response.status_code == 404
    assert reached == ["4"]


def test_last_and_numbered_pages(counted: tuple[httpx.Client, list[str]]) -> None:
    client, _ = counted

    last = client.get("/api/things/", params={"page": "last"}).json()
    second = client.get("/api/things/", params={"page": " 2 "}).json()

    assert last["results"] == list(range(100, 120))
    assert last["next"] is None
    assert second["results"] == list(range(50, 100))
