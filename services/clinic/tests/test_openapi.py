"""The clinic service's OpenAPI document tells the truth (DESIGN.md section 5, common.openapi)."""

from typing import Any

from clinic.main import create_app
from common.testing import check_openapi_document


def test_the_document_says_every_error_and_the_security_of_each_operation() -> None:
    document: dict[str, Any] = create_app().openapi()

    check_openapi_document(document, public=set())


def test_a_patch_body_offers_no_null_where_the_field_refuses_it() -> None:
    schemas = create_app().openapi()["components"]["schemas"]

    assert "anyOf" not in schemas["PatientUpdate"]["properties"]["name"]
    assert {"type": "null"} in schemas["PatientUpdate"]["properties"]["email"]["anyOf"]
    assert schemas["PatientUpdate"].get("required") is None
    assert set(schemas["PatientCreate"]["required"]) == {"name", "birthdate", "contact_number"}
