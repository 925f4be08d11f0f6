"""The list pipeline's pure parts: ``?ordering=`` as every list applies it (DRF's
OrderingFilter, plus a stable tie-breaker), and statements built once per query shape."""

import pytest
from common.listing import MAX_CACHED_SHAPES, Listing, SearchField
from sqlalchemy import Column, Integer, MetaData, String, Table, func

records = Table(
    "record",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String),
    Column("updated_at", String),
)
COLUMNS = {"id": records.c.id, "name": records.c.name}


def _listing() -> Listing:
    return Listing(
        table=records,
        columns=list(records.c),
        ordering=COLUMNS,
        search=[SearchField(func.lower(records.c.name))],
        updated_at=records.c.updated_at,
        filters={"named": lambda value: records.c.name == value},
    )


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("", (("id", False),)),
        ("name", (("name", False), ("id", False))),
        # The id follows the last field's direction: one index scan, pages that never overlap.
        ("-name", (("name", True), ("id", True))),
        ("-id,name", (("id", True), ("name", False))),
        (" name , -name ", (("name", False), ("id", False))),  # the first mention wins
        ("password,-", (("id", False),)),  # unknown fields are ignored
        ("name,-unknown", (("name", False), ("id", False))),
    ],
)
def test_ordering(ordering: str, expected: tuple[tuple[str, bool], ...]) -> None:
    assert _listing().ordered(ordering) == expected


def test_a_shape_is_built_once_and_its_values_are_bound_not_inlined() -> None:
    listing = _listing()
    shape = (2, listing.ordered("-name"), True, ("named",), False)
    counted, page = listing.statements(shape)
    assert listing.statements(shape) == (counted, page)  # the same objects: built once
    sql = str(page)
    for parameter in ("term_0_0", "term_1_0", "updated_after", "named", "page_limit"):
        assert f":{parameter}" in sql
    assert "ORDER BY record.name DESC, record.id DESC" in sql
    assert listing.statements((1, listing.ordered(""), False, (), True))[0] is not counted


def test_the_statement_cache_is_bounded() -> None:
    """``?ordering=`` is the client's: the shapes it can ask for must not grow memory."""
    listing = _listing()
    for terms in range(MAX_CACHED_SHAPES + 50):  # more distinct shapes than it keeps
        listing.statements((terms, listing.ordered(""), False, (), False))
    assert len(listing._statements) <= MAX_CACHED_SHAPES
