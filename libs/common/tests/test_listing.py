"""``?ordering=`` as every list applies it (DRF's OrderingFilter, plus a stable tie-breaker)."""

import pytest
from common.listing import order_by
from sqlalchemy import Column, Integer, MetaData, String, Table

records = Table(
    "record", MetaData(), Column("id", Integer, primary_key=True), Column("name", String)
)
COLUMNS = {"id": records.c.id, "name": records.c.name}


def _sql(ordering: str) -> list[str]:
    return [str(clause) for clause in order_by(ordering, COLUMNS)]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("", ["record.id ASC"]),
        ("name", ["record.name ASC", "record.id ASC"]),
        # The id follows the last field's direction: one index scan, pages that never overlap.
        ("-name", ["record.name DESC", "record.id DESC"]),
        ("-id,name", ["record.id DESC", "record.name ASC"]),
        (" name , -name ", ["record.name ASC", "record.id ASC"]),  # the first mention wins
        ("password,-", ["record.id ASC"]),  # unknown fields are ignored
        ("name,-unknown", ["record.name ASC", "record.id ASC"]),
    ],
)
def test_ordering(ordering: str, expected: list[str]) -> None:
    assert _sql(ordering) == expected
