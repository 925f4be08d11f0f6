"""HTTP clients for the services' calls to each other (JWKS, the tenant registry, health)."""

from collections.abc import Mapping

import httpx

# uvicorn closes a keep-alive connection idle for 5 s (its default, which the services keep),
# and httpx forgets one after 5 s too: a request sent on a connection the server is closing
# at that instant fails with "Server disconnected" (a POST is never retried). Forgetting idle
# connections first removes the race; Traefik's idleConnTimeout is 4 s for the same reason.
KEEPALIVE_EXPIRY = 4.0


def internal_client(
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 100,
    max_keepalive_connections: int = 20,
) -> httpx.AsyncClient:
    """An async client that drops an idle connection before the service at the other end does."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    return httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits)
