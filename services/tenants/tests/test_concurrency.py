"""Concurrent writers: the unique indexes decide, and the loser gets a 400, never a 500."""

import threading
from collections import Counter
from typing import Any

import httpx
import pytest

WRITERS = 6


def post_together(
    base_url: str, headers: dict[str, str], bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    barrier = threading.Barrier(len(bodies))
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def post(body: dict[str, Any]) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
            barrier.wait()
            response = client.post("/api/tenants/", json=body)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.parametrize(
    ("shared_field", "message"),
    [
        ("schema_name", "tenant with this schema name already exists."),
        ("domain_url", "tenant with this domain url already exists."),
    ],
)
def test_concurrent_duplicate_creates_give_one_201_and_400s(
    api: httpx.Client,
    base_url: str,
    superuser_headers: dict[str, str],
    unique: str,
    shared_field: str,
    message: str,
) -> None:
    shared = {"schema_name": f"race_{unique}", "domain_url": f"race-{unique}.test"}[shared_field]
    bodies = [
        {
            "name": f"Race {unique}",
            "schema_name": f"race_{unique}_{i}",
            "domain_url": f"race{i}-{unique}.test",
            shared_field: shared,
        }
        for i in range(WRITERS)
    ]
    responses = post_together(base_url, superuser_headers, bodies)
    assert Counter(r.status_code for r in responses) == {201: 1, 400: WRITERS - 1}
    for response in responses:
        if response.status_code == 400:
            assert response.json() == {shared_field: [message]}
    assert api.get("/api/tenants/", params={"search": unique}).json()["count"] == 1
