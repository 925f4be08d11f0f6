"""The tenants service's OpenAPI document tells the truth (DESIGN.md section 5, common.openapi)."""

from typing import Any

from common.testing import check_openapi_document
from tenants.main import create_app


def test_the_document_says_every_error_and_the_security_of_each_operation() -> None:
    document: dict[str, Any] = create_app().openapi()

    check_openapi_document(document, public=set())


def test_the_internal_routes_are_not_in_the_document() -> None:
    assert not [path for path in create_app().openapi()["paths"] if "internal" in path]
