"""The auth service's OpenAPI document tells the truth (DESIGN.md section 5, common.openapi)."""

from typing import Any

from auth.main import create_app
from common.testing import check_openapi_document


def test_the_document_says_every_error_and_the_security_of_each_operation() -> None:
    document: dict[str, Any] = create_app().openapi()

    check_openapi_document(
        document,
        public={
            "/api/auth/register/",
            "/api/auth/login/",
            "/api/auth/refresh/",
            "/api/auth/logout/",
            "/api/auth/jwks/",
        },
    )
