"""Routes of the auth service, one module per concern."""

from typing import Any

from common.openapi import error_response

# Every /api/auth/ route may be throttled: by the gateway's per-address limit (Traefik's own
# plain-text answer, DESIGN.md section 5), and login and registration by the service (JSON).
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        **error_response(429),
        "content": {
            **error_response(429)["content"],
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}
