"""Whether a tenant is still active, asked of the tenants service and cached briefly.

Concurrent requests for the same uncached tenant share one lookup. An answer is reused for
``ttl`` seconds; when the tenants service cannot be reached, an older answer is still used up to
``MAX_TENANT_STALENESS`` (the contract's one-minute bound), and without one the caller gets
``TenantsUnavailable`` (a 503, never "active").

While the app runs, ``refreshing()`` fetches every tenant's status in one request every
``ttl / 2`` seconds, so cached answers do not go stale and the cost per request does not grow
with the number of tenants (one lookup per tenant per ``ttl`` did). A tenant created since the
last refresh still gets a single lookup.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from edge.settings import MAX_TENANT_STALENESS

RESOLVE_PATH = "/internal/tenants/resolve/"
STATUS_PATH = "/internal/tenants/status/"
# Refresh twice per ttl: an answer is renewed before it goes stale even if one refresh is slow.
REFRESHES_PER_TTL = 2
# A tiny ttl must not turn the refresh into a busy loop (stale answers then get single lookups).
MIN_REFRESH_INTERVAL = 0.1

log = logging.getLogger("dentiapro.edge")


class TenantsUnavailable(Exception):
    """The tenants service did not give a usable answer."""


@dataclass(frozen=True, slots=True)
class _Answer:
    active: bool
    fetched_at: float


class TenantDirectory:
    def __init__(
        self,
        client: httpx.AsyncClient,
        tenants_url: str,
        ttl: float,
        internal_token: str | None = None,
    ) -> None:
        self._client = client
        # The shared secret /internal/ requires (X-Internal-Token).
        self._headers = {"X-Internal-Token": internal_token} if internal_token else {}
        self._url = tenants_url.rstrip("/") + RESOLVE_PATH
        self._status_url = tenants_url.rstrip("/") + STATUS_PATH
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
            response = await self._client.get(
                self._url, params={"schema_name": schema_name}, headers=self._headers
            )
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

    async def refresh(self) -> None:
        """Store an answer for every tenant the tenants service knows, from one request.

        Raises ``TenantsUnavailable`` (the answers stay as they were) when it cannot be fetched.
        """
        # Timed from the request's start: a deletion just before it must not look fresher.
        fetched_at = time.monotonic()
        statuses = await self._fetch_statuses()
        for schema_name, active in statuses.items():
            current = self._answers.get(schema_name)
            # A single lookup that finished meanwhile may have seen a later change: keep it.
            if current is None or current.fetched_at < fetched_at:
                self._answers[schema_name] = _Answer(active, fetched_at)

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """Lifespan helper: a first refresh before the app serves, then one every ``ttl / 2``."""
        if self._ttl <= 0:  # nothing is cached: every check asks anyway
            yield
            return
        await self._refresh_or_warn()
        interval = max(self._ttl / REFRESHES_PER_TTL, MIN_REFRESH_INTERVAL)
        task = asyncio.create_task(self._refresh_periodically(interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._refresh_or_warn()

    async def _refresh_or_warn(self) -> None:
        try:
            await self.refresh()
        except TenantsUnavailable as exc:
            # Older answers stay usable up to MAX_TENANT_STALENESS; new tenants get single lookups.
            log.warning("tenant status refresh failed (%s); keeping the cached answers", exc)

    async def _fetch_statuses(self) -> dict[str, bool]:
        try:
            response = await self._client.get(self._status_url, headers=self._headers)
            if response.status_code != 200:
                raise TenantsUnavailable(f"tenants answered HTTP {response.status_code}")
            return _parse_statuses(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise TenantsUnavailable(type(exc).__name__) from exc


def _parse_statuses(body: Any) -> dict[str, bool]:
    """``{"tenants": {schema_name: is_active}}``; anything else is a ValueError."""
    tenants = body.get("tenants") if isinstance(body, dict) else None
    if not isinstance(tenants, dict):
        raise ValueError("no tenants object in the status answer")
    return {str(name): active is True for name, active in tenants.items()}
