"""Whether a tenant is still active, asked of the tenants service and cached briefly.

Concurrent requests for the same uncached tenant share one lookup. An answer is reused for
``ttl`` seconds; when the tenants service cannot be reached, an older answer is still used up to
``MAX_TENANT_STALENESS`` (the contract's one-minute bound), and without one the caller gets
``TenantsUnavailable`` (a 503, never "active").
"""

import asyncio
import time
from dataclasses import dataclass

import httpx

from edge.settings import MAX_TENANT_STALENESS

RESOLVE_PATH = "/internal/tenants/resolve/"


class TenantsUnavailable(Exception):
    """The tenants service did not give a usable answer."""


@dataclass(frozen=True, slots=True)
class _Answer:
    active: bool
    fetched_at: float


class TenantDirectory:
    def __init__(self, client: httpx.AsyncClient, tenants_url: str, ttl: float) -> None:
        self._client = client
        self._url = tenants_url.rstrip("/") + RESOLVE_PATH
        self._ttl = ttl
        self._answers: dict[str, _Answer] = {}
        self._pending: dict[str, asyncio.Task[bool]] = {}

    async def is_active(self, schema_name: str) -> bool:
        """True for an active tenant, False for a deleted or unknown one."""
        answer = self._answers.get(schema_name)
        if answer is not None and time.monotonic() - answer.fetched_at < self._ttl:
            return answer.active
        lookup = self._pending.get(schema_name)
        if lookup is None:
            lookup = asyncio.create_task(self._fetch(schema_name))
            self._pending[schema_name] = lookup
        try:
            # Shielded: one caller going away must not cancel the lookup the others wait for.
            return await asyncio.shield(lookup)
        except TenantsUnavailable:
            if answer is not None and time.monotonic() - answer.fetched_at < MAX_TENANT_STALENESS:
                return answer.active
            raise

    async def _fetch(self, schema_name: str) -> bool:
        try:
            response = await self._client.get(self._url, params={"schema_name": schema_name})
            if response.status_code == 404:
                active = False
            elif response.status_code == 200:
                active = response.json().get("is_active") is True
            else:
                raise TenantsUnavailable(f"tenants answered HTTP {response.status_code}")
        except (httpx.HTTPError, ValueError) as exc:
            raise TenantsUnavailable(type(exc).__name__) from exc
        finally:
            self._pending.pop(schema_name, None)
        self._answers[schema_name] = _Answer(active, time.monotonic())
        return active
