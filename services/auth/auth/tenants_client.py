"""The tenants service as auth sees it: resolve a tenant by schema_name or domain.

Auth asks the registry only at registration, login and refresh, and each of these must see a
deleted tenant at once (DESIGN section 3): nothing is cached. An unreachable or failing
tenants service is a 503 for the caller, never "active" and never "unknown". Every call
carries ``X-Internal-Token`` (``DENTIAPRO_INTERNAL_TOKEN``): the registry's ``/internal/``
paths are for the services only.
"""

import logging
from dataclasses import dataclass
from typing import Literal

import httpx
from common.errors import ServiceUnavailable

log = logging.getLogger("dentiapro.auth.tenants")

UNAVAILABLE = "Tenant registry unavailable, try again shortly."

Lookup = Literal["schema_name", "domain"]


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    schema_name: str
    domain_url: str
    is_active: bool


class TenantsClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, *, default_tenant: str) -> None:
        """``http`` carries the timeout and the internal token's header."""
        self._http = http
        self.default_tenant = default_tenant
        self._url = f"{base_url.rstrip('/')}/internal/tenants/resolve/"

    async def is_active(self, schema_name: str) -> bool:
        """Whether users of ``schema_name`` may sign in. The default tenant always exists and
        cannot be deleted, so it needs no round trip (superusers sign in with it)."""
        if schema_name == self.default_tenant:
            return True
        tenant = await self.by_schema_name(schema_name)
        return tenant is not None and tenant.is_active

    async def by_schema_name(self, schema_name: str) -> Tenant | None:
        return await self._resolve("schema_name", schema_name)

    async def by_domain(self, domain: str) -> Tenant | None:
        return await self._resolve("domain", domain.lower())

    async def _resolve(self, lookup: Lookup, value: str) -> Tenant | None:
        try:
            response = await self._http.get(self._url, params={lookup: value})
        except httpx.HTTPError as exc:
            log.warning("tenants service unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable(UNAVAILABLE) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            # 401/403 too: a missing or wrong internal token is a configuration error, and
            # guessing "unknown tenant" would turn it into a misleading 400.
            log.warning("tenants service answered %s", response.status_code)
            raise ServiceUnavailable(UNAVAILABLE)
        try:
            body = response.json()
            return Tenant(
                id=int(body["id"]),
                name=str(body["name"]),
                schema_name=str(body["schema_name"]),
                domain_url=str(body.get("domain_url") or ""),
                is_active=bool(body["is_active"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("tenants service answered an unexpected body")
            raise ServiceUnavailable(UNAVAILABLE) from exc
